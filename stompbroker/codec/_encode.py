"""Serialising frames to bytes."""

from __future__ import annotations

from collections.abc import Iterable

from ._escape import UNESCAPED_COMMANDS, escape
from ._frame import Frame


def plain_header_text(text: str, lines: int) -> bool:
    """Whether ``text``, ``lines`` header lines (``name:value`` and LF) joined, needs no
    escaping in any version: one colon and one LF per line, no backslash, no CR."""
    return (
        text.count(":") == lines
        and text.count("\n") == lines
        and "\\" not in text
        and "\r" not in text
    )


def encode_headers(headers: Iterable[tuple[str, str]], version: str) -> bytes:
    """Header lines (each ending in LF), escaped for ``version``."""
    if not isinstance(headers, list):
        headers = list(headers)
    lines = [f"{name}:{value}\n" for name, value in headers]
    text = "".join(lines)
    if plain_header_text(text, len(lines)):  # the fast path: nothing to escape
        return text.encode("utf-8")
    return "".join(
        [f"{escape(name, version)}:{escape(value, version)}\n" for name, value in headers]
    ).encode("utf-8")


def encode_frame(
    command: str,
    headers: Iterable[tuple[str, str]] | dict[str, str] = (),
    body: bytes = b"",
    version: str = "1.2",
) -> bytes:
    """Serialise one frame; a non-empty body gets a ``content-length`` header."""
    if isinstance(headers, dict):
        headers = headers.items()
    pairs = list(headers)
    if body and not any(name == "content-length" for name, _ in pairs):
        pairs.append(("content-length", str(len(body))))
    escaping = "1.0" if command in UNESCAPED_COMMANDS else version
    return b"".join(
        [command.encode("ascii"), b"\n", encode_headers(pairs, escaping), b"\n", body, b"\0"]
    )


def encode(frame: Frame, version: str = "1.2") -> bytes:
    """Serialise a ``Frame``."""
    return encode_frame(frame.command, frame.headers, frame.body, version)

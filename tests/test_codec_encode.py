"""Tests for header escaping per STOMP version and for the frame serialiser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stompbroker.codec import (
    Frame,
    ProtocolError,
    encode,
    encode_frame,
    encode_headers,
    escape,
    unescape,
)

# --------------------------------------------------------------------------- escaping

#: (version, decoded text, its wire form) where the mapping is exact both ways.
ESCAPES = [
    ("1.0", "plain", "plain"),
    ("1.0", "a:b\\c", "a:b\\c"),
    ("1.1", "plain", "plain"),
    ("1.1", "a:b", "a\\cb"),
    ("1.1", "a\nb", "a\\nb"),
    ("1.1", "a\\b", "a\\\\b"),
    ("1.1", "a\rb", "a\rb"),
    ("1.1", ":\n\\", "\\c\\n\\\\"),
    ("1.1", "\\n", "\\\\n"),
    ("1.2", "plain héllo €", "plain héllo €"),
    ("1.2", "a\rb", "a\\rb"),
    ("1.2", ":\n\r\\", "\\c\\n\\r\\\\"),
    ("1.2", "\\c", "\\\\c"),
    ("1.2", "", ""),
]


@pytest.mark.parametrize(("version", "text", "wire"), ESCAPES)
def test_escape(version: str, text: str, wire: str) -> None:
    """escape() produces exactly the wire form the version defines."""
    assert escape(text, version) == wire


@pytest.mark.parametrize(("version", "text", "wire"), ESCAPES)
def test_unescape(version: str, text: str, wire: str) -> None:
    """unescape() decodes exactly the sequences the version defines."""
    assert unescape(wire, version) == text


@pytest.mark.parametrize(
    ("version", "text", "wire"),
    [
        ("1.0", "a\r\nb", "a  b"),
        ("1.0", "\n", " "),
        ("1.0", "\r", " "),
    ],
)
def test_escape_10_replaces_cr_lf_with_spaces(version: str, text: str, wire: str) -> None:
    """STOMP 1.0 has no escapes, so CR and LF become spaces rather than break the frame."""
    assert escape(text, version) == wire


def test_unescape_10_decodes_nothing() -> None:
    """1.0 defines no escapes: any backslash sequence is kept as it is."""
    assert unescape("a\\tb\\c\\n\\", "1.0") == "a\\tb\\c\\n\\"


@pytest.mark.parametrize(
    ("version", "wire", "bad"),
    [
        ("1.1", "\\t", "\\t"),
        ("1.1", "a\\rb", "\\r"),
        ("1.1", "\\C", "\\C"),
        ("1.1", "a\\", "\\"),
        ("1.2", "\\t", "\\t"),
        ("1.2", "\\ ", "\\ "),
        ("1.2", "\\N", "\\N"),
        ("1.2", "\\\n", "\\\n"),
        ("1.2", "ok\\c\\x", "\\x"),
        ("1.2", "trailing\\", "\\"),
    ],
)
def test_unescape_rejects_undefined_escape(version: str, wire: str, bad: str) -> None:
    """An undefined backslash sequence is a protocol error whose detail shows it."""
    with pytest.raises(ProtocolError) as info:
        unescape(wire, version)
    assert info.value.message == "undefined escape sequence in header"
    assert f"got {bad!r}" in info.value.detail


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_escape_round_trip(version: str, text: str) -> None:
    """unescape(escape(t)) == t for any text in 1.1 and 1.2."""
    assert unescape(escape(text, version), version) == text


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_escaped_text_is_frame_safe(text: str) -> None:
    """Escaped text never holds a raw LF or colon (1.1, 1.2), nor a raw CR (1.0, 1.2)."""
    for version in ("1.1", "1.2"):
        assert "\n" not in escape(text, version)
        assert ":" not in escape(text, version)
    for version in ("1.0", "1.2"):
        assert "\r" not in escape(text, version)
    assert "\n" not in escape(text, "1.0")


@settings(max_examples=200, deadline=None)
@given(text=st.text().filter(lambda t: "\r" not in t and "\n" not in t))
def test_escape_10_is_identity_without_cr_lf(text: str) -> None:
    """1.0 leaves text without CR or LF untouched, and unescape leaves it untouched too."""
    assert escape(text, "1.0") == text
    assert unescape(text, "1.0") == text


# --------------------------------------------------------------------------- encode_frame


ENCODED = [
    pytest.param(
        ("SEND", {"destination": "/queue/a"}, b"", "1.2"),
        b"SEND\ndestination:/queue/a\n\n\0",
        id="no-body-no-content-length",
    ),
    pytest.param(
        ("MESSAGE", [("destination", "/q"), ("message-id", "7")], b"hello", "1.2"),
        b"MESSAGE\ndestination:/q\nmessage-id:7\ncontent-length:5\n\nhello\0",
        id="body-gets-content-length-last",
    ),
    pytest.param(
        ("MESSAGE", {}, b"a\0b", "1.2"),
        b"MESSAGE\ncontent-length:3\n\na\0b\0",
        id="body-with-nul",
    ),
    pytest.param(
        ("MESSAGE", [("content-length", "3"), ("x", "y")], b"abc", "1.2"),
        b"MESSAGE\ncontent-length:3\nx:y\n\nabc\0",
        id="given-content-length-kept-not-duplicated",
    ),
    pytest.param(
        ("RECEIPT", {}, b"", "1.2"),
        b"RECEIPT\n\n\0",
        id="bare-frame",
    ),
    pytest.param(
        ("MESSAGE", [("a", "1"), ("a", "2")], b"", "1.2"),
        b"MESSAGE\na:1\na:2\n\n\0",
        id="repeated-names-kept-in-order",
    ),
    pytest.param(
        ("MESSAGE", {"a:b": "c\r\nd\\"}, b"", "1.2"),
        b"MESSAGE\na\\cb:c\\r\\nd\\\\\n\n\0",
        id="escaped-1.2",
    ),
    pytest.param(
        ("MESSAGE", {"k": "a:b\nc\r"}, b"", "1.1"),
        b"MESSAGE\nk:a\\cb\\nc\r\n\n\0",
        id="escaped-1.1-cr-raw",
    ),
    pytest.param(
        ("MESSAGE", {"k": "a:b\r\nc\\n"}, b"", "1.0"),
        b"MESSAGE\nk:a:b  c\\n\n\n\0",
        id="1.0-cr-lf-become-spaces",
    ),
    pytest.param(
        ("CONNECTED", {"version": "1.2", "server": "stomp:broker\\x"}, b"", "1.2"),
        b"CONNECTED\nversion:1.2\nserver:stomp:broker\\x\n\n\0",
        id="connected-never-escaped-1.2",
    ),
    pytest.param(
        ("CONNECTED", {"server": "a:b\\c"}, b"", "1.1"),
        b"CONNECTED\nserver:a:b\\c\n\n\0",
        id="connected-never-escaped-1.1",
    ),
    pytest.param(
        ("CONNECTED", {"server": "a\r\nb"}, b"", "1.2"),
        b"CONNECTED\nserver:a  b\n\n\0",
        id="connected-cr-lf-become-spaces",
    ),
    pytest.param(
        ("ERROR", {"message": "bad frame", "receipt-id": "r:1"}, b"detail\n", "1.2"),
        b"ERROR\nmessage:bad frame\nreceipt-id:r\\c1\ncontent-length:7\n\ndetail\n\0",
        id="error-frame",
    ),
    pytest.param(
        ("MESSAGE", {"clé": "€"}, b"", "1.2"),
        "MESSAGE\nclé:€\n\n\0".encode(),
        id="utf8-headers",
    ),
]


@pytest.mark.parametrize(("args", "wire"), ENCODED)
def test_encode_frame_bytes(
    args: tuple[str, dict[str, str] | list[tuple[str, str]], bytes, str], wire: bytes
) -> None:
    """encode_frame produces exactly the expected octets."""
    command, headers, body, version = args
    assert encode_frame(command, headers, body, version) == wire


def test_encode_frame_defaults_to_12() -> None:
    """Without a version, encode_frame escapes as STOMP 1.2 (CR included)."""
    assert encode_frame("MESSAGE", {"k": "\r"}) == b"MESSAGE\nk:\\r\n\n\0"


@settings(max_examples=200, deadline=None)
@given(body=st.binary(min_size=1))
def test_non_empty_body_gets_its_length(body: bytes) -> None:
    """Any non-empty body is announced by a content-length equal to its length."""
    wire = encode_frame("MESSAGE", {"destination": "/q"}, body)
    assert wire == (
        b"MESSAGE\ndestination:/q\ncontent-length:"
        + str(len(body)).encode()
        + b"\n\n"
        + body
        + b"\0"
    )


def test_encode_matches_encode_frame() -> None:
    """encode(Frame) is encode_frame of the frame's parts."""
    frame = Frame("MESSAGE", {"destination": "/q", "x": "a:b"}, b"body")
    for version in ("1.0", "1.1", "1.2"):
        assert encode(frame, version) == encode_frame(
            frame.command, frame.headers, frame.body, version
        )
    assert encode(frame) == b"MESSAGE\ndestination:/q\nx:a\\cb\ncontent-length:4\n\nbody\0"


def test_encode_headers() -> None:
    """encode_headers writes name:value lines, each escaped for the version and ending in LF."""
    pairs = [("a:b", "c\r"), ("d", "")]
    assert encode_headers(pairs, "1.2") == b"a\\cb:c\\r\nd:\n"
    assert encode_headers(pairs, "1.1") == b"a\\cb:c\r\nd:\n"
    assert encode_headers(pairs, "1.0") == b"a:b:c \nd:\n"
    assert encode_headers([], "1.2") == b""

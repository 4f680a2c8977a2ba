"""Header escaping, exactly per protocol version.

* 1.0, and the CONNECT / STOMP / CONNECTED frames of every version: no escaping.
* 1.1: ``\\n`` (LF), ``\\c`` (colon), ``\\\\`` (backslash).
* 1.2: those, and ``\\r`` (CR).

Any other backslash sequence in a 1.1 or 1.2 header is a protocol error.
"""

from __future__ import annotations

import re

from ._frame import ProtocolError

UNESCAPED_COMMANDS = frozenset({"CONNECT", "STOMP", "CONNECTED"})

_DECODE_11 = {"n": "\n", "c": ":", "\\": "\\"}
_DECODE_12 = {"n": "\n", "c": ":", "\\": "\\", "r": "\r"}
_ESCAPE_SEQ = re.compile(r"\\(.?)", re.DOTALL)

_ENCODE_11 = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c"})
_ENCODE_12 = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"})
_NEEDS_11 = re.compile(r"[\\\n:]").search
_NEEDS_12 = re.compile(r"[\\\n:\r]").search
_NEEDS_10 = re.compile(r"[\r\n]").search


def unescape(text: str, version: str) -> str:
    """Decode one header name or value received from a peer speaking ``version``."""
    if version == "1.0" or "\\" not in text:
        return text
    table = _DECODE_12 if version == "1.2" else _DECODE_11

    def one(match: re.Match[str]) -> str:
        try:
            return table[match.group(1)]
        except KeyError:
            raise ProtocolError(
                "undefined escape sequence in header",
                f"STOMP {version} defines only "
                + ", ".join("\\" + k for k in table)
                + f"; got {match.group(0)!r}",
            ) from None

    return _ESCAPE_SEQ.sub(one, text)


def escape(text: str, version: str) -> str:
    """Encode one header name or value for a peer speaking ``version``.

    STOMP 1.0 has no escapes, so a CR or LF there (which would break the frame)
    becomes a space.
    """
    if version == "1.2":
        return text.translate(_ENCODE_12) if _NEEDS_12(text) else text
    if version == "1.1":
        return text.translate(_ENCODE_11) if _NEEDS_11(text) else text
    if _NEEDS_10(text):
        return text.replace("\r", " ").replace("\n", " ")
    return text

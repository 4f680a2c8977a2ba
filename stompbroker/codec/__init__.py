"""The STOMP wire format: frames, a sans-IO parser, a serialiser. Standard library only."""

from ._encode import encode, encode_frame, encode_headers, plain_header_text
from ._escape import escape, unescape
from ._frame import (
    CLIENT_COMMANDS,
    SERVER_COMMANDS,
    VERSIONS,
    Frame,
    FrameTooLarge,
    ProtocolError,
)
from ._limits import DEFAULT_LIMITS, PRE_CONNECT_LIMITS, Limits
from ._parser import FrameParser

__all__ = [
    "CLIENT_COMMANDS",
    "DEFAULT_LIMITS",
    "PRE_CONNECT_LIMITS",
    "SERVER_COMMANDS",
    "VERSIONS",
    "Frame",
    "FrameParser",
    "FrameTooLarge",
    "Limits",
    "ProtocolError",
    "encode",
    "encode_frame",
    "encode_headers",
    "escape",
    "plain_header_text",
    "unescape",
]

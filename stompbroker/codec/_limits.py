"""Size limits the parser enforces before it buffers anything beyond them."""

from __future__ import annotations

from dataclasses import dataclass

#: Longest command or header line, in bytes, after CONNECT.
MAX_LINE_BYTES = 16 * 1024
#: Most header lines in one frame, after CONNECT.
MAX_HEADERS = 128
#: Largest header block (command line and all header lines), after CONNECT.
MAX_HEADER_BYTES = 64 * 1024
#: Largest frame body, after CONNECT.
MAX_BODY_BYTES = 16 * 1024 * 1024

#: The budget before a connection has completed CONNECT: a CONNECT frame is small.
PRE_CONNECT_MAX_LINE_BYTES = 4 * 1024
PRE_CONNECT_MAX_HEADERS = 32
PRE_CONNECT_MAX_HEADER_BYTES = 8 * 1024
PRE_CONNECT_MAX_BODY_BYTES = 4 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """The parser's limits for one phase of a connection."""

    max_line_bytes: int = MAX_LINE_BYTES
    max_headers: int = MAX_HEADERS
    max_header_bytes: int = MAX_HEADER_BYTES
    max_body_bytes: int = MAX_BODY_BYTES


DEFAULT_LIMITS = Limits()
PRE_CONNECT_LIMITS = Limits(
    max_line_bytes=PRE_CONNECT_MAX_LINE_BYTES,
    max_headers=PRE_CONNECT_MAX_HEADERS,
    max_header_bytes=PRE_CONNECT_MAX_HEADER_BYTES,
    max_body_bytes=PRE_CONNECT_MAX_BODY_BYTES,
)

"""A sans-IO STOMP frame parser: bytes in, frames out, limits enforced.

The grammar we accept (STOMP 1.2, section "Augmented BNF", read leniently where
real clients differ, as noted)::

    stream      = *( *EOL frame )          ; EOLs between frames are heart-beats
    frame       = command EOL *( header EOL ) EOL body NUL
    command     = client command, e.g. "SEND"  ; anything else is an error
    EOL         = [CR] LF                  ; CR LF accepted in every version
    header      = name ":" value           ; split at the first colon; a later
                                           ; colon belongs to the value
    name        = 1*<any octet but CR, LF, ":">
    body        = *OCTET                   ; exactly content-length octets when
                                           ; that header is present (NUL allowed),
                                           ; else everything up to the first NUL

Headers are UTF-8, decoded per version (see ``_escape``); the first occurrence
of a repeated header wins. Every limit in ``Limits`` is checked before data
beyond it is kept: an over-long line, header block or body raises as soon as
the buffered bytes pass the limit, not when the frame completes.
"""

from __future__ import annotations

import re

from ._escape import UNESCAPED_COMMANDS, unescape
from ._frame import CLIENT_COMMANDS, Frame, FrameTooLarge, ProtocolError
from ._limits import DEFAULT_LIMITS, Limits

_HEADER_END = re.compile(rb"\n\r?\n")
#: Bodies up to this many bytes are copied out of the buffer by slicing.
SMALL_BODY = 4096
_RECEIPT_LINE = re.compile(rb"\nreceipt:([^\r\n]*)\r?\n")


class FrameParser:
    """Turns a byte stream into ``Frame`` objects.

    ``feed(data)`` returns the frames completed by ``data``. When the stream
    breaks the grammar or a limit, ``feed`` returns the frames that preceded the
    break and sets ``error``; the parser then ignores everything after it.
    ``version`` selects the header escaping and may change between feeds (the
    session sets it after CONNECT); so may ``limits``. Call ``feed(b"")`` to
    continue after a ``stop_after_frame`` stop.
    """

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        version: str = "1.0",
        commands: frozenset[str] = CLIENT_COMMANDS,
    ) -> None:
        self.limits = limits
        self.version = version
        self.commands = commands
        self.error: ProtocolError | None = None
        #: Return after each frame, keeping the rest buffered (``feed(b"")``
        #: continues); the session sets it before CONNECT so that frames after
        #: CONNECT are parsed under the limits CONNECT switches to.
        self.stop_after_frame = False
        self._buf = bytearray()
        # Where the search for the end of the header block resumes.
        self._head_scan = 0
        # A frame whose header block is parsed and whose body is awaited.
        self._command = ""
        self._headers: dict[str, str] = {}
        self._body_start = 0
        self._body_length: int | None = None
        self._body_scan = 0
        self._in_body = False

    @property
    def buffered(self) -> int:
        """How many received bytes are held waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Parse ``data``; return the frames it completes (see the class docstring)."""
        if self.error is not None:
            return []
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        try:
            while True:
                if not self._in_body:
                    pos = self._skip_eols(buf, pos)
                    if pos == len(buf) or not self._read_head(buf, pos):
                        break
                    pos = self._body_start
                end = self._find_body_end(buf)
                if end < 0:
                    break
                start = self._body_start
                # A slice copies, bytes() copies again: cheaper than a memoryview for a
                # small body, dearer for a large one.
                if end - start <= SMALL_BODY:
                    body = bytes(buf[start:end])
                else:
                    body = bytes(memoryview(buf)[start:end])
                frames.append(Frame(self._command, self._headers, body))
                self._in_body = False
                pos = end + 1
                self._head_scan = pos
                if self.stop_after_frame:
                    break
        except ProtocolError as exc:
            self.error = exc
            buf.clear()
            return frames
        if pos:
            del buf[:pos]
            self._head_scan = max(0, self._head_scan - pos)
            if self._in_body:
                self._body_start -= pos
                self._body_scan -= pos
        return frames

    @staticmethod
    def _skip_eols(buf: bytearray, pos: int) -> int:
        end = len(buf)
        while pos < end:
            octet = buf[pos]
            if octet == 10:
                pos += 1
            elif octet == 13 and pos + 1 < end and buf[pos + 1] == 10:
                pos += 2
            else:
                break
        return pos

    def _read_head(self, buf: bytearray, pos: int) -> bool:
        """Parse the header block starting at ``pos``; False if it is incomplete."""
        limits = self.limits
        scan = self._head_scan - 2
        if scan < pos:
            scan = pos
        # Most clients end their lines with LF alone: a block that ends at the first LF LF
        # and holds no CR, no longer than one line may be, is decoded at once. Any other
        # block ends at the first LF LF or LF CR LF, and is judged line by line.
        head_end = buf.find(b"\n\n", scan)
        size = head_end - pos
        if 0 <= size <= limits.max_line_bytes and size <= limits.max_header_bytes:
            try:
                text = buf[pos:head_end].decode("utf-8")
            except UnicodeDecodeError:
                text = "\r"  # judged the careful way, which names the error
            if "\r" not in text:
                lines = text.split("\n")
                command = lines[0]
                self._check_command(command)
                return self._read_headers(buf, pos, head_end + 2, command, lines, text)
        return self._read_long_head(buf, pos, scan)

    def _read_long_head(self, buf: bytearray, pos: int, scan: int) -> bool:
        """``_read_head`` for a block with CRs, long lines or bad UTF-8, or incomplete."""
        limits = self.limits
        match = _HEADER_END.search(buf, scan)
        if match is None:
            self._check_partial_head(buf, pos)
            self._head_scan = len(buf)
            return False
        head_end = match.start()
        body_start = match.end()
        size = head_end - pos
        if size > limits.max_header_bytes:
            raise FrameTooLarge(
                "header block too large",
                f"the limit is {limits.max_header_bytes} bytes",
                self._receipt_in(buf, pos, body_start),
            )
        # A block no longer than one line cannot hold a line over the limit.
        long_block = size > limits.max_line_bytes
        first_eol = buf.find(b"\n", pos, head_end) if long_block else -1
        if long_block and self._line_over_limit(buf, pos, head_end if first_eol < 0 else first_eol):
            raise self._line_too_long(buf, pos, body_start)
        try:
            text = buf[pos:head_end].decode("utf-8")
        except UnicodeDecodeError:
            # Judge the command line first, as a partial block would be judged.
            self._check_partial_head(buf[: buf.find(b"\n", pos) + 1], pos)
            raise ProtocolError(
                "frame header is not valid UTF-8", "", self._receipt_in(buf, pos, body_start)
            ) from None
        lines = text.split("\n")
        if "\r" in text:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        command = lines[0]
        self._check_command(command)
        if first_eol >= 0 and self._line_over_limit(buf, first_eol + 1, head_end):
            raise self._line_too_long(buf, pos, body_start)
        return self._read_headers(buf, pos, body_start, command, lines, text)

    def _read_headers(
        self, buf: bytearray, pos: int, body_start: int, command: str, lines: list[str], text: str
    ) -> bool:
        """The header lines of a block whose command and line lengths are checked."""
        limits = self.limits
        if len(lines) - 1 > limits.max_headers:
            raise FrameTooLarge(
                "too many headers",
                f"the limit is {limits.max_headers} headers",
                self._receipt_in(buf, pos, body_start),
            )
        try:
            headers = self._parse_headers(command, lines, "\\" in text)
        except ProtocolError as exc:
            if exc.receipt is None:
                exc.receipt = self._receipt_in(buf, pos, body_start)
            raise
        self._command = command
        self._headers = headers
        self._body_start = body_start
        self._body_scan = body_start
        self._body_length = self._content_length(headers)
        self._in_body = True
        return True

    def _check_command(self, command: str) -> None:
        if command not in self.commands:
            shown = command if len(command) <= 40 else command[:40] + "..."
            raise ProtocolError("unknown command", f"{shown!r} is not a STOMP client command")

    def _check_partial_head(self, buf: bytearray, pos: int) -> None:
        """Limits on an incomplete header block, measured as the complete block will be."""
        limits = self.limits
        end = len(buf)
        # The block's terminating EOL (up to LF CR) may already be buffered.
        if end - pos > limits.max_header_bytes + 2:
            raise FrameTooLarge(
                "header block too large",
                f"the limit is {limits.max_header_bytes} bytes",
                self._receipt_in(buf, pos, end),
            )
        # A block no longer than one line cannot hold a line over the limit.
        long_block = end - pos > limits.max_line_bytes
        first_eol = buf.find(b"\n", pos)
        if first_eol >= 0:
            if long_block and self._line_over_limit(buf, pos, first_eol):
                raise self._line_too_long(buf, pos, end)
            try:
                command = str(bytes(buf[pos:first_eol]).removesuffix(b"\r"), "utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("frame header is not valid UTF-8") from None
            self._check_command(command)
        if long_block:
            # Every complete line and the partial last one, from the line that the
            # previous feed ended in (the lines before it were measured then).
            start = buf.rfind(b"\n", pos, self._head_scan) + 1 or pos
            if self._line_over_limit(buf, start, end):
                raise self._line_too_long(buf, pos, end)
        if buf.count(b"\n", pos) - 1 > limits.max_headers:
            raise FrameTooLarge(
                "too many headers",
                f"the limit is {limits.max_headers} headers",
                self._receipt_in(buf, pos, end),
            )

    def _line_over_limit(self, buf: bytearray, start: int, end: int) -> bool:
        """Whether a line in ``buf[start:end]`` (``start`` begins a line) is over the limit.

        The last line may be partial; a CR ending ``end`` is not counted (it may be
        the CR of a CR LF). Each step looks for an LF within ``limit + 1`` octets of a
        line start and jumps past the last one found, so the work is a few ``rfind``
        calls per ``limit`` octets, however many lines there are.
        """
        limit = self.limits.max_line_bytes
        while end - start > limit:
            stop = start + limit + 1
            eol = buf.rfind(b"\n", start, stop)
            if eol >= 0:
                start = eol + 1
            elif buf[stop - 1] == 13 and (stop == end or buf[stop] == 10):
                start = stop + 1  # exactly at the limit, then CR LF
            else:
                return True
        return False

    def _line_too_long(self, buf: bytearray, pos: int, end: int) -> FrameTooLarge:
        return FrameTooLarge(
            "header line too long", self._line_limit_detail(), self._receipt_in(buf, pos, end)
        )

    def _receipt_in(self, buf: bytearray, start: int, end: int) -> str | None:
        """The ``receipt`` header among the complete lines of a bad header block, if any."""
        match = _RECEIPT_LINE.search(buf, start, end)
        if match is None:
            return None
        value = match.group(1).decode("utf-8", "replace")
        try:
            return unescape(value, self.version)
        except ProtocolError:
            return value

    def _line_limit_detail(self) -> str:
        return f"the limit is {self.limits.max_line_bytes} bytes a line"

    def _parse_headers(self, command: str, lines: list[str], backslash: bool) -> dict[str, str]:
        """Header lines to a dict; ``backslash`` says whether the block has any
        backslash (else we skip unescaping). Line lengths are checked already."""
        version = "1.0" if command in UNESCAPED_COMMANDS else self.version
        escaped = backslash and version != "1.0"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name:
                shown = line if len(line) <= 40 else line[:40] + "..."
                raise ProtocolError("malformed header line", f"expected name:value, got {shown!r}")
            if escaped:
                name = unescape(name, version)
                value = unescape(value, version)
            if name not in headers:
                headers[name] = value
        return headers

    def _content_length(self, headers: dict[str, str]) -> int | None:
        raw = headers.get("content-length")
        if raw is None:
            return None
        text = raw if raw.isdigit() else raw.strip()
        if not text.isdigit() or not text.isascii():
            raise ProtocolError(
                "invalid content-length",
                f"expected a non-negative integer, got {raw[:40]!r}",
                headers.get("receipt"),
            )
        length = int(text)
        if length > self.limits.max_body_bytes:
            raise FrameTooLarge(
                "frame body too large",
                f"content-length {length} is over the limit of {self.limits.max_body_bytes} bytes",
                headers.get("receipt"),
            )
        return length

    def _find_body_end(self, buf: bytearray) -> int:
        """Index of the NUL ending the current body, or -1 if it has not arrived."""
        length = self._body_length
        if length is not None:
            end = self._body_start + length
            if len(buf) <= end:
                return -1
            if buf[end] != 0:
                raise ProtocolError(
                    "frame not terminated by NUL after content-length octets",
                    "",
                    self._headers.get("receipt"),
                )
            return end
        end = buf.find(b"\0", self._body_scan)
        if end >= 0 and end - self._body_start <= self.limits.max_body_bytes:
            return end
        self._body_scan = len(buf)
        if (end if end >= 0 else len(buf)) - self._body_start > self.limits.max_body_bytes:
            raise FrameTooLarge(
                "frame body too large",
                f"no NUL within the limit of {self.limits.max_body_bytes} bytes",
                self._headers.get("receipt"),
            )
        return -1

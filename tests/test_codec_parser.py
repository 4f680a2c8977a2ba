"""Table-driven tests for ``stompbroker.codec.FrameParser``.

Every valid stream is fed whole, one byte at a time, in two pieces split at every
offset, and followed by a partial frame that must stay buffered and complete on
the next feed. Every invalid stream is fed whole and one byte at a time, followed
by a good frame that must be ignored: the parser returns the frames before the
break, sets ``error`` and then swallows everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stompbroker.codec import (
    CLIENT_COMMANDS,
    DEFAULT_LIMITS,
    PRE_CONNECT_LIMITS,
    SERVER_COMMANDS,
    Frame,
    FrameParser,
    FrameTooLarge,
    Limits,
    ProtocolError,
)

#: Small limits so that boundary streams stay short enough to feed byte by byte.
SMALL = Limits(max_line_bytes=32, max_headers=4, max_header_bytes=96, max_body_bytes=64)

#: A good frame appended after every invalid stream: it must never come out.
GOOD = b"SEND\n\n\0"
#: A partial frame (header block not finished) fed after a valid stream.
TAIL_HEAD = b"SEND\ndestination:/q/tail\n"
TAIL_REST = b"\nTAIL\0"
TAIL_FRAME = Frame("SEND", {"destination": "/q/tail"}, b"TAIL")


def frame(command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Frame:
    """Shorthand for an expected frame."""
    return Frame(command, headers or {}, body)


EMPTY_SEND = frame("SEND")


def feed_all(parser: FrameParser, chunks: list[bytes]) -> list[Frame]:
    """Feed ``chunks`` in order and collect every frame returned."""
    frames: list[Frame] = []
    for chunk in chunks:
        frames += parser.feed(chunk)
    return frames


def bytewise(data: bytes) -> list[bytes]:
    """``data`` as one-byte chunks."""
    return [data[i : i + 1] for i in range(len(data))]


def headers_n(n: int, fmt: str = "h{:02d}:v") -> bytes:
    """``n`` distinct header lines, each ending in LF."""
    return b"".join(fmt.format(i).encode() + b"\n" for i in range(n))


# --------------------------------------------------------------------------- valid streams


@dataclass(frozen=True)
class Valid:
    """A stream that must parse into exactly ``frames`` with no error."""

    id: str
    stream: bytes
    frames: list[Frame]
    version: str = "1.2"
    limits: Limits = DEFAULT_LIMITS


ALL_COMMANDS = sorted(CLIENT_COMMANDS)

VALID = [
    Valid("no-headers-no-body", b"SEND\n\n\0", [EMPTY_SEND]),
    Valid(
        "headers-and-body",
        b"SEND\ndestination:/queue/a\nreceipt:r-1\n\nhello\0",
        [frame("SEND", {"destination": "/queue/a", "receipt": "r-1"}, b"hello")],
    ),
    Valid(
        "two-frames-back-to-back",
        b"SEND\n\na\0SEND\n\nb\0",
        [frame("SEND", body=b"a"), frame("SEND", body=b"b")],
    ),
    Valid(
        "every-client-command",
        b"".join(c.encode() + b"\n\n\0" for c in ALL_COMMANDS),
        [frame(c) for c in ALL_COMMANDS],
    ),
    Valid("heart-beats-only-lf", b"\n\n\n", []),
    Valid("heart-beats-only-crlf", b"\r\n\r\n", []),
    Valid(
        "heart-beats-between-frames",
        b"\n\r\nSEND\n\na\0\n\n\r\n\nSEND\n\nb\0\r\n\n",
        [frame("SEND", body=b"a"), frame("SEND", body=b"b")],
    ),
    Valid(
        "crlf-lines-1.2",
        b"SEND\r\ndestination:/q\r\nreceipt:r\r\n\r\nbody\0",
        [frame("SEND", {"destination": "/q", "receipt": "r"}, b"body")],
    ),
    Valid(
        "crlf-no-headers",
        b"SEND\r\n\r\nx\0",
        [frame("SEND", body=b"x")],
    ),
    Valid(
        "crlf-accepted-in-1.0",
        b"SEND\r\ndestination:/q\r\n\r\n\0",
        [frame("SEND", {"destination": "/q"})],
        version="1.0",
    ),
    Valid(
        "crlf-accepted-in-1.1",
        b"SEND\r\ndestination:/q\r\n\r\n\0",
        [frame("SEND", {"destination": "/q"})],
        version="1.1",
    ),
    Valid(
        "mixed-lf-and-crlf",
        b"SEND\ndestination:/q\r\nid:1\n\r\n\0",
        [frame("SEND", {"destination": "/q", "id": "1"})],
    ),
    Valid(
        "crlf-frame-then-lf-frame",
        b"SEND\r\ndestination:/a\r\n\r\nx\0SEND\ndestination:/b\n\ny\0",
        [frame("SEND", {"destination": "/a"}, b"x"), frame("SEND", {"destination": "/b"}, b"y")],
    ),
    Valid(
        "crlf-head-then-lf-lf-in-body",
        b"SEND\r\n\r\nx\n\ny\0",
        [frame("SEND", body=b"x\n\ny")],
    ),
    Valid(
        "content-length-allows-nul-in-body",
        b"SEND\ncontent-length:5\n\na\0b\0c\0",
        [frame("SEND", {"content-length": "5"}, b"a\0b\0c")],
    ),
    Valid(
        "content-length-zero",
        b"SEND\ncontent-length:0\n\n\0SEND\n\n\0",
        [frame("SEND", {"content-length": "0"}), EMPTY_SEND],
    ),
    Valid(
        "content-length-body-may-contain-frame-bytes",
        b"SEND\ncontent-length:8\n\nSEND\n\n\0\n\0",
        [frame("SEND", {"content-length": "8"}, b"SEND\n\n\0\n")],
    ),
    Valid(
        "repeated-header-first-wins",
        b"SEND\nfoo:1\nbar:x\nfoo:2\nfoo:3\n\n\0",
        [frame("SEND", {"foo": "1", "bar": "x"})],
    ),
    Valid(
        "repeated-content-length-first-wins",
        b"SEND\ncontent-length:1\ncontent-length:3\n\na\0",
        [frame("SEND", {"content-length": "1"}, b"a")],
    ),
    Valid(
        "later-colons-belong-to-value-1.0",
        b"SEND\nurl:tcp://host:61613\n\n\0",
        [frame("SEND", {"url": "tcp://host:61613"})],
        version="1.0",
    ),
    Valid("empty-value", b"SEND\nfoo:\n\n\0", [frame("SEND", {"foo": ""})]),
    Valid(
        "whitespace-is-not-trimmed",
        b"SEND\n foo : bar \n\n\0",
        [frame("SEND", {" foo ": " bar "})],
    ),
    Valid(
        "escapes-1.1",
        b"SEND\na\\cb:x\\ny\\\\z\\c\n\n\0",
        [frame("SEND", {"a:b": "x\ny\\z:"})],
        version="1.1",
    ),
    Valid(
        "escapes-1.2-include-cr",
        b"SEND\nk\\r:\\r\\n\\c\\\\\n\n\0",
        [frame("SEND", {"k\r": "\r\n:\\"})],
        version="1.2",
    ),
    Valid(
        "escaped-backslash-then-letter",
        b"SEND\nk:\\\\n\\\\c\n\n\0",
        [frame("SEND", {"k": "\\n\\c"})],
        version="1.2",
    ),
    Valid(
        "later-colons-belong-to-value-1.2",
        b"SEND\na\\cb:1\na:b:2\n\n\0",
        [frame("SEND", {"a:b": "1", "a": "b:2"})],
        version="1.2",
    ),
    Valid(
        "no-escapes-in-1.0",
        b"SEND\nfoo:a\\nb\\tc\\\n\n\0",
        [frame("SEND", {"foo": "a\\nb\\tc\\"})],
        version="1.0",
    ),
    Valid(
        "no-escapes-in-connect-1.2",
        b"CONNECT\npasscode:a\\cb\\x\\\n\n\0",
        [frame("CONNECT", {"passcode": "a\\cb\\x\\"})],
        version="1.2",
    ),
    Valid(
        "no-escapes-in-stomp-1.1",
        b"STOMP\nlogin:a\\tb\n\n\0",
        [frame("STOMP", {"login": "a\\tb"})],
        version="1.1",
    ),
    Valid(
        "utf8-headers",
        "SEND\nclé:valeur €\n\n\0".encode(),
        [frame("SEND", {"clé": "valeur €"})],
    ),
    Valid(
        "body-need-not-be-utf8",
        b"SEND\n\n\xff\xfe\xc0\0",
        [frame("SEND", body=b"\xff\xfe\xc0")],
    ),
    # Exactly at each limit: accepted however the bytes arrive.
    Valid(
        "exactly-max-headers",
        b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0",
        [frame("SEND", {"a": "1", "b": "2", "c": "3", "d": "4"})],
        limits=SMALL,
    ),
    Valid(
        "line-exactly-max-bytes-lf",
        b"SEND\nh:" + b"x" * 30 + b"\n\n\0",
        [frame("SEND", {"h": "x" * 30})],
        limits=SMALL,
    ),
    Valid(
        "line-exactly-max-bytes-crlf",
        b"SEND\r\nh:" + b"x" * 30 + b"\r\n\r\n\0",
        [frame("SEND", {"h": "x" * 30})],
        limits=SMALL,
    ),
    Valid(
        # 5 + 30 + 1 + 30 + 1 + 29 = 96 bytes from the command to the last header.
        "header-block-exactly-max-bytes",
        b"SEND\na:" + b"x" * 28 + b"\nb:" + b"x" * 28 + b"\nc:" + b"x" * 27 + b"\n\n\0",
        [frame("SEND", {"a": "x" * 28, "b": "x" * 28, "c": "x" * 27})],
        limits=SMALL,
    ),
    Valid(
        "body-exactly-max-bytes-without-content-length",
        b"SEND\n\n" + b"x" * 64 + b"\0",
        [frame("SEND", body=b"x" * 64)],
        limits=SMALL,
    ),
    Valid(
        "body-exactly-max-bytes-with-content-length",
        b"SEND\ncontent-length:64\n\n" + b"\0" * 64 + b"\0",
        [frame("SEND", {"content-length": "64"}, b"\0" * 64)],
        limits=SMALL,
    ),
    Valid(
        "pre-connect-exactly-max-headers",
        b"CONNECT\n" + headers_n(32) + b"\n\0",
        [frame("CONNECT", {f"h{i:02d}": "v" for i in range(32)})],
        limits=PRE_CONNECT_LIMITS,
    ),
    Valid(
        "pre-connect-line-exactly-max-bytes",
        b"CONNECT\nlogin:" + b"x" * 4090 + b"\n\n\0",
        [frame("CONNECT", {"login": "x" * 4090})],
        limits=PRE_CONNECT_LIMITS,
    ),
    Valid(
        "pre-connect-body-exactly-max-bytes",
        b"CONNECT\ncontent-length:4096\n\n" + b"b" * 4096 + b"\0",
        [frame("CONNECT", {"content-length": "4096"}, b"b" * 4096)],
        limits=PRE_CONNECT_LIMITS,
    ),
]

VALID_PARAMS = [pytest.param(case, id=case.id) for case in VALID]


def parser_for(case: Valid | Invalid) -> FrameParser:
    """A fresh parser configured as ``case`` asks."""
    return FrameParser(limits=case.limits, version=case.version)


@pytest.mark.parametrize("case", VALID_PARAMS)
def test_valid_stream_fed_whole(case: Valid) -> None:
    """A valid stream fed in one piece yields exactly its frames and buffers nothing."""
    parser = parser_for(case)
    assert parser.feed(case.stream) == case.frames
    assert parser.error is None
    assert parser.buffered == 0


@pytest.mark.parametrize("case", VALID_PARAMS)
def test_valid_stream_fed_byte_by_byte(case: Valid) -> None:
    """A valid stream fed one byte at a time yields the same frames as fed whole."""
    parser = parser_for(case)
    assert feed_all(parser, bytewise(case.stream)) == case.frames
    assert parser.error is None
    assert parser.buffered == 0


@pytest.mark.parametrize("case", VALID_PARAMS)
def test_valid_stream_split_anywhere(case: Valid) -> None:
    """A valid stream split in two at any offset yields the same frames as fed whole."""
    failures = []
    for cut in range(len(case.stream) + 1):
        parser = parser_for(case)
        got = feed_all(parser, [case.stream[:cut], case.stream[cut:]])
        if got != case.frames or parser.error is not None:
            failures.append((cut, parser.error and parser.error.message))
    assert failures == []


@pytest.mark.parametrize("case", VALID_PARAMS)
def test_valid_stream_with_trailing_partial_frame(case: Valid) -> None:
    """Bytes of an unfinished frame after a valid stream stay buffered until completed."""
    parser = parser_for(case)
    assert parser.feed(case.stream + TAIL_HEAD) == case.frames
    assert parser.error is None
    assert parser.buffered == len(TAIL_HEAD)
    assert parser.feed(TAIL_REST) == [TAIL_FRAME]
    assert parser.buffered == 0


def test_header_order_is_first_seen_order() -> None:
    """Headers keep the order of their first occurrence on the wire."""
    parser = FrameParser()
    (got,) = parser.feed(b"SEND\nb:1\na:2\nb:3\nc:4\n\n\0")
    assert list(got.headers.items()) == [("b", "1"), ("a", "2"), ("c", "4")]


def test_lone_cr_waits_for_its_lf() -> None:
    """A CR at the end of the buffer is kept: it may be the start of a CRLF heart-beat."""
    parser = FrameParser()
    assert parser.feed(b"SEND\n\n\0\r") == [EMPTY_SEND]
    assert parser.buffered == 1
    assert parser.feed(b"\nSEND\n\nx\0") == [frame("SEND", body=b"x")]
    assert parser.error is None


def test_partial_body_completes_on_later_feed() -> None:
    """A frame whose body is still arriving comes out once its NUL arrives."""
    parser = FrameParser()
    assert parser.feed(b"SEND\ncontent-length:6\n\nab\0") == []
    assert parser.feed(b"cd") == []
    assert parser.feed(b"e\0SEND") == [frame("SEND", {"content-length": "6"}, b"ab\0cde")]
    assert parser.buffered == len(b"SEND")


def test_server_commands_parser() -> None:
    """A parser built with SERVER_COMMANDS reads server frames and rejects client ones."""
    parser = FrameParser(commands=SERVER_COMMANDS, version="1.2")
    assert parser.feed(b"MESSAGE\nmessage-id:1\n\nhi\0CONNECTED\nversion:1.2\n\n\0") == [
        frame("MESSAGE", {"message-id": "1"}, b"hi"),
        frame("CONNECTED", {"version": "1.2"}),
    ]
    assert parser.feed(b"SEND\n\n\0") == []
    assert parser.error is not None
    assert parser.error.message == "unknown command"


# --------------------------------------------------------------------------- invalid streams


@dataclass(frozen=True)
class Invalid:
    """A stream that must yield ``frames`` and then an error whose message has ``message``."""

    id: str
    stream: bytes
    message: str
    frames: list[Frame] = field(default_factory=list)
    receipt: str | None = None
    too_large: bool = False
    version: str = "1.2"
    limits: Limits = DEFAULT_LIMITS


def bad_content_length(value: str) -> Invalid:
    """A SEND whose content-length header (after a receipt header) is not a number."""
    return Invalid(
        f"content-length-{value!r}",
        f"SEND\nreceipt:r-1\ncontent-length:{value}\n\nabc\0".encode(),
        "invalid content-length",
        receipt="r-1",
    )


INVALID = [
    Invalid("unknown-command", b"FOO\n\n\0", "unknown command"),
    Invalid(
        "unknown-command-after-good-frames",
        GOOD + b"\n" + GOOD + b"BOGUS\n\n\0",
        "unknown command",
        frames=[EMPTY_SEND, EMPTY_SEND],
    ),
    Invalid("lowercase-command", b"send\n\n\0", "unknown command"),
    Invalid("command-with-trailing-space", b"SEND \n\n\0", "unknown command"),
    Invalid("server-command-from-client", b"MESSAGE\n\n\0", "unknown command"),
    Invalid("http-request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "unknown command"),
    Invalid("lone-cr-before-command", b"\rSEND\n\n\0", "unknown command"),
    Invalid(
        "header-without-colon",
        GOOD + b"SEND\nreceipt:r-1\nnocolon\n\n\0",
        "malformed header line",
        frames=[EMPTY_SEND],
        receipt="r-1",
    ),
    Invalid("header-with-empty-name", b"SEND\n:value\n\n\0", "malformed header line"),
    Invalid("header-line-of-spaces", b"SEND\n   \n\n\0", "malformed header line"),
    Invalid(
        "header-without-colon-1.0",
        b"SEND\nnocolon\n\n\0",
        "malformed header line",
        version="1.0",
    ),
    Invalid(
        "undefined-escape-1.1",
        b"SEND\nreceipt:r-1\nfoo:a\\tb\n\n\0",
        "undefined escape sequence",
        receipt="r-1",
        version="1.1",
    ),
    Invalid(
        "cr-escape-undefined-in-1.1",
        b"SEND\nfoo:a\\rb\n\n\0",
        "undefined escape sequence",
        version="1.1",
    ),
    Invalid(
        "undefined-escape-1.2",
        GOOD + b"SEND\nfoo:a\\tb\n\n\0",
        "undefined escape sequence",
        frames=[EMPTY_SEND],
    ),
    Invalid("uppercase-escape-1.2", b"SEND\nfoo:\\C\n\n\0", "undefined escape sequence"),
    Invalid("trailing-backslash-1.2", b"SEND\nfoo:ab\\\n\n\0", "undefined escape sequence"),
    Invalid("undefined-escape-in-name", b"SEND\na\\xb:v\n\n\0", "undefined escape sequence"),
    Invalid("invalid-utf8-value", b"SEND\nfoo:\xff\n\n\0", "not valid UTF-8"),
    Invalid("invalid-utf8-surrogate", b"SEND\nfoo:\xed\xa0\x80\n\n\0", "not valid UTF-8"),
    Invalid("invalid-utf8-overlong", b"SEND\nfoo:\xc0\xaf\n\n\0", "not valid UTF-8"),
    Invalid("invalid-utf8-truncated", b"SEND\nfoo:\xe2\x82\n\n\0", "not valid UTF-8"),
    Invalid("invalid-utf8-in-command", b"SE\xffND\n\n\0", "not valid UTF-8"),
    Invalid(
        "invalid-utf8-1.0",
        GOOD + b"SEND\nfoo:\x80\n\n\0",
        "not valid UTF-8",
        frames=[EMPTY_SEND],
        version="1.0",
    ),
    *(bad_content_length(v) for v in ["abc", "-1", "", "1.5", "0x10", "+3", "1 2", "\uff13"]),
    Invalid(
        "content-length-over-default-limit",
        b"SEND\nreceipt:r-1\ncontent-length:16777217\n\n",
        "frame body too large",
        receipt="r-1",
        too_large=True,
    ),
    Invalid(
        "content-length-astronomical",
        b"SEND\ncontent-length:" + b"9" * 30 + b"\n\n",
        "frame body too large",
        too_large=True,
    ),
    Invalid(
        "content-length-over-small-limit",
        GOOD + b"SEND\nreceipt:r-1\ncontent-length:65\n\n",
        "frame body too large",
        frames=[EMPTY_SEND],
        receipt="r-1",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        "missing-nul-after-content-length",
        GOOD + b"SEND\nreceipt:r-1\ncontent-length:2\n\nabc\0",
        "not terminated by NUL",
        frames=[EMPTY_SEND],
        receipt="r-1",
    ),
    Invalid(
        "missing-nul-after-content-length-zero",
        b"SEND\ncontent-length:0\n\nx\0",
        "not terminated by NUL",
    ),
    Invalid(
        "body-over-limit-without-content-length",
        b"SEND\nreceipt:r-1\n\n" + b"x" * 65 + b"\0",
        "frame body too large",
        receipt="r-1",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        "header-line-over-limit",
        b"SEND\nh:" + b"x" * 31 + b"\n\n\0",
        "header line too long",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        "header-line-over-limit-after-receipt",
        b"SEND\nreceipt:r-1\nh:" + b"x" * 31 + b"\n\n\0",
        "header line too long",
        receipt="r-1",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        # 2 + 16 * 2 = 34 bytes, but only 18 characters: the limit is in bytes.
        "header-line-over-limit-in-bytes-not-characters",
        b"SEND\nh:" + "é".encode() * 16 + b"\n\n\0",
        "header line too long",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        "too-many-headers",
        b"SEND\n" + headers_n(5) + b"\n\0",
        "too many headers",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        "too-many-headers-after-receipt",
        b"SEND\nreceipt:r-1\n" + headers_n(4) + b"\n\0",
        "too many headers",
        receipt="r-1",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        "header-block-over-limit",
        b"SEND\n" + headers_n(4, "h{}:" + "x" * 27) + b"\n\0",
        "header block too large",
        too_large=True,
        limits=SMALL,
    ),
    Invalid(
        "header-line-over-default-limit",
        b"SEND\nh:" + b"x" * (16 * 1024 - 1) + b"\n\n\0",
        "header line too long",
        too_large=True,
    ),
    Invalid(
        "pre-connect-too-many-headers",
        b"CONNECT\n" + headers_n(33) + b"\n\0",
        "too many headers",
        too_large=True,
        limits=PRE_CONNECT_LIMITS,
    ),
    Invalid(
        "pre-connect-line-over-limit",
        b"CONNECT\nlogin:" + b"x" * 4091 + b"\n\n\0",
        "header line too long",
        too_large=True,
        limits=PRE_CONNECT_LIMITS,
    ),
    Invalid(
        "pre-connect-header-block-over-limit",
        b"CONNECT\n" + headers_n(3, "h{}:" + "x" * 3000) + b"\n\0",
        "header block too large",
        too_large=True,
        limits=PRE_CONNECT_LIMITS,
    ),
    Invalid(
        "pre-connect-body-over-limit",
        b"CONNECT\ncontent-length:4097\n\n",
        "frame body too large",
        too_large=True,
        limits=PRE_CONNECT_LIMITS,
    ),
]

INVALID_PARAMS = [pytest.param(case, id=case.id) for case in INVALID]


def check_error(parser: FrameParser, case: Invalid) -> None:
    """``parser`` stopped on ``case``'s error, safely worded, with the expected receipt."""
    error = parser.error
    assert isinstance(error, ProtocolError), "no error was set"
    assert case.message in error.message
    assert isinstance(error, FrameTooLarge) == case.too_large
    assert error.receipt == case.receipt
    assert "\n" not in error.message and "\r" not in error.message
    assert len(error.message) <= 80 and len(error.detail) <= 200
    assert str(error) == error.message
    assert parser.buffered == 0


@pytest.mark.parametrize("case", INVALID_PARAMS)
def test_invalid_stream_fed_whole(case: Invalid) -> None:
    """An invalid stream fed whole returns the frames before the break and sets a clear error."""
    parser = parser_for(case)
    assert parser.feed(case.stream + GOOD) == case.frames
    check_error(parser, case)


@pytest.mark.parametrize("case", INVALID_PARAMS)
def test_invalid_stream_fed_byte_by_byte(case: Invalid) -> None:
    """An invalid stream fed byte by byte gives the same frames and error as fed whole."""
    parser = parser_for(case)
    assert feed_all(parser, bytewise(case.stream + GOOD)) == case.frames
    check_error(parser, case)


@pytest.mark.parametrize("case", INVALID_PARAMS)
def test_error_is_final(case: Invalid) -> None:
    """After an error the parser ignores all input and keeps its first error."""
    parser = parser_for(case)
    feed_all(parser, bytewise(case.stream + GOOD))
    error = parser.error
    assert error is not None
    assert parser.feed(GOOD * 3) == []
    assert parser.feed(b"") == []
    assert parser.error is error
    assert parser.buffered == 0


def test_unknown_command_detail_is_truncated() -> None:
    """A huge unknown command is shown truncated in the error detail."""
    parser = FrameParser()
    parser.feed(b"X" * 1000 + b"\n\n\0")
    assert parser.error is not None
    assert parser.error.message == "unknown command"
    assert len(parser.error.detail) < 100


# --------------------------------------------------------------------------- line limit at the line


@dataclass(frozen=True)
class AtLine:
    """A header block cut short after (or inside) a long line: no blank line follows.

    ``refused``: the line is over the limit and ``header line too long`` is set
    once these bytes are in, without waiting for the end of the block.
    Otherwise the line is exactly at the limit: nothing is refused and every byte
    stays buffered until the frame completes.
    """

    id: str
    stream: bytes
    refused: bool
    limits: Limits
    receipt: str | None = None
    frame: Frame | None = None


AT_LINE = [
    AtLine("small-lf-at-limit", b"SEND\nh:" + b"x" * 30 + b"\n", False, SMALL),
    AtLine("small-lf-over", b"SEND\nh:" + b"x" * 31 + b"\n", True, SMALL),
    AtLine("small-crlf-at-limit", b"SEND\r\nh:" + b"x" * 30 + b"\r\n", False, SMALL),
    AtLine("small-crlf-over", b"SEND\r\nh:" + b"x" * 31 + b"\r\n", True, SMALL),
    AtLine("small-cr-at-limit-awaiting-lf", b"SEND\nh:" + b"x" * 30 + b"\r", False, SMALL),
    AtLine("small-no-eol-at-limit", b"SEND\nh:" + b"x" * 30, False, SMALL),
    AtLine("small-no-eol-over", b"SEND\nh:" + b"x" * 31, True, SMALL),
    AtLine("small-over-then-short-lines", b"SEND\nh:" + b"x" * 31 + b"\na:1\nb:2\n", True, SMALL),
    AtLine(
        "small-over-after-receipt", b"SEND\nreceipt:r-1\nh:" + b"x" * 31 + b"\n", True, SMALL, "r-1"
    ),
    AtLine("small-command-line-over", b"S" * 33 + b"\n", True, SMALL),
    AtLine("small-command-line-over-no-eol", b"S" * 33, True, SMALL),
    AtLine(
        "pre-connect-at-limit", b"CONNECT\nlogin:" + b"x" * 4090 + b"\n", False, PRE_CONNECT_LIMITS
    ),
    AtLine("pre-connect-over", b"CONNECT\nlogin:" + b"x" * 4091 + b"\n", True, PRE_CONNECT_LIMITS),
    AtLine("pre-connect-command-line-over", b"C" * 4097 + b"\n", True, PRE_CONNECT_LIMITS),
    AtLine("after-connect-at-limit", b"SEND\nh:" + b"x" * 16382 + b"\n", False, DEFAULT_LIMITS),
    AtLine("after-connect-over", b"SEND\nh:" + b"x" * 16383 + b"\n", True, DEFAULT_LIMITS),
    AtLine(
        "after-connect-20000-byte-line", b"SEND\nh:" + b"x" * 19998 + b"\n", True, DEFAULT_LIMITS
    ),
    AtLine("after-connect-command-line-over", b"S" * 16385 + b"\n", True, DEFAULT_LIMITS),
]

AT_LINE_PARAMS = [pytest.param(case, id=case.id) for case in AT_LINE]


def check_at_line(parser: FrameParser, case: AtLine, frames: list[Frame]) -> None:
    """``parser`` has refused ``case``'s line, or holds all of it, as ``case`` says."""
    assert frames == []
    if case.refused:
        assert isinstance(parser.error, FrameTooLarge)
        assert parser.error.message == "header line too long"
        assert parser.error.detail == f"the limit is {case.limits.max_line_bytes} bytes a line"
        assert parser.error.receipt == case.receipt
        assert parser.buffered == 0
    else:
        assert parser.error is None
        assert parser.buffered == len(case.stream)
        rest = b"\n\n\0" if case.stream.endswith((b"x", b"\r")) else b"\n\0"
        (got,) = parser.feed(rest)
        assert got.headers
        assert parser.error is None and parser.buffered == 0


@pytest.mark.parametrize("case", AT_LINE_PARAMS)
def test_line_limit_at_the_line_fed_whole(case: AtLine) -> None:
    """A line over the limit is refused when it arrives in one piece, before the blank line."""
    parser = FrameParser(case.limits, version="1.2")
    check_at_line(parser, case, parser.feed(case.stream))


@pytest.mark.parametrize("case", AT_LINE_PARAMS)
def test_line_limit_at_the_line_fed_byte_by_byte(case: AtLine) -> None:
    """A line over the limit is refused when it arrives byte by byte, before the blank line."""
    parser = FrameParser(case.limits, version="1.2")
    check_at_line(parser, case, feed_all(parser, bytewise(case.stream)))


@pytest.mark.parametrize("case", AT_LINE_PARAMS)
def test_line_limit_at_the_line_after_a_buffered_prefix(case: AtLine) -> None:
    """The long line fed whole after its first line was buffered on its own is judged alike."""
    parser = FrameParser(case.limits, version="1.2")
    cut = case.stream.find(b"\n") + 1 if case.stream.count(b"\n") > 1 else 1
    check_at_line(parser, case, feed_all(parser, [case.stream[:cut], case.stream[cut:]]))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in AT_LINE if c.limits is SMALL])
def test_line_limit_at_the_line_split_anywhere(case: AtLine) -> None:
    """However the bytes are cut in two, the line is refused (or kept) the same way."""
    for cut in range(len(case.stream) + 1):
        parser = FrameParser(case.limits, version="1.2")
        check_at_line(parser, case, feed_all(parser, [case.stream[:cut], case.stream[cut:]]))


def test_line_limit_at_the_line_many_short_lines_then_long() -> None:
    """Many short lines in one feed do not hide a long line after them."""
    limits = Limits(max_line_bytes=32, max_headers=1000, max_header_bytes=4096)
    parser = FrameParser(limits)
    assert parser.feed(b"SEND\n" + b"a:1\n" * 200 + b"h:" + b"x" * 31 + b"\nb:2\n") == []
    assert isinstance(parser.error, FrameTooLarge)
    assert parser.error.message == "header line too long"


# --------------------------------------------------------------------------- bounded memory


def feed_forever(
    parser: FrameParser, first: bytes, chunk: bytes, max_feeds: int
) -> tuple[int, list[int]]:
    """Feed ``first`` then ``chunk`` until an error; return (feeds of ``chunk``, buffered log)."""
    log = []
    parser.feed(first)
    for n in range(1, max_feeds + 1):
        assert parser.feed(chunk) == []
        log.append(parser.buffered)
        if parser.error is not None:
            return n, log
    raise AssertionError(f"no error after {max_feeds} chunks; buffered {parser.buffered}")


LIMIT_SETS = [
    pytest.param(SMALL, 7, id="small-limits"),
    pytest.param(PRE_CONNECT_LIMITS, 1000, id="pre-connect-limits"),
    pytest.param(DEFAULT_LIMITS, 4096, id="default-limits"),
]


@pytest.mark.parametrize(("limits", "size"), LIMIT_SETS)
def test_endless_header_line_fails_once_past_line_limit(limits: Limits, size: int) -> None:
    """A header line that never ends errors on the first chunk taking it past the line limit."""
    parser = FrameParser(limits)
    first = b"SEND\nfoo:"
    feeds, log = feed_forever(parser, first, b"x" * size, limits.max_line_bytes // size + 2)
    # The line holds "foo:" plus ``n * size`` bytes after n chunks.
    assert feeds == (limits.max_line_bytes - 4) // size + 1
    assert max(log[:-1], default=0) <= limits.max_line_bytes + len(b"SEND\n")
    assert isinstance(parser.error, FrameTooLarge)
    assert parser.error.message == "header line too long"


@pytest.mark.parametrize(("limits", "size"), LIMIT_SETS)
def test_endless_command_line_is_bounded(limits: Limits, size: int) -> None:
    """A first line that never ends errors once past the line limit, buffering no more."""
    parser = FrameParser(limits)
    feeds, log = feed_forever(parser, b"", b"S" * size, limits.max_line_bytes // size + 2)
    assert feeds * size <= limits.max_line_bytes + size
    assert max(log[:-1], default=0) <= limits.max_line_bytes
    assert isinstance(parser.error, FrameTooLarge)


@pytest.mark.parametrize(("limits", "size"), LIMIT_SETS)
def test_endless_header_block_is_bounded(limits: Limits, size: int) -> None:
    """Header lines that never end in a blank line error before passing the block limits."""
    parser = FrameParser(limits)
    line = b"h:" + b"x" * 13 + b"\n"
    chunk = line * max(1, size // len(line))
    feeds, log = feed_forever(parser, b"SEND\n", chunk, limits.max_header_bytes // len(chunk) + 2)
    assert max(log[:-1], default=0) <= limits.max_header_bytes
    assert feeds * len(chunk) <= limits.max_header_bytes + len(chunk)
    assert isinstance(parser.error, FrameTooLarge)
    assert parser.error.message in {"too many headers", "header block too large"}


@pytest.mark.parametrize(("limits", "size"), LIMIT_SETS)
def test_endless_body_fails_once_past_body_limit(limits: Limits, size: int) -> None:
    """A body without NUL or content-length errors on the chunk taking it past the limit."""
    parser = FrameParser(limits)
    max_feeds = limits.max_body_bytes // size + 2
    feeds, log = feed_forever(parser, b"SEND\nreceipt:r\n\n", b"x" * size, max_feeds)
    assert feeds == limits.max_body_bytes // size + 1
    assert max(log[:-1], default=0) <= limits.max_body_bytes
    assert isinstance(parser.error, FrameTooLarge)
    assert parser.error.message == "frame body too large"
    assert parser.error.receipt == "r"


def test_endless_heart_beats_buffer_nothing() -> None:
    """Heart-beat EOLs are consumed as they arrive, whatever their number."""
    parser = FrameParser(PRE_CONNECT_LIMITS)
    for _ in range(100):
        assert parser.feed(b"\r\n\n" * 1000) == []
        assert parser.buffered == 0
    assert parser.error is None


def test_content_length_body_buffers_at_most_its_length() -> None:
    """A body announced by content-length is held without passing that length."""
    parser = FrameParser(SMALL)
    parser.feed(b"SEND\ncontent-length:64\n\n")
    for _ in range(63):
        assert parser.feed(b"\0") == []
        assert parser.buffered <= 64
    assert parser.feed(b"\0\0") == [frame("SEND", {"content-length": "64"}, b"\0" * 64)]


# --------------------------------------------------------------------------- settable state


def test_version_switch_between_feeds() -> None:
    """Each frame's headers are decoded with the version set when its header block completes."""
    parser = FrameParser(version="1.0")
    stream = b"SEND\nk:a\\cb\\rc\n\n\0"
    assert parser.feed(stream) == [frame("SEND", {"k": "a\\cb\\rc"})]
    parser.version = "1.2"
    assert parser.feed(stream) == [frame("SEND", {"k": "a:b\rc"})]
    parser.version = "1.1"
    assert parser.feed(stream) == []
    assert parser.error is not None
    assert "undefined escape" in parser.error.message


def test_version_switch_mid_header_block() -> None:
    """A header block still arriving is decoded with the version in force when it completes."""
    parser = FrameParser(version="1.0")
    assert parser.feed(b"SEND\nk:a\\c") == []
    parser.version = "1.1"
    assert parser.feed(b"b\n\n\0") == [frame("SEND", {"k": "a:b"})]


def test_limits_switch_between_feeds() -> None:
    """New limits apply to frames parsed after they are set."""
    parser = FrameParser()
    big = b"SEND\n\n" + b"x" * 100 + b"\0"
    assert parser.feed(big) == [frame("SEND", body=b"x" * 100)]
    parser.limits = SMALL
    assert parser.feed(GOOD) == [EMPTY_SEND]
    assert parser.feed(b"SEND\ncontent-length:100\n\n") == []
    assert isinstance(parser.error, FrameTooLarge)


def test_stop_after_frame_returns_one_frame_per_feed() -> None:
    """With stop_after_frame each feed returns one frame; feed(b"") continues."""
    parser = FrameParser()
    parser.stop_after_frame = True
    rest = b"SEND\n\nb\0\n\r\nSEND\n\nc\0"
    assert parser.feed(b"\nSEND\n\na\0" + rest) == [frame("SEND", body=b"a")]
    assert parser.buffered == len(rest)
    assert parser.feed(b"") == [frame("SEND", body=b"b")]
    assert parser.feed(b"") == [frame("SEND", body=b"c")]
    assert parser.feed(b"") == []
    assert parser.buffered == 0
    assert parser.error is None


def test_stop_after_frame_byte_by_byte() -> None:
    """With stop_after_frame and one byte per feed, every frame still comes out once."""
    parser = FrameParser()
    parser.stop_after_frame = True
    stream = b"SEND\n\na\0SEND\ncontent-length:1\n\n\0\0\nSEND\n\nc\0"
    expected = [
        frame("SEND", body=b"a"),
        frame("SEND", {"content-length": "1"}, b"\0"),
        frame("SEND", body=b"c"),
    ]
    assert feed_all(parser, bytewise(stream)) == expected


def test_stop_after_frame_defers_following_error() -> None:
    """A bad frame after the one returned only errors when parsing continues."""
    parser = FrameParser()
    parser.stop_after_frame = True
    assert parser.feed(b"SEND\n\n\0FOO\n\n\0") == [EMPTY_SEND]
    assert parser.error is None
    assert parser.feed(b"") == []
    assert parser.error is not None
    assert parser.error.message == "unknown command"


CONNECT_THEN_SEND = (
    b"CONNECT\naccept-version:1.2\nhost:/\n\n\0"
    + b"SEND\ndestination:/q\\ca\ncontent-length:5000\n\n"
    + b"y" * 5000
    + b"\0"
)


def test_connect_then_switch_to_negotiated_version_and_limits() -> None:
    """stop_after_frame lets the session switch version and limits before the next frame."""
    parser = FrameParser(PRE_CONNECT_LIMITS, version="1.0")
    parser.stop_after_frame = True
    assert parser.feed(CONNECT_THEN_SEND) == [
        frame("CONNECT", {"accept-version": "1.2", "host": "/"})
    ]
    assert parser.error is None
    parser.version = "1.2"
    parser.limits = DEFAULT_LIMITS
    parser.stop_after_frame = False
    assert parser.feed(b"") == [
        frame("SEND", {"destination": "/q:a", "content-length": "5000"}, b"y" * 5000)
    ]
    assert parser.error is None


def test_pre_connect_limits_apply_without_switch() -> None:
    """Without the switch, a frame after CONNECT is held to the pre-connect limits."""
    parser = FrameParser(PRE_CONNECT_LIMITS, version="1.0")
    assert parser.feed(CONNECT_THEN_SEND) == [
        frame("CONNECT", {"accept-version": "1.2", "host": "/"})
    ]
    assert isinstance(parser.error, FrameTooLarge)
    assert parser.error.message == "frame body too large"

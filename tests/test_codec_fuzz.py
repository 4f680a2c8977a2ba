"""Property tests for the codec: the parser never raises, and encoding round-trips.

Streams are cut into arbitrary chunks; ``stop_after_frame`` is exercised by
calling ``feed(b"")`` until it returns nothing, as the session does.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from stompbroker.codec import (
    CLIENT_COMMANDS,
    DEFAULT_LIMITS,
    PRE_CONNECT_LIMITS,
    VERSIONS,
    Frame,
    FrameParser,
    Limits,
    ProtocolError,
    encode_frame,
)

FUZZ = settings(max_examples=200, deadline=None)

#: Tiny limits, so that random input reaches every limit check.
TINY = Limits(max_line_bytes=12, max_headers=3, max_header_bytes=40, max_body_bytes=16)

#: Commands whose headers are escaped (CONNECT and STOMP never are).
ESCAPED_COMMANDS = sorted(CLIENT_COMMANDS - {"CONNECT", "STOMP"})

#: Pieces of STOMP, so that random streams look like frames often enough.
PIECES = [
    b"SEND",
    b"CONNECT",
    b"STOMP",
    b"ACK",
    b"FOO",
    b"\n",
    b"\r\n",
    b"\r",
    b"\0",
    b":",
    b"\\",
    b"\\n",
    b"\\c",
    b"\\r",
    b"\\t",
    b"content-length:",
    b"receipt:r",
    b"0",
    b"3",
    b"-1",
    b"x",
    b"\xff",
    b"\xc3\xa9",
]

versions = st.sampled_from(VERSIONS)
limit_sets = st.sampled_from([DEFAULT_LIMITS, PRE_CONNECT_LIMITS, TINY])
stomp_like = st.lists(st.sampled_from(PIECES) | st.binary(max_size=6), max_size=60).map(b"".join)
cut_points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=30)


def chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length); empty chunks included."""
    points = sorted(c % (len(data) + 1) for c in cuts)
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


def check_frame(frame: Frame, parser: FrameParser) -> None:
    """A frame the parser returns is well typed and has a known command."""
    assert isinstance(frame, Frame)
    assert frame.command in parser.commands
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in frame.headers.items())
    assert isinstance(frame.body, bytes)


def check_error(parser: FrameParser) -> None:
    """The parser's error, if any, is a ProtocolError fit for an ERROR frame."""
    error = parser.error
    if error is None:
        return
    assert isinstance(error, ProtocolError)
    assert isinstance(error.message, str) and error.message
    assert "\n" not in error.message
    assert isinstance(error.detail, str)
    assert error.receipt is None or isinstance(error.receipt, str)
    assert parser.buffered == 0


def drive(parser: FrameParser, chunks: list[bytes]) -> list[Frame]:
    """Feed ``chunks``, checking the parser's invariants after each; return all frames."""
    limits = parser.limits
    # A frame in progress holds at most its header block, the block's terminating
    # EOLs (up to LF CR LF), its body and the NUL: never more than the limits allow.
    bound = limits.max_header_bytes + 3 + limits.max_body_bytes + 1
    frames: list[Frame] = []
    for piece in chunks:
        before = parser.error
        got = parser.feed(piece)
        while parser.stop_after_frame and got:
            assert len(got) == 1
            frames += got
            got = parser.feed(b"")
        frames += got
        if before is not None:
            assert got == []
            assert parser.error is before
        check_error(parser)
        # Nothing past the limits is ever kept between feeds.
        assert parser.buffered <= bound
    for frame in frames:
        check_frame(frame, parser)
    return frames


@FUZZ
@given(
    data=st.binary(max_size=300),
    cuts=cut_points,
    version=versions,
    limits=limit_sets,
    stop=st.booleans(),
)
def test_arbitrary_bytes_never_raise(
    data: bytes, cuts: list[int], version: str, limits: Limits, stop: bool
) -> None:
    """Arbitrary bytes in arbitrary chunks never raise; errors only show up as .error."""
    parser = FrameParser(limits=limits, version=version)
    parser.stop_after_frame = stop
    drive(parser, chunk(data, cuts))


@FUZZ
@given(
    data=stomp_like,
    cuts=cut_points,
    version=versions,
    limits=limit_sets,
    stop=st.booleans(),
)
def test_stomp_like_bytes_never_raise(
    data: bytes, cuts: list[int], version: str, limits: Limits, stop: bool
) -> None:
    """Streams built from STOMP fragments, in arbitrary chunks, never raise."""
    parser = FrameParser(limits=limits, version=version)
    parser.stop_after_frame = stop
    drive(parser, chunk(data, cuts))


header_names = st.text(min_size=1, max_size=12).filter(lambda n: n != "content-length")


@st.composite
def valid_stream(draw: st.DrawFn) -> bytes:
    """A few encoded frames, with heart-beats between them."""
    version = draw(versions)
    parts = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        command = draw(st.sampled_from(sorted(CLIENT_COMMANDS)))
        headers = draw(st.dictionaries(header_names, st.text(max_size=12), max_size=4))
        body = draw(st.binary(max_size=20))
        parts.append(encode_frame(command, headers, body, version))
        parts.append(draw(st.sampled_from([b"", b"\n", b"\r\n", b"\n\n"])))
    return b"".join(parts)


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    """A valid stream with a few bytes inserted, deleted or replaced."""
    data = bytearray(draw(valid_stream()))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        where = draw(st.integers(min_value=0, max_value=len(data)))
        octet = draw(st.sampled_from(b"\0\n\r:\\c9x\xff") | st.integers(0, 255))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        if action == "insert" or where == len(data):
            data.insert(where, octet)
        elif action == "delete":
            del data[where]
        else:
            data[where] = octet
    return bytes(data)


@FUZZ
@given(
    data=mutated_stream(),
    cuts=cut_points,
    version=versions,
    limits=limit_sets,
    stop=st.booleans(),
)
def test_mutated_frames_never_raise(
    data: bytes, cuts: list[int], version: str, limits: Limits, stop: bool
) -> None:
    """Valid frames with a few bytes mutated, in arbitrary chunks, never raise."""
    parser = FrameParser(limits=limits, version=version)
    parser.stop_after_frame = stop
    drive(parser, chunk(data, cuts))


def outcome(parser: FrameParser, frames: list[Frame]) -> tuple[object, ...]:
    """What a feeding produced: frames, error message and receipt, bytes still held."""
    error = parser.error
    return (
        frames,
        error and error.message,
        error and error.receipt,
        parser.buffered,
    )


@FUZZ
@given(
    data=st.one_of(mutated_stream(), valid_stream(), stomp_like),
    cuts=cut_points,
    version=versions,
    stop=st.booleans(),
)
def test_chunking_does_not_change_the_outcome(
    data: bytes, cuts: list[int], version: str, stop: bool
) -> None:
    """Under the default limits, any chunking gives the same frames and error as one feed."""
    whole = FrameParser(version=version)
    expected = outcome(whole, whole.feed(data))
    chunked = FrameParser(version=version)
    chunked.stop_after_frame = stop
    assert outcome(chunked, drive(chunked, chunk(data, cuts))) == expected


# --------------------------------------------------------------------------- round trip


def value_text(version: str) -> st.SearchStrategy[str]:
    """Header text that ``version`` can carry unchanged.

    In 1.1, CR has no escape and the parser reads a CR before LF as part of the
    EOL (accepted in every version), so a 1.1 text cannot end with a CR.
    """
    text = st.text(max_size=16)
    if version == "1.1":
        return text.filter(lambda t: not t.endswith("\r"))
    return text


@st.composite
def frames_for(draw: st.DrawFn, version: str) -> list[Frame]:
    """A few frames with arbitrary header text and bodies, for ``version``."""
    names = value_text(version).filter(lambda n: n != "" and n != "content-length")
    frames = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        command = draw(st.sampled_from(ESCAPED_COMMANDS))
        headers = draw(st.dictionaries(names, value_text(version), max_size=6))
        body = draw(st.binary(max_size=40))
        if body:
            headers = {**headers, "content-length": str(len(body))}
        frames.append(Frame(command, headers, body))
    return frames


def round_trip(version: str, frames: list[Frame], eols: list[bytes], cuts: list[int]) -> None:
    """Encode ``frames`` for ``version`` with heart-beats between; parse them back in chunks."""
    stream = b"".join(
        eol + encode_frame(f.command, f.headers, f.body, version)
        for f, eol in zip(frames, eols + [b""] * len(frames), strict=False)
    )
    parser = FrameParser(version=version)
    assert drive(parser, chunk(stream, cuts)) == frames
    assert parser.error is None
    assert parser.buffered == 0


heart_beats = st.lists(st.sampled_from([b"", b"\n", b"\r\n", b"\n\r\n"]), max_size=4)


@FUZZ
@given(frames=frames_for("1.2"), eols=heart_beats, cuts=cut_points)
def test_round_trip_12(frames: list[Frame], eols: list[bytes], cuts: list[int]) -> None:
    """Frames encoded for 1.2 parse back identically, however the bytes are chunked."""
    round_trip("1.2", frames, eols, cuts)


@FUZZ
@given(frames=frames_for("1.1"), eols=heart_beats, cuts=cut_points)
def test_round_trip_11(frames: list[Frame], eols: list[bytes], cuts: list[int]) -> None:
    """Frames encoded for 1.1 parse back identically, however the bytes are chunked."""
    round_trip("1.1", frames, eols, cuts)

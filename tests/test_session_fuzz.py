"""Hostile input to a whole session: whatever bytes arrive, the session never fails itself.

Streams start from valid frames (CONNECT, SUBSCRIBE, SEND, ACK, NACK, BEGIN, COMMIT,
ABORT, UNSUBSCRIBE, DISCONNECT) whose commands, headers and bytes are then mutated, and
are fed in arbitrary chunks with the clock moving in between. The property: nothing
escapes ``data_received``, nothing is logged as our own failure, every byte written is
a well-formed server frame, and bad input ends in one ERROR frame and a close.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from stompbroker.codec import CLIENT_COMMANDS, Frame, Limits, encode_frame
from stompbroker.core import Broker
from stompbroker.session import SessionSettings
from stompbroker.testing import Client

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Small limits so that random input reaches them; heart-beats on, so their timers run.
SETTINGS = SessionSettings(
    heartbeat=(1000, 1000),
    limits=Limits(max_line_bytes=256, max_headers=12, max_header_bytes=1024, max_body_bytes=512),
    connect_timeout_ms=5000,
    max_subscriptions=3,
    max_transactions=2,
    max_frames_per_transaction=3,
)

#: Header values that have caught brokers out: digits that int() refuses, huge numbers,
#: escapes, empty values, and the ack ids a 1.2 session hands out.
VALUES = [
    "",
    "0",
    "1",
    "-1",
    "²",
    "١٢",
    "9" * 40,
    "1" + "0" * 400,
    "true",
    "TRUE",
    "false",
    "\\n",
    "\\c",
    "a:b",
    "/queue/fuzz",
    "/topic/fuzz",
    "/temp-queue/r",
    "/temp-topic/r",
    "/dsub/d",
    "/queue/fuzz.*",
    "x@1",
    "x@²",
    "ID-1@1",
    "@",
    "1000,1000",
    "²,0",
    "0,1" + "0" * 400,
    "tx",
    "é",
    "client",
    "client-individual",
    "JMSType = 'x'",
    "(",
]

NAMES = [
    "destination",
    "id",
    "ack",
    "receipt",
    "transaction",
    "content-length",
    "content-type",
    "heart-beat",
    "accept-version",
    "host",
    "persistent",
    "priority",
    "expires",
    "ttl",
    "reply-to",
    "selector",
    "browser",
    "durable",
    "activemq.subscriptionName",
    "activemq.prefetchSize",
    "prefetch-count",
    "activemq.exclusive",
    "message-id",
    "subscription",
    "requeue",
    "client-id",
    "x-queue-name",
]

#: Every client command, one the server sends, a lower-case one, and none at all.
COMMANDS = [*sorted(CLIENT_COMMANDS), "MESSAGE", "send", ""]

#: Valid frames to start from (the first is a good CONNECT).
TEMPLATES: list[tuple[str, dict[str, str], bytes]] = [
    ("CONNECT", {"accept-version": "1.0,1.1,1.2", "host": "h", "heart-beat": "0,1000"}, b""),
    ("SUBSCRIBE", {"destination": "/queue/fuzz", "id": "s1", "ack": "client-individual"}, b""),
    ("SUBSCRIBE", {"destination": "/topic/fuzz", "id": "s2", "receipt": "r"}, b""),
    ("SEND", {"destination": "/queue/fuzz", "receipt": "r1"}, b"hello"),
    ("SEND", {"destination": "/topic/fuzz", "persistent": "true"}, b"\x00\x01"),
    ("SEND", {"destination": "/queue/fuzz", "reply-to": "/temp-queue/r"}, b"q"),
    ("SEND", {"destination": "/queue/fuzz", "priority": "7", "expires": "0"}, b"p"),
    ("SEND", {"destination": "/queue/fuzz", "content-length": "3"}, b"a\0b"),
    ("SUBSCRIBE", {"destination": "/queue/fuzz", "id": "s3", "selector": "JMSPriority > 3"}, b""),
    ("SUBSCRIBE", {"destination": "/queue/fuzz", "id": "b", "browser": "true"}, b""),
    ("SUBSCRIBE", {"destination": "/topic/fuzz", "id": "d", "durable": "true"}, b""),
    ("ACK", {"id": "ID-stompbroker-1@1", "receipt": "a"}, b""),
    ("ACK", {"id": "ID-stompbroker-2@1", "transaction": "tx"}, b""),
    ("ACK", {"message-id": "ID-stompbroker-1", "subscription": "s1"}, b""),
    ("NACK", {"id": "ID-stompbroker-1@1", "requeue": "false"}, b""),
    ("BEGIN", {"transaction": "tx"}, b""),
    ("SEND", {"destination": "/queue/fuzz", "transaction": "tx"}, b"t"),
    ("COMMIT", {"transaction": "tx", "receipt": "c"}, b""),
    ("ABORT", {"transaction": "tx"}, b""),
    ("UNSUBSCRIBE", {"id": "s1"}, b""),
    ("DISCONNECT", {"receipt": "bye"}, b""),
]

# -- strategies ---------------------------------------------------------------------


@st.composite
def frames(draw: Any) -> bytes:
    """One template frame, its command, headers and body maybe changed, encoded."""
    command, headers, body = draw(st.sampled_from(TEMPLATES))
    headers = dict(headers)
    # Most frames stay valid, so that streams get past their first frames.
    if draw(st.integers(0, 5)) == 0:
        command = draw(st.sampled_from(COMMANDS))
    for _ in range(draw(st.integers(0, 3)) // 2):
        name = draw(st.sampled_from(NAMES) | st.text(max_size=6))
        headers[name] = draw(st.sampled_from(VALUES) | st.text(max_size=8))
    if headers and draw(st.integers(0, 4)) == 0:
        del headers[draw(st.sampled_from(sorted(headers)))]
    if draw(st.integers(0, 3)) == 0:
        body = draw(st.binary(max_size=40))
    version = draw(st.sampled_from(["1.0", "1.1", "1.2"]))
    try:
        return encode_frame(command or "X", headers, body, version)
    except (ValueError, UnicodeEncodeError):
        return encode_frame("SEND", {}, body)


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted or repeated."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not out:
            break
        at = draw(st.integers(0, len(out) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "cut"]))
        if kind == "flip":
            out[at] = draw(st.sampled_from([0, 10, 13, 58, 92, 255, out[at] ^ 1]))
        elif kind == "insert":
            out[at:at] = draw(st.sampled_from([b"\0", b"\n", b"\r\n", b":", b"\\", b"\xff"]))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 8))]
        elif kind == "repeat":
            out[at:at] = out[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
        else:
            del out[at:]
    return bytes(out)


@st.composite
def streams(draw: Any) -> bytes:
    """A stream that usually opens with a valid CONNECT, then frames, then mutations."""
    parts = [draw(frames()) for _ in range(draw(st.integers(0, 12)))]
    if draw(st.integers(0, 4)):
        parts.insert(0, encode_frame(*TEMPLATES[0]))
    data = b"".join(parts)
    if draw(st.integers(0, 2)) == 0:
        data = draw(mutated(data))
    return data + draw(st.binary(max_size=8))


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length)."""
    points = sorted(c % (len(data) + 1) for c in cuts)
    return [data[a:b] for a, b in pairwise([0, *points, len(data)])]


# -- the property -------------------------------------------------------------------


def run(data: bytes, cuts: list[int], ticks: list[float]) -> tuple[Client, Broker, list[Any]]:
    """Feed ``data`` in chunks to a fresh session, moving the clock between chunks."""
    clock = Clock()
    broker = Broker(clock=clock)
    client = Client(broker, clock, "fuzz", SETTINGS)
    with capturedLogs() as events:
        for index, piece in enumerate(chunks(data, cuts)):
            client.send_raw(piece)
            if ticks:
                clock.advance(ticks[index % len(ticks)])
        client.lose()
        clock.advance(60)
    return client, broker, list(events)


def check(client: Client, broker: Broker, events: list[Any], data: bytes) -> list[Frame]:
    """The property every stream must satisfy (see the module docstring); the frames written."""
    failures = [e for e in events if "log_failure" in e]
    assert not failures, failures[0]["log_failure"].getTraceback()
    frames = client.frames()  # asserts every written byte parses as server frames
    errors = [i for i, f in enumerate(frames) if f.command == "ERROR"]
    assert len(errors) <= 1, frames
    if errors:
        error = frames[errors[0]]
        assert errors[0] == len(frames) - 1, "a frame was written after ERROR"
        assert error.headers["message"] and error.headers["message"] != "internal error"
        assert client.closing
    elif client.closing:
        assert b"DISCONNECT" in data, "closed without ERROR or DISCONNECT"
    for destination in [*broker.destinations.queues.values(), *broker.destinations.topics.values()]:
        assert not destination.subscriptions, "a subscription outlived its connection"
    assert client.session.buffered == 0 or client.session.closed
    return frames


@FUZZ
@given(
    streams(),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.lists(st.sampled_from([0.0, 0.001, 0.5, 3.0]), max_size=4),
)
@example(encode_frame(*TEMPLATES[0]) + b"ACK\nid:x@\xc2\xb2\n\n\0", [], [])
@example(b"CONNECT\naccept-version:1.2\nheart-beat:\xc2\xb2,0\n\n\0", [], [])
@example(b"CONNECT\naccept-version:1.2\nheart-beat:1" + b"0" * 400 + b",0\n\n\0", [], [])
@example(
    encode_frame(*TEMPLATES[0])
    + b"SUBSCRIBE\ndestination:/queue/q\nid:1\nack:client\nprefetch-count:\xc2\xb2\n\n\0",
    [],
    [],
)
def test_hostile_streams_end_in_error_and_close_never_internal_failure(
    data: bytes, cuts: list[int], ticks: list[float]
) -> None:
    """Random and mutated streams never raise or log our failure; bad input gets ERROR, close."""
    client, broker, events = run(data, cuts, ticks)
    check(client, broker, events, data)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_random_bytes_after_connect_never_fail_the_session(data: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes after a good CONNECT never raise or log our failure."""
    stream = encode_frame(*TEMPLATES[0]) + data
    client, broker, events = run(stream, cuts, [0.1])
    check(client, broker, events, stream)


# -- regressions: inputs that once broke the session --------------------------------


def _answer(stream: bytes) -> Frame:
    """Feed ``stream`` to a fresh session, check the property, return the last frame written."""
    client, broker, events = run(stream, [], [])
    return check(client, broker, events, stream)[-1]


CONNECT = encode_frame(*TEMPLATES[0])


def test_heartbeat_with_non_ascii_digits_is_an_error_not_a_failure() -> None:
    """heart-beat:²,0 ("²" passes isdigit, not int) gets ERROR "invalid heart-beat header"."""
    last = _answer(b"CONNECT\naccept-version:1.2\nheart-beat:\xc2\xb2,0\n\n\0")
    assert last.command == "ERROR"
    assert last.headers["message"] == "invalid heart-beat header"


def test_huge_heartbeat_is_taken_as_the_longest_interval() -> None:
    """A 400-digit heart-beat interval connects (as about 24 days), not an overflow failure."""
    last = _answer(b"CONNECT\naccept-version:1.2\nheart-beat:0,1" + b"0" * 400 + b"\n\n\0")
    assert last.command == "CONNECTED"


def test_ack_id_with_non_ascii_digit_key_is_unknown_message() -> None:
    """ACK id:x@² gets ERROR "unknown message", not an internal error."""
    last = _answer(CONNECT + "ACK\nid:x@²\n\n\0".encode())
    assert last.headers["message"] == "unknown message"


def test_prefetch_with_non_ascii_digit_is_invalid() -> None:
    """SUBSCRIBE prefetch-count:² gets ERROR "invalid prefetch-count"."""
    frame = "SUBSCRIBE\ndestination:/queue/q\nid:1\nack:client\nprefetch-count:²\n\n\0"
    last = _answer(CONNECT + frame.encode())
    assert last.headers["message"] == "invalid prefetch-count"


def test_priority_with_non_ascii_digit_is_invalid() -> None:
    """SEND priority:² gets ERROR "invalid priority", not an internal error."""
    frame = "SEND\ndestination:/queue/q\npriority:²\n\nx\0"
    last = _answer(CONNECT + frame.encode())
    assert last.headers["message"] == "invalid priority '²': expected an integer from 0 to 9"

"""Heart-beats: negotiation, the broker's beats, the client's silence, timer cleanup."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from stompbroker.core import Broker
from stompbroker.session import SessionSettings, negotiate, parse_heartbeat
from stompbroker.testing import Client
from tests.helpers import RecordingObserver

STEP = 0.05


def _client(
    heart_beat: str | None,
    offer: tuple[int, int] = (1000, 1000),
    version: str = "1.2",
    tolerance: float = 2.0,
) -> tuple[Clock, Client]:
    """A client connected with ``heart-beat:heart_beat`` to a broker offering ``offer``."""
    clock = Clock()
    settings = SessionSettings(heartbeat=offer, heartbeat_tolerance=tolerance)
    client = Client(Broker(clock=clock), clock, settings=settings)
    headers = {} if heart_beat is None else {"heart_beat": heart_beat}
    answer = client.connect(version, **headers)
    assert answer.command == "CONNECTED"
    return clock, client


def _beat_times(clock: Clock, client: Client, seconds: float) -> list[float]:
    """Pump the clock in small steps for ``seconds``; return when the session wrote, checking
    that everything written is a heart-beat EOL."""
    start = len(client.written())
    times = []
    for _ in range(round(seconds / STEP)):
        before = len(client.written())
        clock.pump([STEP])
        if len(client.written()) != before:
            times.append(clock.seconds())
    assert set(client.written()[start:]) <= {ord("\n")}
    return times


# -- negotiation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        ((0, 0), (10000, 10000), (0, 0)),
        ((0, 0), (0, 0), (0, 0)),
        ((1000, 1000), (0, 0), (0, 0)),
        ((1000, 1000), (10000, 10000), (10000, 10000)),
        ((20000, 30000), (10000, 10000), (30000, 20000)),
        ((5000, 0), (0, 3000), (0, 5000)),
        ((0, 20000), (10000, 0), (20000, 0)),
        ((100, 200), (300, 400), (300, 400)),
        ((0, 500), (1000, 1000), (1000, 0)),
        ((500, 0), (1000, 1000), (0, 1000)),
    ],
)
def test_negotiate(
    client: tuple[int, int], server: tuple[int, int], expected: tuple[int, int]
) -> None:
    """Each direction beats at the larger of the two sides' values, or not at all if either is 0."""
    assert negotiate(client, server) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0,0", (0, 0)), ("10,20", (10, 20)), ("1000, 2000", (1000, 2000)), ("0,60000", (0, 60000))],
)
def test_parse_heartbeat(value: str, expected: tuple[int, int]) -> None:
    """A heart-beat header is two non-negative integers in milliseconds."""
    assert parse_heartbeat(value) == expected


@pytest.mark.parametrize("value", ["", "1", "1,2,3", "-1,0", "a,b", "1.5,2", ",", "10;20"])
def test_parse_heartbeat_rejects(value: str) -> None:
    """A malformed heart-beat header raises ValueError."""
    with pytest.raises(ValueError):
        parse_heartbeat(value)


@pytest.mark.parametrize("value", ["banana", "1", "-5,0"])
def test_invalid_heartbeat_header_gets_error(value: str) -> None:
    """CONNECT with a malformed heart-beat header gets ERROR and no timers are left."""
    clock = Clock()
    client = Client(Broker(clock=clock), clock, settings=SessionSettings(heartbeat=(1000, 1000)))
    answer = client.connect("1.2", heart_beat=value)
    assert (answer.command, answer.headers["message"]) == ("ERROR", "invalid heart-beat header")
    assert client.closing
    assert clock.getDelayedCalls() == []


# -- the broker's beats ------------------------------------------------------------


@pytest.mark.parametrize(
    ("heart_beat", "offer", "interval"),
    [
        ("0,1000", (1000, 1000), 1.0),
        ("0,500", (1000, 0), 1.0),
        ("0,3000", (1000, 0), 3.0),
        ("0,100", (200, 0), 0.2),
    ],
)
def test_broker_beats_within_interval(
    heart_beat: str, offer: tuple[int, int], interval: float
) -> None:
    """From CONNECTED on, the broker never stays silent longer than the agreed interval."""
    clock, client = _client(heart_beat, offer)
    times = _beat_times(clock, client, interval * 10)
    assert times, "no heart-beat sent"
    last = 0.0
    for when in times:
        assert when - last <= interval + 1e-9
        last = when
    assert clock.seconds() - last <= interval + 1e-9
    assert len(times) >= 10


def test_broker_beats_despite_other_traffic() -> None:
    """Frames the broker writes do not disturb the beat schedule: beats keep coming."""
    clock, client = _client("0,1000", (1000, 0))
    client.subscribe("/topic/t")
    for _ in range(5):
        client.publish("/topic/t", b"x")
        clock.pump([0.3])
    assert len(client.messages()) == 5
    assert len(_beat_times(clock, client, 3.0)) >= 3


@pytest.mark.parametrize(
    ("heart_beat", "offer", "version"),
    [
        ("0,0", (1000, 1000), "1.2"),
        (None, (1000, 1000), "1.2"),
        ("1000,1000", (0, 0), "1.2"),
        ("1000,0", (1000, 0), "1.1"),
        ("1000,1000", (1000, 1000), "1.0"),
    ],
)
def test_no_beats_when_not_agreed(
    heart_beat: str | None, offer: tuple[int, int], version: str
) -> None:
    """No beats are sent when the broker-to-client interval is 0 or the client speaks 1.0."""
    clock, client = _client(heart_beat, offer, version)
    assert _beat_times(clock, client, 10.0) == []


@pytest.mark.parametrize(
    ("heart_beat", "offer", "version"),
    [
        ("0,0", (1000, 1000), "1.2"),
        ("1000,1000", (0, 0), "1.1"),
        ("1000,1000", (1000, 1000), "1.0"),
    ],
)
def test_no_timers_when_nothing_agreed(
    heart_beat: str, offer: tuple[int, int], version: str
) -> None:
    """With heart-beats off both ways (or 1.0) no timer is scheduled and silence is fine."""
    clock, client = _client(heart_beat, offer, version)
    assert clock.getDelayedCalls() == []
    clock.pump([10.0] * 100)
    assert not client.closing


# -- the client's silence ------------------------------------------------------------


@pytest.mark.parametrize(
    ("heart_beat", "offer", "tolerance", "deadline"),
    [
        ("1000,0", (0, 1000), 2.0, 2.0),
        ("1000,0", (0, 500), 2.0, 2.0),
        ("500,0", (0, 1000), 2.0, 2.0),
        ("1000,0", (0, 1000), 3.0, 3.0),
        ("1000,1000", (1000, 1000), 2.0, 2.0),
    ],
)
def test_silent_client_times_out(
    heart_beat: str, offer: tuple[int, int], tolerance: float, deadline: float
) -> None:
    """A client silent for tolerance x its interval gets ERROR "heart-beat timeout", then close."""
    clock, client = _client(heart_beat, offer, tolerance=tolerance)
    clock.pump([STEP] * round((deadline - 0.1) / STEP))
    assert not client.closing
    clock.pump([STEP] * round(0.2 / STEP))
    assert client.closing
    client.error("heart-beat timeout")


def test_a_heartbeat_timeout_is_the_reason_the_session_gives_its_observer() -> None:
    """The observer hears of the negotiated version, then "ERROR sent: heart-beat timeout"."""
    clock = Clock()
    settings = SessionSettings(heartbeat=(0, 1000))
    client = Client(Broker(clock=clock), clock, settings=settings)
    observer = client.session.observer = RecordingObserver()
    client.connect("1.1", heart_beat="1000,0")
    clock.pump([STEP] * round(2.1 / STEP))
    assert client.closing
    assert observer.calls == [
        ("connected", None, "1.1"),
        ("closed", "ERROR sent: heart-beat timeout"),
    ]


@pytest.mark.parametrize("keepalive", [b"\n", b"\r\n", b"SEND\ndestination:/queue/q\n\nx\0"])
def test_client_sending_in_time_stays_connected(keepalive: bytes) -> None:
    """A client that sends EOLs or frames within its interval is never timed out."""
    clock, client = _client("1000,0", (0, 1000))
    for _ in range(30):
        clock.pump([0.1] * 10)
        client.send_raw(keepalive)
    assert not client.closing
    assert [f for f in client.frames() if f.command == "ERROR"] == []


def test_silence_counted_from_last_received() -> None:
    """The silence that ends a connection is measured from the last bytes received."""
    clock, client = _client("1000,0", (0, 1000))
    clock.pump([0.1] * 15)
    client.send_raw(b"\n")
    clock.pump([0.1] * 19)  # 1.9 s since the EOL
    assert not client.closing
    clock.pump([0.1] * 2)
    assert client.closing


def test_partial_frame_counts_as_traffic() -> None:
    """Bytes of an unfinished frame also prove the client is alive."""
    clock, client = _client("1000,0", (0, 1000))
    frame = b"SEND\ndestination:/queue/q\n\n" + b"x" * 20 + b"\0"
    for octet in frame:
        clock.pump([0.5])
        client.send_raw(bytes([octet]))
    assert not client.closing


# -- cleanup -------------------------------------------------------------------------


def test_timers_cancelled_after_heartbeat_timeout() -> None:
    """After a heart-beat timeout no timer of the session is left on the clock."""
    clock, client = _client("1000,1000", (1000, 1000))
    clock.pump([STEP] * round(3.0 / STEP))
    assert client.closing
    assert clock.getDelayedCalls() == []
    client.lose()
    assert clock.getDelayedCalls() == []


def test_no_beats_after_heartbeat_timeout() -> None:
    """After the timeout ERROR the session writes nothing more, beats included."""
    clock, client = _client("1000,1000", (1000, 1000))
    clock.pump([STEP] * round(3.0 / STEP))
    written = client.written()
    clock.pump([STEP] * round(5.0 / STEP))
    assert client.written() == written


@pytest.mark.parametrize("ending", ["disconnect", "error", "lost"])
def test_timers_cancelled_on_close(ending: str) -> None:
    """Ending the connection (DISCONNECT, ERROR or loss) cancels both heart-beat timers."""
    clock, client = _client("1000,1000", (1000, 1000))
    assert len(clock.getDelayedCalls()) == 2
    clock.pump([0.5])
    if ending == "disconnect":
        client.send("DISCONNECT")
    elif ending == "error":
        client.send_raw(b"BOGUS\n\n\0")
    else:
        client.lose()
    assert clock.getDelayedCalls() == []
    client.lose()
    assert clock.getDelayedCalls() == []


def test_ping_answered_keeps_a_silent_client_past_several_timeouts() -> None:
    from twisted.internet.task import Clock as _Clock

    from stompbroker.session import Heartbeat as _Heartbeat

    clock = _Clock()
    silences: list[float] = []
    pings: list[float] = []

    def answer() -> None:  # the browser answers the Ping with a Pong
        pings.append(clock.seconds())
        beat.received()

    beat = _Heartbeat(clock, 0, 1000, 2.0, lambda: None, silences.append, ping=answer)
    beat.start()
    clock.pump([0.5] * 20)  # 10 s: five read timeouts
    assert silences == []
    assert pings == [1.0 * n for n in range(1, 11)]
    beat.stop()


def test_pings_keep_the_client_with_tolerance_one_when_the_pong_comes_late() -> None:
    """With tolerance 1 pings go every half interval: a Pong 0.2 s late still keeps the link."""
    from stompbroker.session import Heartbeat as _Heartbeat

    clock = Clock()
    silences: list[float] = []
    pings: list[float] = []

    def answer_later() -> None:  # the Pong crosses the network
        pings.append(clock.seconds())
        clock.callLater(0.2, beat.received)

    beat = _Heartbeat(clock, 0, 1000, 1.0, lambda: None, silences.append, ping=answer_later)
    beat.start()
    clock.pump([0.25] * 40)  # 10 s: ten read timeouts
    assert silences == []
    assert pings[:3] == [0.5, 1.0, 1.5]
    beat.stop()


def test_unanswered_or_no_pings_drop_the_client_on_time() -> None:
    from twisted.internet.task import Clock as _Clock

    from stompbroker.session import Heartbeat as _Heartbeat

    for ping in (lambda: None, None):
        clock = _Clock()
        silences: list[float] = []
        beat = _Heartbeat(clock, 0, 1000, 2.0, lambda: None, silences.append, ping=ping)
        beat.start()
        clock.pump([0.5] * 4)
        assert silences == [2.0]
        beat.stop()

"""Limits against exhaustion: connections, CONNECT time, subscriptions, transactions, frames.

Everything runs in memory: sessions and listener protocols on ``StringTransport``s, time on a
``Clock``. Each limit is shown to hold at its value and to end the connection with an ERROR
(HTTP 503 on a WebSocket listener) naming it; the frame limits are shown to bound what a
session buffers, measured as the parser's buffer, not as process memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from stompbroker.codec import (
    DEFAULT_LIMITS,
    PRE_CONNECT_LIMITS,
    SERVER_COMMANDS,
    Frame,
    FrameParser,
    Limits,
    encode_frame,
)
from stompbroker.config import MAX_HEADER_BLOCK_BYTES, ConfigError, LimitsSection, parse
from stompbroker.core import Broker
from stompbroker.service import frame_limits, session_settings, with_limits
from stompbroker.session import SessionSettings, StompSession
from stompbroker.testing import QUIET, Client, connected_clients
from stompbroker.transport import (
    BEFORE_CONNECT,
    LOGGED_IN,
    LOGGING_IN,
    ConnectionLimiter,
    StompFactory,
    TooManyConnections,
    WebSocketFactory,
    max_message_bytes,
)
from tests.helpers import doc_default, doc_section

ROOT = Path(__file__).resolve().parent.parent


def _limited(**values: int) -> SessionSettings:
    """Quiet settings with ``limits:`` keys applied as the service applies them."""
    return with_limits(QUIET, LimitsSection(**values))


# -- the configuration ----------------------------------------------------------------------


def test_limits_defaults_equal_what_the_session_and_codec_use() -> None:
    """An absent limits: section means exactly the session's and the parser's own defaults."""
    section = LimitsSection()
    assert parse("", "f.yaml").limits == section
    settings = SessionSettings()
    assert section.connect_timeout_ms == settings.connect_timeout_ms
    assert section.max_subscriptions == settings.max_subscriptions
    assert section.max_transactions == settings.max_transactions
    assert section.max_frames_per_transaction == settings.max_frames_per_transaction
    assert frame_limits(section) == (DEFAULT_LIMITS, PRE_CONNECT_LIMITS)
    assert with_limits(settings, section) == settings
    assert DEFAULT_LIMITS.max_header_bytes == MAX_HEADER_BLOCK_BYTES


def test_limits_are_read() -> None:
    """Every limits: key is read into LimitsSection."""
    text = "limits:\n" + "".join(
        f"  {f.name}: {i + 1}\n" for i, f in enumerate(fields(LimitsSection))
    )
    section = parse(text, "f.yaml").limits
    assert [getattr(section, f.name) for f in fields(LimitsSection)] == list(
        range(1, len(fields(LimitsSection)) + 1)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("limits:\n  max_sockets: 1\n", "f.yaml:2: limits.max_sockets: unknown key (known: max_"),
        (
            "limits:\n  max_connections: 0\n",
            "f.yaml:2: limits.max_connections: expected a positive integer, got 0",
        ),
        (
            "limits:\n  max_connections_per_address: -5\n",
            "f.yaml:2: limits.max_connections_per_address: expected a positive integer, got -5",
        ),
        (
            "limits:\n  connect_timeout_ms: 1.5\n",
            "f.yaml:2: limits.connect_timeout_ms: expected a positive integer, got 1.5",
        ),
        (
            "limits:\n  max_subscriptions: many\n",
            "f.yaml:2: limits.max_subscriptions: expected a positive integer, got 'many'",
        ),
        (
            "limits:\n  max_transactions: true\n",
            "f.yaml:2: limits.max_transactions: expected a positive integer, got True",
        ),
        (
            "limits:\n  max_header_line_bytes: 65537\n",
            "f.yaml:2: limits.max_header_line_bytes: expected an integer from 1 to 65536,"
            " got 65537",
        ),
        ("limits: 5\n", "f.yaml:1: limits: expected a mapping, got 5"),
    ],
)
def test_limits_mistakes_name_file_line_and_key(text: str, message: str) -> None:
    """A bad limits: value is refused with the file, the line, the key and what was expected."""
    with pytest.raises(ConfigError) as caught:
        parse(text, "f.yaml")
    assert str(caught.value).startswith(message)


def test_frame_limits_apply_after_connect_and_never_loosen_the_pre_connect_ones() -> None:
    """Configured frame limits replace the defaults after CONNECT; before it the smaller wins."""
    after, before = frame_limits(
        LimitsSection(max_frame_body_bytes=1000, max_headers=200, max_header_line_bytes=2048)
    )
    assert after == Limits(
        max_line_bytes=2048,
        max_headers=200,
        max_header_bytes=DEFAULT_LIMITS.max_header_bytes,
        max_body_bytes=1000,
    )
    assert before == Limits(
        max_line_bytes=2048,
        max_headers=PRE_CONNECT_LIMITS.max_headers,
        max_header_bytes=PRE_CONNECT_LIMITS.max_header_bytes,
        max_body_bytes=1000,
    )


def test_limits_from_the_file_reach_every_session() -> None:
    """The service gives sessions the file's limits, and sizes WebSocket messages to them."""
    config = parse(
        "heartbeat: {send_ms: 0}\n"
        "limits: {connect_timeout_ms: 250, max_subscriptions: 7, max_transactions: 3,"
        " max_frames_per_transaction: 9, max_frame_body_bytes: 4096}\n"
    )
    settings = session_settings(config)
    assert settings.heartbeat == (0, 10000)
    assert (
        settings.connect_timeout_ms,
        settings.max_subscriptions,
        settings.max_transactions,
        settings.max_frames_per_transaction,
        settings.limits.max_body_bytes,
    ) == (250, 7, 3, 9, 4096)
    assert max_message_bytes(settings.limits) == DEFAULT_LIMITS.max_header_bytes + 4096 + 1024


@pytest.mark.parametrize("doc", ["configuration.md", "security.md"])
def test_every_limit_is_documented_with_its_default(doc: str) -> None:
    """docs/configuration.md and docs/security.md have a row, with a default, for each key."""
    text = (ROOT / "docs" / doc).read_text()
    heading = "## `limits`" if doc == "configuration.md" else "## Limits"
    part = doc_section(text, heading)
    for field in fields(LimitsSection):
        default = doc_default(part, field.name)
        value = re.match(r"`([^`]+)`", default or "")
        assert value is not None, f"limits.{field.name} is not documented in {doc}"
        shown = int(value.group(1).replace("_", "").replace(",", ""))
        assert shown == field.default, f"limits.{field.name}: {doc} says {shown}"


# -- connections --------------------------------------------------------------------------


class Listener:
    """A TCP and a WebSocket factory sharing one limiter, with real sessions behind them."""

    def __init__(self, limiter: ConnectionLimiter) -> None:
        self.clock = Clock()
        self.broker = Broker(clock=self.clock)
        self.limiter = limiter
        self.sessions: list[StompSession] = []
        self.tcp = StompFactory(self._session, limiter)
        self.websocket = WebSocketFactory(self._session, self.clock, limiter=limiter)

    def _session(self, transport: Any, peer: str) -> StompSession:
        session = StompSession(self.broker, transport, self.clock, "s", QUIET, peer)
        self.sessions.append(session)
        return session

    def connect(
        self, host: str = "10.0.0.1", websocket: bool = False, login: bool = False
    ) -> tuple[Any, Any]:
        """A connection from ``host`` made on one of the factories: (protocol, transport).

        ``login``: a TCP connection then sends CONNECT and is logged in.
        """
        factory = self.websocket if websocket else self.tcp
        address = IPv4Address("TCP", host, 50000)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        if login:
            protocol.dataReceived(CONNECT_FRAME)
            assert transport.value().startswith(b"CONNECTED\n")
        return protocol, transport


CONNECT_FRAME = encode_frame("CONNECT", {"accept-version": "1.2", "host": "h"})


def _refusal(transport: StringTransport) -> Frame:
    """The one frame a refused STOMP connection got; it must be closing."""
    reader = FrameParser(commands=SERVER_COMMANDS)
    (frame,) = reader.feed(transport.value())
    assert transport.disconnecting
    return frame


def test_connection_over_the_total_gets_error_and_close() -> None:
    """Beyond max_connections a new connection gets ERROR "too many connections", no session."""
    listener = Listener(ConnectionLimiter(max_connections=2, max_per_address=10))
    listener.connect("10.0.0.1", login=True)
    listener.connect("10.0.0.2", login=True)
    _, transport = listener.connect("10.0.0.3")
    error = _refusal(transport)
    assert error.command == "ERROR"
    assert error.headers["message"] == "too many connections"
    assert b"at most 2 connections" in error.body
    assert len(listener.sessions) == 2


def test_connection_over_the_per_address_limit_is_refused_others_are_not() -> None:
    """Beyond max_connections_per_address one host is refused while another still connects."""
    listener = Listener(ConnectionLimiter(max_connections=10, max_per_address=2))
    listener.connect("10.0.0.1", login=True)
    listener.connect("10.0.0.1", login=True)
    _, refused = listener.connect("10.0.0.1")
    error = _refusal(refused)
    assert error.headers["message"] == "too many connections"
    assert b"from one address" in error.body
    _, other = listener.connect("10.0.0.2")
    assert not other.disconnecting
    assert listener.limiter.from_host("10.0.0.1") == 2


def test_closed_connections_give_their_place_back() -> None:
    """Once a connection ends its place is free again; a refused one never took a place."""
    listener = Listener(ConnectionLimiter(max_connections=1, max_per_address=1))
    first, _ = listener.connect(login=True)
    refused, _ = listener.connect()
    refused.connectionLost(None)
    assert listener.limiter.open == 1
    first.connectionLost(None)
    assert listener.limiter.open == 0
    assert listener.limiter.from_host("10.0.0.1") == 0
    _, again = listener.connect()
    assert not again.disconnecting


def test_bytes_from_a_refused_connection_are_ignored() -> None:
    """A refused connection's CONNECT, sent before it read the ERROR, is dropped quietly."""
    listener = Listener(ConnectionLimiter(max_connections=1))
    listener.connect(login=True)
    protocol, transport = listener.connect()
    protocol.dataReceived(b"CONNECT\naccept-version:1.2\n\n\0")
    error = _refusal(transport)
    assert (error.command, error.headers["message"]) == ("ERROR", "too many connections")


def test_tcp_and_websocket_listeners_share_the_count() -> None:
    """The limiter counts TCP and WebSocket connections together; a refused WebSocket gets 503."""
    listener = Listener(ConnectionLimiter(max_connections=2))
    listener.connect(login=True)
    listener.connect(login=True)
    protocol, transport = listener.connect(websocket=True)
    assert transport.value().startswith(b"HTTP/1.1 503 ")
    assert transport.value().endswith(b"\r\n\r\ntoo many connections\n")
    assert transport.disconnecting
    protocol.connectionLost(None)
    _, tcp = listener.connect()
    assert _refusal(tcp).headers["message"] == "too many connections"
    assert listener.limiter.open == 2


def test_websocket_connection_gives_its_place_back() -> None:
    """A WebSocket connection's place is free again once it ends."""
    listener = Listener(ConnectionLimiter(max_connections=1))
    protocol, _ = listener.connect(websocket=True)
    protocol.connectionLost(None)
    assert listener.limiter.open == 0


def test_peer_without_host_counts_toward_the_total_only() -> None:
    """A UNIX-socket peer has no host: it counts toward max_connections, not per address."""
    limiter = ConnectionLimiter(max_connections=3, max_per_address=1)
    releases = [limiter.admit(None), limiter.admit(None)]
    limiter.admit("10.0.0.1")
    with pytest.raises(TooManyConnections):
        limiter.admit(None)
    for release in releases:
        release()
    assert limiter.open == 1
    protocol = StompFactory(lambda t, p: None, limiter).buildProtocol(None)  # type: ignore[arg-type,return-value]
    assert protocol.take_place(StringTransport(peerAddress=UNIXAddress(None))) is None
    assert limiter.open == 2


def test_at_the_per_address_limit_the_oldest_connection_before_connect_makes_room() -> None:
    """At max_connections_per_address the host's oldest not-logged-in connection is closed."""
    listener = Listener(ConnectionLimiter(max_connections=10, max_per_address=3))
    _, logged_in = listener.connect("10.0.0.1", login=True)
    _, oldest = listener.connect("10.0.0.1")
    _, younger = listener.connect("10.0.0.1")
    _, other_host = listener.connect("10.0.0.2")
    _, newcomer = listener.connect("10.0.0.1")
    error = _refusal(oldest)
    assert (error.command, error.headers["message"]) == ("ERROR", "too many connections")
    assert error.body == (
        b"the broker accepts at most 3 connections from one address: this connection had not"
        b" completed CONNECT and was closed to admit a newer one\n"
    )
    assert not (logged_in.disconnecting or younger.disconnecting or other_host.disconnecting)
    assert not newcomer.disconnecting and newcomer.value() == b""
    assert listener.limiter.from_host("10.0.0.1") == 3
    assert (listener.limiter.open, listener.limiter.evicted) == (4, 1)


def test_at_the_total_limit_the_oldest_connection_of_any_host_makes_room() -> None:
    """At max_connections the oldest not-logged-in connection goes, whichever its host."""
    listener = Listener(ConnectionLimiter(max_connections=3, max_per_address=10))
    _, first = listener.connect("10.0.0.1", login=True)
    _, idle = listener.connect("10.0.0.2")
    _, second = listener.connect("10.0.0.3", login=True)
    _, newcomer = listener.connect("10.0.0.4")
    assert _refusal(idle).body.startswith(b"the broker accepts at most 3 connections: ")
    assert not (first.disconnecting or second.disconnecting or newcomer.disconnecting)
    _, refused = listener.connect("10.0.0.5", login=False)
    assert newcomer.disconnecting  # the newcomer was the only one before CONNECT
    assert not refused.disconnecting


def test_when_every_place_is_logged_in_the_newcomer_is_refused() -> None:
    """Only logged-in connections hold places: the new connection is refused, none closed."""
    listener = Listener(ConnectionLimiter(max_connections=10, max_per_address=2))
    _, first = listener.connect(login=True)
    _, second = listener.connect(login=True)
    _, refused = listener.connect()
    assert _refusal(refused).headers["message"] == "too many connections"
    assert not (first.disconnecting or second.disconnecting)
    assert listener.limiter.evicted == 0


def test_a_closed_to_make_room_connection_does_not_give_its_place_back_twice() -> None:
    """The evicted connection's place is released at once; its later loss changes nothing."""
    listener = Listener(ConnectionLimiter(max_connections=2, max_per_address=2))
    evicted, _ = listener.connect()
    listener.connect()
    listener.connect()
    evicted.connectionLost(None)
    assert (listener.limiter.open, listener.limiter.from_host("10.0.0.1")) == (2, 2)
    assert listener.sessions[0].closed


def test_a_websocket_connection_not_upgraded_yet_is_dropped_to_make_room() -> None:
    """An HTTP connection on a WebSocket listener is not logged in: it is aborted for room."""
    listener = Listener(ConnectionLimiter(max_connections=2))
    _, http = listener.connect(websocket=True)
    listener.connect(login=True)
    _, newcomer = listener.connect()
    assert http.value() == b""
    assert http.disconnected  # aborted: StringTransport.abortConnection
    assert not newcomer.disconnecting


def test_a_connection_logging_in_goes_only_when_none_has_sent_nothing() -> None:
    """CONNECT sent, its answer pending: closed for room after those before CONNECT."""
    limiter = ConnectionLimiter(max_connections=10, max_per_address=3)
    stages = {"a": LOGGING_IN, "b": BEFORE_CONNECT, "c": LOGGING_IN}
    evicted: list[str] = []

    def connection(name: str) -> tuple[Callable[[], int], Callable[[str], None]]:
        return (lambda: stages[name]), (lambda why: evicted.append(name))

    for name in "abc":
        limiter.admit("h", *connection(name))
    limiter.admit("h", lambda: LOGGED_IN)
    assert evicted == ["b"]
    limiter.admit("h", lambda: LOGGED_IN)
    assert evicted == ["b", "a"]
    stages["c"] = LOGGED_IN
    with pytest.raises(TooManyConnections):
        limiter.admit("h")
    assert (limiter.open, limiter.evicted) == (3, 2)


def test_stage_follows_the_session() -> None:
    """A protocol's stage: before CONNECT, logging in while CONNECT awaits, logged in after."""
    listener = Listener(ConnectionLimiter(max_connections=1))
    protocol, transport = listener.connect()
    session = listener.sessions[0]
    assert protocol.stage() == BEFORE_CONNECT
    session._logging_in = True  # as while a login is checked in a thread
    assert protocol.stage() == LOGGING_IN
    session._logging_in = False
    protocol.dataReceived(CONNECT_FRAME)
    assert protocol.stage() == LOGGED_IN
    assert transport.value().startswith(b"CONNECTED")
    session.closed = True  # closing (its ERROR not yet flushed): it holds no place worth keeping
    assert protocol.stage() == BEFORE_CONNECT


def test_limiter_finds_room_past_logged_in_connections_once() -> None:
    """A logged-in candidate is dropped from the candidates the first time it is passed."""
    limiter = ConnectionLimiter(max_connections=3, max_per_address=3)
    evicted: list[str] = []
    logged_in = [limiter.admit("h", lambda: LOGGED_IN, evicted.append) for _ in range(2)]
    limiter.admit("h", lambda: BEFORE_CONNECT, evicted.append)
    newest = [BEFORE_CONNECT]
    limiter.admit("h", lambda: newest[0], evicted.append)
    assert evicted == ["the broker accepts at most 3 connections from one address"]
    assert len(limiter._waiting_from["h"]) == 1  # the logged-in ones passed are gone from it
    newest[0] = LOGGED_IN
    with pytest.raises(TooManyConnections):
        limiter.admit("h", lambda: BEFORE_CONNECT, evicted.append)
    assert len(limiter._waiting_from["h"]) == 0
    for release in logged_in:
        release()
        release()
    assert (limiter.open, limiter.from_host("h")) == (1, 1)


def test_closing_connection_lets_go_of_its_producer_when_resumed() -> None:
    """Resumed while closing (as Twisted does once a full buffer drains), it lets go and closes."""
    listener = Listener(ConnectionLimiter(max_connections=1))
    protocol, transport = listener.connect()
    protocol.pauseProducing()
    protocol.dataReceived(b"BAD\n\n\0")
    assert transport.disconnecting
    protocol.resumeProducing()
    assert transport.producer is None
    assert listener.sessions[0].paused


def test_factories_without_a_limiter_do_not_count() -> None:
    """A factory built without a limiter admits every connection."""
    factory = StompFactory(lambda t, p: Client(Broker(clock=Clock())).session)
    for _ in range(3):
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        assert not transport.disconnecting


# -- CONNECT in time ----------------------------------------------------------------------


def test_no_connect_within_the_timeout_gets_error_and_close() -> None:
    """A connection silent for connect_timeout_ms gets ERROR "no CONNECT within N ms"."""
    clock = Clock()
    client = Client(Broker(clock=clock), clock, settings=_limited(connect_timeout_ms=3000))
    clock.advance(2.999)
    assert client.frames() == []
    assert not client.closing
    clock.advance(0.001)
    client.error("no CONNECT within 3000 ms")
    assert clock.getDelayedCalls() == []


def test_a_trickled_connect_still_times_out() -> None:
    """Sending CONNECT a byte at a time does not extend the time allowed for it."""
    clock = Clock()
    client = Client(Broker(clock=clock), clock, settings=_limited(connect_timeout_ms=1000))
    for octet in b"CONNECT\naccept-version:1.2\nhost:":
        client.send_raw(bytes([octet]))
        clock.advance(0.05)
    client.error("no CONNECT within 1000 ms")


def test_connect_in_time_cancels_the_timeout() -> None:
    """After CONNECT no timeout is pending and the connection stays open past it."""
    clock = Clock()
    client = Client(Broker(clock=clock), clock, settings=_limited(connect_timeout_ms=1000))
    assert client.connect().command == "CONNECTED"
    assert clock.getDelayedCalls() == []
    clock.advance(5)
    assert not client.closing


def test_connection_lost_before_connect_cancels_the_timeout() -> None:
    """A connection that ends before CONNECT leaves no timer behind."""
    clock = Clock()
    client = Client(Broker(clock=clock), clock)
    assert len(clock.getDelayedCalls()) == 1
    client.lose()
    assert clock.getDelayedCalls() == []


# -- subscriptions and transactions -------------------------------------------------------


def test_subscription_beyond_the_limit_gets_error_with_receipt_id() -> None:
    """The SUBSCRIBE beyond max_subscriptions gets ERROR "too many subscriptions", receipt-id."""
    _, _, (client,) = connected_clients(1, settings=_limited(max_subscriptions=3))
    for n in range(3):
        client.subscribe(f"/queue/q{n}", str(n))
    assert client.frames() == []
    client.subscribe("/queue/q3", "3", receipt="r-4")
    error = client.error("too many subscriptions")
    assert error.headers["receipt-id"] == "r-4"
    assert "3 subscriptions" in error.body.decode()


def test_unsubscribe_frees_a_place() -> None:
    """After UNSUBSCRIBE another SUBSCRIBE fits under max_subscriptions."""
    _, _, (client,) = connected_clients(1, settings=_limited(max_subscriptions=1))
    client.subscribe("/queue/a", "a")
    client.send("UNSUBSCRIBE", {"id": "a"})
    client.subscribe("/queue/b", "b", receipt="ok")
    assert [f.command for f in client.frames()] == ["RECEIPT"]


def test_browsers_and_reply_queues_count_as_subscriptions() -> None:
    """Browsing subscriptions and implicit reply-queue subscriptions count toward the limit."""
    _, _, (client,) = connected_clients(1, settings=_limited(max_subscriptions=2))
    client.subscribe("/queue/a", "b1", browser="true")
    client.publish("/queue/a", b"x", reply_to="/temp-queue/r1")
    client.frames()  # the browse's end
    client.publish("/queue/a", b"x", reply_to="/temp-queue/r2")
    client.error("too many subscriptions")


def test_begin_beyond_the_limit_gets_error() -> None:
    """The BEGIN beyond max_transactions gets ERROR "too many transactions"."""
    _, _, (client,) = connected_clients(1, settings=_limited(max_transactions=2))
    client.send("BEGIN", {"transaction": "a"})
    client.send("BEGIN", {"transaction": "b"})
    client.send("COMMIT", {"transaction": "a"})
    client.send("BEGIN", {"transaction": "c", "receipt": "c"})
    assert [f.command for f in client.frames()] == ["RECEIPT"]
    client.send("BEGIN", {"transaction": "d", "receipt": "d"})
    error = client.error("too many transactions")
    assert error.headers["receipt-id"] == "d"


@pytest.mark.parametrize("last", ["SEND", "ACK"])
def test_frame_beyond_the_transaction_limit_gets_error(last: str) -> None:
    """The SEND or ACK beyond max_frames_per_transaction gets ERROR "transaction too large"."""
    broker, _, (client,) = connected_clients(1, settings=_limited(max_frames_per_transaction=2))
    client.subscribe("/queue/in", ack="client-individual")
    client.publish("/queue/in", b"m")
    (message,) = client.messages()
    client.send("BEGIN", {"transaction": "t"})
    client.send("ACK", {"id": message.headers["ack"], "transaction": "t"})
    client.publish("/queue/out", b"1", transaction="t")
    if last == "SEND":
        client.publish("/queue/out", b"2", transaction="t")
    else:
        client.send("ACK", {"id": message.headers["ack"], "transaction": "t"})
    error = client.error("transaction too large")
    assert "2 frames" in error.body.decode()
    client.lose()
    assert "out" not in broker.destinations.queues or not broker.destinations.queues["out"].buffer


# -- frame limits bound what a session buffers -------------------------------------------


def _feed_until_closed(client: Client, chunks: Any) -> int:
    """Feed chunks until the session closes; the most bytes its parser ever held."""
    most = 0
    for chunk in chunks:
        client.send_raw(chunk)
        most = max(most, client.session.buffered)
        if client.closing:
            break
    return most


def _endless(first: bytes, filler: bytes, size: int = 1024) -> Any:
    yield first
    while True:
        yield filler * size


@pytest.mark.parametrize("connected", [False, True])
def test_endless_header_line_ends_at_the_line_limit(connected: bool) -> None:
    """A header line that never ends gets ERROR "header line too long"; the buffer stays bounded."""
    client = Client(Broker(clock=Clock()))
    if connected:
        client.connect()
    limits = DEFAULT_LIMITS if connected else PRE_CONNECT_LIMITS
    command = b"SEND\n" if connected else b"CONNECT\n"
    most = _feed_until_closed(client, _endless(command + b"destination:", b"x"))
    client.error("header line too long")
    assert most <= limits.max_line_bytes + 1024
    assert client.session.buffered == 0


@pytest.mark.parametrize("connected", [False, True])
def test_body_without_nul_ends_at_the_body_limit(connected: bool) -> None:
    """A body whose NUL never comes gets ERROR "frame body too large" at the limit."""
    client = Client(Broker(clock=Clock()))
    if connected:
        client.connect()
    limits = DEFAULT_LIMITS if connected else PRE_CONNECT_LIMITS
    command = b"SEND\ndestination:/queue/q\n\n" if connected else b"CONNECT\n\n"
    most = _feed_until_closed(client, _endless(command, b"y", 64 * 1024))
    client.error("frame body too large")
    assert most <= limits.max_body_bytes + 64 * 1024 + 64
    assert client.session.buffered == 0


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_thousands_of_headers_end_at_the_header_limit(size: int) -> None:
    """Five thousand headers, fed in any chunk size, get ERROR "too many headers" at 128."""
    _, _, (client,) = connected_clients(1)
    frame = b"SEND\ndestination:/queue/q\n" + b"".join(b"h%d:v\n" % i for i in range(5000))
    pieces = (frame[i : i + size] for i in range(0, len(frame), size))
    most = _feed_until_closed(client, pieces)
    client.error("too many headers")
    assert most <= 130 * len(b"h4999:v\n") + size
    assert client.session.buffered == 0


def test_announced_body_over_the_limit_is_refused_before_it_arrives() -> None:
    """content-length over the limit gets ERROR at once, with receipt-id; nothing is buffered."""
    _, _, (client,) = connected_clients(1, settings=_limited(max_frame_body_bytes=1000))
    client.send_raw(b"SEND\ndestination:/queue/q\nreceipt:big\ncontent-length:1001\n\n")
    error = client.error("frame body too large")
    assert error.headers["receipt-id"] == "big"
    assert client.session.buffered == 0


def test_configured_frame_limits_apply_after_connect() -> None:
    """max_frame_body_bytes, max_headers and max_header_line_bytes from limits: are enforced."""
    settings = _limited(max_frame_body_bytes=100, max_headers=3, max_header_line_bytes=64)
    cases = [
        ({"destination": "/queue/q"}, b"x" * 101, "frame body too large"),
        ({"destination": "/queue/q", "a": "1", "b": "2", "c": "3"}, b"", "too many headers"),
        ({"destination": "/queue/" + "q" * 60}, b"", "header line too long"),
    ]
    for headers, body, message in cases:
        _, _, (client,) = connected_clients(1, settings=settings)
        client.publish("/queue/q", b"x" * 100, receipt="fits")
        assert [f.command for f in client.frames()] == ["RECEIPT"]
        client.send_raw(encode_frame("SEND", headers, body))
        client.error(message)

"""The connections registry: bytes each way, and one log line per connection event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from stompbroker.codec import encode_frame
from stompbroker.core import AccessControl, Broker
from stompbroker.session import SessionSettings, StompSession
from stompbroker.testing import QUIET
from stompbroker.transport import (
    ConnectionLimiter,
    Connections,
    StompFactory,
    WebSocketFactory,
)
from tests.helpers import pending_runner
from tests.test_auth import USERS

CONNECT = encode_frame("CONNECT", {"accept-version": "1.2", "host": "h"})
DISCONNECT = encode_frame("DISCONNECT", {})


class Listener:
    """A TCP and a WebSocket factory sharing one registry, on a Clock."""

    def __init__(
        self, limiter: ConnectionLimiter | None = None, settings: SessionSettings = QUIET
    ) -> None:
        self.clock = Clock()
        self.settings = settings
        self.broker = Broker(clock=self.clock)
        self.connections = Connections(self.clock)
        self.tcp = StompFactory(self._session, limiter, self.connections)
        self.ws = WebSocketFactory(self._session, self.clock, connections=self.connections)
        self._ids = 0

    def _session(self, transport: Any, peer: str) -> StompSession:
        self._ids += 1
        return StompSession(
            self.broker, transport, self.clock, f"c{self._ids}", self.settings, peer
        )

    def accept(self, factory: Any = None) -> tuple[Any, StringTransport]:
        protocol = (factory or self.tcp).buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 5555))
        protocol.makeConnection(transport)
        return protocol, transport


def _messages(events: Sequence[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_namespace") == "stompbroker.connection"]


def test_connect_and_disconnect_are_logged_with_peer_version_duration_and_bytes() -> None:
    """One line when CONNECT succeeds, one when the connection ends, with why and how long."""
    listener = Listener()
    with capturedLogs() as events:
        protocol, transport = listener.accept()
        protocol.dataReceived(CONNECT)
        listener.clock.advance(12.5)
        protocol.dataReceived(DISCONNECT)
        protocol.connectionLost(Failure(ConnectionDone()))
    sent = len(transport.value())
    assert _messages(events) == [
        "connection c1 from 192.0.2.1:5555 (tcp) connected: STOMP 1.2, user None",
        f"connection c1 from 192.0.2.1:5555 closed after 12.5 s: DISCONNECT;"
        f" {len(CONNECT) + len(DISCONNECT)} bytes in, {sent} bytes out",
    ]
    assert listener.connections.open == {}
    assert listener.connections.bytes_out_closed == sent


def test_an_error_frame_is_the_reason_a_connection_ended() -> None:
    """When the broker sent an ERROR, its message is why the connection ended."""
    listener = Listener()
    send = encode_frame("SEND", {})  # no destination
    with capturedLogs() as events:
        protocol, transport = listener.accept()
        protocol.dataReceived(CONNECT)
        protocol.dataReceived(send)
        assert transport.disconnecting
        protocol.connectionLost(Failure(ConnectionDone()))
    assert _messages(events) == [
        "connection c1 from 192.0.2.1:5555 (tcp) connected: STOMP 1.2, user None",
        "connection c1 from 192.0.2.1:5555 closed after 0.0 s:"
        " ERROR sent: missing header 'destination';"
        f" {len(CONNECT) + len(send)} bytes in, {len(transport.value())} bytes out",
    ]


def test_an_escaped_error_message_is_logged_as_the_session_meant_it() -> None:
    """The logged reason is the ERROR's message itself, not its escaped wire form."""
    listener = Listener()
    with capturedLogs() as events:
        protocol, transport = listener.accept()
        protocol.dataReceived(CONNECT)
        (connection,) = listener.connections.open.values()
        connection.session.close_with_error("broker: stopping", "the broker stops")
        protocol.connectionLost(Failure(ConnectionDone()))
    assert b"ERROR\nmessage:broker\\c stopping\n" in transport.value()
    assert ": ERROR sent: broker: stopping; " in _messages(events)[-1]


def test_an_administrators_reason_comes_before_the_sessions() -> None:
    """Closed by an administrator: that is the reason logged, not the ERROR it caused."""
    listener = Listener()
    with capturedLogs() as events:
        protocol, transport = listener.accept()
        protocol.dataReceived(CONNECT)
        assert listener.connections.close("c1")
        assert b"ERROR\nmessage:closed by an administrator\n" in transport.value()
        protocol.connectionLost(Failure(ConnectionDone()))
    assert ": closed by an administrator; " in _messages(events)[-1]


def test_connected_is_logged_when_a_threaded_login_lets_the_client_in() -> None:
    """A password checked in a thread: the CONNECT line comes with CONNECTED, no read later."""
    run, held = pending_runner()
    listener = Listener(settings=replace(QUIET, access=AccessControl(USERS, run=run)))
    login = encode_frame(
        "CONNECT", {"accept-version": "1.2", "host": "h", "login": "bob", "passcode": "b-pass"}
    )
    with capturedLogs() as events:
        protocol, transport = listener.accept()
        protocol.dataReceived(login)
        assert _messages(events) == []
        ((waiting, function, args),) = held
        waiting.callback(function(*args))
        assert transport.value().startswith(b"CONNECTED\n")
    assert _messages(events) == [
        "connection c1 from 192.0.2.1:5555 (tcp) connected: STOMP 1.2, user bob"
    ]


def test_a_client_that_leaves_during_the_login_delay_is_logged_as_leaving() -> None:
    """The transport ends the connection before the delayed ERROR: its reason is logged."""
    listener = Listener(settings=replace(QUIET, access=AccessControl(USERS)))
    wrong = encode_frame(
        "CONNECT", {"accept-version": "1.2", "host": "h", "login": "bob", "passcode": "nope"}
    )
    with capturedLogs() as events:
        protocol, transport = listener.accept()
        protocol.dataReceived(wrong)
        protocol.connectionLost(Failure(ConnectionDone()))
        listener.clock.advance(60)
    assert transport.value() == b""
    assert _messages(events) == [
        f"connection c1 from 192.0.2.1:5555 closed after 0.0 s: closed by the client;"
        f" {len(wrong)} bytes in, 0 bytes out"
    ]


def test_a_client_that_leaves_or_is_lost_says_so() -> None:
    """A clean close by the client and a lost connection read differently."""
    listener = Listener()
    with capturedLogs() as events:
        first, _ = listener.accept()
        first.dataReceived(CONNECT)
        first.connectionLost(Failure(ConnectionDone()))
        second, _ = listener.accept()
        second.connectionLost(Failure(ConnectionLost("reset by peer")))
    closed = _messages(events)
    assert "closed by the client" in closed[1]
    assert "connection lost: Connection to the other side was lost" in closed[2]
    assert "reset by peer; 0 bytes in" in closed[2]
    assert not any("c2" in line and "connected:" in line for line in closed)


def test_a_refused_connection_is_logged_and_never_registered() -> None:
    """A connection over the limits gets one "refused" line and no registry entry."""
    listener = Listener(ConnectionLimiter(max_connections=1))
    first, _ = listener.accept()
    first.dataReceived(CONNECT)
    with capturedLogs() as events:
        listener.accept()
    assert _messages(events) == [
        "connection from 192.0.2.1:5555 (tcp) refused: the broker accepts at most 1 connections"
    ]
    assert len(listener.connections.open) == 1


def test_the_session_writes_through_a_counting_transport() -> None:
    """Every byte the session writes is counted on its way to the socket."""
    listener = Listener()
    protocol, transport = listener.accept()
    protocol.dataReceived(CONNECT)
    protocol.dataReceived(encode_frame("SUBSCRIBE", {"destination": "/queue/q", "id": "1"}))
    listener.broker.send("/queue/q", {}, b"payload")
    (connection,) = listener.connections.open.values()
    assert connection.bytes_out == len(transport.value())
    assert connection.bytes_in == len(CONNECT) + len(
        encode_frame("SUBSCRIBE", {"destination": "/queue/q", "id": "1"})
    )


def _upgrade(listener: Listener) -> tuple[Any, StringTransport, WSConnection]:
    protocol, transport = listener.accept(listener.ws)
    client = WSConnection(ConnectionType.CLIENT)
    protocol.dataReceived(client.send(Request(host="h", target="/ws", subprotocols=["v12.stomp"])))
    client.receive_data(transport.value())
    assert any(isinstance(e, AcceptConnection) for e in client.events())
    transport.clear()
    return protocol, transport, client


def test_websocket_connections_count_stomp_bytes_and_log_a_client_close() -> None:
    """Over WebSocket the registry counts STOMP bytes, and a Close says who ended it."""
    listener = Listener()
    with capturedLogs() as events:
        protocol, _, client = _upgrade(listener)
        protocol.dataReceived(client.send(TextMessage(data=CONNECT.decode())))
        (connection,) = listener.connections.open.values()
        assert connection.transport == "ws" and connection.bytes_in == len(CONNECT)
        assert connection.bytes_out > 0
        protocol.dataReceived(client.send(CloseConnection(code=1001)))
    lines = _messages(events)
    assert lines[0].endswith("(ws) connected: STOMP 1.2, user None")
    assert "WebSocket Close from the client (code 1001)" in lines[1]
    assert listener.connections.open == {}


def test_a_websocket_session_ended_by_error_logs_the_error_not_the_clients_close() -> None:
    """Over WebSocket an ERROR closes first; the client's answering Close is not the reason."""
    listener = Listener()
    with capturedLogs() as events:
        protocol, transport, client = _upgrade(listener)
        protocol.dataReceived(client.send(TextMessage(data=CONNECT.decode())))
        protocol.dataReceived(client.send(TextMessage(data="SEND\n\n\0")))
        client.receive_data(transport.value())
        (close,) = [e for e in client.events() if isinstance(e, CloseConnection)]
        protocol.dataReceived(client.send(close.response()))
    lines = _messages(events)
    assert len(lines) == 2
    assert ": ERROR sent: missing header 'destination'; " in lines[1]
    assert listener.connections.open == {}


def test_plain_http_requests_are_not_connections() -> None:
    """A plain HTTP request on a WebSocket listener registers no STOMP connection."""
    listener = Listener()
    protocol, transport = listener.accept(listener.ws)
    protocol.dataReceived(b"GET /metrics HTTP/1.1\r\nhost: h\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404")
    assert listener.connections.opened == 0

"""The WebSocket adapter, in memory: raw HTTP and WebSocket bytes from a wsproto client.

No sockets, no sleeps: the server side is a listener's twisted.web channel on a
``StringTransport`` (upgraded: its ``WebSocketProtocol``); the client side is wsproto in client
mode, so every byte on the wire is built and read by an independent implementation of RFC 6455.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, formatEvent
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.util import DeferredResource
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

from stompbroker.codec import SERVER_COMMANDS, Frame, FrameParser, encode_frame
from stompbroker.core import Broker
from stompbroker.session import SessionSettings, StompSession
from stompbroker.transport import (
    BEFORE_CONNECT,
    LOGGED_IN,
    Outbox,
    WebSocketFactory,
    WebSocketProtocol,
    WebSocketSettings,
    choose_subprotocol,
    origin_allowed,
    security_headers,
)
from stompbroker.transport._handshake import CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT

STOMPJS_OFFER = ["v10.stomp", "v11.stomp", "v12.stomp"]
QUIET = SessionSettings(heartbeat=(0, 0))


class RecordingSession:
    """Stands in for a StompSession: records what the adapter tells it."""

    def __init__(self, transport: Any, peer: str) -> None:
        self.transport = transport
        self.peer = peer
        self.received: list[bytes] = []
        self.lost = 0
        self.pauses = 0
        self.resumes = 0

    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def connection_lost(self) -> None:
        self.lost += 1

    def peer_alive(self) -> None:
        self.alive = getattr(self, "alive", 0) + 1

    def pause_delivery(self) -> None:
        self.pauses += 1

    def resume_delivery(self) -> None:
        self.resumes += 1


class Peer:
    """A server protocol on a StringTransport and a wsproto client talking to it."""

    def __init__(
        self,
        settings: WebSocketSettings | None = None,
        real_session: bool = False,
        resource: Any = None,
        outbox: bool = False,
    ) -> None:
        self.clock = Clock()
        self.broker = Broker(clock=self.clock)
        self.sessions: list[Any] = []
        factory = WebSocketFactory(
            self._real if real_session else self._recording,
            self.clock,
            settings,
            resource,
            outbox=Outbox(self.clock) if outbox else None,
        )
        #: twisted.web's HTTP channel, which hands the connection over when it upgrades.
        self.channel = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.channel.makeConnection(self.transport)
        self.client = WSConnection(ConnectionType.CLIENT)
        self._read = 0
        self._stomp = FrameParser(commands=SERVER_COMMANDS, version="1.2")

    def _recording(self, transport: Any, peer: str) -> Any:
        session = RecordingSession(transport, peer)
        self.sessions.append(session)
        return session

    def _real(self, transport: Any, peer: str) -> StompSession:
        session = StompSession(self.broker, transport, self.clock, "s1", QUIET, peer)
        self.sessions.append(session)
        return session

    @property
    def protocol(self) -> WebSocketProtocol:
        """The WebSocket half, once upgraded."""
        websocket = self.channel.websocket
        assert isinstance(websocket, WebSocketProtocol), "not upgraded"
        return websocket

    @property
    def producer(self) -> Any:
        """The push producer registered on the transport."""
        return self.transport.producer

    @property
    def session(self) -> Any:
        (session,) = self.sessions
        return session

    # -- bytes in and out ----------------------------------------------------

    def feed(self, data: bytes, piecewise: bool = False) -> None:
        """Hand ``data`` to the server, whole or one byte per dataReceived."""
        if piecewise:
            for i in range(len(data)):
                self.channel.dataReceived(data[i : i + 1])
        else:
            self.channel.dataReceived(data)

    def output(self) -> bytes:
        """What the server wrote since the last call."""
        data = self.transport.value()[self._read :]
        self._read += len(data)
        return data

    def events(self) -> list[Event]:
        """The events the client reads from what the server wrote since the last call."""
        self.client.receive_data(self.output())
        return list(self.client.events())

    def send(self, event: Event, piecewise: bool = False) -> None:
        """The client sends ``event``."""
        self.feed(self.client.send(event), piecewise)

    # -- the handshake -------------------------------------------------------

    def handshake(
        self,
        subprotocols: list[str] | None = None,
        origin: str | None = None,
        target: str = "/ws",
    ) -> list[Event]:
        """Send the upgrade request; return what the client made of the answer."""
        headers = [] if origin is None else [(b"Origin", origin.encode())]
        request = Request(
            host="localhost",
            target=target,
            subprotocols=subprotocols or [],
            extra_headers=headers,
        )
        self.feed(self.client.send(request))
        return self.events()

    def open(self, subprotocols: list[str] | None = None) -> AcceptConnection:
        """Complete the handshake; fail if it is refused."""
        events = self.handshake(STOMPJS_OFFER if subprotocols is None else subprotocols)
        assert isinstance(events[0], AcceptConnection), events
        return events[0]

    # -- STOMP over it -------------------------------------------------------

    def stomp(self, command: str, body: bytes = b"", **headers: str) -> bytes:
        """One STOMP frame's bytes (header names with '_' for '-')."""
        return encode_frame(command, {k.replace("_", "-"): v for k, v in headers.items()}, body)

    def frames(self, events: list[Event] | None = None) -> list[Frame]:
        """The STOMP frames in the messages the server sent since the last look."""
        events = self.events() if events is None else events
        data = b"".join(_payload(e) for e in events if isinstance(e, TextMessage | BytesMessage))
        return self._stomp.feed(data)

    def connect(self) -> Frame:
        """Open the WebSocket and CONNECT over it; return CONNECTED."""
        self.open()
        self.send(TextMessage(data=self.stomp("CONNECT", accept_version="1.2").decode()))
        (connected,) = self.frames()
        return connected


def _payload(event: TextMessage | BytesMessage) -> bytes:
    return event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)


def _raw_http(peer: Peer, request: bytes) -> bytes:
    peer.feed(request)
    return peer.output()


# -- choices that need no connection ----------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),
        (["v12.stomp", "v10.stomp"], "v12.stomp"),
        (["v10.stomp", "v11.stomp"], "v11.stomp"),
        (["v10.stomp"], "v10.stomp"),
        (["stomp"], "stomp"),
        (["stomp", "v11.stomp"], "v11.stomp"),
        (["mqtt", "v10.stomp"], "v10.stomp"),
        (["mqtt"], None),
        (["V12.STOMP"], None),
        ([], None),
    ],
)
def test_subprotocol_choice(offered: list[str], chosen: str | None) -> None:
    """The highest STOMP subprotocol offered wins; none of ours means no subprotocol."""
    assert choose_subprotocol(offered) == chosen


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        ("https://evil.example", (), True),
        (None, ("https://app.example",), True),
        ("https://app.example", ("https://app.example",), True),
        ("HTTPS://App.Example", ("https://app.example/",), True),
        ("https://app.example:8443", ("https://app.example",), False),
        ("http://app.example", ("https://app.example",), False),
        ("https://evil.example", ("https://app.example", "http://localhost:8080"), False),
        ("null", ("https://app.example",), False),
    ],
)
def test_origin_rule(origin: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    """Empty list: any origin; otherwise scheme, host and port must match (case aside)."""
    assert origin_allowed(origin, allowed) is ok


# -- the handshake ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (STOMPJS_OFFER, "v12.stomp"),
        (["v10.stomp", "v11.stomp"], "v11.stomp"),
        (["v10.stomp"], "v10.stomp"),
        (["stomp"], "stomp"),
        (["chat", "v11.stomp"], "v11.stomp"),
    ],
)
def test_handshake_answers_the_chosen_subprotocol(offered: list[str], chosen: str) -> None:
    """The 101 carries Sec-WebSocket-Protocol with the highest STOMP subprotocol offered."""
    peer = Peer()
    accepted = peer.open(offered)
    assert accepted.subprotocol == chosen
    assert peer.protocol.subprotocol == chosen
    assert f"sec-websocket-protocol: {chosen}\r\n".encode() in peer.transport.value().lower()


@pytest.mark.parametrize("offered", [[], ["chat"]])
def test_client_offering_none_of_ours_is_served_without_subprotocol(offered: list[str]) -> None:
    """No STOMP subprotocol offered: the upgrade succeeds, with no Sec-WebSocket-Protocol."""
    peer = Peer(real_session=True)
    accepted = peer.open(offered)
    assert accepted.subprotocol is None
    assert b"sec-websocket-protocol" not in peer.transport.value().lower()
    peer.send(TextMessage(data=peer.stomp("CONNECT", accept_version="1.2").decode()))
    assert [f.command for f in peer.frames()] == ["CONNECTED"]


@pytest.mark.parametrize(
    ("offered", "accept", "version"),
    [
        (["v11.stomp"], "1.0,1.1,1.2", "1.1"),
        (["v10.stomp"], "1.0,1.1,1.2", "1.0"),
        (["v12.stomp"], "1.1,1.2", "1.2"),
        (["stomp"], "1.0,1.1,1.2", "1.2"),
    ],
)
def test_stomp_version_agrees_with_the_subprotocol(
    offered: list[str], accept: str, version: str
) -> None:
    """The STOMP version negotiated on CONNECT never exceeds the subprotocol's."""
    peer = Peer(real_session=True)
    peer.open(offered)
    peer.send(TextMessage(data=peer.stomp("CONNECT", accept_version=accept).decode()))
    (connected,) = peer.frames()
    assert (connected.command, connected.headers["version"]) == ("CONNECTED", version)


def test_stomp_version_beyond_the_subprotocol_is_refused() -> None:
    """v10.stomp with accept-version:1.2 only: ERROR listing the one version allowed."""
    peer = Peer(real_session=True)
    peer.open(["v10.stomp"])
    peer.send(TextMessage(data=peer.stomp("CONNECT", accept_version="1.2").decode()))
    (error,) = peer.frames()
    assert (error.command, error.headers["version"]) == ("ERROR", "1.0")
    assert error.headers["message"] == "unsupported protocol version"


def test_no_extension_is_accepted() -> None:
    """permessage-deflate offered by browsers is declined: messages are never compressed."""
    peer = Peer()
    peer.feed(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    answer = peer.output()
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in answer  # RFC 6455's own example key
    assert b"sec-websocket-extensions" not in answer.lower()


def test_session_gets_the_peer_and_a_push_producer_is_registered() -> None:
    """After the upgrade the session exists, and the protocol is the transport's producer."""
    peer = Peer()
    assert peer.sessions == []
    peer.open()
    assert peer.session.peer == "127.0.0.1:40000 (websocket)"
    assert peer.transport.producer is peer.protocol
    assert peer.transport.streaming is True


def test_back_pressure_pauses_and_resumes_the_session() -> None:
    """The transport's pauseProducing/resumeProducing reach the session, as over TCP."""
    peer = Peer()
    peer.open()
    peer.producer.pauseProducing()
    peer.producer.resumeProducing()
    assert (peer.session.pauses, peer.session.resumes) == (1, 1)


def test_back_pressure_holds_deliveries_with_a_real_session() -> None:
    """A paused connection gets no MESSAGE until resumed."""
    peer = Peer(real_session=True)
    peer.connect()
    peer.send(TextMessage(data=peer.stomp("SUBSCRIBE", id="1", destination="/queue/a").decode()))
    peer.producer.pauseProducing()
    peer.send(TextMessage(data=peer.stomp("SEND", b"x", destination="/queue/a").decode()))
    assert peer.frames() == []
    peer.producer.resumeProducing()
    assert [f.body for f in peer.frames()] == [b"x"]


def test_bytes_after_the_request_in_the_same_read_are_kept() -> None:
    """A client that sends its first message right behind the request loses nothing."""
    peer = Peer()
    request = peer.client.send(Request(host="localhost", target="/ws", subprotocols=STOMPJS_OFFER))
    frame = b"\x81\x85" + b"\x00\x00\x00\x00" + b"hello"  # text, masked with a zero key
    peer.feed(request + frame)
    assert peer.session.received == [b"hello"]


def test_query_string_on_the_path_still_upgrades() -> None:
    """``/ws?token=...`` is the WebSocket path too."""
    peer = Peer()
    assert isinstance(peer.handshake(STOMPJS_OFFER, target="/ws?x=1")[0], AcceptConnection)


def test_configured_path_is_the_only_websocket_path() -> None:
    """With path /stomp, /stomp upgrades and /ws is just another (missing) page."""
    settings = WebSocketSettings(path="/stomp")
    assert isinstance(Peer(settings).handshake([], target="/stomp")[0], AcceptConnection)
    refused = Peer(settings).handshake([], target="/ws")
    assert isinstance(refused[0], RejectConnection)
    assert refused[0].status_code == 404


# -- Origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://app.example", 101),
        ("https://APP.example", 101),
        ("https://evil.example", 403),
        ("http://app.example", 403),
        (None, 101),
    ],
)
def test_origin_is_checked_before_the_upgrade(origin: str | None, status: int) -> None:
    """A page from an origin not in allowed_origins gets 403 and no session."""
    peer = Peer(WebSocketSettings(allowed_origins=("https://app.example",)))
    events = peer.handshake(STOMPJS_OFFER, origin=origin)
    if status == 101:
        assert isinstance(events[0], AcceptConnection)
        assert len(peer.sessions) == 1
    else:
        assert isinstance(events[0], RejectConnection)
        assert events[0].status_code == 403
        assert isinstance(events[1], RejectData)
        assert b"not allowed" in events[1].data
        assert peer.sessions == []
        assert peer.transport.disconnecting


def test_any_origin_when_the_list_is_empty() -> None:
    """The default (empty allowed_origins) lets every page connect."""
    peer = Peer()
    assert isinstance(peer.handshake([], origin="https://anywhere.example")[0], AcceptConnection)


# -- plain HTTP on the same listener --------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"GET /index.html?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            b"426",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
    ],
)
def test_plain_http_is_answered_then_closed(request_bytes: bytes, status: bytes) -> None:
    """Without a handler other paths get 404; a bad upgrade or bad HTTP gets its 4xx; then close."""
    peer = Peer()
    answer = _raw_http(peer, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
    assert b"connection: close" in answer.lower()
    assert peer.transport.disconnecting
    assert peer.sessions == []


@pytest.mark.parametrize("tls", [False, True])
def test_security_headers_on_every_plain_answer(tls: bool) -> None:
    """nosniff always, HSTS only on TLS, and an operator's header replaces a default."""
    headers = security_headers(tls, ("X-Frame-Options: DENY", "X-Content-Type-Options: nosniff"))
    peer = Peer(WebSocketSettings(http_headers=headers))
    answer = _raw_http(peer, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").lower()
    assert answer.startswith(b"http/1.1 404 ")
    assert answer.count(b"x-content-type-options: nosniff") == 1
    assert b"x-frame-options: deny" in answer
    assert (b"strict-transport-security: max-age=31536000" in answer) is tls


def test_head_gets_no_body() -> None:
    """A HEAD request gets the headers of the answer and no body."""
    peer = Peer()
    answer = _raw_http(peer, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.endswith(b"\r\n\r\n")


class _Recording(Resource):
    """A resource answering everything with a small page, remembering what it was asked."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes, bytes, bytes]] = []

    def render(self, request: Any) -> bytes:
        self.seen.append((request.method, request.uri, request.path, request.content.read()))
        request.setHeader(b"content-type", b"text/html")
        request.setHeader(b"x-test", b"1")
        return b"<h1>hi</h1>"


def test_the_resource_tree_serves_other_paths() -> None:
    """The listener's resource (the console, the API) answers non-/ws paths, body and all."""
    resource = _Recording()
    peer = Peer(resource=resource)
    answer = _raw_http(peer, b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n<h1>hi</h1>")
    assert b"x-test: 1" in answer.lower()
    assert resource.seen == [(b"POST", b"/a?b=c", b"/a", b"abc")]


def test_a_late_http_answer_is_sent_when_it_comes(logged_failures: list[LogEvent]) -> None:
    """A resource that answers later (a password check in a thread) is answered when it
    fires; a failure then is a 500; a client gone meanwhile gets nothing."""
    answers: list[Deferred[Any]] = []

    class Later(Resource):
        isLeaf = True  # noqa: N815 (Twisted's name)

        def render(self, request: Any) -> Any:
            answers.append(Deferred())
            return DeferredResource(answers[-1]).render(request)

    peer = Peer(resource=Later())
    peer.feed(b"GET /api/broker HTTP/1.1\r\nHost: x\r\n\r\n")
    assert peer.output() == b""
    answers[0].callback(_Recording())
    answer = peer.output()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"<h1>hi</h1>")

    failing = Peer(resource=Later())
    failing.feed(b"GET /api/broker HTTP/1.1\r\nHost: x\r\n\r\n")
    answers[1].errback(RuntimeError("secret detail"))
    answer = failing.output()
    assert answer.startswith(b"HTTP/1.1 500 ") and b"secret" not in answer
    (failure,) = logged_failures
    assert formatEvent(failure) == "internal error answering GET /api/broker"
    assert failure["log_failure"].check(RuntimeError)

    gone = Peer(resource=Later())
    gone.feed(b"GET /api/broker HTTP/1.1\r\nHost: x\r\n\r\n")
    gone.channel.connectionLost(Failure(ConnectionDone()))
    answers[2].callback(_Recording())
    assert gone.output() == b""


def test_a_resource_failure_is_a_500_without_details(logged_failures: list[LogEvent]) -> None:
    """Our own bug in a resource answers 500 and shows no traceback to the client."""

    class Broken(Resource):
        isLeaf = True  # noqa: N815 (Twisted's name)

        def render(self, request: Any) -> bytes:
            raise RuntimeError("secret detail")

    peer = Peer(resource=Broken())
    answer = _raw_http(peer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert b"secret" not in answer
    (failure,) = logged_failures
    assert formatEvent(failure) == "internal error answering GET /"
    assert failure["log_failure"].check(RuntimeError)


def test_too_large_http_body_is_refused() -> None:
    """A plain request body over the bound gets 413 before it is all buffered."""
    peer = Peer()
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    answer = _raw_http(peer, head + b"a" * 100000)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_request_head_is_bounded() -> None:
    """An endless request head is refused, not buffered (h11's bound)."""
    peer = Peer()
    answer = _raw_http(peer, b"GET / HTTP/1.1\r\nX: " + b"a" * 100_000)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert peer.transport.disconnecting


def test_request_arriving_byte_by_byte() -> None:
    """The upgrade request may arrive one byte at a time."""
    peer = Peer()
    peer.feed(peer.client.send(Request(host="h", target="/ws", subprotocols=["v11.stomp"])), True)
    (accepted,) = peer.events()
    assert isinstance(accepted, AcceptConnection)
    assert accepted.subprotocol == "v11.stomp"


def test_slow_handshake_is_dropped() -> None:
    """A connection that never completes its request is aborted after the timeout."""
    peer = Peer()
    peer.feed(b"GET /ws HTTP/1.1\r\n")
    peer.clock.advance(HANDSHAKE_TIMEOUT - 0.1)
    assert not peer.transport.disconnecting
    peer.clock.advance(0.2)
    assert peer.transport.disconnected


def test_no_timer_left_after_the_upgrade() -> None:
    """An open WebSocket has no handshake timer pending."""
    peer = Peer()
    peer.open()
    assert peer.clock.getDelayedCalls() == []


# -- messages --------------------------------------------------------------------------------


def test_text_and_binary_messages_are_one_byte_stream() -> None:
    """Text and binary payloads reach the session as bytes, in order."""
    peer = Peer()
    peer.open()
    peer.send(TextMessage(data="CONNECT\n"))
    peer.send(BytesMessage(data=b"\n\x00"))
    peer.send(TextMessage(data="é"))
    assert peer.session.received == [b"CONNECT\n", b"\n\x00", "é".encode()]


def test_fragments_are_passed_on_as_they_come() -> None:
    """A message in fragments is streamed to the session, not buffered whole."""
    peer = Peer()
    peer.open()
    peer.send(TextMessage(data="CON", message_finished=False))
    assert peer.session.received == [b"CON"]
    peer.send(TextMessage(data="NECT", message_finished=True))
    assert peer.session.received == [b"CON", b"NECT"]


def test_connect_over_websocket_answers_connected_in_a_text_message() -> None:
    """CONNECT in a text message gets CONNECTED back as one text message."""
    peer = Peer(real_session=True)
    peer.open()
    peer.send(TextMessage(data=peer.stomp("CONNECT", accept_version="1.1,1.2").decode()))
    (message,) = peer.events()
    assert isinstance(message, TextMessage)
    (connected,) = peer.frames([message])
    assert connected.command == "CONNECTED"
    assert connected.headers["version"] == "1.2"


def test_several_frames_in_one_message() -> None:
    """CONNECT, SUBSCRIBE, SEND and DISCONNECT in one message are all handled, in order."""
    peer = Peer(real_session=True)
    peer.open()
    data = b"".join(
        [
            peer.stomp("CONNECT", accept_version="1.2"),
            peer.stomp("SUBSCRIBE", id="1", destination="/queue/a", receipt="r1"),
            b"\n",  # a heart-beat between frames
            peer.stomp("SEND", b"hello", destination="/queue/a", receipt="r2"),
        ]
    )
    peer.send(BytesMessage(data=data))
    frames = peer.frames()
    assert [f.command for f in frames] == ["CONNECTED", "RECEIPT", "MESSAGE", "RECEIPT"]
    assert frames[2].body == b"hello"


def test_with_an_outbox_the_frames_of_a_turn_leave_at_its_end_in_order() -> None:
    """What the session writes while one read is handled waits for the end of the reactor
    turn, then goes out in one write, each frame still its own WebSocket message."""
    peer = Peer(real_session=True, outbox=True)
    peer.open()
    peer.clock.advance(0)
    peer.output()
    data = b"".join(
        [
            peer.stomp("CONNECT", accept_version="1.2"),
            peer.stomp("SUBSCRIBE", id="1", destination="/queue/a", receipt="r1"),
            peer.stomp("SEND", b"hello", destination="/queue/a", receipt="r2"),
        ]
    )
    peer.send(BytesMessage(data=data))
    assert peer.transport.value()[peer._read :] == b""
    writes = len(peer.transport.io.getvalue())
    peer.clock.advance(0)
    assert len(peer.transport.io.getvalue()) > writes
    events = peer.events()
    assert len(events) == 4
    frames = peer.frames(events)
    assert [f.command for f in frames] == ["CONNECTED", "RECEIPT", "MESSAGE", "RECEIPT"]


def test_with_an_outbox_a_close_sends_what_the_turn_wrote_first() -> None:
    """A frame written in the turn that ends the connection goes out before it closes."""
    peer = Peer(real_session=True, outbox=True)
    peer.open()
    peer.send(BytesMessage(data=peer.stomp("CONNECT", accept_version="1.2")))
    peer.clock.advance(0)
    assert [f.command for f in peer.frames()] == ["CONNECTED"]
    peer.send(BytesMessage(data=peer.stomp("NOPE")))
    peer.send(CloseConnection(code=1000))
    assert peer.transport.disconnecting
    events = peer.events()
    (error,) = peer.frames(events)
    assert error.command == "ERROR"
    assert error.headers["message"] == "unknown command"
    assert isinstance(events[-1], CloseConnection)


def test_the_messages_of_one_read_reach_the_session_at_once_in_order() -> None:
    """Three messages in one TCP read are one hand-over to the session, in order; a Ping
    between messages splits it there."""
    peer = Peer()
    peer.open()
    first = [peer.client.send(TextMessage(data=text)) for text in ("CONNECT\n", "a", "b")]
    peer.feed(
        b"".join([*first, peer.client.send(Ping(b"x")), peer.client.send(TextMessage(data="c"))])
    )
    assert peer.session.received == [b"CONNECT\nab", b"c"]


def test_an_error_midway_through_a_read_stops_the_rest() -> None:
    """A bad frame among the messages of one read gets its ERROR; a SEND behind it is not
    delivered, as over TCP."""
    peer = Peer(real_session=True)
    peer.connect()
    peer.send(TextMessage(data=peer.stomp("SUBSCRIBE", id="1", destination="/queue/q").decode()))
    messages = [
        peer.stomp("SEND", b"before", destination="/queue/q"),
        b"NOT-A-COMMAND\n\n\x00",
        peer.stomp("SEND", b"after", destination="/queue/q"),
    ]
    peer.feed(b"".join(peer.client.send(BytesMessage(data=m)) for m in messages))
    frames = peer.frames()
    assert [f.command for f in frames] == ["MESSAGE", "ERROR"]
    assert frames[0].body == b"before"
    assert peer.broker.queue_depth("q") == 0


@pytest.mark.parametrize("piecewise", [False, True])
def test_one_frame_over_several_messages(piecewise: bool) -> None:
    """A frame split over several messages (and TCP reads of one byte) is one frame."""
    peer = Peer(real_session=True)
    peer.connect()
    peer.send(TextMessage(data=peer.stomp("SUBSCRIBE", id="1", destination="/topic/t").decode()))
    frame = peer.stomp("SEND", b"split body", destination="/topic/t")
    for start in range(0, len(frame), 7):
        peer.send(BytesMessage(data=frame[start : start + 7]), piecewise)
    (message,) = peer.frames()
    assert (message.command, message.body) == ("MESSAGE", b"split body")


def test_utf8_frames_go_out_as_text_and_others_as_binary() -> None:
    """A MESSAGE whose body is not UTF-8 is sent as a binary message; the rest as text."""
    peer = Peer(real_session=True)
    peer.connect()
    peer.send(TextMessage(data=peer.stomp("SUBSCRIBE", id="1", destination="/queue/b").decode()))
    peer.send(BytesMessage(data=peer.stomp("SEND", b"\xff\xfe\x00\x01", destination="/queue/b")))
    peer.send(
        TextMessage(data=peer.stomp("SEND", "ünïcode".encode(), destination="/queue/b").decode())
    )
    events = peer.events()
    assert [type(e) for e in events] == [BytesMessage, TextMessage]
    assert [f.body for f in peer.frames(events)] == [b"\xff\xfe\x00\x01", "ünïcode".encode()]


def test_large_message_round_trip() -> None:
    """A 1 MiB body sent in one message comes back whole in one message."""
    peer = Peer(real_session=True)
    peer.connect()
    peer.send(TextMessage(data=peer.stomp("SUBSCRIBE", id="1", destination="/queue/big").decode()))
    body = bytes(range(256)) * 4096
    peer.send(BytesMessage(data=peer.stomp("SEND", body, destination="/queue/big")))
    events = peer.events()
    assert len(events) == 1
    (message,) = peer.frames(events)
    assert message.body == body


def test_message_over_the_bound_closes_with_1009() -> None:
    """A message larger than max_message_bytes closes the WebSocket (1009), session detached."""
    peer = Peer(WebSocketSettings(max_message_bytes=100))
    peer.open()
    peer.send(BytesMessage(data=b"a" * 60, message_finished=False))
    peer.send(BytesMessage(data=b"a" * 60))
    events = peer.events()
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == CloseReason.MESSAGE_TOO_BIG
    assert peer.session.received == [b"a" * 60]
    assert peer.session.lost == 1


def test_bound_counts_per_message() -> None:
    """Many messages each under the bound are fine, however much they add up to."""
    peer = Peer(WebSocketSettings(max_message_bytes=100))
    peer.open()
    for _ in range(5):
        peer.send(BytesMessage(data=b"a" * 90))
    assert len(peer.session.received) == 5
    assert peer.events() == []


def test_ping_is_answered_with_pong() -> None:
    """A Ping gets a Pong with the same payload; the session sees nothing."""
    peer = Peer()
    peer.open()
    peer.send(Ping(payload=b"are you there"))
    assert peer.events() == [Pong(payload=b"are you there")]
    assert peer.session.received == []


def test_unsolicited_pong_is_ignored() -> None:
    """A Pong nobody asked for changes nothing."""
    peer = Peer()
    peer.open()
    peer.send(Pong(payload=b"x"))
    assert peer.events() == []
    assert not peer.transport.disconnecting


# -- closing ---------------------------------------------------------------------------------


def test_client_close_is_answered_and_the_session_detached() -> None:
    """The client's Close gets a Close back, the TCP connection ends, the session is told."""
    peer = Peer(real_session=True)
    peer.connect()
    peer.send(TextMessage(data=peer.stomp("SUBSCRIBE", id="1", destination="/queue/c").decode()))
    assert peer.broker.destinations.queues["c"].subscriptions
    peer.send(CloseConnection(code=1000, reason="bye"))
    (close,) = peer.events()
    assert isinstance(close, CloseConnection)
    assert close.code == 1000
    assert peer.transport.disconnecting
    assert peer.session.closed
    queue = peer.broker.destinations.queues.get("c")
    assert queue is None or not queue.subscriptions
    peer.protocol.connectionLost()
    assert peer.protocol.session is None


def test_session_is_told_once_when_close_and_connection_loss_both_happen() -> None:
    """Close received, then the TCP connection lost: connection_lost reaches the session once."""
    peer = Peer()
    peer.open()
    session = peer.session
    peer.send(CloseConnection(code=1001))
    peer.protocol.connectionLost()
    assert session.lost == 1


def test_connection_lost_without_close_detaches_the_session() -> None:
    """A dropped TCP connection (no Close) detaches the session."""
    peer = Peer()
    peer.open()
    session = peer.session
    peer.protocol.connectionLost()
    assert session.lost == 1


def test_disconnect_sends_receipt_then_close_and_waits_for_the_answer() -> None:
    """DISCONNECT: RECEIPT, then a Close 1000; TCP ends when the client answers the Close."""
    peer = Peer(real_session=True)
    peer.connect()
    peer.send(TextMessage(data=peer.stomp("DISCONNECT", receipt="bye").decode()))
    events = peer.events()
    assert [type(e) for e in events] == [TextMessage, CloseConnection]
    assert peer.frames(events[:1])[0].headers["receipt-id"] == "bye"
    assert isinstance(events[1], CloseConnection) and events[1].code == 1000
    assert not peer.transport.disconnecting
    peer.send(events[1].response())
    assert peer.transport.disconnecting
    assert peer.clock.getDelayedCalls() == []


def test_close_unanswered_is_aborted_after_the_timeout() -> None:
    """A client that never answers our Close is cut off after CLOSE_TIMEOUT."""
    peer = Peer()
    peer.open()
    peer.session.transport.loseConnection()
    assert isinstance(peer.events()[0], CloseConnection)
    peer.clock.advance(CLOSE_TIMEOUT)
    assert peer.transport.disconnected


def test_writes_after_close_are_dropped() -> None:
    """Once closing, the session's writes (late deliveries, receipts) go nowhere, quietly."""
    peer = Peer()
    peer.open()
    transport = peer.session.transport
    transport.loseConnection()
    before = peer.transport.value()
    transport.write(b"MESSAGE\n\n\x00")
    transport.loseConnection()
    assert peer.transport.value() == before


def test_error_frame_then_close() -> None:
    """A STOMP error (frame before CONNECT) sends ERROR, then a Close."""
    peer = Peer(real_session=True)
    peer.open()
    peer.send(TextMessage(data=peer.stomp("SEND", destination="/queue/a").decode()))
    events = peer.events()
    assert [type(e) for e in events] == [TextMessage, CloseConnection]
    (error,) = peer.frames(events[:1])
    assert (error.command, error.headers["message"]) == ("ERROR", "expected CONNECT")


def test_invalid_utf8_in_text_closes_with_1007() -> None:
    """A text message that is not UTF-8 breaks RFC 6455: Close 1007, session detached."""
    peer = Peer()
    peer.open()
    peer.feed(b"\x81\x82\x00\x00\x00\x00\xff\xfe")  # masked (zero key) text frame, bad UTF-8
    (close,) = peer.events()
    assert isinstance(close, CloseConnection)
    assert close.code == CloseReason.INVALID_FRAME_PAYLOAD_DATA
    assert peer.session.lost == 1
    assert peer.transport.disconnecting


def test_unmasked_client_frame_closes_with_1002() -> None:
    """A client frame without a mask is a protocol error: Close 1002."""
    peer = Peer()
    peer.open()
    peer.feed(b"\x81\x02hi")
    (close,) = peer.events()
    assert isinstance(close, CloseConnection)
    assert close.code == CloseReason.PROTOCOL_ERROR
    assert peer.session.lost == 1


def test_input_after_close_is_ignored() -> None:
    """Bytes that arrive after the connection is done are not processed."""
    peer = Peer()
    peer.open()
    peer.send(CloseConnection(code=1000))
    peer.feed(b"\x81\x82\x00\x00\x00\x00hi")
    assert peer.session.received == []


def test_an_upgraded_connection_before_connect_makes_room_with_an_error() -> None:
    """Upgraded but not logged in: closed for room with ERROR "too many connections", Close."""
    peer = Peer(real_session=True)
    peer.open()
    assert peer.channel.stage() == BEFORE_CONNECT
    peer.channel.make_room("the broker accepts at most 5 connections")
    events = peer.events()
    assert [type(e) for e in events] == [TextMessage, CloseConnection]
    (error,) = peer.frames(events)
    assert (error.command, error.headers["message"]) == ("ERROR", "too many connections")
    assert error.body == (
        b"the broker accepts at most 5 connections: this connection had not completed CONNECT"
        b" and was closed to admit a newer one\n"
    )


def test_a_logged_in_websocket_connection_is_not_one_to_make_room() -> None:
    """After CONNECTED over a WebSocket the connection's stage is logged in."""
    peer = Peer(real_session=True)
    assert peer.channel.stage() == BEFORE_CONNECT  # the HTTP request not even read
    peer.connect()
    assert peer.channel.stage() == LOGGED_IN

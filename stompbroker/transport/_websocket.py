"""STOMP over WebSocket: the upgrade on a WebSocket listener's path, and the WebSocket half
that feeds the same session as TCP.

One connection, once twisted.web has read its request for the WebSocket path (``_web``)::

    request --GET, valid upgrade, Origin allowed: 101, the TCP transport handed over--> open
       +--not GET: 405; bad upgrade: 400/426; Origin refused: 403 (answered, closed)
    open --Close sent (session closed, message too big)--> closing --Close back, or timeout--> done
    open --Close received: answered at once---------------------------------------------------> done

* twisted.web parses the HTTP request; wsproto checks the upgrade, writes the 101 (with the
  chosen ``Sec-WebSocket-Protocol`` and the listener's security headers), and frames and
  unframes messages. Nothing here parses HTTP or WebSocket by hand, and nothing here knows
  STOMP: payloads go to the session as bytes.
* The upgrade takes the connection over from twisted.web's ``HTTPChannel`` (``take_over``):
  the bytes behind the request in the same read, and every later one, go to wsproto.
* Text and binary messages are alike to the session: their bytes, in order, are one stream, so
  several frames in one message and one frame over several messages both work.
* Each write of the session (one frame, or one heart-beat EOL) goes out as one message: text
  when it is UTF-8, binary otherwise (a WebSocket text message must be UTF-8).
* Memory is bounded: wsproto streams payloads (a message is never buffered whole), and a
  message larger than ``max_message_bytes`` closes with 1009.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IAddress, ISSLTransport, ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError
from zope.interface import implementer

from stompbroker.session import StompSession

from ._connections import Connection, Output
from ._handshake import SUBPROTOCOL_VERSIONS, choose_subprotocol, origin_allowed
from ._outbox import Gathered, Outbox
from ._tcp import SessionProducer, describe_peer
from ._web import Abortable, ListenerSite, text

log = Logger(namespace="stompbroker.transport.websocket")

#: WebSocket close codes we send (RFC 6455, 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009


# -- what the session sees ------------------------------------------------------------


@implementer(ITransport)
class _MessageTransport(Output):
    """The session's transport: each write becomes one WebSocket message (bytes counted)."""

    def __init__(self, protocol: WebSocketProtocol) -> None:
        self._protocol = protocol
        if protocol._settings.pings:
            #: Found by the session's heart-beat: a WebSocket Ping the browser answers.
            self.ping = protocol.send_ping

    def write(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self._protocol.send_message(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:  # noqa: N802 (Twisted's name)
        self.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802 (Twisted's name)
        self._protocol.close(CLOSE_NORMAL)

    def getPeer(self) -> IAddress:  # noqa: N802 (Twisted's name)
        return self._protocol._wire.getPeer()

    def getHost(self) -> IAddress:  # noqa: N802 (Twisted's name)
        return self._protocol._wire.getHost()

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """Stop reading from the client (the session asks when the store lags)."""
        self._protocol._wire.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted's name)
        """Read from the client again."""
        self._protocol._wire.resumeProducing()


# -- the listener ---------------------------------------------------------------------


class WebSocketFactory(ListenerSite):
    """One WebSocket listener: twisted.web serves ``resource`` (the console, the API,
    ``/metrics``); ``settings.path`` upgrades to STOMP over WebSocket (``WebSocketUpgrade``).
    With an ``outbox``, what a connection writes in a reactor turn leaves at its end, as on
    TCP (``_outbox``)."""

    def __init__(self, *args: Any, outbox: Outbox | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upgrade = WebSocketUpgrade(self)
        self.outbox = outbox


# -- the upgrade ----------------------------------------------------------------------


class WebSocketUpgrade(Resource):
    """A listener's WebSocket path: checks the opening handshake (method, upgrade headers,
    Origin), answers 101 with the best STOMP subprotocol offered, and hands the connection to
    a ``WebSocketProtocol``."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, factory: WebSocketFactory) -> None:
        super().__init__()
        self.factory = factory

    def render(self, request: Any) -> bytes | int:
        settings = self.factory.settings
        if request.method != b"GET":
            return text(request, 405, "a WebSocket upgrade is a GET\n", ((b"allow", b"GET"),))
        ws = WSConnection(ConnectionType.SERVER)
        raw = request.requestHeaders.getAllRawHeaders()
        try:
            ws.initiate_upgrade_connection([(n, v) for n, vs in raw for v in vs], request.uri)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            if isinstance(hint, RejectConnection):
                status, extra = hint.status_code, hint.headers
            else:
                status, extra = 400, []
            return text(request, status, f"{exc}\n", extra)
        offer = next(event for event in ws.events() if isinstance(event, Request))
        origin = request.getHeader(b"origin")
        origin = None if origin is None else origin.decode("latin-1")
        if not origin_allowed(origin, settings.allowed_origins):
            return text(request, 403, f"origin {origin} is not allowed\n")
        subprotocol = choose_subprotocol(offer.subprotocols)
        headers = list(settings.http_headers)
        accept = AcceptConnection(subprotocol=subprotocol, extra_headers=headers)
        channel = request.channel
        channel.transport.write(ws.send(accept))
        request.setResponseCode(101)
        self.factory.log(request)
        channel.take_over(WebSocketProtocol(self.factory, ws, subprotocol))
        return NOT_DONE_YET


# -- the WebSocket half -----------------------------------------------------------------


class WebSocketProtocol(SessionProducer, Abortable, Protocol):
    """An upgraded connection: WebSocket messages to and from a STOMP session."""

    session: StompSession | None = None
    #: This connection in the listeners' registry (None without one).
    connection: Connection | None = None

    def __init__(self, factory: WebSocketFactory, ws: WSConnection, subprotocol: str | None):
        self._make_session = factory.make_session
        self.connections = factory.connections
        self._clock = factory.clock
        self._settings = factory.settings
        self._ws = ws
        #: The negotiated subprotocol (None when the client offered none of ours).
        self.subprotocol = subprotocol
        self._message_bytes = 0
        self._outbox = factory.outbox
        #: The WebSocket frames written this turn, held to its end (None: no outbox).
        self._gathered: Gathered | None = None

    @property
    def _wire(self) -> Any:
        """The TCP (or TLS) transport under the WebSocket."""
        return self.transport

    # -- Twisted's calls --------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        transport = self._wire
        if self._outbox is not None:
            self._gathered = Gathered(transport, self._outbox)
        peer = describe_peer(transport)
        messages: Any = _MessageTransport(self)
        self.session = self._make_session(messages, f"{peer} (websocket)")
        if self.connections is not None:
            kind = "wss" if ISSLTransport.providedBy(transport) else "ws"
            self.connection = self.connections.add(self.session, peer, kind, messages)
        versions = SUBPROTOCOL_VERSIONS.get(self.subprotocol or "")
        if versions is not None:
            # The STOMP version must agree with the subprotocol chosen.
            self.session.versions = versions
        transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self._done:
            self._read_websocket(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._done = True
        self._cancel_timer()
        self._detach(reason)

    # -- WebSocket messages -----------------------------------------------------

    def _read_websocket(self, data: bytes) -> None:
        ws = self._ws
        assert ws is not None
        ws.receive_data(data)
        # The STOMP bytes of this read's messages go to the session at once, as one TCP read's
        # would (one parse, one pass of the session for the lot), before any other event.
        stomp: list[bytes] = []
        for event in ws.events():
            if isinstance(event, Message):
                if not self._take(event, stomp):
                    return
                continue
            self._feed(stomp)
            if self._done:
                return
            if self.session is not None:
                self.session.peer_alive()  # any other frame (a Pong too) is a heart-beat
            if isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, CloseConnection):
                self._on_close(event)
                return
            if self._done:
                return
        self._feed(stomp)

    def _take(self, event: Message[Any], stomp: list[bytes]) -> bool:
        """Keep a message's data for the session; False if it is over the limit (closed)."""
        data = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
        self._message_bytes += len(data)
        if self._message_bytes > self._settings.max_message_bytes:
            self._feed(stomp)  # what came before it is the client's as much as over TCP
            limit = self._settings.max_message_bytes
            if not self._done:
                self._ended_because(f"WebSocket message larger than {limit} bytes")
                self._detach()
                self.close(CLOSE_TOO_BIG, f"message larger than {limit} bytes")
            return False
        if event.message_finished:
            self._message_bytes = 0
        stomp.append(data)
        return True

    def _feed(self, stomp: list[bytes]) -> None:
        """Hand the kept STOMP bytes to the session (its data is a heart-beat there)."""
        if not stomp:
            return
        data = stomp[0] if len(stomp) == 1 else b"".join(stomp)
        stomp.clear()
        session = self.session
        if session is not None and self._ws_open():
            session.data_received(data)
            if self.connection is not None and self.connections is not None:
                self.connections.received(self.connection, len(data))

    def _on_close(self, event: CloseConnection) -> None:
        ws = self._ws
        assert ws is not None
        connection = self.connection
        if (
            self.session is not None
            and connection is not None
            and connection.closed_by_session is None  # else the client answers our close
        ):
            self._ended_because(f"WebSocket Close from the client (code {event.code})")
        self._detach()
        if ws.state is ConnectionState.REMOTE_CLOSING:
            self._send(event.response())  # the peer began: answer, and we are done
        elif ws.state is ConnectionState.OPEN:
            # wsproto found a protocol violation: say why; the stream cannot be trusted.
            self._send(CloseConnection(code=event.code, reason=event.reason))
        self._lose()

    def _ws_open(self) -> bool:
        return self._ws is not None and self._ws.state is ConnectionState.OPEN

    def send_message(self, data: bytes) -> None:
        """Send ``data`` as one message (the session's writes); dropped once closing."""
        if not self._ws_open():
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._send(BytesMessage(data=data))
        else:
            self._send(TextMessage(data=text))

    def send_ping(self) -> None:
        """Probe the client (on the heart-beat schedule); dropped once closing."""
        if self._ws_open():
            self._send(Ping())

    def close(self, code: int, reason: str = "") -> None:
        """Begin the closing handshake; drop the connection if the peer does not answer."""
        if not self._ws_open():
            return
        self._send(CloseConnection(code=code, reason=reason or None))
        self._cancel_timer()
        self._timer = self._clock.callLater(self._settings.close_timeout, self._abort)

    def _send(self, event: Any) -> None:
        ws = self._ws
        assert ws is not None
        if self._gathered is not None:
            self._gathered.write(ws.send(event))
        else:
            self._wire.write(ws.send(event))

    # -- ending -----------------------------------------------------------------

    def _detach(self, failure: Failure | None = None) -> None:
        """Tell the session, once, that its connection is gone."""
        session, self.session = self.session, None
        if session is not None:
            if self.connection is not None and self.connections is not None:
                self.connections.ended(self.connection, failure)
            session.connection_lost()

    def _ended_because(self, reason: str) -> None:
        if self.connection is not None and self.connection.reason is None:
            self.connection.reason = reason

    def _lose(self) -> None:
        self._done = True
        self._cancel_timer()
        if self._gathered is not None:  # a Close written this turn goes first
            self._gathered.send()
        self._wire.loseConnection()

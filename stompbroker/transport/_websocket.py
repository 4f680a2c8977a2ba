"""STOMP over WebSocket: an HTTP/1.1 listener whose WebSocket path feeds the same session as TCP.

One connection goes through these states::

    request --GET <path>, valid upgrade, Origin allowed: 101--> open
       |  |                                                       |
       |  +--<path>, bad upgrade: 400/405/426; Origin refused: 403-+--> (HTTP answered) done
       +--any other path: the HTTP handler (API, console, else 404)+
                                                                  |
    open --Close sent (session closed, message too big)--> closing --Close back, or timeout--> done
    open --Close received: answered at once---------------------------------------------------> done

* h11 parses the HTTP request; wsproto checks the upgrade, writes the 101 (with the chosen
  ``Sec-WebSocket-Protocol``), and frames and unframes messages. Nothing here parses HTTP or
  WebSocket by hand, and nothing here knows STOMP: payloads go to the session as bytes.
* Text and binary messages are alike to the session: their bytes, in order, are one stream, so
  several frames in one message and one frame over several messages both work.
* Each write of the session (one frame, or one heart-beat EOL) goes out as one message: text
  when it is UTF-8, binary otherwise (a WebSocket text message must be UTF-8).
* Memory is bounded: h11 bounds the request head, wsproto streams payloads (a message is never
  buffered whole), and a message larger than ``max_message_bytes`` closes with 1009.
* Plain HTTP requests get one answer, then the connection closes (no keep-alive).
* A connection over the listeners' shared connection limits gets ``503`` at once, before its
  request is read, and is closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h11
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, ISSLTransport, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError
from zope.interface import implementer

from stompbroker.core import Clock, DelayedCall
from stompbroker.session import StompSession

from ._connections import Connection, Connections, Output
from ._handshake import (
    SUBPROTOCOL_VERSIONS,
    WebSocketSettings,
    choose_subprotocol,
    origin_allowed,
)
from ._http import (
    ALLOW_GET,
    MAX_HTTP_BODY_BYTES,
    TOO_MANY_CONNECTIONS,
    HttpHandler,
    HttpRequest,
    HttpResponse,
    header,
    not_found,
    reason_phrase,
)
from ._tcp import (
    ConnectionLimiter,
    Counted,
    SessionFactory,
    SessionProducer,
    _set_nodelay,
    describe_peer,
)

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


# -- the protocol ---------------------------------------------------------------------


class WebSocketProtocol(SessionProducer, Counted, Protocol):
    """One HTTP connection: answers plain requests, or upgrades and carries a STOMP session."""

    session: StompSession | None = None
    #: The negotiated subprotocol once open (None when the client offered none of ours).
    subprotocol: str | None = None
    #: This connection in the listeners' registry, once upgraded (None without one).
    connection: Connection | None = None

    def __init__(
        self,
        make_session: SessionFactory,
        clock: Clock,
        settings: WebSocketSettings,
        http_handler: HttpHandler,
        limiter: ConnectionLimiter | None = None,
        connections: Connections | None = None,
    ) -> None:
        self._make_session = make_session
        self.limiter = limiter
        self.connections = connections
        self._clock = clock
        self._settings = settings
        self._http_handler = http_handler
        self._http = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._ws: WSConnection | None = None
        self._message_bytes = 0
        self._timer: DelayedCall | None = None
        self._done = False

    @property
    def _wire(self) -> Any:
        """The TCP (or TLS) transport under the WebSocket."""
        return self.transport

    # -- Twisted's calls --------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        refusal = self.take_place(self.transport)
        if refusal is not None:
            if self.connections is not None:
                self.connections.refused(self._peer(), self._kind(), refusal)
            self._wire.write(TOO_MANY_CONNECTIONS)
            self._lose()
            return
        _set_nodelay(self.transport)
        self._timer = self._clock.callLater(self._settings.handshake_timeout, self._abort)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self._done:
            return
        if self._ws is None:
            self._read_request(data)
        else:
            self._read_websocket(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._done = True
        self._cancel_timer()
        self.give_place_back()
        self._detach(reason)

    def make_room(self, why: str) -> None:
        """Close this connection to admit a newer one: dropped if not upgraded yet."""
        if self.session is None:
            self._abort()
            return
        super().make_room(why)

    def _peer(self) -> str:
        return describe_peer(self._wire)

    def _kind(self) -> str:
        return "wss" if ISSLTransport.providedBy(self._wire) else "ws"

    # -- the HTTP request -------------------------------------------------------

    def _read_request(self, data: bytes) -> None:
        http = self._http
        http.receive_data(data)
        while True:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                self._respond(HttpResponse(exc.error_status_hint, f"{exc}\n".encode()))
                return
            if isinstance(event, h11.Request):
                self._request = event
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_HTTP_BODY_BYTES:
                    self._respond(HttpResponse(413, b"request body too large\n"))
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._route()
                return
            else:  # NEED_DATA, or the peer closed
                if isinstance(event, h11.ConnectionClosed):
                    self._lose()
                return

    def _route(self) -> None:
        request = self._request
        assert request is not None
        target = request.target.decode("ascii", "replace")
        if target.split("?", 1)[0] == self._settings.path:
            self._upgrade(request)
            return
        plain = HttpRequest(
            request.method.decode("ascii", "replace"),
            target,
            tuple(request.headers),
            bytes(self._body),
            self._peer(),
        )
        try:
            answer = self._http_handler(plain)
        except Exception:
            answer = self._internal_error(Failure(), plain)
        if isinstance(answer, Deferred):
            answer.addErrback(self._internal_error, plain)
            answer.addCallback(self._respond_unless_gone)
            return
        self._respond(answer)

    def _internal_error(self, failure: Failure, request: HttpRequest) -> HttpResponse:
        log.failure(
            "internal error answering {method} {target}",
            failure,
            method=request.method,
            target=request.target,
        )
        return HttpResponse(500, b"internal error\n")

    def _respond_unless_gone(self, response: HttpResponse) -> None:
        """A late answer (the handler worked off the reactor): for a client still there."""
        if not self._done:
            self._respond(response)

    def _respond(self, response: HttpResponse) -> None:
        """Answer a plain HTTP request with h11, then close."""
        headers = [
            (b"content-type", response.content_type.encode()),
            (b"content-length", b"%d" % len(response.body)),
            (b"connection", b"close"),
            *response.headers,
        ]
        extra = self._settings.http_headers
        if extra:
            names = {name for name, _ in extra}
            headers = [h for h in headers if h[0].lower() not in names] + list(extra)
        http = self._http
        try:
            out = http.send(
                h11.Response(
                    status_code=response.status,
                    headers=headers,
                    reason=reason_phrase(response.status),
                )
            )
            if self._request is None or self._request.method != b"HEAD":
                out = (out or b"") + (http.send(h11.Data(data=response.body)) or b"")
            out = (out or b"") + (http.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            out = b""  # h11 cannot answer in this state: just close
        self._wire.write(out)
        self._lose()

    # -- the upgrade ------------------------------------------------------------

    def _upgrade(self, request: h11.Request) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        if request.method != b"GET":
            self._respond(HttpResponse(405, b"a WebSocket upgrade is a GET\n", headers=ALLOW_GET))
            return
        try:
            ws.initiate_upgrade_connection(list(request.headers), request.target)
        except RemoteProtocolError as exc:
            hint = exc.event_hint
            status, extra = (
                (hint.status_code, list(hint.headers))
                if isinstance(hint, RejectConnection)
                else (400, [])
            )
            self._reject(ws, status, str(exc), extra)
            return
        offer = next(event for event in ws.events() if isinstance(event, Request))
        origin = header(request.headers, b"origin")
        if not origin_allowed(origin, self._settings.allowed_origins):
            self._reject(ws, 403, f"origin {origin} is not allowed")
            return
        self.subprotocol = choose_subprotocol(offer.subprotocols)
        self._cancel_timer()
        self._ws = ws
        transport = self._wire
        transport.write(ws.send(AcceptConnection(subprotocol=self.subprotocol)))
        peer = self._peer()
        messages: Any = _MessageTransport(self)
        self.session = self._make_session(messages, f"{peer} (websocket)")
        if self.connections is not None:
            self.connection = self.connections.add(self.session, peer, self._kind(), messages)
        versions = SUBPROTOCOL_VERSIONS.get(self.subprotocol or "")
        if versions is not None:
            # The STOMP version must agree with the subprotocol chosen.
            self.session.versions = versions
        transport.registerProducer(self, True)
        trailing, _closed = self._http.trailing_data
        if trailing:
            self._read_websocket(trailing)

    def _reject(
        self,
        ws: WSConnection,
        status: int,
        reason: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Refuse the upgrade with ``status`` and a one-line reason, then close."""
        body = f"{reason}\n".encode()
        headers = [
            *(extra or []),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        out = ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
        out += ws.send(RejectData(data=body, body_finished=True))
        self._wire.write(out)
        self._lose()

    # -- WebSocket messages -----------------------------------------------------

    def _read_websocket(self, data: bytes) -> None:
        ws = self._ws
        assert ws is not None
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, Message):
                self._on_message(event)  # its data reaches the session: a heart-beat there
                if self._done:
                    return
                continue
            if self.session is not None:
                self.session.peer_alive()  # any other frame (a Pong too) is a heart-beat
            if isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, CloseConnection):
                self._on_close(event)
                return
            if self._done:
                return

    def _on_message(self, event: Message[Any]) -> None:
        data = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
        self._message_bytes += len(data)
        if self._message_bytes > self._settings.max_message_bytes:
            limit = self._settings.max_message_bytes
            self._ended_because(f"WebSocket message larger than {limit} bytes")
            self._detach()
            self.close(CLOSE_TOO_BIG, f"message larger than {limit} bytes")
            return
        if event.message_finished:
            self._message_bytes = 0
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
        self._wire.loseConnection()

    def _abort(self) -> None:
        self._timer = None
        self._done = True
        self._wire.abortConnection()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class WebSocketFactory(Factory):
    """Makes a ``WebSocketProtocol`` per accepted connection of one HTTP listener."""

    noisy = False

    def __init__(
        self,
        make_session: SessionFactory,
        clock: Clock,
        settings: WebSocketSettings | None = None,
        http_handler: HttpHandler = not_found,
        limiter: ConnectionLimiter | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.make_session = make_session
        self.clock = clock
        self.settings = settings or WebSocketSettings()
        self.http_handler = http_handler
        #: Shared with the other listeners' factories; None: no limit.
        self.limiter = limiter
        #: The registry of open connections, shared likewise; None: not tracked.
        self.connections = connections

    def buildProtocol(self, addr: Any) -> WebSocketProtocol:  # noqa: N802
        protocol = WebSocketProtocol(
            self.make_session,
            self.clock,
            self.settings,
            self.http_handler,
            self.limiter,
            self.connections,
        )
        protocol.factory = self
        return protocol

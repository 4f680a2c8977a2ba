"""HTTP on a WebSocket listener: a twisted.web ``Site`` whose WebSocket path upgrades.

One connection goes through these states::

    connected --over the connection limits: 503, closed--------------------------------> done
        |
        +--request read (twisted.web's HTTPChannel)--> the path is the WebSocket one?
        |     yes: the upgrade resource (``_websocket``): 101, the channel hands the TCP
        |          transport to the WebSocket half; or 400/403/405/426, closed
        |     no:  the resource tree (console, /api/, /metrics; 404 otherwise): one answer,
        |          then closed (no keep-alive)
        +--bad request line or header: 400; head over 16 KiB: 431; body over 64 KiB: 413;
        |  no complete request within the handshake timeout: dropped

Every answer written here or by a resource carries the listener's security headers
(``WebSocketSettings.http_headers``), replacing an answer's own of the same name; each request
answered through the tree is logged in the combined log format (``access_log``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, combinedLogFormatter, datetimeToLogString
from twisted.web.resource import EncodingResourceWrapper, IResource, Resource
from twisted.web.server import GzipEncoderFactory, Request, Site

from stompbroker.core import Clock, DelayedCall

from ._connections import Connections
from ._handshake import WebSocketSettings
from ._tcp import ConnectionLimiter, Counted, SessionFactory, _set_nodelay, describe_peer

log = Logger(namespace="stompbroker.transport.http")
#: One event per answered request: ``{line}`` in the combined log format.
access_log = Logger(namespace="stompbroker.http.access")

#: The largest body of a plain HTTP request (the upgrade request has none).
MAX_HTTP_BODY_BYTES = 64 * 1024
#: The largest request head: request line and header lines together.
MAX_HTTP_HEAD_BYTES = 16 * 1024

#: The ``Server`` header of every answer (twisted.web's would name its version).
SERVER = b"stompbroker"


def text(request: Any, status: int, message: str, headers: Any = ()) -> bytes:
    """Set ``request`` up to answer ``status`` with a one-line text body; the body."""
    body = message.encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    for name, value in headers:
        request.setHeader(name, value)
    return body


class NotFound(Resource):
    """Whatever nothing serves: ``404 not found``, below it too."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802 (Twisted's name)
        return self

    def render(self, request: Any) -> bytes:
        return text(request, 404, "not found\n")


NOT_FOUND = NotFound()


class _Gzip(EncodingResourceWrapper):
    """``EncodingResourceWrapper`` with gzip, wrapping the children it hands out too (twisted
    only encodes for the resource the lookup ends at); not for a ``Range`` request."""

    def __init__(self, original: Any) -> None:
        super().__init__(original, [GzipEncoderFactory()])

    def getChildWithDefault(self, name: bytes, request: Any) -> Any:  # noqa: N802
        return _Gzip(self.original.getChildWithDefault(name, request))

    def getEncoder(self, request: Any) -> Any:  # noqa: N802 (Twisted's name)
        if request.getHeader(b"range") is not None:
            return None  # a byte range is of the file as it is, not of its gzip
        request.responseHeaders.addRawHeader(b"vary", b"Accept-Encoding")
        return super().getEncoder(request)


def gzipped(resource: Any) -> IResource:
    """``resource`` and everything below it, gzip-encoded for clients that accept it."""
    return _Gzip(resource)


def raw_answer(status: int, message: str, headers: Any = ()) -> bytes:
    """A whole ``Connection: close`` answer with a text body, for what no request carries."""
    body = message.encode()
    fields = {
        b"content-type": b"text/plain; charset=utf-8",
        b"content-length": b"%d" % len(body),
        b"connection": b"close",
    }
    fields.update(headers)
    head = b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())
    head += b"".join(b"%s: %s\r\n" % field for field in fields.items())
    return head + b"\r\n" + body


class _Request(Request):
    """A request on a WebSocket listener: the listener's headers on its answer; HTTP/1.1
    without ``Host`` refused; our own failures logged, answered 500 without details."""

    channel: Any
    _body_bytes = 0

    def process(self) -> None:
        if self.clientproto == b"HTTP/1.1" and not self.requestHeaders.hasHeader(b"host"):
            self.site = self.channel.site
            self.write(text(self, 400, "an HTTP/1.1 request needs a Host header\n"))
            self.finish()
            return
        super().process()

    def gotLength(self, length: int | None) -> None:  # noqa: N802 (Twisted's name)
        if length is not None and length > MAX_HTTP_BODY_BYTES:
            self.channel.refuse(413, "request body too large\n")
            return
        self._body_bytes = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self._body_bytes += len(data)
        if self._body_bytes > MAX_HTTP_BODY_BYTES:  # chunked: no length said beforehand
            self.channel.refuse(413, "request body too large\n")
            return
        super().handleContentChunk(data)

    _pulled: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # noqa: N802
        """A pull producer (``static.File``'s, for the console's small files) is drained at
        once, not through twisted's global cooperator (which the global reactor runs)."""
        if streaming:
            super().registerProducer(producer, streaming)
            return
        self._pulled = producer
        while self._pulled is producer and self.channel is not None and not self.finished:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:  # noqa: N802 (Twisted's name)
        if self._pulled is not None:
            self._pulled = None
            return
        super().unregisterProducer()

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            headers = self.responseHeaders
            headers.setRawHeaders(b"server", [SERVER])
            for name, value in self.channel.settings.http_headers:
                headers.setRawHeaders(name, [value])
        super().write(data)

    def processingFailed(self, reason: Failure) -> None:  # noqa: N802 (Twisted's name)
        log.failure(
            "internal error answering {method} {target}",
            reason,
            method=self.method.decode("ascii", "replace"),
            target=self.uri.decode("ascii", "replace"),
        )
        if self.startedWriting or self.finished or self.channel is None:
            return
        self.responseHeaders.removeHeader(b"content-encoding")
        self._encoder = None
        self.write(text(self, 500, "internal error\n"))
        self.finish()


class Abortable:
    """A connection with a deadline (``_timer``, set by its owner): ``_abort`` drops it when
    the deadline passes; ``_done`` once it is dropped or closing."""

    transport: Any
    _timer: DelayedCall | None = None
    _done = False

    def _abort(self) -> None:
        self._timer = None
        self._done = True
        self.transport.abortConnection()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class _Channel(Abortable, Counted, HTTPChannel):
    """twisted.web's HTTP/1.1 channel, counted in the connection limits; once upgraded it
    hands every byte (and the end) to the WebSocket half (``websocket``)."""

    site: ListenerSite
    #: The WebSocket half once upgraded (a ``_websocket.WebSocketProtocol``).
    websocket: Any = None
    _head_bytes = 0

    @property
    def session(self) -> Any:  # type: ignore[override]
        """The STOMP session, once upgraded (what ``Counted`` judges the stage by)."""
        return None if self.websocket is None else self.websocket.session

    @property
    def connection(self) -> Any:  # type: ignore[override]
        return None if self.websocket is None else self.websocket.connection

    @property
    def settings(self) -> WebSocketSettings:
        return self.site.settings

    def kind(self) -> str:
        """``ws``, or ``wss`` over TLS."""
        return "wss" if ISSLTransport.providedBy(self.transport) else "ws"

    # -- Twisted's calls --------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        refusal = self.take_place(self.transport)
        if refusal is not None:
            connections = self.site.connections
            if connections is not None:
                connections.refused(describe_peer(self.transport), self.kind(), refusal)
            self._done = True
            headers = self.settings.http_headers
            self.transport.write(raw_answer(503, "too many connections\n", headers))
            self.transport.loseConnection()
            return
        super().connectionMade()
        _set_nodelay(self.transport)
        self._timer = self.site.clock.callLater(self.settings.handshake_timeout, self._abort)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.websocket is not None:
            self.websocket.dataReceived(data)
        elif not self._done:
            super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.websocket is not None:  # the bytes behind the upgrade request, in its read
            self.websocket.dataReceived(data)
        elif not self._done:
            super().rawDataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        self._head_bytes += len(line) + 2
        if self._head_bytes > MAX_HTTP_HEAD_BYTES:
            self.refuse(431, "request head too large\n")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        self.refuse(431, "request head too large\n")

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802
        # twisted.web's one answer to a request it cannot parse: ours carries our headers.
        self.refuse(400, "bad request\n")

    def checkPersistence(self, request: Any, version: bytes) -> bool:  # noqa: N802
        """One answer per connection: every answer says ``Connection: close``."""
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._done = True
        self._cancel_timer()
        self.give_place_back()
        if self.websocket is not None:
            self.websocket.connectionLost(reason)
            return
        super().connectionLost(reason)

    # -- ours -------------------------------------------------------------------

    def refuse(self, status: int, message: str) -> None:
        """Answer a request we will not read further with ``status``, then close."""
        if self._done:
            return
        self._done = True
        self._cancel_timer()
        self.transport.write(raw_answer(status, message, self.settings.http_headers))
        self.loseConnection()

    def take_over(self, websocket: Any) -> None:
        """Hand the TCP transport to ``websocket`` (the 101 is sent): from now on every
        byte read goes to it, and it is the transport's producer."""
        self._cancel_timer()
        self.websocket = websocket
        self.transport.unregisterProducer()  # the channel registered itself when made
        websocket.makeConnection(self.transport)


class ListenerSite(Site):
    """A WebSocket listener's twisted.web ``Site`` over ``resource`` (the console, the API,
    ``/metrics``); a request for ``settings.path`` goes to ``upgrade`` instead (set by the
    subclass, ``_websocket.WebSocketFactory``)."""

    noisy = False
    protocol = _Channel  # type: ignore[assignment]
    requestFactory = _Request  # noqa: N815 (Twisted's name)
    upgrade: IResource = NOT_FOUND

    def __init__(
        self,
        make_session: SessionFactory,
        clock: Clock,
        settings: WebSocketSettings | None = None,
        resource: IResource | None = None,
        limiter: ConnectionLimiter | None = None,
        connections: Connections | None = None,
    ) -> None:
        super().__init__(
            resource if resource is not None else NOT_FOUND,
            reactor=clock,
            timeout=None,  # the channel's own handshake timer bounds the request
        )
        self.make_session = make_session
        self.clock = clock
        self.settings = settings or WebSocketSettings()
        #: Shared with the other listeners' factories; None: no limit.
        self.limiter = limiter
        #: The registry of open connections, shared likewise; None: not tracked.
        self.connections = connections
        self._path = self.settings.path.encode()

    def getResourceFor(self, request: Any) -> Any:  # noqa: N802 (Twisted's name)
        if request.path == self._path:
            request.site = self
            return self.upgrade
        return super().getResourceFor(request)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 (Twisted's name)
        channel = super().buildProtocol(addr)
        channel.limiter = self.limiter
        return channel

    def startFactory(self) -> None:  # noqa: N802 (Twisted's name)
        """Nothing to open: ``log`` writes to twisted.logger, with the time of our clock."""

    def log(self, request: Any) -> None:
        """The access log: one combined-format line for ``request``, as a twisted.logger event."""
        line = combinedLogFormatter(datetimeToLogString(self.clock.seconds()), request)
        access_log.info("{line}", line=line)

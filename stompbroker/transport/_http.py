"""Plain HTTP on a WebSocket listener: requests for other paths, and the answers to them.

h11 parses every request (``_websocket``); this module holds only what a request and its
answer are, and the fixed answer to a connection over the connection limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

from twisted.internet.defer import Deferred

#: The largest body of a plain HTTP request (the upgrade request has none).
MAX_HTTP_BODY_BYTES = 64 * 1024

#: The whole answer to a connection over the limits, sent before its request is read.
_TOO_MANY_BODY = b"too many connections\n"
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n"
    b"\r\n" % len(_TOO_MANY_BODY)
) + _TOO_MANY_BODY


@dataclass(frozen=True)
class HttpRequest:
    """A plain HTTP request for a path other than the WebSocket one."""

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    #: The client's address, ``host:port`` ("" when unknown).
    peer: str = ""

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (see ``header``)."""
        return header(self.headers, name)


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of header ``name`` (given in lower case; any case matches), as
    Latin-1; None when absent."""
    value = next((v for n, v in headers if n.lower() == name), None)
    return None if value is None else value.decode("latin-1")


@dataclass(frozen=True)
class HttpResponse:
    """What an ``HttpHandler`` answers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())


#: The ``Allow`` header of a 405 to anything but GET on the WebSocket path.
ALLOW_GET = ((b"allow", b"GET"),)

#: Answers a plain HTTP request: the management API (``_api``) plugs in here, then the web
#: console (``_console``) at ``/``. A handler with slow work to do (a password check) answers
#: with a Deferred and does the work off the reactor thread.
HttpHandler = Callable[[HttpRequest], "HttpResponse | Deferred[HttpResponse]"]


def not_found(request: HttpRequest) -> HttpResponse:
    """The last handler: whatever nothing else serves is not found."""
    return HttpResponse(404, b"not found\n")


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` ("" for an unknown one)."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""

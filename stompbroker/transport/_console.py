"""The web console on a WebSocket listener: a few static files at ``/``, through
``twisted.web.static.File``.

Routes (every other path is the tree's: ``/api/``, ``/metrics``, else 404)::

    GET /              index.html, with the listener's WebSocket path filled in
    GET /console.js    the page's code (an ES module)
    GET /stomp.js      our small STOMP 1.2 client over WebSocket, which console.js imports
    GET /tables.js     its tables, /charts.js its SVG charts, /admin.js its admin actions
    GET /console.css   its style
    GET /favicon.svg   its icon

The files ship in the package (``stompbroker/console/``) and are read from there at each
request by ``static.File``: ``Last-Modified`` and ``If-Modified-Since``, byte ranges, and here an
``ETag`` (size, time and the page's WebSocket path) with ``If-None-Match``; a match is ``304``.
Answers are gzip-encoded for browsers that accept it (not a byte range). The page talks to the
broker only over STOMP on the listener's own WebSocket path, with the same logins and access
rules as any client: serving it grants nothing. Answers say ``no-cache`` (the browser asks again,
conditionally, after an upgrade) and carry a strict Content-Security-Policy: scripts, styles
and images from this origin only, connections only to it and to its WebSocket, no frames, no
forms posted anywhere.
"""

from __future__ import annotations

import hashlib
import html
import io
import re
from importlib import resources
from typing import Any

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.static import File

from ._web import NOT_FOUND, gzipped, text

#: Where the files live: a directory of package data.
_PACKAGE, _DIRECTORY = "stompbroker", "console"

#: URL path -> (file, content type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/stomp.js": ("stomp.js", "text/javascript; charset=utf-8"),
    "/tables.js": ("tables.js", "text/javascript; charset=utf-8"),
    "/charts.js": ("charts.js", "text/javascript; charset=utf-8"),
    "/admin.js": ("admin.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

#: The placeholder in index.html that becomes the listener's WebSocket path.
PATH_PLACEHOLDER = "{{websocket_path}}"

#: The policy, before the WebSocket origins of the request's host are added to connect-src.
_POLICY = (
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'{sockets}",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)

#: A ``Host`` header we are willing to repeat in the policy: a name or address, and a port.
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")

_ALLOW = ((b"allow", b"GET, HEAD"),)


def content_security_policy(host: str | None) -> str:
    """The page's policy: this origin only, plus WebSocket connections to the same host.

    'self' covers ``ws:``/``wss:`` to the same host in current browsers; the explicit
    origins are for older ones. A ``Host`` that is not a plain host[:port] is not repeated.
    """
    name = (host or "").strip()
    sockets = f" ws://{name} wss://{name}" if _HOST.match(name) else ""
    return "; ".join(_POLICY).format(sockets=sockets)


class _ConsoleFile(File):
    """One shipped file, served by ``static.File`` with the console's headers and an ETag."""

    childNotFound = NOT_FOUND  # type: ignore[assignment]  # noqa: N815 (Twisted's name)

    def __init__(self, path: str, content_type: str, salt: bytes = b"") -> None:
        super().__init__(path)
        self.type, self.encoding = content_type, None
        self._salt = salt

    def getChild(self, path: bytes, request: Any) -> Any:  # noqa: N802 (Twisted's name)
        return NOT_FOUND  # a file has no children

    def etag(self) -> bytes:
        """Changes with the file's size, its time, and what ``_salt`` stands for."""
        self.restat(False)
        seed = b"%d-%r-" % (self.getFileSize(), self.getModificationTime()) + self._salt
        return b'W/"' + hashlib.sha256(seed).hexdigest()[:20].encode() + b'"'

    def render(self, request: Any) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            path = request.path.decode("ascii", "replace")
            return text(request, 405, f"{path} answers GET only\n", _ALLOW)
        host = request.getHeader(b"host")
        request.setHeader(b"cache-control", b"no-cache")
        policy = content_security_policy(None if host is None else host.decode("latin-1"))
        request.setHeader(b"content-security-policy", policy.encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        if request.setETag(self.etag()) is http.CACHED:
            return b""
        return super().render(request)


class _Page(_ConsoleFile):
    """index.html, its placeholder replaced by the listener's WebSocket path."""

    def __init__(self, path: str, content_type: str, websocket_path: str) -> None:
        super().__init__(path, content_type, websocket_path.encode())
        self._websocket_path = html.escape(websocket_path, quote=True).encode()

    def body(self) -> bytes:
        """The page as served."""
        with open(self.path, "rb") as page:
            return page.read().replace(PATH_PLACEHOLDER.encode(), self._websocket_path)

    def openForReading(self) -> io.BytesIO:  # noqa: N802 (Twisted's name)
        return io.BytesIO(self.body())

    def getFileSize(self) -> int:  # noqa: N802 (Twisted's name)
        return len(self.body())


class Console(Resource):
    """The console's files at ``/``; a path that is none of them (nor a child put here, the
    API's) is 404."""

    def __init__(self, websocket_path: str = "/ws") -> None:
        super().__init__()
        directory = resources.files(_PACKAGE).joinpath(_DIRECTORY)
        for url, (name, content_type) in FILES.items():
            path = str(directory.joinpath(name))
            if name == "index.html":
                page = gzipped(_Page(path, content_type, websocket_path))
                self.putChild(b"", page)
                self.putChild(b"index.html", page)
            else:
                self.putChild(url[1:].encode(), gzipped(_ConsoleFile(path, content_type)))

    def getChild(self, path: bytes, request: Any) -> Any:  # noqa: N802 (Twisted's name)
        return NOT_FOUND

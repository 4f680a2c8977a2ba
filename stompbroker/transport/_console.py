"""The web console on a WebSocket listener's plain-HTTP side: a few static files at ``/``.

Routes (every other path goes to the next handler)::

    GET /              index.html, with the listener's WebSocket path filled in
    GET /console.js    the page's code (an ES module)
    GET /stomp.js      our small STOMP 1.2 client over WebSocket, which console.js imports
    GET /tables.js     its tables, /charts.js its SVG charts, /admin.js its admin actions
    GET /console.css   its style
    GET /favicon.svg   its icon

The files ship in the package (``stompbroker/console/``) and are read once, when the handler
is built. The page talks to the broker only over STOMP on the listener's own WebSocket path,
with the same logins and access rules as any client: serving it grants nothing. Answers are
never cached (``no-cache``: the browser asks again after an upgrade) and carry a strict
Content-Security-Policy: scripts, styles and images from this origin only, connections only to
it and to its WebSocket, no frames, no forms posted anywhere.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from importlib import resources

from twisted.internet.defer import Deferred

from ._http import HttpHandler, HttpRequest, HttpResponse, not_found

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


@dataclass(frozen=True)
class Asset:
    """One file of the console, ready to send."""

    body: bytes
    content_type: str


def load_assets(websocket_path: str) -> dict[str, Asset]:
    """The console's files by URL path, index.html naming ``websocket_path``."""
    directory = resources.files(_PACKAGE).joinpath(_DIRECTORY)
    assets = {}
    for path, (name, content_type) in FILES.items():
        body = directory.joinpath(name).read_bytes()
        if name == "index.html":
            quoted = html.escape(websocket_path, quote=True)
            body = body.replace(PATH_PLACEHOLDER.encode(), quoted.encode())
        assets[path] = Asset(body, content_type)
    return assets


def content_security_policy(request: HttpRequest) -> str:
    """The page's policy: this origin only, plus WebSocket connections to the same host.

    'self' covers ``ws:``/``wss:`` to the same host in current browsers; the explicit
    origins are for older ones. A ``Host`` that is not a plain host[:port] is not repeated.
    """
    name = (request.header(b"host") or "").strip()
    sockets = f" ws://{name} wss://{name}" if _HOST.match(name) else ""
    return "; ".join(_POLICY).format(sockets=sockets)


class Console:
    """An ``HttpHandler`` serving the console's files; ``fallback`` answers the rest."""

    def __init__(self, websocket_path: str = "/ws", fallback: HttpHandler = not_found) -> None:
        self.assets = load_assets(websocket_path)
        self.fallback = fallback

    def __call__(self, request: HttpRequest) -> HttpResponse | Deferred[HttpResponse]:
        path = "/" if request.path == "/index.html" else request.path
        asset = self.assets.get(path)
        if asset is None:
            return self.fallback(request)
        if request.method not in ("GET", "HEAD"):
            body = f"{request.path} answers GET only\n".encode()
            return HttpResponse(405, body, headers=_ALLOW)
        headers = (
            (b"cache-control", b"no-cache"),
            (b"content-security-policy", content_security_policy(request).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        )
        return HttpResponse(200, asset.body, asset.content_type, headers)

"""The management API on a WebSocket listener's plain-HTTP side: JSON under ``/api/``,
Prometheus text at ``/metrics``; every other path goes to the next handler.

Routes (``KIND`` and ``NAME`` as in ``core._inspect``; URL-encode ``NAME``)::

    GET  /api/broker                                the broker as a whole
    GET  /api/snapshot                              everything (the statistics topic's message)
    GET  /api/destinations[?kind=KIND]              every destination
    GET  /api/destinations/KIND/NAME                one destination
    POST /api/destinations/KIND/NAME/purge          drop its waiting messages
    POST /api/destinations/KIND/NAME/delete         delete it (nobody may consume from it)
    POST /api/destinations/KIND/NAME/replay[?limit=N]  send its dead letters back
    GET  /api/connections                           every open connection
    GET  /api/connections/ID                        one connection
    POST /api/connections/ID/close                  close it, with an ERROR
    GET  /metrics                                   Prometheus text format

Every request is first put to ``authorize`` (the service decides: an admin's HTTP Basic
credentials, or a loopback listener while no users are configured): ``401`` when it says
no. A POST that carries an ``Origin`` must come from this same origin (a page elsewhere
cannot make a browser act on the broker). Answers are JSON (``{"error": "..."}`` on
failure) and never cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet.defer import Deferred

from stompbroker.core import KINDS, AdminError, Conflict, NotFound

from ._http import HttpHandler, HttpRequest, HttpResponse, not_found
from ._management import Management
from ._prometheus import exposition

#: Decides whether a request may use the API (the service wires HTTP Basic, or loopback).
#: A password check answers later, with a Deferred (it runs in the thread pool).
Authorize = Callable[[HttpRequest], "bool | Deferred[bool]"]

_JSON = "application/json"
_NO_STORE = ((b"cache-control", b"no-store"),)
_CHALLENGE = ((b"www-authenticate", b'Basic realm="stompbroker", charset="UTF-8"'),)
_ACTIONS = ("purge", "delete", "replay")


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def _json(status: int, data: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> HttpResponse:
    body = json.dumps(data, indent=1).encode() + b"\n"
    return HttpResponse(status, body, _JSON, (*_NO_STORE, *headers))


def same_origin(request: HttpRequest) -> bool:
    """Whether the request carries no ``Origin``, or one naming the host it was sent to."""
    origin = request.header(b"origin")
    if origin is None:
        return True
    host = request.header(b"host")
    return host is not None and urlsplit(origin).netloc.lower() == host.strip().lower()


class ManagementApi:
    """An ``HttpHandler`` serving ``/api/`` and ``/metrics``; ``fallback`` answers the rest."""

    def __init__(
        self,
        management: Management,
        authorize: Authorize,
        fallback: HttpHandler = not_found,
    ) -> None:
        self.management = management
        self.authorize = authorize
        self.fallback = fallback

    def __call__(self, request: HttpRequest) -> HttpResponse | Deferred[HttpResponse]:
        path = request.path
        if path != "/metrics" and path != "/api" and not path.startswith("/api/"):
            return self.fallback(request)
        authorized = self.authorize(request)
        if isinstance(authorized, Deferred):
            return authorized.addCallback(lambda ok: self._answer(request, ok))
        return self._answer(request, authorized)

    def _answer(self, request: HttpRequest, authorized: bool) -> HttpResponse:
        """The answer to an API request, once it is known whether it may be served."""
        path = request.path
        try:
            if not authorized:
                raise _Refusal(401, "an admin user's credentials are needed", _CHALLENGE)
            if path == "/metrics":
                self._method(request, "GET")
                body, content_type = exposition(self.management, request.header(b"accept"))
                return HttpResponse(200, body, content_type, _NO_STORE)
            return _json(200, self._route(request, path.split("/")[2:]))
        except _Refusal as refusal:
            return _json(refusal.status, {"error": str(refusal)}, refusal.headers)
        except NotFound as exc:
            return _json(404, {"error": str(exc)})
        except Conflict as exc:
            return _json(409, {"error": str(exc)})
        except AdminError as exc:
            return _json(400, {"error": str(exc)})

    def _method(self, request: HttpRequest, allowed: str) -> None:
        method = "GET" if request.method == "HEAD" else request.method
        if method != allowed:
            allow = ((b"allow", b"GET, HEAD" if allowed == "GET" else allowed.encode()),)
            raise _Refusal(405, f"{request.path} answers {allowed} only", allow)
        if method == "POST" and not same_origin(request):
            raise _Refusal(403, "a POST from a page of another origin is refused")

    def _route(self, request: HttpRequest, parts: list[str]) -> Any:
        parts = [unquote(p) for p in parts]
        if parts and parts[-1] == "":
            parts.pop()  # a trailing slash
        query = parse_qs(urlsplit(request.target).query)
        head = parts[0] if parts else ""
        if head == "broker" and len(parts) == 1:
            self._method(request, "GET")
            return self.management.broker_info()
        if head == "snapshot" and len(parts) == 1:
            self._method(request, "GET")
            return self.management.snapshot()
        if head == "destinations":
            return self._destinations(request, parts[1:], query)
        if head == "connections":
            return self._connections(request, parts[1:])
        raise _Refusal(404, f"no such resource: {request.path}")

    def _destinations(
        self, request: HttpRequest, parts: list[str], query: dict[str, list[str]]
    ) -> Any:
        management = self.management
        if not parts:
            self._method(request, "GET")
            kind = query.get("kind", [None])[0]
            if kind is not None and kind not in KINDS:
                raise _Refusal(400, f"kind must be one of {', '.join(KINDS)}")
            return {"destinations": management.destinations(kind)}
        if len(parts) < 2 or parts[0] not in KINDS or len(parts) > 3:
            raise _Refusal(404, f"no such resource: {request.path} (kinds: {', '.join(KINDS)})")
        kind, name = parts[0], parts[1]
        if len(parts) == 2:
            self._method(request, "GET")
            found = management.destination(kind, name)
            if found is None:
                raise NotFound(f"no {kind} named {name!r}")
            return found
        action = parts[2]
        if action not in _ACTIONS:
            raise _Refusal(404, f"no such action {action!r} (actions: {', '.join(_ACTIONS)})")
        self._method(request, "POST")
        if action == "purge":
            return management.purge(kind, name)
        if action == "delete":
            return management.delete(kind, name)
        return management.replay(kind, name, _limit(query))

    def _connections(self, request: HttpRequest, parts: list[str]) -> Any:
        management = self.management
        if not parts:
            self._method(request, "GET")
            return {"connections": management.connection_list()}
        if len(parts) == 1:
            self._method(request, "GET")
            found = management.connection(parts[0])
            if found is None:
                raise NotFound(f"no open connection {parts[0]!r}")
            return found
        if len(parts) == 2 and parts[1] == "close":
            self._method(request, "POST")
            if not management.close(parts[0]):
                raise NotFound(f"no open connection {parts[0]!r}")
            return {"closed": True}
        raise _Refusal(404, f"no such resource: {request.path}")


def _limit(query: dict[str, list[str]]) -> int:
    raw = query.get("limit", ["0"])[0]
    if not raw.isdigit():
        raise _Refusal(400, f"limit must be a non-negative integer, got {raw!r}")
    return int(raw)

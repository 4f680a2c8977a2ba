"""The management API as twisted.web resources: JSON under ``/api/``, Prometheus text at
``/metrics``.

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

Who may use them is decided above these resources (``monitor``: HTTP Basic through
twisted.cred, or a loopback listener while no users are configured). A POST that carries an
``Origin`` must come from this same origin (a page elsewhere cannot make a browser act on the
broker). Answers are JSON (``{"error": "..."}`` on failure) and never cached; a trailing
slash is the same route.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from twisted.web.resource import Resource

from stompbroker.core import KINDS, AdminError, Conflict, NotFound

from ._management import Management
from ._prometheus import exposition

_ACTIONS = ("purge", "delete", "replay")


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def same_origin(request: Any) -> bool:
    """Whether the request carries no ``Origin``, or one naming the host it was sent to."""
    origin = request.getHeader(b"origin")
    if origin is None:
        return True
    host = request.getHeader(b"host")
    netloc = urlsplit(origin.decode("latin-1")).netloc.lower()
    return host is not None and netloc == host.decode("latin-1").strip().lower()


def _path(request: Any) -> str:
    return str(request.path.decode("ascii", "replace"))


def _name(segment: bytes) -> str:
    return segment.decode("utf-8", "replace")


def _query(request: Any, name: bytes) -> str | None:
    values = request.args.get(name)
    return None if not values else _name(values[0])


def _send(request: Any, status: int, body: bytes, content_type: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(body))
    request.setHeader(b"cache-control", b"no-store")
    return body


def _json(request: Any, status: int, data: Any, headers: tuple[Any, ...] = ()) -> bytes:
    for name, value in headers:
        request.setHeader(name, value)
    body = json.dumps(data, indent=1).encode() + b"\n"
    return _send(request, status, body, b"application/json")


class _Route(Resource):
    """One route: ``answer`` for ``method`` (HEAD as GET); its refusals and the core's
    errors as JSON. A trailing slash is this route again; any other child is not found."""

    method = b"GET"

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802 (Twisted's name)
        return self if path == b"" else _Missing()

    def render(self, request: Any) -> bytes:
        try:
            self._check(request)
            return self.respond(request)
        except _Refusal as refusal:
            return _json(request, refusal.status, {"error": str(refusal)}, refusal.headers)
        except NotFound as exc:
            return _json(request, 404, {"error": str(exc)})
        except Conflict as exc:
            return _json(request, 409, {"error": str(exc)})
        except AdminError as exc:
            return _json(request, 400, {"error": str(exc)})

    def _check(self, request: Any) -> None:
        method = b"GET" if request.method == b"HEAD" else request.method
        allowed = self.method
        if method != allowed:
            allow = ((b"allow", b"GET, HEAD" if allowed == b"GET" else allowed),)
            raise _Refusal(405, f"{_path(request)} answers {allowed.decode()} only", allow)
        if method == b"POST" and not same_origin(request):
            raise _Refusal(403, "a POST from a page of another origin is refused")

    def respond(self, request: Any) -> bytes:
        """The answer's body (headers set on ``request``): ``answer`` as JSON."""
        return _json(request, 200, self.answer(request))

    def answer(self, request: Any) -> Any:
        raise NotImplementedError


class _Missing(_Route):
    """No such route, whatever the method."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, detail: str = "") -> None:
        super().__init__()
        self.detail = detail

    def _check(self, request: Any) -> None:
        raise _Refusal(404, self.detail or f"no such resource: {_path(request)}")


def _no_such_kind(request: Any) -> _Missing:
    return _Missing(f"no such resource: {_path(request)} (kinds: {', '.join(KINDS)})")


class ManagementApi(_Route):
    """``/api``: the routes above."""

    def __init__(self, management: Management) -> None:
        super().__init__()
        self.putChild(b"broker", _Call(management.broker_info))
        self.putChild(b"snapshot", _Call(management.snapshot))
        self.putChild(b"destinations", _Destinations(management))
        self.putChild(b"connections", _Connections(management))

    def _check(self, request: Any) -> None:
        raise _Refusal(404, f"no such resource: {_path(request)}")


class _Call(_Route):
    """A GET answered by a call of the management layer."""

    def __init__(self, call: Any) -> None:
        super().__init__()
        self.call = call

    def answer(self, request: Any) -> Any:
        return self.call()


class _Destinations(_Route):
    """``/api/destinations[?kind=KIND]``; ``KIND/NAME`` below."""

    def __init__(self, management: Management) -> None:
        super().__init__()
        self.management = management

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        if path == b"":
            return self
        kind = _name(path)
        if kind not in KINDS:
            return _no_such_kind(request)
        return _Kind(self.management, kind)

    def answer(self, request: Any) -> Any:
        kind = _query(request, b"kind")
        if kind is not None and kind not in KINDS:
            raise _Refusal(400, f"kind must be one of {', '.join(KINDS)}")
        return {"destinations": self.management.destinations(kind)}


class _Kind(_Missing):
    """``/api/destinations/KIND``: not a route itself; ``NAME`` below."""

    isLeaf = False  # noqa: N815 (Twisted's name)

    def __init__(self, management: Management, kind: str) -> None:
        super().__init__()
        self.management = management
        self.kind = kind

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        if path == b"":
            return self
        return _Destination(self.management, self.kind, _name(path))

    def _check(self, request: Any) -> None:
        raise _Refusal(404, f"no such resource: {_path(request)} (kinds: {', '.join(KINDS)})")


class _Destination(_Route):
    """``/api/destinations/KIND/NAME``; its actions below."""

    def __init__(self, management: Management, kind: str, name: str) -> None:
        super().__init__()
        self.management, self.kind, self.name = management, kind, name

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        if path == b"":
            return self
        action = _name(path)
        if action not in _ACTIONS:
            return _Missing(f"no such action {action!r} (actions: {', '.join(_ACTIONS)})")
        return _Action(self.management, self.kind, self.name, action)

    def answer(self, request: Any) -> Any:
        found = self.management.destination(self.kind, self.name)
        if found is None:
            raise NotFound(f"no {self.kind} named {self.name!r}")
        return found


class _Action(_Route):
    """``POST /api/destinations/KIND/NAME/ACTION``."""

    method = b"POST"

    def __init__(self, management: Management, kind: str, name: str, action: str) -> None:
        super().__init__()
        self.management, self.kind, self.name, self.action = management, kind, name, action

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        return self if path == b"" else _no_such_kind(request)

    def answer(self, request: Any) -> Any:
        management, kind, name = self.management, self.kind, self.name
        if self.action == "purge":
            return management.purge(kind, name)
        if self.action == "delete":
            return management.delete(kind, name)
        return management.replay(kind, name, _limit(request))


class _Connections(_Route):
    """``/api/connections``; ``ID`` below."""

    def __init__(self, management: Management) -> None:
        super().__init__()
        self.management = management

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        return self if path == b"" else _Connection(self.management, _name(path))

    def answer(self, request: Any) -> Any:
        return {"connections": self.management.connection_list()}


class _Connection(_Route):
    """``/api/connections/ID``; ``close`` below."""

    def __init__(self, management: Management, connection_id: str) -> None:
        super().__init__()
        self.management, self.id = management, connection_id

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        if path == b"":
            return self
        return _Close(self.management, self.id) if path == b"close" else _Missing()

    def answer(self, request: Any) -> Any:
        found = self.management.connection(self.id)
        if found is None:
            raise NotFound(f"no open connection {self.id!r}")
        return found


class _Close(_Connection):
    """``POST /api/connections/ID/close``."""

    method = b"POST"

    def getChild(self, path: bytes, request: Any) -> Resource:  # noqa: N802
        return self if path == b"" else _Missing()

    def answer(self, request: Any) -> Any:
        if not self.management.close(self.id):
            raise NotFound(f"no open connection {self.id!r}")
        return {"closed": True}


class Metrics(_Route):
    """``/metrics``: the Prometheus text format, or OpenMetrics when ``Accept`` asks for it."""

    def __init__(self, management: Management) -> None:
        super().__init__()
        self.management = management

    def respond(self, request: Any) -> bytes:
        accept = request.getHeader(b"accept")
        accept = None if accept is None else accept.decode("latin-1")
        body, content_type = exposition(self.management, accept)
        return _send(request, 200, body, content_type.encode())


def _limit(request: Any) -> int:
    raw = _query(request, b"limit") or "0"
    if not raw.isdigit():
        raise _Refusal(400, f"limit must be a non-negative integer, got {raw!r}")
    return int(raw)

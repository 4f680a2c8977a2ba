"""A WebSocket listener's settings, and what an opening handshake decides: the STOMP
subprotocol, and whether the page's ``Origin`` may connect. Pure: ``_websocket`` and ``_web``
apply them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stompbroker.codec import DEFAULT_LIMITS, Limits

#: Subprotocols we speak, best first: STOMP.js offers the v1x ones, some clients ``stomp``.
SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp", "stomp")


def max_message_bytes(limits: Limits) -> int:
    """The largest WebSocket message for frames within ``limits``: one largest STOMP frame
    (head, blank line, body, NUL) and room for heart-beat EOLs. Several frames in one
    message must fit in it together."""
    return limits.max_header_bytes + limits.max_body_bytes + 1024


#: The largest WebSocket message under the default frame limits.
MAX_MESSAGE_BYTES = max_message_bytes(DEFAULT_LIMITS)

#: Seconds a connection may take to send its whole HTTP request.
HANDSHAKE_TIMEOUT = 10.0

#: Seconds we wait for the peer's Close after sending ours before dropping the connection.
CLOSE_TIMEOUT = 5.0


#: The STOMP versions a subprotocol allows ("stomp" allows every version).
SUBPROTOCOL_VERSIONS = {"v10.stomp": ("1.0",), "v11.stomp": ("1.0", "1.1")}


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """The best STOMP subprotocol among ``offered``, or None when it offers none of ours."""
    names = set(offered)
    return next((name for name in SUBPROTOCOLS if name in names), None)


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Whether a browser page from ``origin`` may connect.

    An empty ``allowed`` allows every origin. A request without ``Origin`` does not come
    from a browser page (browsers always send it on WebSocket upgrades) and is allowed.
    """
    if not allowed or origin is None:
        return True
    return _normal_origin(origin) in {_normal_origin(a) for a in allowed}


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


@dataclass(frozen=True)
class WebSocketSettings:
    """One WebSocket listener's choices."""

    path: str = "/ws"
    #: Origins (``scheme://host[:port]``) whose pages may connect; empty: any.
    allowed_origins: tuple[str, ...] = ()
    max_message_bytes: int = MAX_MESSAGE_BYTES
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    close_timeout: float = CLOSE_TIMEOUT
    #: Headers on every HTTP answer (the 101 and the 503 too), replacing an answer's own of
    #: the same name (``security_headers`` builds them: nosniff, HSTS on TLS, the operator's).
    http_headers: tuple[tuple[bytes, bytes], ...] = ()
    #: Send WebSocket Pings on the client's heart-beat schedule; a Pong counts as a beat.
    pings: bool = True


def security_headers(tls: bool, extra: tuple[str, ...] = ()) -> tuple[tuple[bytes, bytes], ...]:
    """The headers a listener adds to every HTTP answer: ``nosniff``; on a TLS
    listener ``Strict-Transport-Security`` (a year); then the operator's ``"Name: value"``
    lines, which replace a default of the same name."""
    headers: dict[bytes, bytes] = {b"x-content-type-options": b"nosniff"}
    if tls:
        headers[b"strict-transport-security"] = b"max-age=31536000"
    for line in extra:
        name, _, value = line.partition(":")
        headers[name.strip().lower().encode("latin-1")] = value.strip().encode("latin-1")
    return tuple(headers.items())

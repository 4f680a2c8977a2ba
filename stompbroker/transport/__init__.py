"""Thin Twisted adapters between sockets and STOMP sessions."""

from ._tcp import (
    ConnectionLimiter,
    SessionFactory,
    StompFactory,
    StompProtocol,
    TooManyConnections,
)
from ._websocket import (
    SUBPROTOCOLS,
    HttpHandler,
    HttpRequest,
    HttpResponse,
    WebSocketFactory,
    WebSocketProtocol,
    WebSocketSettings,
    choose_subprotocol,
    max_message_bytes,
    not_found,
    origin_allowed,
)

__all__ = [
    "SUBPROTOCOLS",
    "ConnectionLimiter",
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "SessionFactory",
    "StompFactory",
    "StompProtocol",
    "TooManyConnections",
    "WebSocketFactory",
    "WebSocketProtocol",
    "WebSocketSettings",
    "choose_subprotocol",
    "max_message_bytes",
    "not_found",
    "origin_allowed",
]

"""Thin Twisted adapters between sockets and STOMP sessions."""

from ._tcp import SessionFactory, StompFactory, StompProtocol
from ._websocket import (
    SUBPROTOCOLS,
    HttpHandler,
    HttpRequest,
    HttpResponse,
    WebSocketFactory,
    WebSocketProtocol,
    WebSocketSettings,
    choose_subprotocol,
    not_found,
    origin_allowed,
)

__all__ = [
    "SUBPROTOCOLS",
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "SessionFactory",
    "StompFactory",
    "StompProtocol",
    "WebSocketFactory",
    "WebSocketProtocol",
    "WebSocketSettings",
    "choose_subprotocol",
    "not_found",
    "origin_allowed",
]

"""Thin Twisted adapters between sockets and STOMP sessions; the HTTP management API."""

from ._api import Authorize, ManagementApi, same_origin
from ._connections import Connection, Connections, CountingTransport
from ._console import Console
from ._handshake import (
    SUBPROTOCOLS,
    WebSocketSettings,
    choose_subprotocol,
    max_message_bytes,
    origin_allowed,
    security_headers,
)
from ._listening import ACCEPT_BATCH, AcceptInBatches, accept_in_batches
from ._management import MAX_LISTED, SCHEMA, Management
from ._prometheus import exposition as metrics_exposition
from ._tcp import (
    BEFORE_CONNECT,
    LOGGED_IN,
    LOGGING_IN,
    ConnectionLimiter,
    SessionFactory,
    StompFactory,
    StompProtocol,
    TooManyConnections,
)
from ._websocket import (
    HttpHandler,
    HttpRequest,
    HttpResponse,
    WebSocketFactory,
    WebSocketProtocol,
    not_found,
)

__all__ = [
    "ACCEPT_BATCH",
    "BEFORE_CONNECT",
    "LOGGED_IN",
    "LOGGING_IN",
    "MAX_LISTED",
    "SCHEMA",
    "SUBPROTOCOLS",
    "AcceptInBatches",
    "Authorize",
    "Connection",
    "ConnectionLimiter",
    "Connections",
    "Console",
    "CountingTransport",
    "HttpHandler",
    "HttpRequest",
    "HttpResponse",
    "Management",
    "ManagementApi",
    "SessionFactory",
    "StompFactory",
    "StompProtocol",
    "TooManyConnections",
    "WebSocketFactory",
    "WebSocketProtocol",
    "WebSocketSettings",
    "accept_in_batches",
    "choose_subprotocol",
    "max_message_bytes",
    "metrics_exposition",
    "not_found",
    "origin_allowed",
    "same_origin",
    "security_headers",
]

"""Thin Twisted adapters between sockets and STOMP sessions; HTTP on twisted.web: the web
console, the management API, ``/metrics``, the upgrade to WebSocket."""

from ._api import ManagementApi, Metrics, same_origin
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
from ._outbox import Outbox
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
from ._web import NOT_FOUND, access_log, gzipped
from ._websocket import WebSocketFactory, WebSocketProtocol, WebSocketUpgrade

__all__ = [
    "ACCEPT_BATCH",
    "BEFORE_CONNECT",
    "LOGGED_IN",
    "LOGGING_IN",
    "MAX_LISTED",
    "NOT_FOUND",
    "SCHEMA",
    "SUBPROTOCOLS",
    "AcceptInBatches",
    "Connection",
    "ConnectionLimiter",
    "Connections",
    "Console",
    "CountingTransport",
    "Management",
    "ManagementApi",
    "Metrics",
    "Outbox",
    "SessionFactory",
    "StompFactory",
    "StompProtocol",
    "TooManyConnections",
    "WebSocketFactory",
    "WebSocketProtocol",
    "WebSocketSettings",
    "WebSocketUpgrade",
    "accept_in_batches",
    "access_log",
    "choose_subprotocol",
    "gzipped",
    "max_message_bytes",
    "metrics_exposition",
    "origin_allowed",
    "same_origin",
    "security_headers",
]

"""Per-connection STOMP state: versions, heart-beats, receipts, errors."""

from ._connect import Accepted, Handshake, Refused
from ._heartbeat import Heartbeat, negotiate, parse_heartbeat
from ._ports import SessionObserver, Transport, refuse_connection
from ._session import ClientError, StompSession
from ._settings import SessionSettings
from ._transaction import Transactions

__all__ = [
    "Accepted",
    "ClientError",
    "Handshake",
    "Heartbeat",
    "Refused",
    "SessionObserver",
    "SessionSettings",
    "StompSession",
    "Transactions",
    "Transport",
    "negotiate",
    "parse_heartbeat",
    "refuse_connection",
]

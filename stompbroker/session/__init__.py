"""Per-connection STOMP state: versions, heart-beats, receipts, errors."""

from ._heartbeat import Heartbeat, negotiate, parse_heartbeat
from ._session import ClientError, StompSession, refuse_connection
from ._settings import SessionSettings
from ._transaction import Transactions

__all__ = [
    "ClientError",
    "Heartbeat",
    "SessionSettings",
    "StompSession",
    "Transactions",
    "negotiate",
    "parse_heartbeat",
    "refuse_connection",
]

"""Per-connection STOMP state: versions, heart-beats, receipts, errors."""

from ._heartbeat import Heartbeat, negotiate, parse_heartbeat
from ._session import ClientError, SessionSettings, StompSession
from ._transaction import Transaction

__all__ = [
    "ClientError",
    "Heartbeat",
    "SessionSettings",
    "StompSession",
    "Transaction",
    "negotiate",
    "parse_heartbeat",
]

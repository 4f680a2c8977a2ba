"""What the composition root chooses for every connection: protocol settings and limits."""

from __future__ import annotations

from dataclasses import dataclass

from stompbroker.codec import DEFAULT_LIMITS, PRE_CONNECT_LIMITS, Limits
from stompbroker.core import AccessControl


@dataclass(frozen=True)
class SessionSettings:
    """Per-connection protocol settings the composition root chooses."""

    server: str = "stompbroker"
    #: What we offer in CONNECTED: (can send every ms, want to receive every ms).
    heartbeat: tuple[int, int] = (10000, 10000)
    #: A client silent this many times its promised interval is disconnected.
    heartbeat_tolerance: float = 2.0
    limits: Limits = DEFAULT_LIMITS
    pre_connect_limits: Limits = PRE_CONNECT_LIMITS
    #: A connection that has not completed CONNECT within this many ms is closed.
    connect_timeout_ms: int = 10_000
    #: Subscriptions (browsing and implicit reply-queue ones included) per connection.
    max_subscriptions: int = 1000
    #: Open transactions per connection.
    max_transactions: int = 100
    #: SEND, ACK and NACK frames staged in one transaction.
    max_frames_per_transaction: int = 10_000
    #: Users, groups and access rules (shared by every session, changed in place on
    #: reload); None: anyone may connect and do anything.
    access: AccessControl | None = None

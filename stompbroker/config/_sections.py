"""The frozen configuration objects: one dataclass per section of the file, with its defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Where ``twistd stompbroker`` looks for its file when ``--config`` is not given.
DEFAULT_CONFIG_PATH = "conf/stompbroker.yaml"


class ConfigError(Exception):
    """An invalid configuration; ``str()`` is the message for the user."""


@dataclass(frozen=True)
class BrokerSection:
    """``broker:``"""

    name: str = "stompbroker"
    data_dir: str = "data"
    #: ``sqlite`` (durable, in data_dir), ``postgresql`` (durable, in the database of the
    #: ``postgresql:`` section) or ``memory`` (nothing survives a restart).
    store: str = "sqlite"
    #: Whether a destination not matched by a ``destinations`` entry is created on first use.
    auto_create: bool = True
    #: Virtual topics' (topic prefix, consumer prefix); None: no virtual topics.
    virtual_topics: tuple[str, str] | None = ("VirtualTopic.", "Consumer.*.")


@dataclass(frozen=True)
class WebSocketListener:
    """One entry of ``listeners.websocket``: STOMP over WebSocket on an HTTP listener."""

    endpoint: str
    path: str = "/ws"
    allowed_origins: tuple[str, ...] = ()
    #: Extra headers (``"Name: value"``) on every plain HTTP answer of this listener.
    http_headers: tuple[str, ...] = ()
    #: WebSocket Pings on the heart-beat schedule; a Pong counts as the client's beat.
    pings: bool = True


@dataclass(frozen=True)
class ListenersSection:
    """``listeners:``"""

    stomp: tuple[str, ...] = ("tcp:61613:interface=127.0.0.1",)
    websocket: tuple[WebSocketListener, ...] = ()


@dataclass(frozen=True)
class HeartbeatSection:
    """``heartbeat:``"""

    send_ms: int = 10000
    receive_ms: int = 10000
    tolerance: float = 2.0


#: The largest header block the parser accepts: no header line can be longer.
MAX_HEADER_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class LimitsSection:
    """``limits:`` against exhaustion. The frame limits apply after CONNECT; before it
    the codec's smaller pre-connect limits apply (a test keeps the defaults equal)."""

    max_connections: int = 10_000
    max_connections_per_address: int = 1000
    connect_timeout_ms: int = 10_000
    max_subscriptions: int = 1000
    max_transactions: int = 100
    max_frames_per_transaction: int = 10_000
    max_frame_body_bytes: int = 16 * 1024 * 1024
    max_headers: int = 128
    max_header_line_bytes: int = 16 * 1024
    #: The listen backlog asked of the kernel for each listener (it grants at most somaxconn).
    listen_backlog: int = 4096


@dataclass(frozen=True)
class DestinationEntry:
    """One entry of ``destinations:``: the policy of a destination or a pattern of them.

    The defaults equal the core's ``DestinationPolicy`` (a test keeps them equal).
    """

    name: str
    persistent: bool | None = None
    max_redeliveries: int = 6
    redelivery_delay_ms: int = 0
    redelivery_backoff: float = 2.0
    max_redelivery_delay_ms: int = 60_000
    dead_letter_queue: str | None = "/queue/DLQ"
    dead_letter_expired: bool = True
    message_ttl_ms: int = 0
    prefetch: int = 1000
    fsync: str = "always"
    memory_window: int = 10_000
    memory_window_bytes: int = 16 * 1024 * 1024
    max_messages: int = 0
    max_bytes: int = 0
    on_full: str = "block"
    max_pending: int = 10_000
    on_slow: str = "disconnect"
    forward_to: tuple[str, ...] = ()
    stamp_user: bool = True
    duplicate_window: int = 20_000
    duplicate_ttl_ms: int = 0
    max_delivery_delay_ms: int = 0
    line: int = 0


@dataclass(frozen=True)
class DurableEntry:
    """One entry of ``durable_subscriptions:``: declared before any subscriber comes."""

    name: str
    topic: str
    client_id: str = ""
    selector: str | None = None
    #: Whether several subscribers may be attached at once (they compete for its messages).
    shared: bool = False
    #: Whether it keeps no message sent on the connection attached to it (``no-local``).
    no_local: bool = False
    line: int = 0


@dataclass(frozen=True)
class UserEntry:
    """One entry of ``security.users`` (or of the users file): a login."""

    name: str
    #: As ``stompbroker-passwd`` prints it: ``scrypt$N$r$p$SALT$KEY``.
    password_hash: str
    groups: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class RuleEntry:
    """One entry of ``security.rules``: permissions on destinations for a principal."""

    #: A user, a group, or ``*`` (every client, anonymous ones too).
    principal: str
    #: Destination patterns (one pattern in the file becomes a tuple of one).
    destinations: tuple[str, ...]
    permissions: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class SecuritySection:
    """``security:`` users, groups, access rules."""

    #: Whether clients without a login are let in; None: when no users are configured.
    allow_anonymous: bool | None = None
    #: A YAML file of more users (``users: [...]``), read with the configuration.
    users_file: str | None = None
    users: tuple[UserEntry, ...] = ()
    rules: tuple[RuleEntry, ...] = ()
    #: The penalty after a failed login (per address and per login), doubled for each
    #: further failure up to the most; a failure older than the last number is forgotten.
    login_delay_ms: int = 1000
    max_login_delay_ms: int = 16000
    login_failures_kept_ms: int = 600_000
    #: Password checks one address may have in flight while it has no failure on record.
    login_checks_per_address: int = 2
    #: ``package.module.Name`` of a twisted.cred checker (class or factory) that decides
    #: logins instead of the users' password hashes; called with ``checker_options``.
    checker: str | None = None
    checker_options: dict[str, Any] | None = None


@dataclass(frozen=True)
class ManagementSection:
    """``management:`` the HTTP API and ``/metrics`` on WebSocket listeners, and statistics."""

    #: Whether WebSocket listeners serve the JSON API under /api/ and /metrics.
    api: bool = True
    #: Rates are averages over this interval; the statistics topic publishes this often.
    stats_interval_ms: int = 5000


@dataclass(frozen=True)
class PostgresqlSection:
    """``postgresql:`` the database of ``broker.store: postgresql``."""

    #: A libpq connection string (several hosts allowed: ``host=db1,db2
    #: target_session_attrs=read-write``); required with ``broker.store: postgresql``
    #: unless ``--dsn`` gives it.
    dsn: str | None = None
    #: This node's name, shown by the server (default: the host name and the STOMP port).
    node: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole file."""

    broker: BrokerSection = field(default_factory=BrokerSection)
    listeners: ListenersSection = field(default_factory=ListenersSection)
    heartbeat: HeartbeatSection = field(default_factory=HeartbeatSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    management: ManagementSection = field(default_factory=ManagementSection)
    postgresql: PostgresqlSection = field(default_factory=PostgresqlSection)
    destinations: tuple[DestinationEntry, ...] = ()
    durable_subscriptions: tuple[DurableEntry, ...] = ()
    source: str = "<defaults>"

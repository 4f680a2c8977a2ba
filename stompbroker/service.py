"""The running broker: one Broker, its listeners, and the sessions they make."""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import ITransport
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from stompbroker import __version__, compiled
from stompbroker.codec import DEFAULT_LIMITS, PRE_CONNECT_LIMITS, Limits
from stompbroker.config import Config, ConfigError, LimitsSection, WebSocketListener
from stompbroker.core import (
    Broker,
    Clock,
    DestinationPolicy,
    IMessageStore,
    PolicyMap,
    Recovery,
    Selector,
    SelectorError,
    VirtualTopics,
    compile_selector,
)
from stompbroker.monitor import Monitoring
from stompbroker.reloading import end_revoked, listener_keys, reload, websocket_key
from stompbroker.security import access_control, configure_access
from stompbroker.session import SessionSettings, StompSession
from stompbroker.store import (
    FILENAME,
    QUEUES_CHANNEL,
    PgListener,
    PgTopicBus,
    PostgresStore,
    SqliteStore,
    StoreRefused,
    dsn_problem,
    dsn_shown,
    psycopg_missing,
)
from stompbroker.transport import (
    AcceptInBatches,
    ConnectionLimiter,
    Outbox,
    StompFactory,
    WebSocketFactory,
    WebSocketSettings,
    max_message_bytes,
    security_headers,
)

log = Logger(namespace="stompbroker")

#: How often queues are swept for expired messages, in seconds.
EXPIRY_SWEEP_SECONDS = 30.0

#: Where Linux says how large a listen backlog it grants.
SOMAXCONN = "/proc/sys/net/core/somaxconn"


def virtual_topics(config: Config) -> VirtualTopics | None:
    """The configuration's ``broker.virtual_topics`` for the core (None when turned off)."""
    prefixes = config.broker.virtual_topics
    return VirtualTopics(*prefixes) if prefixes is not None else None


def policies(config: Config) -> PolicyMap:
    """The configuration's ``destinations`` as the core's policy map."""
    entries = {}
    for entry in config.destinations:
        values = {f.name: getattr(entry, f.name) for f in fields(DestinationPolicy)}
        entries[entry.name] = DestinationPolicy(**values)
    return PolicyMap(entries)


def selectors(config: Config) -> dict[tuple[str, str], Selector | None]:
    """Compile the selectors of the declared durable subscriptions; ConfigError if one is bad."""
    compiled: dict[tuple[str, str], Selector | None] = {}
    for index, entry in enumerate(config.durable_subscriptions):
        selector = None
        if entry.selector is not None and entry.selector.strip():
            try:
                selector = compile_selector(entry.selector)
            except SelectorError as exc:
                raise ConfigError(
                    f"{config.source}:{entry.line}: durable_subscriptions[{index}].selector: {exc}"
                ) from None
        compiled[(entry.client_id, entry.name)] = selector
    return compiled


def declare_durables(broker: Broker, config: Config) -> None:
    """Create the durable subscriptions the configuration declares."""
    compiled = selectors(config)
    for entry in config.durable_subscriptions:
        pattern = entry.topic.removeprefix("/topic/")
        selector = compiled[(entry.client_id, entry.name)]
        broker.declare_durable(
            entry.client_id, entry.name, pattern, selector, entry.shared, entry.no_local
        )
    make_consumer_queues(broker, config)


def make_consumer_queues(broker: Broker, config: Config) -> None:
    """Make the virtual topics' consumer queues the ``destinations`` entries name (no
    wildcard), so that they collect from the start, even if empty at the last shutdown."""
    virtual = broker.destinations.virtual_topics
    if virtual is None:
        return
    for entry in config.destinations:
        name = entry.name.removeprefix("/queue/")
        plain = name != entry.name and not any(c in name for c in "*>")
        if plain and virtual.topic_of(name) is not None:
            broker.destinations.queue(name)


def frame_limits(limits: LimitsSection) -> tuple[Limits, Limits]:
    """The parser's limits after CONNECT from ``limits:``, and before it (never larger)."""
    after = replace(
        DEFAULT_LIMITS,
        max_line_bytes=limits.max_header_line_bytes,
        max_headers=limits.max_headers,
        max_body_bytes=limits.max_frame_body_bytes,
    )
    smaller = {
        f.name: min(getattr(PRE_CONNECT_LIMITS, f.name), getattr(after, f.name))
        for f in fields(Limits)
    }
    return after, Limits(**smaller)


def with_limits(settings: SessionSettings, limits: LimitsSection) -> SessionSettings:
    """``settings`` with the per-connection limits of ``limits:``."""
    after, before = frame_limits(limits)
    return replace(
        settings,
        limits=after,
        pre_connect_limits=before,
        connect_timeout_ms=limits.connect_timeout_ms,
        max_subscriptions=limits.max_subscriptions,
        max_transactions=limits.max_transactions,
        max_frames_per_transaction=limits.max_frames_per_transaction,
    )


def session_settings(config: Config) -> SessionSettings:
    """What every session gets: our name, the heart-beats we offer, the limits."""
    beat = config.heartbeat
    settings = SessionSettings(
        server=f"stompbroker/{__version__}",
        heartbeat=(beat.send_ms, beat.receive_ms),
        heartbeat_tolerance=beat.tolerance,
    )
    return with_limits(settings, config.limits)


class BrokerService(MultiService):
    """Owns the broker and one listening service per configured endpoint.

    ``endpoints`` listen for STOMP over TCP/TLS; each of ``websocket_endpoints`` pairs an
    endpoint with its ``listeners.websocket`` entry (path, allowed origins).
    """

    def __init__(
        self,
        config: Config,
        reactor: Any,
        endpoints: Sequence[Any],
        websocket_endpoints: Sequence[tuple[Any, WebSocketListener]] = (),
        managed: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor: Clock = reactor
        node = secrets.token_hex(4)
        self.store = make_store(config, reactor)
        #: Topics across the nodes that share the PostgreSQL database (None: other stores).
        self.bus = make_bus(config, reactor, node, self.store)
        self.broker = Broker(
            id_prefix=f"ID-{node}",
            clock=reactor,
            policies=policies(config),
            store=self.store,
            auto_create=config.broker.auto_create,
            virtual_topics=virtual_topics(config),
            bus=self.bus,
        )
        #: Fires once the store is open and the listeners listen (or fails why not).
        self.started: Deferred[None] = Deferred()
        sweeper = TimerService(EXPIRY_SWEEP_SECONDS, self.broker.sweep_expired)
        sweeper.clock = reactor
        sweeper.setServiceParent(self)
        self._session_ids = (f"{node}-{n}" for n in itertools.count(1))
        #: Users, groups and rules; every session holds it, a reload changes it in place.
        self.access = access_control(config, reactor)
        self.settings = replace(session_settings(config), access=self.access)
        #: Counts the connections of every listener together.
        self.limiter = ConnectionLimiter(
            config.limits.max_connections, config.limits.max_connections_per_address
        )
        #: Open connections, statistics, the management API (docs/operations.md).
        self.monitoring = Monitoring(config, self.broker, self.store, self.access, reactor)
        self.monitoring.timer.setServiceParent(self)
        #: Holds every connection's writes to the end of the reactor turn (``_outbox``).
        self.outbox = Outbox(reactor)
        self.factory = StompFactory(
            self.make_session, self.limiter, self.monitoring.connections, self.outbox
        )
        self.listeners: list[StreamServerEndpointService] = []
        #: How ``reload`` reads the configuration again and builds endpoints (set by the tap),
        #: and whether SIGHUP triggers it (installed at start, before listening).
        self.reread: Callable[[], Config] | None = None
        self.make_endpoint: Callable[[str], Any] | None = None
        self.reload_on_sighup = False
        self._sighup_installed = False
        #: Listeners built from the configuration (``managed``), which a reload may change.
        self.by_key: dict[tuple[Any, ...], StreamServerEndpointService] = {}
        keys = listener_keys(config) if managed else []
        pairs: list[tuple[Any, WebSocketListener | None]] = [(e, None) for e in endpoints]
        pairs.extend(websocket_endpoints)
        for index, (endpoint, entry) in enumerate(pairs):
            listener = self._listen(endpoint, self._factory(entry))
            if index < len(keys):
                self.by_key[keys[index]] = listener

    def _factory(self, entry: WebSocketListener | None) -> Any:
        if entry is None:
            return self.factory
        settings = WebSocketSettings(
            path=entry.path,
            allowed_origins=entry.allowed_origins,
            pings=entry.pings,
            max_message_bytes=max_message_bytes(self.settings.limits),
            http_headers=security_headers(entry.endpoint.startswith("ssl:"), entry.http_headers),
        )
        return WebSocketFactory(
            self.make_session,
            self.reactor,
            settings,
            resource=self.monitoring.http_resource(entry),
            limiter=self.limiter,
            connections=self.monitoring.connections,
            outbox=self.outbox,
        )

    def _listen(self, endpoint: Any, factory: Any) -> StreamServerEndpointService:
        listener = StreamServerEndpointService(AcceptInBatches(endpoint), factory)
        listener._raiseSynchronously = True
        listener.setServiceParent(self)
        self.listeners.append(listener)
        return listener

    def apply(
        self,
        config: Config,
        new_policies: PolicyMap,
        endpoints: dict[tuple[Any, ...], Any],
    ) -> None:
        """Take a new (checked) configuration into the running broker; see ``reloading``."""
        self.config = config
        self.broker.set_policies(new_policies)
        self.broker.auto_create = config.broker.auto_create
        declare_durables(self.broker, config)
        configure_access(self.access, config)
        end_revoked(self.monitoring.connections)
        self.monitoring.reconfigure(config)
        self.settings = replace(session_settings(config), access=self.access)
        self.limiter.max_connections = config.limits.max_connections
        self.limiter.max_per_address = config.limits.max_connections_per_address
        for key in [key for key in self.by_key if key not in endpoints]:
            listener = self.by_key.pop(key)
            self.listeners.remove(listener)
            listener.disownServiceParent()  # stops listening; its connections go on
        websocket = {websocket_key(e): e for e in config.listeners.websocket}
        for key, endpoint in endpoints.items():
            if key not in self.by_key:
                self.by_key[key] = self._listen(endpoint, self._factory(websocket.get(key)))

    def reload(self) -> bool:
        """Read the configuration again (``reread``) and apply it; False if it was refused."""
        if self.reread is None or self.make_endpoint is None:
            log.warn("this broker was not started from a configuration file: nothing to reload")
            return False
        return reload(self, self.reread, self.make_endpoint)

    def make_session(self, transport: ITransport, peer: str) -> StompSession:
        """A session for a newly accepted connection."""
        return StompSession(
            self.broker, transport, self.reactor, next(self._session_ids), self.settings, peer
        )

    def privilegedStartService(self) -> None:  # noqa: N802
        """twistd binds listeners here, before ``startService``: SIGHUP must work from then."""
        self._handle_sighup()
        super().privilegedStartService()

    def _handle_sighup(self) -> None:
        if self.reload_on_sighup and not self._sighup_installed:
            reactor: Any = self.reactor
            signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload))
            self._sighup_installed = True

    def startService(self) -> None:  # noqa: N802
        """Open the store, recover what it holds, then listen.

        Before the reactor runs (under twistd) the store opens at once and a listener
        that cannot listen raises here; with a running reactor the store opens in
        a thread and ``started`` tells the outcome.
        """
        os.makedirs(self.config.broker.data_dir, exist_ok=True)
        self._handle_sighup()
        log.info(
            "stompbroker {version} ({build}) starting with {source}, data in {data_dir}"
            " ({store} store)",
            version=__version__,
            build="compiled with mypyc" if compiled() else "pure Python, not compiled",
            source=self.config.source,
            data_dir=data_location(self.config),
            store=self.config.broker.store,
        )
        log_backlog(self.config.limits.listen_backlog, somaxconn())
        opened: Deferred[Any] = self.store.open() if self.store is not None else succeed(None)
        opened.addCallback(self._start_bus)
        opened.addCallback(self._recovered)
        outcome: list[object] = []
        opened.addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            refused(outcome[0])
            self.started.errback(outcome[0])
            outcome[0].raiseException()
        elif not outcome:
            opened.addCallbacks(self.started.callback, self._failed_to_start)
        else:
            self.started.callback(None)

    def _start_bus(self, recovery: Recovery | None) -> Any:
        """Once the store is open: start the topic bus, if any, then pass the recovery on."""
        if self.bus is None:
            return recovery
        return self.bus.start().addCallback(lambda _: recovery)

    def _recovered(self, recovery: Recovery | None) -> None:
        if recovery is not None:
            self.broker.recover(recovery)
            log.info(
                "recovered {queues} stored queue(s), {durables} durable subscription(s)",
                queues=len(recovery.queues),
                durables=len(recovery.durables),
            )
        declare_durables(self.broker, self.config)
        super().startService()

    def _failed_to_start(self, failure: Failure) -> None:
        log.failure("stompbroker failed to start", failure)
        self.started.errback(failure)

    def stopService(self) -> Deferred[None]:  # noqa: N802
        """Stop listening and releasing scheduled messages, then the topic bus, then flush and
        close the store."""
        stopped: Deferred[Any] = maybeDeferred(super().stopService)
        self.broker.router.scheduled.stop()
        bus = self.bus
        if bus is not None:
            stopped.addCallback(lambda _: bus.stop())
        store = self.store
        if store is None:
            return stopped.addCallback(lambda _: None)
        return stopped.addCallback(lambda _: store.close())


def somaxconn(path: str = SOMAXCONN) -> int | None:
    """The kernel's cap on a listen backlog (``net.core.somaxconn``); None if unknown."""
    try:
        with open(path) as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def log_backlog(asked: int, cap: int | None) -> None:
    """Say what listen backlog the listeners ask for and what the kernel grants."""
    if cap is None:
        log.info("listen backlog {asked} asked (the kernel's cap is unknown)", asked=asked)
    elif cap < asked:
        log.warn(
            "listen backlog {asked} asked, {granted} granted: net.core.somaxconn is {cap};"
            " raise it for larger reconnect bursts",
            asked=asked,
            granted=cap,
            cap=cap,
        )
    else:
        log.info(
            "listen backlog {asked} granted (net.core.somaxconn is {cap})", asked=asked, cap=cap
        )


def raise_open_files_limit() -> None:
    """Raise this process's soft limit on open files to its hard limit; log both."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            log.warn("open files limit stays {soft}: {error}", soft=soft, error=exc)
            return
        log.info("open files limit raised from {soft} to {hard}", soft=soft, hard=hard)
    else:
        log.info("open files limit {soft}", soft=soft)


def make_store(config: Config, reactor: Any) -> IMessageStore | None:
    """The configured store: SQLite in the data directory, PostgreSQL, or none (memory only)."""
    if config.broker.store == "memory":
        return None
    run = in_worker(reactor)
    if config.broker.store == "postgresql":
        check_store(config)
        dsn = config.postgresql.dsn
        assert dsn is not None
        return PostgresStore(dsn, reactor, run, node_name(config))
    return SqliteStore(os.path.join(config.broker.data_dir, FILENAME), reactor, run)


def make_bus(
    config: Config, reactor: Any, sender: str, store: IMessageStore | None
) -> PgTopicBus | None:
    """With the PostgreSQL store: topic publishes between the nodes sharing its database,
    LISTEN/NOTIFY on a connection of their own (``sender``: this run's node id); the same
    connection wakes the store's shared queues when another node wrote to them (and all of
    them after a reconnection, since notifications were lost meanwhile)."""
    dsn = config.postgresql.dsn
    if config.broker.store != "postgresql" or dsn is None:
        return None
    listener = PgListener(dsn, reactor, in_worker(reactor), node_name(config))
    if isinstance(store, PostgresStore):
        listener.listen(QUEUES_CHANNEL, store.notified)
        shared = store
        listener.reconnected = lambda: shared.wake(None)
    return PgTopicBus(listener, reactor, sender)


def in_worker(reactor: Any) -> Callable[..., Deferred[Any]]:
    """Run a blocking function in the reactor's thread pool (at once before it runs)."""

    def run(function: Any, *args: Any) -> Deferred[Any]:
        # Before the reactor runs (startup), run at once: nothing else is served yet.
        if not getattr(reactor, "running", False):
            return maybeDeferred(function, *args)
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return run


def check_store(config: Config) -> None:
    """ConfigError if the configured store cannot be built: PostgreSQL without a DSN, with
    one that is no libpq connection string, or without psycopg installed."""
    if config.broker.store != "postgresql":
        return
    missing = psycopg_missing()
    if missing is not None:
        raise ConfigError(missing)
    dsn = config.postgresql.dsn
    if dsn is None:
        raise ConfigError(
            f"{config.source}: postgresql.dsn: required with broker.store: postgresql"
            " (or give --dsn)"
        )
    problem = dsn_problem(dsn)
    if problem is not None:
        raise ConfigError(
            f"{config.source}: postgresql.dsn: not a libpq connection string: {problem}"
        )


def data_location(config: Config) -> str:
    """Where the data is, for the start's log line: the data directory, or the database."""
    dsn = config.postgresql.dsn
    if config.broker.store == "postgresql" and dsn is not None:
        return f"the PostgreSQL database {dsn_shown(dsn)!r}"
    return os.path.abspath(config.broker.data_dir)


def node_name(config: Config) -> str:
    """``postgresql.node``, else this host's name and the port of the first listener."""
    if config.postgresql.node is not None:
        return config.postgresql.node
    specs = [*config.listeners.stomp, *(e.endpoint for e in config.listeners.websocket)]
    ports = [part for spec in specs[:1] for part in spec.split(":")[1:2] if part.isdigit()]
    return ":".join([socket.gethostname(), *ports])


def refused(failure: Failure) -> None:
    """A store that refused to open at start: say why in one line and exit (no traceback)."""
    if failure.check(StoreRefused):
        log.critical("stompbroker cannot start: {why}", why=str(failure.value))
        raise SystemExit(1)

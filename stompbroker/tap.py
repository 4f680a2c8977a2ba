"""``twistd stompbroker``: command-line options and the service they build."""

from __future__ import annotations

import gc
import os
from dataclasses import replace
from typing import Any

from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from stompbroker.config import DEFAULT_CONFIG_PATH, Config, ConfigError, WebSocketListener, load
from stompbroker.service import BrokerService, check_store, raise_open_files_limit, selectors

log = Logger(namespace="stompbroker")


class Options(usage.Options):
    """Options override the configuration file."""

    synopsis = (
        "[--config PATH] [--listen ENDPOINT ...] [--listen-ws ENDPOINT ...] [--data-dir DIR]"
        " [--dsn DSN]"
    )
    longdesc = (
        "Runs a STOMP 1.0/1.1/1.2 message broker. Without --config it reads "
        f"{DEFAULT_CONFIG_PATH} when that file exists, else it uses built-in defaults "
        "(listen on tcp:61613:interface=127.0.0.1, no WebSocket listener, data in ./data)."
    )
    optParameters = [  # noqa: N815, RUF012 (Twisted's names)
        [
            "config",
            "c",
            None,
            f"YAML configuration file [default: {DEFAULT_CONFIG_PATH} if present]",
        ],
        ["data-dir", "d", None, "Directory for the broker's data (overrides broker.data_dir)"],
        [
            "dsn",
            None,
            None,
            "PostgreSQL connection string for broker.store: postgresql (overrides postgresql.dsn)",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["listen-ws"] = []

    def opt_listen(self, endpoint: str) -> None:
        """STOMP listener, a Twisted endpoint string such as tcp:61613:interface=127.0.0.1; repeatable; replaces listeners.stomp of the file"""  # noqa: E501
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def opt_listen_ws(self, endpoint: str) -> None:
        """STOMP over WebSocket listener at path /ws, a Twisted endpoint string such as tcp:61614:interface=127.0.0.1 (ssl:... for wss://); repeatable; replaces listeners.websocket of the file"""  # noqa: E501
        self["listen-ws"].append(endpoint)

    def postOptions(self) -> None:  # noqa: N802
        try:
            self["parsed"] = build_config(self)
            selectors(self["parsed"])
            check_store(self["parsed"])
        except ConfigError as exc:
            raise usage.UsageError(str(exc)) from None
        from twisted.internet import reactor

        listeners = self["parsed"].listeners
        backlog = self["parsed"].limits.listen_backlog
        self["endpoints"] = [_endpoint(reactor, spec, backlog) for spec in listeners.stomp]
        self["websocket_endpoints"] = [
            (_endpoint(reactor, entry.endpoint, backlog), entry) for entry in listeners.websocket
        ]


def build_config(options: Any) -> Config:
    """The file's configuration with the command line's overrides applied."""
    path = options["config"]
    if path is not None:
        config = load(path)
    elif os.path.exists(DEFAULT_CONFIG_PATH):
        config = load(DEFAULT_CONFIG_PATH)
    else:
        config = Config()
    if options["listen"]:
        config = replace(
            config, listeners=replace(config.listeners, stomp=tuple(options["listen"]))
        )
    if options["listen-ws"]:
        websocket = tuple(WebSocketListener(endpoint) for endpoint in options["listen-ws"])
        config = replace(config, listeners=replace(config.listeners, websocket=websocket))
    if options["data-dir"]:
        config = replace(config, broker=replace(config.broker, data_dir=options["data-dir"]))
    if options["dsn"]:
        config = replace(config, postgresql=replace(config.postgresql, dsn=options["dsn"]))
    return config


#: The endpoint types whose string takes ``backlog=`` (Twisted's default is 50).
BACKLOG_TYPES = frozenset({"tcp", "ssl", "unix"})


def with_backlog(spec: str, backlog: int) -> str:
    """``spec`` listening with ``backlog``, unless it names its own or its type takes none."""
    kind = spec.split(":", 1)[0].strip().lower()
    if kind not in BACKLOG_TYPES or "backlog=" in spec:
        return spec
    return f"{spec}:backlog={backlog}"


def _endpoint(reactor: Any, spec: str, backlog: int) -> Any:
    try:
        return endpoints.serverFromString(reactor, with_backlog(spec, backlog))
    except (ValueError, TypeError, KeyError) as exc:
        raise usage.UsageError(f"invalid listener endpoint {spec!r}: {exc}") from None


def makeService(options: Options) -> BrokerService:  # noqa: N802
    """Build the broker service (twistd calls this)."""
    from twisted.internet import reactor

    service = BrokerService(
        options["parsed"],
        reactor,
        options["endpoints"],
        options["websocket_endpoints"],
        managed=True,
    )
    service.reread = lambda: build_config(options)
    # A reload's new listeners get the running listen_backlog (a change waits for a restart).
    service.make_endpoint = lambda spec: endpoints.serverFromString(
        reactor, with_backlog(spec, service.config.limits.listen_backlog)
    )
    raise_open_files_limit()
    service.reload_on_sighup = True
    reactor.callWhenRunning(freeze_startup_heap)
    return service


def freeze_startup_heap() -> None:
    """Leave what the start made out of the garbage collector's work from now on.

    Once the reactor runs, the heap holds what stays for the life of the process: modules,
    classes, the configuration, the listeners (about 300,000 objects). Python's full
    collections walk every tracked object, and under load one came every ten thousand
    messages or so, at about 30 ms each: a tenth of the broker's CPU. Frozen (after one
    last collection of the start's garbage), they are skipped; what is made later is
    collected as before.
    """
    gc.collect()
    gc.freeze()
    log.info(
        "{count} objects made at start are left out of garbage collection",
        count=gc.get_freeze_count(),
    )

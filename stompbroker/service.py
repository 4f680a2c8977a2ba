"""The running broker: one Broker, its listeners, and the sessions they make."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService
from twisted.internet.interfaces import ITransport
from twisted.logger import Logger

from stompbroker import __version__
from stompbroker.config import Config, ConfigError, WebSocketListener
from stompbroker.core import (
    Broker,
    Clock,
    DestinationPolicy,
    PolicyMap,
    Selector,
    SelectorError,
    compile_selector,
)
from stompbroker.session import SessionSettings, StompSession
from stompbroker.transport import StompFactory, WebSocketFactory, WebSocketSettings

log = Logger(namespace="stompbroker")

#: How often queues are swept for expired messages, in seconds.
EXPIRY_SWEEP_SECONDS = 30.0


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
        broker.declare_durable(entry.client_id, entry.name, pattern, selector)


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
    ) -> None:
        super().__init__()
        self.config = config
        self.reactor: Clock = reactor
        node = secrets.token_hex(4)
        self.broker = Broker(id_prefix=f"ID-{node}", clock=reactor, policies=policies(config))
        declare_durables(self.broker, config)
        sweeper = TimerService(EXPIRY_SWEEP_SECONDS, self.broker.sweep_expired)
        sweeper.clock = reactor
        sweeper.setServiceParent(self)
        self._session_ids = (f"{node}-{n}" for n in itertools.count(1))
        beat = config.heartbeat
        self.settings = SessionSettings(
            server=f"stompbroker/{__version__}",
            heartbeat=(beat.send_ms, beat.receive_ms),
            heartbeat_tolerance=beat.tolerance,
        )
        self.factory = StompFactory(self.make_session)
        self.listeners: list[StreamServerEndpointService] = []
        for endpoint in endpoints:
            self._listen(endpoint, self.factory)
        for endpoint, entry in websocket_endpoints:
            settings = WebSocketSettings(path=entry.path, allowed_origins=entry.allowed_origins)
            self._listen(endpoint, WebSocketFactory(self.make_session, reactor, settings))

    def _listen(self, endpoint: Any, factory: Any) -> None:
        listener = StreamServerEndpointService(endpoint, factory)
        listener._raiseSynchronously = True
        listener.setServiceParent(self)
        self.listeners.append(listener)

    def make_session(self, transport: ITransport, peer: str) -> StompSession:
        """A session for a newly accepted connection."""
        return StompSession(
            self.broker, transport, self.reactor, next(self._session_ids), self.settings, peer
        )

    def startService(self) -> None:  # noqa: N802
        os.makedirs(self.config.broker.data_dir, exist_ok=True)
        log.info(
            "stompbroker {version} starting with {source}, data in {data_dir}",
            version=__version__,
            source=self.config.source,
            data_dir=os.path.abspath(self.config.broker.data_dir),
        )
        super().startService()

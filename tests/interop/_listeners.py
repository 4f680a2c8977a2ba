"""A broker with a TCP listener and WebSocket listeners, for the interop tests that need
WebSocket (STOMP.js, the web console, the management API and stompbroker-admin).

A module of its own rather than conftest.py because it builds on conftest's reactor thread
and endpoints; a test module takes the fixture with ``start_broker = _listeners.start_broker``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, serverFromString
from twisted.internet.threads import blockingCallFromThread

from stompbroker.config import Config, WebSocketListener
from stompbroker.service import BrokerService

from .conftest import _ended, _TrackingEndpoint, poll, reactor


@dataclass
class Listeners:
    """A started broker, its TCP listener and its WebSocket listeners, by name."""

    service: BrokerService
    tcp: _TrackingEndpoint
    websocket: dict[str, _TrackingEndpoint]

    @property
    def port(self) -> int:
        """The STOMP-over-TCP port."""
        return int(self.tcp.port.getHost().port)

    def ws_port(self, name: str = "ws") -> int:
        """The port of WebSocket listener ``name``."""
        return int(self.websocket[name].port.getHost().port)

    def url(self, name: str = "ws", scheme: str = "ws", path: str = "/ws") -> str:
        """The URL STOMP.js's brokerURL takes for listener ``name``."""
        return f"{scheme}://127.0.0.1:{self.ws_port(name)}{path}"

    def _all(self) -> list[_TrackingEndpoint]:
        return [self.tcp, *self.websocket.values()]

    def open_connections(self) -> int:
        """Accepted connections (of every listener) the broker has not seen end."""
        return int(blockingCallFromThread(reactor, self._count_open))

    def _count_open(self) -> int:
        return sum(1 for e in self._all() for p in e.protocols if not _ended(p))

    def destinations_in_use(self) -> dict[str, Any]:
        """Queues and topics that still hold messages or subscriptions."""
        return dict(blockingCallFromThread(reactor, self._in_use))

    def _in_use(self) -> dict[str, Any]:
        broker = self.service.broker
        out: dict[str, Any] = {}
        for name, queue in broker.destinations.queues.items():
            if queue.buffer or queue.subscriptions:
                out[f"/queue/{name}"] = (len(queue.buffer), len(queue.subscriptions))
        for name, topic in broker.destinations.topics.items():
            if topic.subscriptions:
                out[f"/topic/{name}"] = len(topic.subscriptions)
        return out

    def assert_idle(self) -> None:
        """Every connection ended, and no session left a subscription or a message behind."""
        poll(lambda: self.open_connections() == 0, "every connection to end")
        assert self.destinations_in_use() == {}

    def _stop(self) -> Any:
        stopped = self.service.stopService()
        for endpoint in self._all():
            for protocol in endpoint.protocols:
                if not _ended(protocol):
                    protocol.transport.abortConnection()
        return stopped


def _start(config: Config, websocket: dict[str, tuple[str, WebSocketListener]]) -> Any:
    """Start a broker (on the reactor thread); a Deferred firing with it once it listens."""
    tcp = _TrackingEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
    tracked = {
        name: (_TrackingEndpoint(serverFromString(reactor, spec)), entry)
        for name, (spec, entry) in websocket.items()
    }
    service = BrokerService(config, reactor, [tcp], list(tracked.values()))
    service.startService()
    running = Listeners(service, tcp, {name: pair[0] for name, pair in tracked.items()})

    def listening(_: object) -> Listeners:
        if any(e.port is None for e in running._all()):
            raise RuntimeError("the broker did not start listening")
        return running

    started: Deferred[Listeners] = service.started.addCallback(listening)
    return started


Start = Callable[..., Listeners]


@pytest.fixture
def start_broker(running_reactor: Any, tmp_path: Path) -> Iterator[Start]:
    """Start a broker with a TCP listener and the WebSocket listeners asked for; stop it after.

    ``websocket`` maps a name to (endpoint string, entry); the default is one ``ws`` listener
    on 127.0.0.1 port 0 at /ws allowing any origin.
    """
    started: list[Listeners] = []

    def start(
        websocket: dict[str, tuple[str, WebSocketListener]] | None = None,
        heartbeat_ms: int | None = None,
        config: Config | None = None,
    ) -> Listeners:
        config = config or Config()
        data_dir = str(tmp_path / f"data-{len(started)}")
        config = replace(config, broker=replace(config.broker, data_dir=data_dir))
        if heartbeat_ms is not None:
            beat = replace(config.heartbeat, send_ms=heartbeat_ms, receive_ms=heartbeat_ms)
            config = replace(config, heartbeat=beat)
        if websocket is None:
            websocket = {"ws": (LOOPBACK, WebSocketListener(LOOPBACK))}
        running: Listeners = blockingCallFromThread(reactor, _start, config, websocket)
        started.append(running)
        return running

    yield start
    for running in started:
        blockingCallFromThread(reactor, running._stop)
        poll(functools.partial(_all_closed, running), "the broker's connections to close")


def _all_closed(running: Listeners) -> bool:
    return running.open_connections() == 0


LOOPBACK = "tcp:0:interface=127.0.0.1"

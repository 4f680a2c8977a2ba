"""The statistics topic: every interval, statistics close their interval, and a JSON snapshot
goes to ``/topic/stompbroker.stats`` if anyone is subscribed to it (directly, by a wildcard,
or through an attached durable subscription). Nobody listening: nothing is built or sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from ._inspect import tick
from ._policy import STATS_TOPIC, matches

if TYPE_CHECKING:
    from ._broker import Broker

log = Logger(namespace="stompbroker.stats")


class StatsPublisher:
    """Drives the statistics' intervals and publishes snapshots to ``topic``.

    ``snapshot`` builds the JSON-ready snapshot (the management layer's, which knows the
    connections too).
    """

    def __init__(
        self,
        broker: Broker,
        snapshot: Callable[[], dict[str, Any]],
        topic: str = STATS_TOPIC,
    ) -> None:
        self.broker = broker
        self.snapshot = snapshot
        self.topic = topic
        self.published = 0

    def tick(self) -> None:
        """One interval is over (a TimerService calls this): rates, then maybe a snapshot."""
        try:
            tick(self.broker)
            if self.listened():
                self.publish()
        except Exception:
            # A LoopingCall stops at the first exception: log ours and keep ticking.
            log.failure("building the statistics snapshot failed")

    def listened(self) -> bool:
        """Whether a subscription would receive what is published to the topic now."""
        broker = self.broker
        name = self.topic.removeprefix("/topic/")
        destinations = broker.destinations
        topic = destinations.topics.get(name)
        if topic is not None and topic.subscriptions:
            return True
        if any(t.subscriptions and matches(p, name) for p, t in destinations.wildcards.items()):
            return True
        return any(d.attached and matches(d.pattern, name) for d in broker.durables)

    def publish(self) -> None:
        """Publish one snapshot now (non-persistent, ``content-type:application/json``)."""
        body = json.dumps(self.snapshot(), separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        self.broker.send(self.topic, headers, body, persistent=False)
        self.published += 1

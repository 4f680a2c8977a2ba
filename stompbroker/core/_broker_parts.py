"""What the parts of the broker (its mixin classes) may use of the whole.

``Broker`` is one object assembled from mixins, one concept each: durable
subscriptions (``_broker_durables``), temporary destinations
(``_broker_temporaries``) and dead letters (``_broker_dead_letters``). Each
inherits ``BrokerParts``, which declares, for the type checker only, the state
``Broker.__init__`` sets up and the operations the parts call on one another; a
declaration here never exists at run time, so the real definition always wins.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING

from ._clock import Clock
from ._destination import Destination, Queue
from ._durable import DurableSubscription
from ._message import Message
from ._policy import DestinationPolicy, PolicyMap
from ._stats import Statistics
from ._store import IMessageStore
from ._subscription import Consumer, Selector, Subscription
from ._topic import Topic


class BrokerParts:
    """The broker's state and operations, as its mixins see them (see the module docstring)."""

    clock: Clock
    policies: PolicyMap
    store: IMessageStore | None
    queues: dict[str, Queue]
    durables: dict[tuple[str, str], DurableSubscription]
    temporaries: dict[str, Destination]
    counters: Counter[str]
    statistics: Statistics
    _seq: itertools.count[int]
    _fanout: dict[str, tuple[list[Topic], list[DurableSubscription]]]

    if TYPE_CHECKING:

        def now_ms(self) -> float: ...

        def dead_letter(
            self,
            message: Message,
            reason: str,
            policy: DestinationPolicy,
            source: Destination | None = None,
        ) -> None: ...

        def forget_if_unused(self, target: Destination) -> None: ...

        def unsubscribe(self, subscription: Subscription) -> None: ...

        def _queue(self, name: str) -> Queue: ...

        def _revive(self, destination: Destination) -> None: ...

        def _attach(
            self,
            target: Destination,
            consumer: Consumer,
            subscription_id: str,
            ack_mode: str,
            prefetch: int | None,
            key: int,
            start: bool,
            selector: Selector | None,
            exclusive: bool,
        ) -> Subscription: ...

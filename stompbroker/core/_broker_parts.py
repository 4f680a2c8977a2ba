"""What the parts of the broker (its mixin classes) may use of the whole.

``Broker`` is one object assembled from mixins, one concept each: durable
subscriptions (``_broker_durables``), temporary destinations
(``_broker_temporaries``) and dead letters (``_broker_dead_letters``). Each
inherits ``BrokerParts``, which declares, for the type checker only, the state
``Broker.__init__`` sets up and the operations the parts call on one another; a
declaration here never exists at run time, so the real definition always wins.
What destinations call back (``now_ms``, ``dead_letter``, ``forget_if_unused``,
``clock``, ``counters``) is declared once, by ``Hooks``, which the broker is: its
docstring-only methods come after every part in the MRO, and mypy refuses to build
a broker that lacks one.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from ._destination import Destination, Hooks, Queue
from ._durable import DurableSubscription
from ._policy import PolicyMap
from ._stats import Statistics
from ._store import IMessageStore
from ._subscription import Subscription
from ._topic import Topic


class BrokerParts(Hooks):
    """The broker's state and operations, as its mixins see them (see the module docstring)."""

    policies: PolicyMap
    store: IMessageStore | None
    queues: dict[str, Queue]
    durables: dict[tuple[str, str], DurableSubscription]
    temporaries: dict[str, Destination]
    statistics: Statistics
    _seq: itertools.count[int]
    _fanout: dict[str, tuple[list[Topic], list[DurableSubscription]]]

    if TYPE_CHECKING:

        def unsubscribe(self, subscription: Subscription) -> None: ...

        def _queue(self, name: str) -> Queue: ...

        def _revive(self, destination: Destination) -> None: ...

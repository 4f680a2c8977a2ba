"""Durable topic subscriptions: a named queue fed by a topic, kept while its subscriber is away.

A durable subscription is identified by (client id, subscription name); the
client id is the CONNECT ``client-id``, or "" when the client gave none. It
takes a copy of every message published to a topic matching its pattern (and
its selector, if any), holds them while no one is attached, and delivers them
in order when its subscriber comes back. At most one subscription is attached at
a time. It lives until deleted.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ._destination import Hooks
from ._message import Message
from ._policy import DestinationPolicy
from ._queue import Queue
from ._subscription import Selector, selector_view


class DurableSubscription(Queue):
    """The queue behind one durable topic subscription."""

    kind = "durable"

    def __init__(
        self,
        client_id: str,
        subscription_name: str,
        pattern: str,
        selector: Selector | None,
        hooks: Hooks,
        policy: DestinationPolicy,
    ) -> None:
        super().__init__(f"{client_id}:{subscription_name}", f"/topic/{pattern}", hooks, policy)
        self.client_id = client_id
        self.subscription_name = subscription_name
        #: The topic name or wildcard pattern it is fed from.
        self.pattern = pattern
        self.filter = selector

    @property
    def key(self) -> tuple[str, str]:
        """(client id, subscription name)."""
        return (self.client_id, self.subscription_name)

    @property
    def attached(self) -> bool:
        """Whether a subscriber is attached now."""
        return bool(self.subscriptions)

    def same_definition(self, pattern: str, selector: Selector | None) -> bool:
        """Whether a SUBSCRIBE with ``pattern`` and ``selector`` names this same subscription."""
        text = selector.text if selector is not None else None
        mine = self.filter.text if self.filter is not None else None
        return pattern == self.pattern and text == mine

    def wants(self, message: Message) -> bool:
        """Whether the subscription's selector (if any) lets ``message`` through."""
        selector = self.filter
        return selector is None or selector.matches(selector_view(message))

    def offer(self, message: Message) -> Deferred[None] | None:
        """A message published to a matching topic: keep a copy if the selector agrees."""
        if not self.wants(message):
            return None
        copy = message.copy()
        copy.delivery_count = 0
        return self.enqueue(copy)

    def unused(self) -> bool:
        return False

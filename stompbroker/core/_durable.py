"""Durable topic subscriptions: a named queue fed by a topic, kept while its subscriber is away.

A durable subscription is identified by (client id, subscription name); the
client id is the CONNECT ``client-id``, or "" when the client gave none. It
takes a copy of every message published to a topic matching its pattern (and
its selector, if any), holds them while no one is attached, and delivers them
in order when its subscriber comes back. At most one subscription is attached at
a time, unless it is *shared* (``shared: true`` in the configuration, RabbitMQ's
``x-queue-name``): then every subscriber attached competes for its messages, as on a
queue. It lives until deleted; a *transient* one (RabbitMQ's ``x-queue-name`` without
``durable:true``) is stored nowhere and goes when its last subscriber leaves.

A no-local durable subscription (``no_local``, stored with its definition) keeps no
copy of a message sent on the connection attached to it at the time of the publish
(ActiveMQ's rule: the same connection). While no one is attached it keeps everything,
whoever sent it.
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
        no_local: bool = False,
    ) -> None:
        super().__init__(f"{client_id}:{subscription_name}", f"/topic/{pattern}", hooks, policy)
        self.client_id = client_id
        self.subscription_name = subscription_name
        #: The topic name or wildcard pattern it is fed from.
        self.pattern = pattern
        self.filter = selector
        self.no_local = no_local
        #: Whether several subscribers may be attached at once (they compete).
        self.shared = False
        #: Whether it is stored nowhere and goes with its last subscriber (non-durable).
        self.transient = False
        #: Whether it is the cluster's (``_shared``): defined for every node, its messages
        #: shared, fed by the node a message is published through.
        self.cluster_wide = False

    @property
    def key(self) -> tuple[str, str]:
        """(client id, subscription name)."""
        return (self.client_id, self.subscription_name)

    @property
    def attached(self) -> bool:
        """Whether a subscriber is attached now."""
        return bool(self.subscriptions)

    def same_definition(
        self, pattern: str, selector: Selector | None, no_local: bool = False
    ) -> bool:
        """Whether a SUBSCRIBE with ``pattern``, ``selector`` and ``no_local`` names this same
        subscription."""
        text = selector.text if selector is not None else None
        mine = self.filter.text if self.filter is not None else None
        return pattern == self.pattern and text == mine and no_local == self.no_local

    def wants(self, message: Message) -> bool:
        """Whether the subscription's selector (if any) lets ``message`` through."""
        selector = self.filter
        return selector is None or selector.matches(selector_view(message))

    def offer(self, message: Message, sender: str | None = None) -> Deferred[None] | None:
        """A message published to a matching topic by the connection ``sender``: keep a copy
        if the selector agrees (and, if no-local, the subscriber attached is not ``sender``)."""
        if not self.wants(message):
            return None
        if self.no_local and sender is not None and self.local(sender):
            return None
        copy = message.copy()
        copy.delivery_count = 0
        return self.enqueue(copy)

    def local(self, sender: str) -> bool:
        """Whether the subscriber attached now is on the connection ``sender``."""
        return any(subscription.owner == sender for subscription in self.subscriptions)

    def unused(self) -> bool:
        return False

    def consumed_alone(self) -> bool:
        """One subscriber at a time, unless shared: its node holds it for the cluster."""
        return bool(self.subscriptions) and (not self.shared or super().consumed_alone())

"""Topics: publish/subscribe.

* A topic message is copied to every subscription present when it is published
  (that its selector accepts); each subscription then owns its copy: handed over
  at once when the subscription is ready, else kept in its ``pending`` buffer.
  A late subscriber gets nothing published before it came.
* A copy goes through the states of ``_destination`` on its own: a redelivery is a new
  copy with its own delivery count.
* No-local: a subscription with ``no_local`` gets no copy of a message its own
  connection (``Subscription.owner``) sent. The topic counts such subscriptions, so
  that a publish pays one test when it has none.
"""

from __future__ import annotations

from ._destination import Destination, Hooks
from ._message import Message, MessageBuffer
from ._policy import DestinationPolicy
from ._stats import SAMPLE_MASK
from ._subscription import Subscription


class Topic(Destination):
    """Publish/subscribe: each message goes to every current subscription."""

    kind = "topic"

    def __init__(self, name: str, address: str, hooks: Hooks, policy: DestinationPolicy) -> None:
        super().__init__(name, address, hooks, policy)
        #: How many of the subscriptions are no-local.
        self._no_local = 0

    def add(self, subscription: Subscription) -> None:
        subscription.pending = MessageBuffer()
        super().add(subscription)
        if subscription.no_local:
            self._no_local += 1

    def publish(self, message: Message, sender: str | None = None) -> None:
        """Give every current subscription its copy of ``message`` (sent by the connection
        ``sender``: no-local subscriptions of that connection get none)."""
        message.delivery_count = 1
        arrived = self.arrived + 1
        self.arrived = arrived
        if not arrived & SAMPLE_MASK:
            message.born = self.hooks.clock.seconds()
        subscriptions = self.subscriptions
        if self._no_local and sender is not None:
            subscriptions = [s for s in subscriptions if not (s.no_local and s.owner == sender)]
        for subscription in subscriptions:
            if subscription.selector is not None and not subscription.accepts(message):
                continue
            pending = subscription.pending
            if pending or not subscription.ready():
                assert pending is not None
                pending.append(message)
                if len(pending) > self.policy.max_pending:
                    self._overrun(subscription, pending)
            else:
                subscription.send(message)

    def _overrun(self, subscription: Subscription, pending: MessageBuffer) -> None:
        """A subscriber with more than ``max_pending`` messages waiting: drop or disconnect."""
        if self.policy.on_slow == "drop":
            pending.popleft()
            self.stats.dropped += 1
            self.hooks.counters["dropped"] += 1
            return
        pending.clear()
        subscription.consumer.abandon(
            subscription,
            f"slow consumer: more than {self.policy.max_pending} messages waiting for"
            f" subscription {subscription.id!r} on {self.address}",
        )

    def wake(self, subscription: Subscription) -> None:
        pending = subscription.pending
        if not pending:
            return
        now = 0.0
        while pending and subscription.ready():
            message = pending.popleft()
            if message.expires:
                now = now or self.hooks.now_ms()
                if message.expired(now):
                    self._dead_letter(message, "expired")
                    continue
            subscription.send(message)

    def remove(self, subscription: Subscription) -> None:
        super().remove(subscription)
        if subscription.no_local:
            self._no_local -= 1
        subscription.take_unacked()
        subscription.pending = None

    def _redelivery(self, message: Message) -> Message:
        # The subscription's own copy (others share the message); a topic hands
        # copies over without counting, so the count includes the coming delivery.
        again = message.copy()
        again.delivery_count = message.delivery_count + 1
        return again

    def _requeue(self, subscription: Subscription, messages: list[Message]) -> None:
        pending = subscription.pending
        if pending is None or subscription.closed:
            return
        for message in messages:
            pending.put_back(message)
        self.wake(subscription)

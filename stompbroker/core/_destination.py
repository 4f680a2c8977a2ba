"""Destinations: queues (point-to-point) and topics (publish/subscribe).

Message states and their invariants::

    queued --dispatch--> in flight --ACK--> done
       ^                    |  (auto ack: done on dispatch)
       +---NACK / consumer gone (back to its place by seq)

* A queue message is in exactly one place: the queue's buffer, or one
  subscription's ``unacked``. Dispatch takes the oldest message (by ``seq``) and
  the next ready subscription in round-robin order.
* A topic message is copied to every subscription present when it is published;
  each subscription then owns its copy: handed over at once when the subscription
  is ready, else kept in the subscription's ``pending`` buffer. A late subscriber
  gets nothing published before it came.
* ``delivery_count`` counts the handovers of a message (of a topic copy); more
  than one means redelivered.
"""

from __future__ import annotations

from ._message import Message, MessageBuffer
from ._subscription import Subscription


class Destination:
    """What queues and topics share."""

    kind = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self.subscriptions: list[Subscription] = []

    def add(self, subscription: Subscription) -> None:
        """Attach a subscription."""
        subscription.target = self
        self.subscriptions.append(subscription)

    def remove(self, subscription: Subscription) -> None:
        """Detach a subscription; what it held unacknowledged is handled by the subclass."""
        self.subscriptions.remove(subscription)

    def wake(self, subscription: Subscription) -> None:
        """A subscription may take messages again (resumed, or acknowledged some)."""

    def give_back(self, subscription: Subscription, messages: list[Message]) -> None:
        """Messages the subscription handed back unprocessed, to deliver again."""

    def unused(self) -> bool:
        """True when the destination holds nothing and may be forgotten."""
        return not self.subscriptions


class Queue(Destination):
    """Point-to-point: each message goes to one subscription."""

    kind = "queue"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.buffer = MessageBuffer()
        self._next = 0

    def enqueue(self, message: Message) -> None:
        """Accept a new message and deliver it if a subscription can take it."""
        self.buffer.append(message)
        if self.subscriptions:
            self.dispatch()

    def dispatch(self) -> None:
        """Hand queued messages, oldest first, to ready subscriptions in turn."""
        buffer = self.buffer
        subscriptions = self.subscriptions
        while buffer:
            count = len(subscriptions)
            start = self._next
            for offset in range(count):
                index = (start + offset) % count
                subscription = subscriptions[index]
                if subscription.ready():
                    break
            else:
                return
            self._next = index + 1
            message = buffer.popleft()
            message.delivery_count += 1
            subscription.send(message)

    def wake(self, subscription: Subscription) -> None:
        if self.buffer:
            self.dispatch()

    def remove(self, subscription: Subscription) -> None:
        super().remove(subscription)
        self.give_back(subscription, subscription.take_unacked())

    def give_back(self, subscription: Subscription, messages: list[Message]) -> None:
        for message in messages:
            self.buffer.put_back(message)
        if messages and self.subscriptions:
            self.dispatch()

    def unused(self) -> bool:
        return not self.subscriptions and not self.buffer


class Topic(Destination):
    """Publish/subscribe: each message goes to every current subscription."""

    kind = "topic"

    def add(self, subscription: Subscription) -> None:
        subscription.pending = MessageBuffer()
        super().add(subscription)

    def publish(self, message: Message) -> None:
        """Give every current subscription its copy of ``message``."""
        message.delivery_count = 1
        for subscription in self.subscriptions:
            pending = subscription.pending
            if pending or not subscription.ready():
                assert pending is not None
                pending.append(message)
            else:
                subscription.send(message)

    def wake(self, subscription: Subscription) -> None:
        pending = subscription.pending
        while pending and subscription.ready():
            subscription.send(pending.popleft())

    def remove(self, subscription: Subscription) -> None:
        super().remove(subscription)
        subscription.take_unacked()
        subscription.pending = None

    def give_back(self, subscription: Subscription, messages: list[Message]) -> None:
        pending = subscription.pending
        if pending is None:
            return
        for message in messages:
            again = message.copy()
            again.delivery_count = message.delivery_count + 1
            pending.put_back(again)
        self.wake(subscription)

"""Destinations: what queues (``_queue``) and topics (``_topic``) share, and what they need
of the broker (``Hooks``).

* ``delivery_count`` counts the handovers of a message (of a topic copy); more
  than one means redelivered. A message given back after ``1 +
  max_redeliveries`` deliveries is dead-lettered instead. An expired message is
  never delivered.
* Settling mirrors giving back: ``acknowledge`` finishes what a subscription settled (its
  rows go), ``refuse`` hands it back for redelivery or dead-letters it (a NACK).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from ._clock import Clock, DelayedCall
from ._message import Message
from ._policy import DestinationPolicy
from ._stats import DestinationStats
from ._subscription import Subscription


class Hooks(Protocol):
    """What destinations need of the broker."""

    clock: Clock
    #: Events worth counting broker-wide: dead-lettered, dropped, expired.
    counters: Counter[str]

    def now_ms(self) -> float:
        """The time, in epoch milliseconds."""

    #: Move a message (from a destination, which let go of its row) to its dead-letter queue,
    #: or drop it, counted (``_dead_letters.DeadLetters.dead_letter``).
    dead_letter: Callable[[Message, str, DestinationPolicy, Destination | None], None]

    def forget_if_unused(self, destination: Destination) -> None:
        """Drop ``destination`` from the registry if it holds nothing any more."""


class Destination:
    """What queues and topics share."""

    kind = ""

    def __init__(self, name: str, address: str, hooks: Hooks, policy: DestinationPolicy) -> None:
        self.name = name
        #: The destination as clients write it, e.g. ``/queue/orders``.
        self.address = address
        self.hooks = hooks
        self.policy = policy
        #: The session that owns a temporary destination.
        self.owner: str | None = None
        self.subscriptions: list[Subscription] = []
        self._timers: set[DelayedCall] = set()
        #: Counters and latencies (the broker may hand over those of an earlier life); read
        #: them through ``counted``.
        self.stats = DestinationStats(hooks.clock)
        #: Counted here on the hot path, and added to ``stats`` by ``counted``: messages
        #: in, and the connections that sent them (subscriptions count their deliveries).
        self.arrived = 0
        self.senders: set[str | None] = set()

    def counted(self) -> DestinationStats:
        """The statistics, with what was counted on the hot path since the last call."""
        stats = self.stats
        stats.enqueued += self.arrived
        self.arrived = 0
        if self.senders:
            stats.senders.update(self.senders)
            self.senders.clear()
        for subscription in self.subscriptions:
            stats.add_deliveries(subscription)
        return stats

    def add(self, subscription: Subscription) -> None:
        """Attach a subscription."""
        subscription.target = self
        subscription.stats = self.stats
        self.subscriptions.append(subscription)

    def remove(self, subscription: Subscription) -> None:
        """Detach a subscription; what it held unacknowledged is handled by the subclass."""
        self.subscriptions.remove(subscription)
        self.stats.add_deliveries(subscription)

    def wake(self, subscription: Subscription) -> None:
        """A subscription may take messages again (resumed, or acknowledged some)."""

    def acknowledge(self, subscription: Subscription, messages: list[Message]) -> None:
        """``subscription`` settled ``messages`` as processed (an ACK): they are done."""
        stats = subscription.stats
        stats.acknowledged += len(messages)
        if subscription.handed:
            stats.settled(subscription, messages, True)
        for message in messages:
            if message.store_key is not None:
                self._done(message)
        self.wake(subscription)

    def refuse(self, subscription: Subscription, messages: list[Message], requeue: bool) -> None:
        """``subscription`` settled ``messages`` as not processed (a NACK): with ``requeue``
        they are delivered again (or dead-lettered after too many deliveries), without they
        are dead-lettered at once."""
        if subscription.handed:
            subscription.stats.settled(subscription, messages, False)
        if requeue:
            self.give_back(subscription, messages)
        else:
            for message in messages:
                self._dead_letter(message, "nack")
        self.wake(subscription)

    def _done(self, message: Message) -> None:
        """``message`` is finished here: its stored row (if the destination keeps rows) goes."""

    def _dead_letter(self, message: Message, reason: str) -> None:
        """``message`` leaves for its dead-letter queue (or is dropped), its row first."""
        if message.store_key is not None:
            self._done(message)
        self.hooks.dead_letter(message, reason, self.policy, self)

    def give_back(self, subscription: Subscription, messages: list[Message]) -> None:
        """Messages handed back unprocessed: deliver them again, or dead-letter them."""
        policy = self.policy
        again: list[Message] = []
        for message in messages:
            if message.delivery_count > policy.max_redeliveries:
                self._dead_letter(message, "max-redeliveries")
                continue
            delay = policy.redelivery_delay(message.delivery_count)
            redelivery = self._redelivery(message)
            if delay > 0:
                self._later(delay, subscription, redelivery)
            else:
                again.append(redelivery)
        if again:
            self._requeue(subscription, again)

    def _redelivery(self, message: Message) -> Message:
        """What is delivered again for ``message`` (the message itself, by default)."""
        return message

    def _later(self, delay: float, subscription: Subscription, message: Message) -> None:
        def due() -> None:
            self._timers.discard(call)
            self._requeue(subscription, [message])
            self.hooks.forget_if_unused(self)

        call = self.hooks.clock.callLater(delay, due)
        self._timers.add(call)

    def _requeue(self, subscription: Subscription, messages: list[Message]) -> None:
        """Put messages back to be delivered again."""

    def unused(self) -> bool:
        """True when the destination holds nothing and may be forgotten."""
        return not self.subscriptions and not self._timers

    def close(self) -> list[Message]:
        """Forget everything (a temporary destination's owner left); return what was held."""
        for call in self._timers:
            if call.active():
                call.cancel()
        self._timers.clear()
        return []

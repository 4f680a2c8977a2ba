"""Queues: point-to-point dispatch, written once over any backlog (``_backlog``).

Message states and their invariants::

    queued --dispatch--> in flight --ACK--> done
      ^  |                  |  (auto ack: done on dispatch)
      |  +--expired-------->+--NACK / consumer gone, too many times--> dead letter
      |                     |
      +--(after the redelivery delay)--NACK / consumer gone

* A queue message is in exactly one place: the queue's buffer, its backlog (held back:
  paged out), a pending redelivery timer, or one subscription's ``unacked``.
* Dispatch hands the first message (highest priority, then oldest) to the next
  ready subscription in round-robin order. Selectors, message groups and
  exclusive consumers narrow who may take a message; a message no ready
  subscription may take stays queued while later ones pass it. After every
  dispatch pass no queued message could go to any ready subscription, so a new
  message may be offered directly.
* A queue's stored rows belong to its backlog: written, updated and deleted there only.
* Durable subscriptions (``_durable``) are queues fed by topics.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from ._backlog import MEMORY, Backlog
from ._destination import Destination, Hooks
from ._message import Message, MessageBuffer
from ._names import DestinationFull
from ._paging import PagedBacklog
from ._policy import DestinationPolicy
from ._stats import SAMPLE_MASK
from ._store import IMessageStore
from ._subscription import Subscription


class Queue(Destination):
    """Point-to-point: each message goes to one subscription."""

    kind = "queue"

    def __init__(self, name: str, address: str, hooks: Hooks, policy: DestinationPolicy) -> None:
        super().__init__(name, address, hooks, policy)
        self.buffer = MessageBuffer()
        self._next = 0
        #: Message group -> the subscription that owns it.
        self._groups: dict[str, Subscription] = {}
        #: Attached subscriptions with a selector, and queued messages with a group.
        self._selective = 0
        self._grouped = 0
        self._exclusive = 0
        #: Set once a message with an expiry arrives: only such queues are swept.
        self.expiring = False
        #: The store's name for this queue, and where its messages live beyond the buffer
        #: (the seam: ``_backlog``).
        self.store_key = address
        self.backlog: Backlog = MEMORY
        #: Producers blocked until the queue is below its limits (``on_full: block``).
        self._room: list[Deferred[None]] = []

    def attach_store(self, store: IMessageStore, store_key: str | None = None) -> None:
        """Keep persistent messages in ``store`` (under ``store_key``) and page to it."""
        if store_key is not None:
            self.store_key = store_key
        self.backlog = PagedBacklog(self, store)

    def add(self, subscription: Subscription) -> None:
        super().add(subscription)
        if subscription.selector is not None:
            self._selective += 1
        if subscription.exclusive:
            self._exclusive += 1

    def enqueue(self, message: Message) -> Deferred[None] | None:
        """Accept a new message and deliver it if a subscription can take it.

        Returns None, or a Deferred that fires once a persistent message is as safe
        as the queue's fsync policy asks.
        """
        arrived = self.arrived + 1
        self.arrived = arrived
        if not arrived & SAMPLE_MASK:
            message.born = self.hooks.clock.seconds()
        if message.expires:
            self.expiring = True
        backlog = self.backlog
        if backlog.holds_back(message):
            written: Deferred[None] | None = backlog.hold(message)
            backlog.fill()
            return written
        written = backlog.keep(message) if message.persistent else None
        if not self.subscriptions:
            self._store(message)
        elif self._selective or self._grouped or message.group is not None:
            self._offer(message)
        else:
            self.buffer.append(message)
            self.dispatch()
        return written

    # -- limits (max_messages, max_bytes, on_full) -------------------------------------

    def over(self, extra_bytes: int = 0) -> bool:
        """Whether the queue is at its message limit, or ``extra_bytes`` more would pass its
        byte limit."""
        policy = self.policy
        if policy.max_messages and self.depth() >= policy.max_messages:
            return True
        if policy.max_bytes:
            return self.buffer.bytes + self.backlog.bytes + extra_bytes > policy.max_bytes
        return False

    def admit(self, size: int) -> None:
        """Before a message of ``size`` bytes joins a full queue: refuse it, or drop the oldest
        to make room.

        Raises DestinationFull under ``on_full: reject``; under ``block`` the message
        is let in (``wait_room`` then holds its producer back).
        """
        if not self.policy.limited or not self.over(size):
            return
        on_full = self.policy.on_full
        if on_full == "reject":
            raise DestinationFull(
                f"destination {self.address} is full (max_messages"
                f" {self.policy.max_messages or 'unlimited'}, max_bytes"
                f" {self.policy.max_bytes or 'unlimited'}); the message was not accepted"
            )
        if on_full == "drop-oldest":
            while self.buffer and self.over(size):
                oldest = self.buffer.oldest()
                self._take(oldest)
                self._dead_letter(oldest, "queue-full")

    def wait_room(self) -> Deferred[None] | None:
        """Under ``on_full: block``, a Deferred that fires once the queue is below its limits."""
        if self.policy.on_full != "block" or not self.policy.limited or not self.over():
            return None
        room: Deferred[None] = Deferred()
        self._room.append(room)
        return room

    def _release_room(self) -> None:
        if self._room and not self.over():
            room, self._room = self._room, []
            for waiter in room:
                waiter.callback(None)

    def paged_in(self, messages: list[Message]) -> None:
        """Messages loaded from the store join the buffer (behind those of their priority)."""
        for message in messages:
            if message.expires:
                self.expiring = True
            self._store(message)
        if self.subscriptions:
            self.dispatch()
        else:
            self.backlog.fill()

    def _store(self, message: Message) -> None:
        self.buffer.append(message)
        if message.group is not None:
            self._grouped += 1

    def _take(self, message: Message) -> None:
        self.buffer.remove(message)
        if message.group is not None:
            self._grouped -= 1

    def _offer(self, message: Message) -> None:
        if message.expires and message.expired(self.hooks.now_ms()):
            self._dead_letter(message, "expired")
            return
        subscription = self._choose(message)
        if subscription is None:
            self._store(message)
        else:
            self._hand(subscription, message)

    def dispatch(self) -> None:
        """Hand queued messages, in order, to ready subscriptions in turn."""
        if self._selective or self._grouped:
            self._dispatch_scan()
        else:
            self._dispatch_in_order()
        backlog = self.backlog
        if backlog.total or backlog.refills:
            backlog.fill()
        if self._room:
            self._release_room()

    def _dispatch_in_order(self) -> None:
        buffer = self.buffer
        hooks = self.hooks
        now = 0.0
        while buffer:
            subscription = self._next_ready()
            if subscription is None:
                return
            message = buffer.popleft()
            if message.expires:
                now = now or hooks.now_ms()
                if message.expired(now):
                    self._dead_letter(message, "expired")
                    continue
            message.delivery_count += 1
            subscription.send(message)
            if message.store_key is not None:
                self.backlog.handed(subscription, message)

    def _dispatch_scan(self) -> None:
        """Dispatch when selectors or groups may let a message pass another."""
        if not any(s.ready() for s in self._candidates()):
            return
        now = self.hooks.now_ms()
        for message in self.buffer:
            if message.expired(now):
                self._take(message)
                self._dead_letter(message, "expired")
                continue
            subscription = self._choose(message)
            if subscription is None:
                continue
            self._take(message)
            self._hand(subscription, message)
            if not any(s.ready() for s in self._candidates()):
                return

    def consumed_alone(self) -> bool:
        """Whether one subscription alone consumes the queue now: an exclusive consumer
        (a shared queue's node then holds it for the cluster)."""
        return self._exclusive > 0

    def _candidates(self) -> list[Subscription]:
        """Who may take messages: the first exclusive subscription if any, else all."""
        if not self._exclusive:
            return self.subscriptions
        for subscription in self.subscriptions:
            if subscription.exclusive:
                return [subscription]
        return self.subscriptions

    def _choose(self, message: Message) -> Subscription | None:
        """The subscription to hand ``message`` to now, or None."""
        group = message.group
        if group is not None:
            owner = self._groups.get(group)
            if owner is not None:
                return owner if owner.ready() and owner.accepts(message) else None
        subscription = self._next_ready(message)
        if subscription is not None and group is not None:
            self._groups[group] = subscription
        return subscription

    def _next_ready(self, message: Message | None = None) -> Subscription | None:
        """The next ready subscription in turn (that accepts ``message``, if given)."""
        candidates = self._candidates()
        count = len(candidates)
        if count == 1:
            only = candidates[0]
            ready = only.ready() and (
                message is None or only.selector is None or only.accepts(message)
            )
            return only if ready else None
        start = self._next
        for offset in range(count):
            index = (start + offset) % count
            subscription = candidates[index]
            if subscription.ready() and (
                message is None or subscription.selector is None or subscription.accepts(message)
            ):
                self._next = index + 1
                return subscription
        return None

    def _hand(self, subscription: Subscription, message: Message) -> None:
        message.delivery_count += 1
        if message.group is not None and message.headers.get("JMSXGroupSeq") == "-1":
            self._groups.pop(message.group, None)  # the producer closed the group
            self.backlog.group_closed(message.group)
        subscription.send(message)
        if message.store_key is not None:
            self.backlog.handed(subscription, message)

    def wake(self, subscription: Subscription) -> None:
        if self.buffer:
            self.dispatch()
        elif self.backlog.refills:
            self.backlog.fill()

    def sweep_expired(self, now_ms: float) -> int:
        """Dead-letter (or drop) every queued message that has expired; return how many."""
        if not self.expiring:
            return 0
        expired = [m for m in self.buffer if m.expired(now_ms)]
        for message in expired:
            self._take(message)
            self._dead_letter(message, "expired")
        if self._room:
            self._release_room()
        return len(expired)

    def remove(self, subscription: Subscription) -> None:
        super().remove(subscription)
        if subscription.selector is not None:
            self._selective -= 1
        if subscription.exclusive:
            self._exclusive -= 1
        for group in [g for g, owner in self._groups.items() if owner is subscription]:
            del self._groups[group]
        self.give_back(subscription, subscription.take_unacked())
        if not self.subscriptions:
            self.backlog.idle()
        elif self.buffer:
            self.dispatch()

    def _requeue(self, subscription: Subscription, messages: list[Message]) -> None:
        for message in messages:
            self.buffer.put_back(message)
            if message.group is not None:
                self._grouped += 1
        if self.subscriptions:
            self.dispatch()
        else:
            self.backlog.idle()

    def withdraw(self, message: Message) -> None:
        """Take a waiting ``message`` out of the buffer, its row kept (a shared backlog gives
        it back to the cluster)."""
        self._take(message)

    def let_go(self) -> list[Message]:
        """Take every message out of the buffer (a shared backlog gives them back, or lost
        its claim on them); return them."""
        self._grouped = 0
        return self.buffer.clear()

    def unused(self) -> bool:
        backlog = self.backlog
        held = backlog.total or backlog.loading
        return super().unused() and not self.buffer and not held

    def depth(self) -> int:
        """Messages waiting, in memory and held back (not counting those in flight)."""
        return len(self.buffer) + self.backlog.total

    def _done(self, message: Message) -> None:
        self.backlog.done(message)

    def discard(self, message: Message) -> None:
        """Take a waiting ``message`` out of the queue, and its row out of the store."""
        self._take(message)
        self.backlog.done(message)
        if self._room:
            self._release_room()

    def purge(self) -> int:
        """Drop every waiting message, in memory and paged out (not those in flight, nor
        those waiting to be redelivered); return how many."""
        dropped = self.buffer.clear()
        self._grouped = 0
        backlog = self.backlog
        count = len(dropped) + backlog.purge(dropped)
        self.backlog = backlog.renewed()
        if self._room:
            self._release_room()
        return count

    def close(self) -> list[Message]:
        super().close()
        room, self._room = self._room, []
        for waiter in room:
            waiter.callback(None)
        self._groups.clear()
        self._grouped = 0
        self.backlog = self.backlog.renewed()
        return self.buffer.clear()

    def delete(self) -> list[Message]:
        """The queue is deleted: ``close``, and every stored row goes; return what memory
        held."""
        backlog = self.backlog
        dropped = self.close()
        backlog.drop_all()
        return dropped

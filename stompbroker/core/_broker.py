"""The broker: destinations by name, and the operations sessions perform on them."""

from __future__ import annotations

import itertools
from collections import Counter

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock as FakeClock
from twisted.logger import Logger

from ._broker_dead_letters import DeadLetters
from ._broker_durables import DurableSubscriptions
from ._broker_headers import BROKER_HEADERS, check_headers, message_expiry, message_priority
from ._broker_temporaries import TemporaryDestinations
from ._clock import Clock
from ._destination import Destination, Queue
from ._durable import DurableSubscription
from ._inspect import kind_and_name
from ._message import Message
from ._names import DestinationError, check_send_name, check_subscribe_name, parse_destination
from ._policy import DestinationPolicy, PolicyMap, matches
from ._selector import compile_selector
from ._stats import Statistics
from ._store import IMessageStore, Recovery
from ._subscription import Consumer, Selector, Subscription, attach, selector_view
from ._topic import Topic

log = Logger(namespace="stompbroker.broker")


class Broker(DurableSubscriptions, TemporaryDestinations, DeadLetters):
    """Routes messages between producers and subscriptions; single-threaded.

    ``id_prefix`` starts every message id; the composition root makes it unique
    per broker run so that ids never repeat across restarts. It may not hold a
    colon, backslash, CR or LF, so that ids never need escaping in a header.
    ``clock`` gives expiry and redelivery delays their time (a fake clock that
    stands still when none is given); ``policies`` the per-destination policies.
    ``store`` keeps persistent messages and durable subscriptions (None: nothing
    is kept, nothing is paged); ``recover`` loads what it holds at start. Without
    ``auto_create``, clients may use only the queues and topics ``policies`` name.
    """

    def __init__(
        self,
        id_prefix: str = "ID-stompbroker",
        clock: Clock | None = None,
        policies: PolicyMap | None = None,
        store: IMessageStore | None = None,
        auto_create: bool = True,
    ) -> None:
        if any(c in id_prefix for c in ":\\\r\n"):
            raise ValueError(f"message id prefix {id_prefix!r} would need escaping")
        self.clock: Clock = clock if clock is not None else FakeClock()
        self.policies = policies or PolicyMap()
        self.store = store
        self.auto_create = auto_create
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        #: Topics subscribed to by wildcard pattern, by pattern.
        self.wildcard_topics: dict[str, Topic] = {}
        self.durables: dict[tuple[str, str], DurableSubscription] = {}
        #: Temporary destinations by global address (``/remote-temp-queue/...``).
        self.temporaries: dict[str, Destination] = {}
        #: Events worth counting: dead-lettered, dropped, expired.
        self.counters: Counter[str] = Counter()
        #: Per-destination statistics kept beyond a destination's life (see ``_stats``).
        self.statistics = Statistics(self.clock)
        self._id_prefix = id_prefix + "-"
        self._seq = itertools.count(1)
        self._fanout: dict[str, tuple[list[Topic], list[DurableSubscription]]] = {}

    def set_policies(self, policies: PolicyMap) -> None:
        """New policies, for existing destinations as for new ones (temporaries keep theirs)."""
        self.policies = policies
        destinations: list[Destination] = [
            *self.queues.values(),
            *self.topics.values(),
            *self.wildcard_topics.values(),
            *self.durables.values(),
        ]
        for destination in destinations:
            destination.policy = policies.for_destination(destination.address)
        self._fanout.clear()

    def now_ms(self) -> float:
        """The time, in epoch milliseconds."""
        return self.clock.seconds() * 1000.0

    # -- producing ---------------------------------------------------------------

    def send(
        self,
        destination: str,
        headers: dict[str, str],
        body: bytes,
        persistent: bool | None = None,
        owner: str | None = None,
        admit: bool = True,
    ) -> Deferred[None] | None:
        """Accept a message for ``destination`` from the session ``owner``.

        A full queue refuses it (DestinationFull) or drops its oldest message, as
        its policy says; without ``admit`` (a COMMIT, checked as a whole before)
        it is let in whatever the limits.

        ``headers`` are the producer's headers; the broker takes the dict over and
        drops from it the headers it owns. Raises DestinationError or MessageError
        for what it cannot accept. Returns None when the message is already as safe
        as it will be, or a Deferred that fires once it is (a durable write); a
        receipt must wait for it.
        """
        kind, name = parse_destination(destination)
        check_send_name(kind, name, destination)
        for owned in BROKER_HEADERS.intersection(headers):
            del headers[owned]
        target: Destination | None
        if kind in ("queue", "topic"):
            target = None
            if not self.auto_create:
                self._check_declared(kind, name, destination)
            policy = self.policies.for_destination(destination)
        else:
            target = self._temporary_for_send(kind, name, destination, owner)
            destination = target.address
            policy = target.policy
        message = self._message(destination, headers, body, persistent, policy, kind)
        if message.expires and message.expired(self.now_ms()):
            self.dead_letter(message, "expired", policy)
        elif kind == "queue":
            queue = self._queue(name)
            queue.senders.add(owner)
            if policy.limited and admit:
                queue.admit(len(message.body))
            return queue.enqueue(message)
        elif kind == "topic":
            return self._publish(name, message, owner)
        elif target is not None:
            target.senders.add(owner)
            if isinstance(target, Queue):
                return target.enqueue(message)
            if isinstance(target, Topic):
                target.publish(message)
        return None

    def room(self, destination: str) -> Deferred[None] | None:
        """After a SEND to ``destination``: None, or (``on_full: block``) a Deferred that fires
        once the full queue (or durable subscription) it went to has room again."""
        if not self.policies.limited:
            return None
        kind, name = parse_destination(destination)
        if kind == "queue":
            queue = self.queues.get(name)
            return queue.wait_room() if queue is not None else None
        if kind == "topic":
            for durable in self._fanout.get(name, ((), ()))[1]:
                room = durable.wait_room()
                if room is not None:
                    return room
        return None

    def _check_declared(self, kind: str, name: str, destination: str) -> None:
        """Without auto_create: only declared destinations (and those that exist) may be used."""
        if self.policies.declares(destination):
            return
        if (kind == "queue" and name in self.queues) or (kind == "topic" and name in self.topics):
            return
        raise DestinationError(
            f"destination {destination} does not exist, and this broker creates only the"
            " destinations its configuration declares (broker.auto_create is false)"
        )

    def check_send(self, destination: str, headers: dict[str, str], owner: str | None) -> None:
        """Raise what ``send`` would raise for these, without sending (a staged SEND)."""
        kind, name = parse_destination(destination)
        check_send_name(kind, name, destination)
        if kind not in ("queue", "topic"):
            self._temporary_for_send(kind, name, destination, owner)
        elif not self.auto_create:
            self._check_declared(kind, name, destination)
        if kind == "queue" and self.policies.limited:
            queue = self.queues.get(name)
            if queue is not None and queue.policy.on_full == "reject":
                queue.admit(0)  # full now: refused now, not at COMMIT
        check_headers(headers)

    def _message(
        self,
        destination: str,
        headers: dict[str, str],
        body: bytes,
        persistent: bool | None,
        policy: DestinationPolicy,
        kind: str,
    ) -> Message:
        if persistent is None:
            persistent = policy.persistent
            if persistent is None:
                persistent = kind == "queue"
        priority = message_priority(headers)
        expires = message_expiry(headers, policy, self.now_ms)
        seq = next(self._seq)
        return Message(
            self._id_prefix + str(seq),
            destination,
            headers,
            body,
            persistent,
            seq,
            priority,
            expires,
            headers.get("JMSXGroupID"),
        )

    def _publish(
        self, name: str, message: Message, owner: str | None = None
    ) -> Deferred[None] | None:
        fanout = self._fanout.get(name)
        if fanout is None:
            fanout = self._fanout_for(name)
        wildcards, durables = fanout
        for durable in durables:
            if durable.policy.limited and durable.wants(message):
                durable.admit(len(message.body))  # a full one refuses before anyone has a copy
        topic = self.topics.get(name)
        if topic is not None:
            topic.senders.add(owner)
            topic.publish(message)
        for wildcard in wildcards:
            wildcard.publish(message)
        if not durables:
            return None
        written = [w for w in (durable.offer(message) for durable in durables) if w is not None]
        if not written:
            return None
        if len(written) == 1:
            return written[0]
        return gatherResults(written, consumeErrors=True).addCallback(lambda _: None)

    def _fanout_for(self, name: str) -> tuple[list[Topic], list[DurableSubscription]]:
        """Wildcard topics and durable subscriptions fed by topic ``name`` (cached)."""
        if len(self._fanout) > 10_000:
            self._fanout.clear()
        fanout = (
            [t for pattern, t in self.wildcard_topics.items() if matches(pattern, name)],
            [d for d in self.durables.values() if matches(d.pattern, name)],
        )
        self._fanout[name] = fanout
        return fanout

    # -- consuming ---------------------------------------------------------------

    def subscribe(
        self,
        consumer: Consumer,
        subscription_id: str,
        destination: str,
        ack_mode: str = "auto",
        prefetch: int | None = None,
        key: int = 0,
        start: bool = True,
        *,
        owner: str | None = None,
        selector: Selector | None = None,
        exclusive: bool = False,
    ) -> Subscription:
        """Attach ``consumer`` to ``destination``.

        Waiting messages start flowing at once, or, with ``start=False``, at the
        first ``resume`` (so that a caller can answer the SUBSCRIBE first).
        """
        kind, name = parse_destination(destination)
        check_subscribe_name(kind, name, destination)
        if not self.auto_create and kind in ("queue", "topic"):
            self._check_declared(kind, name, destination)
        target: Destination
        if kind == "queue":
            target = self._queue(name)
        elif kind == "topic":
            if name in self.wildcard_topics or any(p in name for p in "*>"):
                target = self._wildcard_topic(name)
            else:
                target = self.topics.get(name) or self._topic(name, destination)
        elif kind == "dsub":
            raise DestinationError(
                f"{destination!r} names a durable subscription: subscribe to it with its id"
            )
        else:
            target = self._temporary_for_subscribe(kind, name, destination, owner)
        return attach(
            target, consumer, subscription_id, ack_mode, prefetch, key, start, selector, exclusive
        )

    def _topic(self, name: str, address: str) -> Topic:
        topic = Topic(name, address, self, self.policies.for_destination(address))
        self._revive(topic)
        self.topics[name] = topic
        return topic

    def _wildcard_topic(self, pattern: str) -> Topic:
        topic = self.wildcard_topics.get(pattern)
        if topic is None:
            address = f"/topic/{pattern}"
            topic = Topic(pattern, address, self, self.policies.for_destination(address))
            self._revive(topic)
            self.wildcard_topics[pattern] = topic
            self._fanout.clear()
        return topic

    def unsubscribe(self, subscription: Subscription) -> None:
        """Detach; unacknowledged queue messages go back to their queue in order."""
        if subscription.closed:
            return
        subscription.closed = True
        target = subscription.target
        if target is None:
            return
        target.remove(subscription)
        self.forget_if_unused(target)

    def forget_if_unused(self, target: Destination) -> None:
        """Drop ``target`` from the registry if it holds nothing (not temporaries, durables)."""
        if not target.unused() or target.owner is not None:
            return
        if target.kind == "queue" and self.queues.get(target.name) is target:
            del self.queues[target.name]
        elif target.kind == "topic":
            if self.topics.get(target.name) is target:
                del self.topics[target.name]
            elif self.wildcard_topics.get(target.name) is target:
                del self.wildcard_topics[target.name]
                self._fanout.clear()
            else:
                return
        else:
            return
        self.statistics.retire(kind_and_name(target), target.counted())

    def _revive(self, destination: Destination) -> None:
        """A destination is made: it takes over the statistics of its earlier life, if kept."""
        destination.stats = self.statistics.revive(kind_and_name(destination), destination.stats)

    def ack(self, subscription: Subscription, message_id: str) -> bool:
        """Acknowledge a delivered message (cumulatively in ``client`` mode).

        False when ``message_id`` is not awaiting acknowledgement on this subscription.
        """
        settled = subscription.settle(message_id)
        if settled is None:
            return False
        stats = subscription.stats
        stats.acknowledged += len(settled)
        if subscription.handed:
            stats.settled(subscription, settled, True)
        store = self.store
        if store is not None:
            for message in settled:
                if message.store_key is not None:
                    store.remove(message.store_key, message)
                    message.store_key = None
        if subscription.target is not None:
            subscription.target.wake(subscription)
        return True

    def nack(self, subscription: Subscription, message_id: str, requeue: bool = True) -> bool:
        """Refuse a delivered message (cumulatively in ``client`` mode).

        With ``requeue`` it is delivered again (or dead-lettered after too many
        deliveries); without, it goes to the dead-letter queue at once.
        """
        settled = subscription.settle(message_id)
        if settled is None:
            return False
        if subscription.handed:
            subscription.stats.settled(subscription, settled, False)
        target = subscription.target
        if target is not None:
            if requeue:
                target.give_back(subscription, settled)
            else:
                for message in settled:
                    self.dead_letter(message, "nack", target.policy, target)
            target.wake(subscription)
        return True

    def pause(self, subscription: Subscription) -> None:
        """The consumer cannot take more for now."""
        subscription.paused = True

    def resume(self, subscription: Subscription) -> None:
        """The consumer can take messages again."""
        subscription.paused = False
        if subscription.target is not None and not subscription.closed:
            subscription.target.wake(subscription)

    # -- browsing ------------------------------------------------------------------

    def browse(
        self, destination: str, selector: Selector | None = None, owner: str | None = None
    ) -> list[Message]:
        """The messages waiting in a queue, in delivery order, without consuming them."""
        kind, name = parse_destination(destination)
        queue: Destination | None
        if kind == "queue":
            queue = self.queues.get(name)
        elif kind in ("temp-queue", "remote-temp-queue"):
            queue = self._temporary_for_subscribe(kind, name, destination, owner)
        else:
            raise DestinationError(f"only queues can be browsed, not {destination!r}")
        if not isinstance(queue, Queue):
            return []
        now = self.now_ms()
        view = [m for m in queue.buffer if not m.expired(now)]
        if selector is None:
            return view
        return [m for m in view if selector.matches(selector_view(m))]

    # -- inspection --------------------------------------------------------------

    def queue_depth(self, name: str) -> int:
        """Messages waiting in queue ``name``, paged out included (not those in flight)."""
        queue = self.queues.get(name)
        return queue.depth() if queue is not None else 0

    def _queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            address = f"/queue/{name}"
            queue = self.queues[name] = Queue(
                name, address, self, self.policies.for_destination(address)
            )
            self._revive(queue)
            if self.store is not None:
                queue.attach_store(self.store)
        return queue

    # -- recovery ----------------------------------------------------------------

    def recover(self, recovery: Recovery) -> None:
        """At start, before any client: take over what the store holds.

        Durable subscriptions come back; every stored queue is paged in from the
        store, in order; messages delivered before come back redelivered.
        """
        store = self.store
        assert store is not None, "a broker without a store has nothing to recover"
        self._seq = itertools.count(recovery.last_seq + 1)
        for record in recovery.durables:
            selector = compile_selector(record.selector) if record.selector else None
            if (record.client_id, record.name) not in self.durables:
                self._durable(record.client_id, record.name, record.pattern, selector)
        by_key: dict[str, Queue] = {d.store_key: d for d in self.durables.values()}
        for stored in recovery.queues:
            queue = by_key.get(stored.store_key)
            if queue is None and stored.store_key.startswith("/queue/"):
                queue = self._queue(stored.store_key.removeprefix("/queue/"))
            if queue is None or queue.pager is None:
                log.warn("dropping stored messages of unknown {key}", key=stored.store_key)
                store.drop(stored.store_key)
                continue
            queue.pager.restore(stored.priorities, stored.bytes)

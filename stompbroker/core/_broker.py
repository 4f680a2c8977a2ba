"""The broker: the one object sessions talk to, a small facade over the parts that each own
one concept and its data.

=====================  ============================================  =======================
part                   owns                                          module
=====================  ============================================  =======================
``destinations``       queues, topics, wildcard topics; their life   ``_registry``
``durables``           durable subscriptions by (client id, name)    ``_durables``
``temporaries``        temporary destinations by global address      ``_temporaries``
``dead_letters``       dead-lettering, the headers it adds           ``_dead_letters``
``router``             message ids; a send's route to destinations   ``_routing``
``transaction()``      a unit of work (sends and settlements)        ``_transaction``
=====================  ============================================  =======================

ACK and NACK are settled by the destination the subscription is attached to
(``Destination.acknowledge`` and ``refuse``); a queue's stored rows belong to its backlog
(``_backlog``, ``_paging``).

In a cluster the broker is handed a topic bus (``ITopicBus``): the router gives it what is
published here, and ``published_elsewhere`` takes what the other nodes published.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ._clock import Clock
from ._dead_letters import DeadLetters
from ._destination import Destination
from ._durable import DurableSubscription
from ._durables import DurableSubscriptions
from ._message import Message
from ._names import (
    GLOBAL_TEMP_PREFIX,
    DestinationError,
    DestinationFull,
    check_subscribe_name,
    parse_destination,
)
from ._paging import PagedBacklog
from ._policy import PolicyMap
from ._queue import Queue
from ._registry import Destinations, Fanout
from ._routing import Router
from ._scheduled import ScheduledDeliveries
from ._scheduled_shared import SharedSchedule
from ._shared import SharedQueues
from ._stats import Statistics
from ._store import IMessageStore, ISharedQueues, ITopicBus, Recovery
from ._subscription import Consumer, Selector, Subscription, attach, selector_view
from ._temporaries import TemporaryDestinations
from ._topic import Topic
from ._transaction import Transaction
from ._virtual import DEFAULT_VIRTUAL_TOPICS, VirtualTopics

log = Logger(namespace="stompbroker.broker")

#: A browser of a shared queue sees at most this many of the messages waiting in the cluster.
BROWSE_LIMIT = 10_000


class Broker:
    """Routes messages between producers and subscriptions; single-threaded.

    ``clock`` gives expiry and redelivery delays their time (the reactor; a
    ``twisted.internet.task.Clock`` in tests). ``id_prefix`` starts every message id;
    the composition root makes it unique per broker run so that ids never repeat across
    restarts. It may not hold a colon, backslash, CR or LF, so that ids never need escaping
    in a header. ``policies`` are the per-destination policies. ``store`` keeps persistent
    messages and durable subscriptions (None: nothing is kept, nothing is paged);
    ``recover`` loads what it holds at start. Without ``auto_create``, clients may use only
    the queues and topics ``policies`` name. ``virtual_topics`` says which queues are
    consumer queues of virtual topics (by default ActiveMQ's prefixes, ``VirtualTopic.``
    and ``Consumer.*.``; None: no virtual topics). ``bus`` carries topic publishes to and
    from the other nodes of a cluster (None: this broker is alone).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        id_prefix: str = "ID-stompbroker",
        policies: PolicyMap | None = None,
        store: IMessageStore | None = None,
        auto_create: bool = True,
        virtual_topics: VirtualTopics | None = DEFAULT_VIRTUAL_TOPICS,
        bus: ITopicBus | None = None,
    ) -> None:
        if any(c in id_prefix for c in ":\\\r\n"):
            raise ValueError(f"message id prefix {id_prefix!r} would need escaping")
        self.clock = clock
        self.store = store
        #: Events worth counting: dead-lettered, dropped, expired, purged.
        self.counters: Counter[str] = Counter()
        #: Per-destination statistics kept beyond a destination's life (see ``_stats``).
        self.statistics = Statistics(clock)
        self.destinations = Destinations(
            self,
            policies or PolicyMap(),
            self.statistics,
            store,
            auto_create,
            virtual_topics,
        )
        if store is not None and ISharedQueues.providedBy(store):
            self.destinations.shared = SharedQueues(store)
        self.durables = DurableSubscriptions(self.destinations, store, self.unsubscribe)
        self.temporaries = TemporaryDestinations(self.destinations, self.unsubscribe)
        self._fanout = Fanout(self.destinations, self.durables)
        self.router = Router(self, self.destinations, self.temporaries, self._fanout, id_prefix)
        #: ``send(destination, headers, body, persistent=None, owner=None, user=None) -> Sent``:
        #: accept a message for ``destination`` (a comma-separated list: a copy for each)
        #: from the session ``owner`` logged in as ``user`` (``Router.send``, bound
        #: here: it runs for every message). ``headers`` are the producer's (those the broker
        #: owns, such as ``message-id``, are left out of the message). Raises
        #: DestinationError, DestinationFull or MessageError for what it cannot accept;
        #: returns what it made: a receipt must wait for its ``written``, a producer for
        #: its ``room``.
        self.send = self.router.send
        if store is not None:
            self.router.duplicates.persist = store.remember
            self.router.duplicates.forget = store.forget
            shared = self.destinations.shared
            if shared is not None:  # a cluster's scheduled messages are the cluster's
                self.router.scheduled = SharedSchedule(
                    clock,
                    self.now_ms,
                    self.router.release,
                    shared.store,
                    self._fanout,
                    id_prefix + "-",
                    self.router.duplicates.count,
                )
            else:
                deliveries = self.router.scheduled
                assert isinstance(deliveries, ScheduledDeliveries)
                deliveries.store = store
        self.dead_letters = DeadLetters(
            self.destinations.queue, self.router.next_seq, self.counters
        )
        #: What destinations call to dead-letter a message (``Hooks.dead_letter``).
        self.dead_letter = self.dead_letters.dead_letter
        if bus is not None:
            self.router.bus = bus
            bus.attach(self.published_elsewhere)

    @property
    def policies(self) -> PolicyMap:
        """The per-destination policies in force."""
        return self.destinations.policies

    @property
    def auto_create(self) -> bool:
        """Whether clients may use destinations the configuration does not declare."""
        return self.destinations.auto_create

    @auto_create.setter
    def auto_create(self, value: bool) -> None:
        self.destinations.auto_create = value

    def set_policies(self, policies: PolicyMap) -> None:
        """New policies, for existing destinations as for new ones (temporaries keep theirs)."""
        self.destinations.set_policies(policies)
        self.durables.set_policies()
        self._fanout.clear()

    def __iter__(self) -> Iterator[Destination]:
        """Every destination the broker holds now."""
        yield from self.destinations
        yield from self.durables
        yield from self.temporaries

    # -- what destinations need (``_destination.Hooks``) ------------------------------

    def now_ms(self) -> float:
        """The time, in epoch milliseconds."""
        return self.clock.seconds() * 1000.0

    def forget_if_unused(self, destination: Destination) -> None:
        """Drop ``destination`` from the registry if it holds nothing (``_registry``)."""
        self.destinations.forget_if_unused(destination)

    # -- producing ---------------------------------------------------------------

    def transaction(self, owner: str | None = None) -> Transaction:
        """A new unit of work of the session ``owner`` (``_transaction``)."""
        return Transaction(self, owner)

    def temporary(self, kind: str, name: str, owner: str) -> Destination:
        """The owner's temporary destination ``/temp-queue/NAME`` (or topic), made if needed."""
        return self.temporaries.create(kind, name, owner)

    def delete_temporaries(self, owner: str) -> None:
        """The owner left: delete its temporary destinations and what they held."""
        self.temporaries.delete_owned(owner)

    def published_elsewhere(self, name: str, message: Message) -> None:
        """A message another node of the cluster published to topic ``name`` (handed over by
        the ``ITopicBus``): for this node's subscribers of the topic, plain and wildcard, and
        its node-local durable subscriptions; not for virtual topics' consumer queues nor the
        cluster's durable subscriptions (the publishing node fed those, for the whole
        cluster), and never back to the bus. A message for a temporary topic (``name`` is
        its global address) goes to it if it is this node's, else nowhere. It gets a ``seq``
        of this node's; an expired one is dropped (counted)."""
        if message.expires and message.expired(self.now_ms()):
            self.counters["expired"] += 1
            self.counters["dropped"] += 1
            return
        message.seq = self.router.next_seq()
        if name.startswith(GLOBAL_TEMP_PREFIX["temp-topic"]):  # sent to a temporary topic
            temporary = self.temporaries.get(name)
            if isinstance(temporary, Topic):
                temporary.publish(message)
            return
        wildcards, durables, _ = self._fanout.get(name)
        topic = self.destinations.topics.get(name)
        if topic is not None:
            topic.publish(message)
        for wildcard in wildcards:
            wildcard.publish(message)
        for durable in durables:
            if durable.cluster_wide:
                continue  # the publishing node kept its copy, for the whole cluster
            try:
                if durable.policy.limited and durable.wants(message):
                    durable.admit(len(message.body))
            except DestinationFull:
                durable.stats.dropped += 1
                self.counters["dropped"] += 1
                continue
            written = durable.offer(message)
            if written is not None:
                written.addErrback(_write_failed, message)

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
        no_local: bool = False,
    ) -> Subscription:
        """Attach ``consumer`` to ``destination``.

        Waiting messages start flowing at once, or, with ``start=False``, at the
        first ``resume`` (so that a caller can answer the SUBSCRIBE first). With
        ``no_local`` a topic subscription gets no message the session ``owner`` sends
        (on a queue it means nothing, as in ActiveMQ).
        """
        kind, name = parse_destination(destination)
        destinations = self.destinations
        virtual = destinations.virtual_topics
        consumer_queue = kind == "queue" and virtual is not None and bool(virtual.topic_of(name))
        check_subscribe_name(kind, name, destination, consumer_queue)
        if not destinations.auto_create and kind in ("queue", "topic"):
            destinations.check_declared(kind, name, destination)
        target: Destination
        if kind == "queue":
            target = destinations.queue(name)
        elif kind == "topic":
            target = destinations.topic(name)
        elif kind == "dsub":
            raise DestinationError(
                f"{destination!r} names a durable subscription: subscribe to it with its id"
            )
        else:
            target = self.temporaries.for_subscribe(kind, name, destination, owner)
        return attach(
            target,
            consumer,
            subscription_id,
            ack_mode,
            prefetch,
            key,
            start,
            selector,
            exclusive,
            no_local=no_local and isinstance(target, Topic),
            owner=owner,
        )

    def unsubscribe(self, subscription: Subscription) -> None:
        """Detach; unacknowledged queue messages go back to their queue in order."""
        if subscription.closed:
            return
        subscription.closed = True
        target = subscription.target
        if target is None:
            return
        target.remove(subscription)
        if isinstance(target, DurableSubscription) and target.transient:
            if not target.subscriptions:  # a non-durable shared subscription's last one left
                self.durables.delete(target.client_id, target.subscription_name)
            return
        self.destinations.forget_if_unused(target)

    def ack(self, subscription: Subscription, message_id: str) -> bool:
        """Acknowledge a delivered message (cumulatively in ``client`` mode).

        False when ``message_id`` is not awaiting acknowledgement on this subscription.
        """
        settled = subscription.settle(message_id)
        if settled is None:
            return False
        if subscription.target is not None:
            subscription.target.acknowledge(subscription, settled)
        return True

    def nack(self, subscription: Subscription, message_id: str, requeue: bool = True) -> bool:
        """Refuse a delivered message (cumulatively in ``client`` mode).

        With ``requeue`` it is delivered again (or dead-lettered after too many
        deliveries); without, it goes to the dead-letter queue at once.
        """
        settled = subscription.settle(message_id)
        if settled is None:
            return False
        if subscription.target is not None:
            subscription.target.refuse(subscription, settled, requeue)
        return True

    def pause(self, subscription: Subscription) -> None:
        """The consumer cannot take more for now."""
        subscription.paused = True

    def resume(self, subscription: Subscription) -> None:
        """The consumer can take messages again."""
        subscription.paused = False
        if subscription.target is not None and not subscription.closed:
            subscription.target.wake(subscription)

    def browse(
        self, destination: str, selector: Selector | None = None, owner: str | None = None
    ) -> Deferred[list[Message]]:
        """The messages waiting in a queue, in delivery order, without consuming them (of a
        shared queue: those waiting in the cluster, the first ``BROWSE_LIMIT``)."""
        kind, name = parse_destination(destination)
        queue: Destination | None
        if kind == "queue":
            queue = self.destinations.queues.get(name)
        elif kind in ("temp-queue", "remote-temp-queue"):
            queue = self.temporaries.for_subscribe(kind, name, destination, owner)
        else:
            raise DestinationError(f"only queues can be browsed, not {destination!r}")
        shared = self.destinations.shared
        if kind == "queue" and shared is not None:
            view = list(queue.buffer) if isinstance(queue, Queue) else []
            waiting = shared.peek(f"/queue/{name}", BROWSE_LIMIT)
            return waiting.addCallback(lambda rows: self._browsed(view + rows, selector, True))
        if not isinstance(queue, Queue):
            return succeed([])
        return succeed(self._browsed(list(queue.buffer), selector, False))

    def _browsed(
        self, messages: list[Message], selector: Selector | None, merge: bool
    ) -> list[Message]:
        """What a browser sees of ``messages``: not expired, selected, in delivery order."""
        now = self.now_ms()
        if merge:
            messages.sort(key=lambda m: (-m.priority, m.seq))
        view = [m for m in messages if not m.expired(now)]
        if selector is None:
            return view
        return [m for m in view if selector.matches(selector_view(m))]

    # -- durable subscriptions (``_durables``) ---------------------------------------

    def declare_durable(
        self,
        client_id: str,
        subscription_name: str,
        pattern: str,
        selector: Selector | None,
        shared: bool = False,
        no_local: bool = False,
    ) -> DurableSubscription:
        """Create a durable subscription to topic ``pattern`` if it does not exist; ``shared``:
        several subscribers may attach at once and compete for its messages; ``no_local``: it
        keeps no message sent on the connection attached to it."""
        durables = self.durables
        durable = durables.declare(client_id, subscription_name, pattern, selector, no_local)[0]
        durable.shared = shared
        return durable

    def delete_durable(
        self, client_id: str, subscription_name: str, holder: Subscription | None = None
    ) -> None:
        """Delete a durable subscription and what it kept (``DurableSubscriptions.delete``)."""
        self.durables.delete(client_id, subscription_name, holder)

    # -- inspection and housekeeping ---------------------------------------------

    def queue_depth(self, name: str) -> int:
        """Messages waiting in queue ``name``, paged out included (not those in flight)."""
        queue = self.destinations.queues.get(name)
        return queue.depth() if queue is not None else 0

    def sweep_expired(self) -> int:
        """Move expired messages out of every queue (the service calls this periodically)."""
        now = self.now_ms()
        swept = 0
        for destination in self:
            if isinstance(destination, Queue):
                swept += destination.sweep_expired(now)
                self.destinations.forget_if_unused(destination)
        return swept

    def recover(self, recovery: Recovery) -> None:
        """At start, before any client: take over what the store holds.

        Durable subscriptions come back; every stored queue is paged in from the
        store, in order; messages delivered before come back redelivered.
        """
        store = self.store
        assert store is not None, "a broker without a store has nothing to recover"
        self.router.continue_after(recovery.last_seq)
        restore = self.router.duplicates.restore
        for address, dupl_id, expires in recovery.duplicate_ids:
            restore(address, dupl_id, expires)
        self.router.scheduled.recover(recovery.scheduled)
        self.durables.recover(recovery.durables)
        by_key: dict[str, Queue] = {d.store_key: d for d in self.durables}
        for stored in recovery.queues:
            queue = by_key.get(stored.store_key)
            if queue is None and stored.store_key.startswith("/queue/"):
                queue = self.destinations.queue(stored.store_key.removeprefix("/queue/"))
            if queue is None or not isinstance(queue.backlog, PagedBacklog):
                log.warn("dropping stored messages of unknown {key}", key=stored.store_key)
                store.drop(stored.store_key)
                continue
            queue.backlog.restore(stored.priorities, stored.bytes)


def _write_failed(failure: Any, message: Message) -> None:
    """A copy of another node's message could not be written: nobody waits for it; say so."""
    log.failure("could not keep {id} from another node", failure, id=message.message_id)

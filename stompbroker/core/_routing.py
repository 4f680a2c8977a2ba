"""Routing: a producer's message, from its destination's name to the queues and subscriptions
that take it.

A send goes through three steps, each raising what it refuses:

1. *route*: the destination named (``/queue/a``, ``/topic/b``, a temporary one) is one the
   producer may send to (DestinationError);
2. *make*: the message, from the producer's headers without those the broker owns
   (MessageError for a bad priority or time);
3. *admit* (a queue with limits): a full queue refuses it or drops its oldest
   (DestinationFull);

then it is delivered: enqueued in its queue, or published to a topic (and to the wildcard
topics, durable subscriptions and, for a virtual topic, consumer queues that topic feeds,
through ``Fanout``).

A *composite* send names several destinations, comma-separated (``/queue/a,/topic/b``,
ActiveMQ's spelling), and a destination's policy may *forward* to others (``forward_to``).
Every member is routed first (one bad member refuses the whole send, before any copy is
made), then each queue is admitted, then each gets its own copy (its own message id); the
send is safe once every copy's write is. A forwarded copy is not forwarded again. A transaction
(``_transaction``) checks every staged message when it commits, then delivers them all
without a per-message admission, so that a COMMIT is applied whole or not at all.

A send carrying ``_AMQ_DUPL_ID`` (``_duplicates``) is checked against the window of each queue
it goes to: a queue that took that id lately gets no copy (counted as a duplicate); a send
every queue of which refuses so is a ``Sent`` with nothing to wait for. A shared queue's
window is the cluster's: its copy is published (or, scheduled, held) with the id
(``Duplicates.deliver_once``), and its ``written`` fires once the database said whether it
took it.

A send with a delivery delay (``AMQ_SCHEDULED_*``, ``x-delay``) is routed, made and admitted,
then *held* (``_scheduled``): a record for a queue; for a topic, one for its subscribers when
due and one per durable subscription and consumer queue it feeds now. When due, each is
*released*: a new arrival at its target, with a new ``seq``. A send with none of these
headers (nor ``_AMQ_DUPL_ID``) takes the fast path: one test of its header names.

In a cluster, a publish to a topic (but the statistics topic, each node's own) also goes to
the ``bus`` (``ITopicBus``), for the other nodes' subscribers (``Broker.published_elsewhere``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from ._destination import Destination, Hooks
from ._duplicates import DUPLICATE_HEADER, Duplicates, check_duplicate_id
from ._message import Message
from ._names import DestinationError, check_send_name, parse_destination
from ._policy import STATS_TOPIC, DestinationPolicy, PolicyMap
from ._queue import Queue
from ._registry import Destinations, Fanout
from ._scheduled import ScheduledDeliveries
from ._send_headers import (
    BROKER_HEADERS,
    SCHEDULE_HEADERS,
    USER_HEADER,
    MessageError,
    Schedule,
    check_headers,
    message_expiry,
    message_priority,
    message_schedule,
    producer_headers,
)
from ._store import ITopicBus, ScheduledRecord
from ._temporaries import TemporaryDestinations
from ._topic import Topic

if TYPE_CHECKING:
    from ._scheduled_shared import SharedSchedule

log = Logger(namespace="stompbroker.router")

#: Where a message goes: kind, name, address, policy, and the temporary destination (None
#: for queues and topics, found or made when delivering).
Route = tuple[str, str, str, DestinationPolicy, "Destination | None"]


#: At most this many destinations' routes are kept.
ROUTES = 10_000

#: The statistics topic's name: its snapshots describe one node, and stay on it.
STATS_NAME = STATS_TOPIC.removeprefix("/topic/")

#: The headers that take a send off the fast path: duplicate detection and scheduling.
SLOW_HEADERS = SCHEDULE_HEADERS | {DUPLICATE_HEADER}


class Sent:
    """What the broker made of a send: the message, the Deferred of its durable write (None:
    as safe as it will be), and, under ``on_full: block``, a Deferred that fires once the
    full queue it went to has room again (None: no need to wait)."""

    __slots__ = ("message", "room", "written")

    def __init__(
        self, message: Message, written: Deferred[None] | None, room: Deferred[None] | None
    ) -> None:
        self.message = message
        self.written = written
        self.room = room


class Router:
    """Turns sends into messages and hands them to destinations; numbers the messages.

    ``id_prefix`` starts every message id (``Broker`` checks it needs no escaping).
    """

    def __init__(
        self,
        hooks: Hooks,
        destinations: Destinations,
        temporaries: TemporaryDestinations,
        fanout: Fanout,
        id_prefix: str,
    ) -> None:
        self._hooks = hooks
        self._destinations = destinations
        self._temporaries = temporaries
        self._fanout = fanout
        self._id_prefix = id_prefix + "-"
        self._seq = itertools.count(1)
        #: Routes to queues and topics by destination, under the policies they were worked
        #: out with (kept only while clients may create destinations: then a route depends
        #: on the name and the policies alone).
        self._routes: dict[str, Route] = {}
        self._routes_under: PolicyMap | None = None
        #: The ids each queue took lately (duplicate detection).
        self.duplicates = Duplicates(hooks.now_ms, destinations, hooks.counters)
        #: The messages waiting for their delivery time (a cluster's: ``SharedSchedule``).
        self.scheduled: ScheduledDeliveries | SharedSchedule = ScheduledDeliveries(
            hooks.clock, hooks.now_ms, self.release
        )
        #: Where topic publishes go for the other nodes of a cluster (None: one node).
        self.bus: ITopicBus | None = None

    def next_seq(self) -> int:
        """The next message sequence number (broker-wide order)."""
        return next(self._seq)

    def continue_after(self, last_seq: int) -> None:
        """At start: number messages after ``last_seq``, the largest the store holds."""
        self._seq = itertools.count(last_seq + 1)

    # -- the steps ---------------------------------------------------------------

    def route(self, destination: str, owner: str | None) -> Route:
        """Where a send to ``destination`` from the session ``owner`` goes."""
        destinations = self._destinations
        if destinations.policies is self._routes_under and destinations.auto_create:
            known = self._routes.get(destination)
            if known is not None:
                return known
        route = self._route(destination, owner)
        if route[4] is None and destinations.auto_create:
            if destinations.policies is not self._routes_under or len(self._routes) > ROUTES:
                self._routes.clear()
                self._routes_under = destinations.policies
            self._routes[destination] = route
        return route

    def _route(self, destination: str, owner: str | None) -> Route:
        kind, name = parse_destination(destination)
        check_send_name(kind, name, destination)
        destinations = self._destinations
        if kind in ("queue", "topic"):
            if not destinations.auto_create:
                destinations.check_declared(kind, name, destination)
            return kind, name, destination, destinations.policies.for_destination(destination), None
        target = self._temporaries.for_send(kind, name, destination, owner)
        return kind, name, target.address, target.policy, target

    def routes(self, destination: str, owner: str | None) -> list[Route]:
        """Where a send to ``destination`` goes: each member of a comma-separated list, and
        where their policies forward to (each address once; forwards are not forwarded)."""
        members = destination.split(",")
        if len(members) > 1:
            for member in members:
                if not member:
                    raise DestinationError(
                        f"composite destination {destination!r} has an empty member"
                    )
        routes = [self.route(member, owner) for member in members]
        seen = {route[2] for route in routes}
        for route in list(routes):
            for target in route[3].forward_to:
                if target not in seen:
                    seen.add(target)
                    routes.append(self.route(target, owner))
        if len(seen) < len(routes):  # a member named twice gets one copy
            first: dict[str, Route] = {}
            for route in routes:
                first.setdefault(route[2], route)
            routes = list(first.values())
        return routes

    def make(
        self,
        route: Route,
        headers: Mapping[str, str],
        body: bytes,
        persistent: bool | None,
        user: str | None = None,
    ) -> Message:
        """The message for ``route`` (``persistent`` None: as its destination decides) sent
        by ``user`` (None: anonymous)."""
        kind, _, address, policy, _ = route
        if persistent is None:
            persistent = policy.persistent
            if persistent is None:
                persistent = kind == "queue"
        if not BROKER_HEADERS.isdisjoint(headers):
            headers = producer_headers(headers)
        if user is not None and policy.stamp_user:
            headers = {**headers, USER_HEADER: user}
        priority = message_priority(headers)
        expires, headers = message_expiry(headers, policy, self._hooks.now_ms)
        seq = next(self._seq)
        return Message(
            self._id_prefix + str(seq),
            address,
            headers,
            body,
            persistent,
            seq,
            priority,
            expires,
            headers.get("JMSXGroupID"),
        )

    def check(self, destination: str, headers: Mapping[str, str], owner: str | None) -> None:
        """Raise what a send with these would raise now, without sending (a staged SEND; and
        a full ``reject`` queue refuses now, not at COMMIT)."""
        routes = self.routes(destination, owner)
        for kind, name, _, _, _ in routes:
            if kind == "queue" and self._destinations.policies.limited:
                queue = self._destinations.queues.get(name)
                if queue is not None and queue.policy.on_full == "reject":
                    queue.admit(0)
        check_headers(headers)
        dupl_id = headers.get(DUPLICATE_HEADER)
        if dupl_id is not None:
            check_duplicate_id(dupl_id)
        if not SCHEDULE_HEADERS.isdisjoint(headers):
            self._schedule(routes, headers)

    # -- sending -----------------------------------------------------------------

    def send(
        self,
        destination: str,
        headers: Mapping[str, str],
        body: bytes,
        persistent: bool | None = None,
        owner: str | None = None,
        user: str | None = None,
    ) -> Sent:
        """Route, make, admit and deliver one message (a copy for each destination of a
        composite send or a forward); ``user``: the sender's login (None: anonymous)."""
        if "," in destination:
            return self.send_all(
                self.routes(destination, owner), headers, body, persistent, owner, user
            )
        route = self.route(destination, owner)
        if route[3].forward_to:
            return self.send_all(
                self.routes(destination, owner), headers, body, persistent, owner, user
            )
        if not SLOW_HEADERS.isdisjoint(headers):
            return self.send_all([route], headers, body, persistent, owner, user)
        message = self.make(route, headers, body, persistent, user)
        if route[0] == "queue" and route[3].limited and not self._expired(message):
            self._destinations.queue(route[1]).admit(len(body))
        return self.deliver(route, message, owner)

    def send_all(
        self,
        routes: list[Route],
        headers: Mapping[str, str],
        body: bytes,
        persistent: bool | None,
        owner: str | None,
        user: str | None,
        admit: bool = True,
    ) -> Sent:
        """Make a copy for each route, admit them all (``admit``: not at a COMMIT), then
        deliver each: one ``Sent`` (the first copy; safe once every copy is; the room of any
        full queue); a queue that took the send's ``_AMQ_DUPL_ID`` lately gets no copy; a
        scheduled send's copies are held until due."""
        schedule = None
        if not SCHEDULE_HEADERS.isdisjoint(headers):
            schedule = self._schedule(routes, headers)
        messages = [self.make(route, headers, body, persistent, user) for route in routes]
        dupl_id = headers.get(DUPLICATE_HEADER)
        duplicates = self.duplicates
        if dupl_id is not None:
            check_duplicate_id(dupl_id)
            first = messages[0]
            fresh = [
                (route, message)
                for route, message in zip(routes, messages, strict=True)
                if not duplicates.refused(route, dupl_id)
            ]
            if not fresh:
                return Sent(first, None, None)
            routes = [route for route, _ in fresh]
            messages = [message for _, message in fresh]
        if admit:
            for route, message in zip(routes, messages, strict=True):
                if route[0] == "queue" and route[3].limited and not self._expired(message):
                    self._destinations.queue(route[1]).admit(len(body))
                elif route[0] == "topic" and self._destinations.policies.limited:
                    self._refuse_full_durables(route[1], message)
        written: list[Deferred[None]] = []
        room = None
        for route, message in zip(routes, messages, strict=True):
            if schedule is not None:
                sent = self.hold(route, message, schedule, owner, dupl_id)
            elif dupl_id is not None and duplicates.shared(route) and not self._expired(message):
                sent = self._deliver_once(route, message, dupl_id, owner)
            else:
                sent = self.deliver(route, message, owner)
            if sent.written is not None:
                written.append(sent.written)
            room = room or sent.room
            if dupl_id is not None:
                duplicates.remember(route, message, dupl_id)
        return Sent(messages[0], _all(written), room)

    def _deliver_once(
        self, route: Route, message: Message, dupl_id: str, owner: str | None
    ) -> Sent:
        """A copy for a shared queue that detects duplicates: published if the cluster's
        database finds ``dupl_id`` new for it (``Duplicates.deliver_once``)."""
        written = self.duplicates.deliver_once(route, message, dupl_id, owner)
        room = self._destinations.queue(route[1]).wait_room() if route[3].limited else None
        return Sent(message, written, room)

    # -- scheduled delivery ----------------------------------------------------------

    def _schedule(self, routes: list[Route], headers: Mapping[str, str]) -> Schedule | None:
        """The schedule a send's headers ask, checked against each route (MessageError)."""
        schedule = message_schedule(headers, self._hooks.now_ms())
        if schedule is None:
            return None
        for kind, _, address, policy, _ in routes:
            if kind not in ("queue", "topic"):
                raise MessageError(
                    f"{schedule.asked}: scheduled delivery to {address} is not supported"
                    " (only to /queue/ and /topic/ destinations)"
                )
            schedule.check(policy, address)
        return schedule

    def hold(
        self,
        route: Route,
        message: Message,
        schedule: Schedule,
        owner: str | None,
        dupl_id: str | None = None,
    ) -> Sent:
        """Keep a made (and admitted) message until ``schedule`` says it is due: for a topic,
        a record for its subscribers then, and one for each durable subscription and consumer
        queue it feeds now; a shared queue's takes ``dupl_id`` (if any) for the cluster."""
        kind, name, _, policy, _ = route
        once = None
        if dupl_id is not None and self.duplicates.shared(route):
            once = (dupl_id, policy.duplicate_window, policy.duplicate_ttl_ms)
        held: list[tuple[tuple[str, ...], Message, str]] = []
        if kind == "queue":
            held.append((("queue", name), message, policy.fsync))
        else:
            held.append((("topic", name), message, policy.fsync))
            _, durables, queues = self._fanout.get(name)
            for durable in durables:
                key = ("durable", durable.client_id, durable.subscription_name)
                held.append((key, self._renumbered(message), durable.policy.fsync))
            for queue in queues:
                held.append((("queue", queue.name), self._renumbered(message), queue.policy.fsync))
        written = []
        scheduled = self.scheduled
        for target, copy, sync in held:
            record = ScheduledRecord(target, copy, schedule.due, schedule.repeats, schedule.period)
            w = scheduled.hold(record, owner, sync, once)  # once: a queue's one record
            if w is not None:
                written.append(w)
        return Sent(message, _all(written), None)

    def _renumbered(self, message: Message) -> Message:
        """A copy of ``message`` with a ``seq`` and id of its own."""
        seq = next(self._seq)
        return message.renumbered(self._id_prefix + str(seq), seq)

    def release(self, record: ScheduledRecord, owner: str | None) -> None:
        """A scheduled message is due: a new arrival at its target (a fresh ``seq``, so that
        it queues behind the messages already waiting at its priority)."""
        message = self._renumbered(record.message)
        target = record.target
        if message.expires and message.expired(self._hooks.now_ms()):
            policy = self._destinations.policies.for_destination(message.destination)
            self._hooks.dead_letter(message, "expired", policy, None)
        elif target[0] == "queue":
            try:
                route = self.route("/queue/" + target[1], None)
            except DestinationError as e:
                self._hooks.counters["dropped"] += 1
                log.warn("dropped a scheduled message: {why}", why=e)
                return
            self.deliver(route, message, owner)
        elif target[0] == "topic":
            name = target[1]
            topic = self._destinations.topics.get(name)
            if topic is not None:
                topic.publish(message, owner)
            for wildcard in self._fanout.get(name)[0]:
                wildcard.publish(message, owner)
            if self.bus is not None:
                self.bus.publish(name, message)
        else:
            durable = self._fanout.durable(target[1], target[2])
            if durable is not None:
                durable.offer(message, owner)

    # ``deliver`` is the hot path of every message: the expiry test and the queue lookup are
    # written out in it rather than called.

    def deliver(self, route: Route, message: Message, owner: str | None) -> Sent:
        """Hand a made (and admitted) message to where ``route`` says."""
        kind, name, _, policy, target = route
        written = room = None
        if message.expires and message.expired(self._hooks.now_ms()):
            self._hooks.dead_letter(message, "expired", policy, None)
        elif kind == "queue":
            queue = self._destinations.queues.get(name) or self._destinations.queue(name)
            queue.senders.add(owner)
            written = queue.enqueue(message)
            if policy.limited:
                room = queue.wait_room()
        elif kind == "topic":
            written = self._publish(name, message, owner)
            if self._destinations.policies.limited:
                room = self._durable_room(name)
        elif target is not None:
            target.senders.add(owner)
            if isinstance(target, Queue):
                written = target.enqueue(message)
            elif isinstance(target, Topic):
                target.publish(message, owner)
                if self.bus is not None and self._temporaries.elsewhere(target):
                    self.bus.publish(target.address, message)  # to its owner's node
        return Sent(message, written, room)

    def _expired(self, message: Message) -> bool:
        return bool(message.expires) and message.expired(self._hooks.now_ms())

    def _publish(self, name: str, message: Message, owner: str | None) -> Deferred[None] | None:
        wildcards, durables, queues = self._fanout.get(name)
        for durable in durables:
            if durable.policy.limited and durable.wants(message):
                durable.admit(len(message.body))  # a full one refuses before anyone has a copy
        for queue in queues:
            if queue.policy.limited:
                queue.admit(len(message.body))
        topic = self._destinations.topics.get(name)
        if topic is not None:
            topic.senders.add(owner)
            topic.publish(message, owner)
        for wildcard in wildcards:
            wildcard.publish(message, owner)
        bus = self.bus
        if bus is not None and name != STATS_NAME:
            bus.publish(name, message)
        if not durables and not queues:
            return None
        written = [
            w for w in (durable.offer(message, owner) for durable in durables) if w is not None
        ]
        if queues:
            written += self._to_consumer_queues(queues, message, owner)
        return _all(written)

    def _to_consumer_queues(
        self, queues: list[Queue], message: Message, owner: str | None
    ) -> list[Deferred[None]]:
        """A copy of a virtual topic's message for each of its consumer queues."""
        written = []
        for queue in queues:
            copy = message.copy()
            copy.delivery_count = 0
            queue.senders.add(owner)
            w = queue.enqueue(copy)
            if w is not None:
                written.append(w)
        return written

    def _refuse_full_durables(self, name: str, message: Message) -> None:
        """A full ``reject`` durable subscription (or virtual topic consumer queue) of topic
        ``name`` refuses now, before any copy of a composite send is delivered."""
        for durable in self._fanout.get(name)[1]:
            policy = durable.policy
            if policy.on_full == "reject" and policy.limited and durable.wants(message):
                durable.admit(len(message.body))
        for queue in self._fanout.get(name)[2]:
            if queue.policy.on_full == "reject" and queue.policy.limited:
                queue.admit(len(message.body))

    def _durable_room(self, name: str) -> Deferred[None] | None:
        for durable in self._fanout.get(name)[1]:
            room = durable.wait_room()
            if room is not None:
                return room
        return None


def _all(written: list[Deferred[None]]) -> Deferred[None] | None:
    """One Deferred that fires once every one of ``written`` has (None: there are none)."""
    if not written:
        return None
    if len(written) == 1:
        return written[0]
    return gatherResults(written, consumeErrors=True).addCallback(lambda _: None)

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
topics and durable subscriptions that topic feeds, through ``Fanout``). A transaction
(``_transaction``) checks every staged message when it commits, then delivers them all
without a per-message admission, so that a COMMIT is applied whole or not at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from twisted.internet.defer import Deferred, gatherResults

from ._destination import Destination, Hooks
from ._message import Message
from ._names import check_send_name, parse_destination
from ._policy import DestinationPolicy
from ._queue import Queue
from ._registry import Destinations, Fanout
from ._send_headers import (
    BROKER_HEADERS,
    check_headers,
    message_expiry,
    message_priority,
    producer_headers,
)
from ._temporaries import TemporaryDestinations
from ._topic import Topic

#: Where a message goes: kind, name, address, policy, and the temporary destination (None
#: for queues and topics, found or made when delivering).
Route = tuple[str, str, str, DestinationPolicy, "Destination | None"]


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

    def next_seq(self) -> int:
        """The next message sequence number (broker-wide order)."""
        return next(self._seq)

    def continue_after(self, last_seq: int) -> None:
        """At start: number messages after ``last_seq``, the largest the store holds."""
        self._seq = itertools.count(last_seq + 1)

    # -- the steps ---------------------------------------------------------------

    def route(self, destination: str, owner: str | None) -> Route:
        """Where a send to ``destination`` from the session ``owner`` goes."""
        kind, name = parse_destination(destination)
        check_send_name(kind, name, destination)
        destinations = self._destinations
        if kind in ("queue", "topic"):
            if not destinations.auto_create:
                destinations.check_declared(kind, name, destination)
            return kind, name, destination, destinations.policies.for_destination(destination), None
        target = self._temporaries.for_send(kind, name, destination, owner)
        return kind, name, target.address, target.policy, target

    def make(
        self, route: Route, headers: Mapping[str, str], body: bytes, persistent: bool | None
    ) -> Message:
        """The message for ``route`` (``persistent`` None: as its destination decides)."""
        kind, _, address, policy, _ = route
        if persistent is None:
            persistent = policy.persistent
            if persistent is None:
                persistent = kind == "queue"
        if not BROKER_HEADERS.isdisjoint(headers):
            headers = producer_headers(headers)
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
        kind, name, _, _, _ = self.route(destination, owner)
        if kind == "queue" and self._destinations.policies.limited:
            queue = self._destinations.queues.get(name)
            if queue is not None and queue.policy.on_full == "reject":
                queue.admit(0)
        check_headers(headers)

    # -- sending -----------------------------------------------------------------

    def send(
        self,
        destination: str,
        headers: Mapping[str, str],
        body: bytes,
        persistent: bool | None = None,
        owner: str | None = None,
    ) -> Sent:
        """Route, make, admit and deliver one message."""
        route = self.route(destination, owner)
        message = self.make(route, headers, body, persistent)
        if route[0] == "queue" and route[3].limited and not self._expired(message):
            self._destinations.queue(route[1]).admit(len(body))
        return self.deliver(route, message, owner)

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
        return Sent(message, written, room)

    def _expired(self, message: Message) -> bool:
        return bool(message.expires) and message.expired(self._hooks.now_ms())

    def _publish(self, name: str, message: Message, owner: str | None) -> Deferred[None] | None:
        wildcards, durables = self._fanout.get(name)
        for durable in durables:
            if durable.policy.limited and durable.wants(message):
                durable.admit(len(message.body))  # a full one refuses before anyone has a copy
        topic = self._destinations.topics.get(name)
        if topic is not None:
            topic.senders.add(owner)
            topic.publish(message, owner)
        for wildcard in wildcards:
            wildcard.publish(message, owner)
        if not durables:
            return None
        written = [
            w for w in (durable.offer(message, owner) for durable in durables) if w is not None
        ]
        if not written:
            return None
        if len(written) == 1:
            return written[0]
        return gatherResults(written, consumeErrors=True).addCallback(lambda _: None)

    def _durable_room(self, name: str) -> Deferred[None] | None:
        for durable in self._fanout.get(name)[1]:
            room = durable.wait_room()
            if room is not None:
                return room
        return None

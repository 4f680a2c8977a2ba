"""The broker: destinations by name, and the operations sessions perform on them."""

from __future__ import annotations

import itertools

from twisted.internet.defer import Deferred

from ._destination import Destination, Queue, Topic
from ._message import Message
from ._subscription import DEFAULT_PREFETCH, Consumer, Subscription

#: Destination prefixes and the kind of destination each names.
PREFIXES = {"/queue/": "queue", "/topic/": "topic"}

#: Headers the broker owns: never copied from a SEND into the message (the
#: per-delivery ones, too, so that a producer cannot forge them).
BROKER_HEADERS = frozenset(
    {
        "destination",
        "message-id",
        "content-length",
        "receipt",
        "transaction",
        "subscription",
        "ack",
        "redelivered",
    }
)


class DestinationError(Exception):
    """A destination name the broker cannot serve; the message is for the client."""


def parse_destination(destination: str) -> tuple[str, str]:
    """Split ``/queue/NAME`` into ``("queue", "NAME")``; raise DestinationError otherwise."""
    for prefix, kind in PREFIXES.items():
        if destination.startswith(prefix):
            name = destination[len(prefix) :]
            if not name:
                raise DestinationError(f"destination {destination!r} has no name")
            return kind, name
    raise DestinationError(
        f"unsupported destination {destination!r}: use /queue/NAME or /topic/NAME"
    )


class Broker:
    """Routes messages between producers and subscriptions; single-threaded.

    ``id_prefix`` starts every message id; the composition root makes it unique
    per broker run so that ids never repeat across restarts. It may not hold a
    colon, backslash, CR or LF, so that ids never need escaping in a header.
    """

    def __init__(self, id_prefix: str = "ID-stompbroker") -> None:
        if any(c in id_prefix for c in ":\\\r\n"):
            raise ValueError(f"message id prefix {id_prefix!r} would need escaping")
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        self._id_prefix = id_prefix + "-"
        self._seq = itertools.count(1)

    # -- producing ---------------------------------------------------------------

    def send(
        self,
        destination: str,
        headers: dict[str, str],
        body: bytes,
        persistent: bool | None = None,
    ) -> Deferred[None] | None:
        """Accept a message for ``destination``.

        ``headers`` are the producer's headers; the broker takes the dict over and
        drops from it the headers it owns.
        Returns None when the message is already as safe as it will be, or a
        Deferred that fires once it is (a durable write); a receipt must wait for it.
        """
        kind, name = parse_destination(destination)
        for owned in BROKER_HEADERS.intersection(headers):
            del headers[owned]
        if persistent is None:
            persistent = kind == "queue"
        seq = next(self._seq)
        message = Message(self._id_prefix + str(seq), destination, headers, body, persistent, seq)
        if kind == "queue":
            self._queue(name).enqueue(message)
        else:
            topic = self.topics.get(name)
            if topic is not None:
                topic.publish(message)
        return None

    # -- consuming ---------------------------------------------------------------

    def subscribe(
        self,
        consumer: Consumer,
        subscription_id: str,
        destination: str,
        ack_mode: str = "auto",
        prefetch: int = DEFAULT_PREFETCH,
        key: int = 0,
        start: bool = True,
    ) -> Subscription:
        """Attach ``consumer`` to ``destination``.

        Waiting messages start flowing at once, or, with ``start=False``, at the
        first ``resume`` (so that a caller can answer the SUBSCRIBE first).
        """
        kind, name = parse_destination(destination)
        subscription = Subscription(consumer, subscription_id, destination, ack_mode, prefetch, key)
        target: Destination
        if kind == "queue":
            target = self._queue(name)
        else:
            target = self.topics.get(name) or self.topics.setdefault(name, Topic(name))
        target.add(subscription)
        if start:
            target.wake(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Detach; unacknowledged queue messages go back to their queue in order."""
        if subscription.closed:
            return
        subscription.closed = True
        target = subscription.target
        if target is None:
            return
        target.remove(subscription)
        self._forget_if_unused(target)

    def _forget_if_unused(self, target: Destination) -> None:
        if target.unused():
            registry: dict[str, Queue] | dict[str, Topic]
            registry = self.queues if target.kind == "queue" else self.topics
            if registry.get(target.name) is target:
                del registry[target.name]

    def ack(self, subscription: Subscription, message_id: str) -> bool:
        """Acknowledge a delivered message (cumulatively in ``client`` mode).

        False when ``message_id`` is not awaiting acknowledgement on this subscription.
        """
        settled = subscription.settle(message_id)
        if settled is None:
            return False
        if subscription.target is not None:
            subscription.target.wake(subscription)
        return True

    def nack(self, subscription: Subscription, message_id: str) -> bool:
        """Refuse a delivered message (cumulatively in ``client`` mode): deliver it again."""
        settled = subscription.settle(message_id)
        if settled is None:
            return False
        if subscription.target is not None:
            subscription.target.give_back(subscription, settled)
            subscription.target.wake(subscription)
        return True

    def pause(self, subscription: Subscription) -> None:
        """The consumer cannot take more for now."""
        subscription.paused = True

    def resume(self, subscription: Subscription) -> None:
        """The consumer can take messages again."""
        subscription.paused = False
        if subscription.target is not None and not subscription.closed:
            subscription.target.wake(subscription)

    # -- inspection --------------------------------------------------------------

    def queue_depth(self, name: str) -> int:
        """Messages waiting in queue ``name`` (not counting those in flight)."""
        queue = self.queues.get(name)
        return len(queue.buffer) if queue is not None else 0

    def _queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name)
        return queue

"""The broker's dead letters: messages that expired, or that no one would take."""

from __future__ import annotations

from twisted.logger import Logger

from ._broker_parts import BrokerParts
from ._destination import Destination, Queue
from ._message import Message
from ._names import parse_destination
from ._policy import DestinationPolicy

log = Logger(namespace="stompbroker.broker")


class DeadLetters(BrokerParts):
    """Broker mixin: dead-lettering, and the periodic sweep of expired messages."""

    def dead_letter(
        self,
        message: Message,
        reason: str,
        policy: DestinationPolicy,
        source: Destination | None = None,
    ) -> None:
        """Move ``message`` (from ``source``) to its dead-letter queue, or drop it (counted,
        logged)."""
        if message.store_key is not None and self.store is not None:
            self.store.remove(message.store_key, message)
            message.store_key = None
        stats = source.stats if source is not None else None
        target = policy.dead_letter_queue
        if reason == "expired":
            self.counters["expired"] += 1
            if stats is not None:
                stats.expired += 1
            if not policy.dead_letter_expired:
                target = None
        if target is None or message.destination == target:
            self.counters["dropped"] += 1
            if stats is not None:
                stats.dropped += 1
            log.info(
                "dropped message {id} from {destination} ({reason})",
                id=message.message_id,
                destination=message.destination,
                reason=reason,
            )
            return
        headers = dict(message.headers)
        headers.setdefault("original-destination", message.destination)
        headers["dead-letter-reason"] = reason
        headers["original-delivery-count"] = str(message.delivery_count)
        seq = next(self._seq)
        dead = Message(
            message.message_id,
            target,
            headers,
            message.body,
            message.persistent,
            seq,
            message.priority,
        )
        self.counters["dead-lettered"] += 1
        if stats is not None:
            stats.dead_lettered += 1
        _, name = parse_destination(target)
        self._queue(name).enqueue(dead)

    def sweep_expired(self) -> int:
        """Move expired messages out of every queue (the service calls this periodically)."""
        now = self.now_ms()
        queues: list[Destination] = [*self.queues.values(), *self.durables.values()]
        queues.extend(self.temporaries.values())
        swept = 0
        for queue in queues:
            if isinstance(queue, Queue):
                swept += queue.sweep_expired(now)
                self.forget_if_unused(queue)
        return swept

"""Dead letters: messages that expired, or that no one would take, and the headers they carry.

A dead-lettered message goes to its policy's ``dead_letter_queue`` as a new message with the
same id, body and priority, and three headers more: ``original-destination`` (kept if it
had one), ``dead-letter-reason`` (``expired``, ``nack``, ``max-redeliveries``,
``queue-full``) and ``original-delivery-count``. Without a dead-letter queue (or for an
expired message when ``dead_letter_expired`` is off, or when it already was in its
dead-letter queue) it is dropped, counted and logged. A replay (``replay``) reads those
headers back to send it where it came from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

from twisted.logger import Logger

from ._destination import Destination
from ._message import Message
from ._names import parse_destination
from ._policy import DestinationPolicy
from ._queue import Queue

log = Logger(namespace="stompbroker.broker")

#: Headers a dead letter carries; a replay takes them off.
DEAD_LETTER_HEADERS = ("original-destination", "dead-letter-reason", "original-delivery-count")


class DeadLetters:
    """Moves messages to their dead-letter queue, or drops them.

    ``queue`` finds (or makes) a queue by name, ``next_seq`` numbers the new message,
    ``counters`` counts broker-wide events.
    """

    def __init__(
        self, queue: Callable[[str], Queue], next_seq: Callable[[], int], counters: Counter[str]
    ) -> None:
        self._queue = queue
        self._next_seq = next_seq
        self._counters = counters

    def dead_letter(
        self,
        message: Message,
        reason: str,
        policy: DestinationPolicy,
        source: Destination | None = None,
    ) -> None:
        """Move ``message`` (from ``source``, which let go of its row) to its dead-letter
        queue, or drop it (counted, logged)."""
        stats = source.stats if source is not None else None
        target = policy.dead_letter_queue
        if reason == "expired":
            self._counters["expired"] += 1
            if stats is not None:
                stats.expired += 1
            if not policy.dead_letter_expired:
                target = None
        if target is None or message.destination == target:
            self._counters["dropped"] += 1
            if stats is not None:
                stats.dropped += 1
            log.info(
                "dropped message {id} from {destination} ({reason})",
                id=message.message_id,
                destination=message.destination,
                reason=reason,
            )
            return
        self._counters["dead-lettered"] += 1
        if stats is not None:
            stats.dead_lettered += 1
        _, name = parse_destination(target)
        self._queue(name).enqueue(self._dead(message, target, reason))

    def _dead(self, message: Message, target: str, reason: str) -> Message:
        """The message that goes to the dead-letter queue ``target`` for ``message``."""
        headers = dict(message.headers)
        headers.setdefault("original-destination", message.destination)
        headers["dead-letter-reason"] = reason
        headers["original-delivery-count"] = str(message.delivery_count)
        return Message(
            message.message_id,
            target,
            headers,
            message.body,
            message.persistent,
            self._next_seq(),
            message.priority,
        )


def replay(message: Message, here: str) -> tuple[str, dict[str, str]] | None:
    """Where a dead letter waiting in ``here`` goes back to, and with which headers; None if
    it cannot (no ``original-destination``, or it names ``here``).

    An expired message goes back without its ``expires`` (its ``ttl``, if it had one, counts
    from the replay).
    """
    headers: Mapping[str, str] = message.headers
    original = headers.get("original-destination")
    if not original or original == here:
        return None
    again = {k: v for k, v in headers.items() if k not in DEAD_LETTER_HEADERS}
    if headers.get("dead-letter-reason") == "expired":
        again.pop("expires", None)
    return original, again

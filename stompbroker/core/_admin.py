"""What an administrator may do to a running broker: purge, delete, replay dead letters.

Each action is logged. A destination that clients are using (a consumer is attached) is never
deleted from under them: the action is refused (``Conflict``) and says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from ._dead_letters import replay
from ._durable import DurableSubscription
from ._inspect import find
from ._names import DestinationError
from ._queue import Queue
from ._stats import StatsKey

if TYPE_CHECKING:
    from ._broker import Broker

log = Logger(namespace="stompbroker.admin")


class AdminError(Exception):
    """An action that cannot be done as asked; ``str()`` says why, for the operator."""


class NotFound(AdminError):
    """No such destination."""


class Conflict(AdminError):
    """The destination is in a state that forbids the action (a consumer is attached, ...)."""


def _queue(broker: Broker, kind: str, name: str, action: str) -> Queue | None:
    """The live queue-like destination (None: a forgotten one, which holds nothing)."""
    destination = find(broker, kind, name)
    if destination is None:
        if (kind, name) in broker.statistics.retired:
            return None
        raise NotFound(f"no {kind} named {name!r}")
    if not isinstance(destination, Queue):
        raise AdminError(f"only queues and durable subscriptions can be {action}, not a {kind}")
    return destination


def purge_destination(broker: Broker, kind: str, name: str) -> int:
    """Drop every message waiting in a queue (or durable subscription); return how many.

    Messages in flight (delivered, not yet acknowledged) stay.
    """
    queue = _queue(broker, kind, name, "purged")
    if queue is None:
        return 0
    count = queue.purge()
    broker.counters["purged"] += count
    log.info("purged {count} message(s) from {kind} {name}", count=count, kind=kind, name=name)
    broker.forget_if_unused(queue)
    return count


def delete_destination(broker: Broker, kind: str, name: str) -> int:
    """Delete a destination nobody consumes from, with what it holds; return how many
    messages went with it."""
    if kind.startswith("temp-"):
        raise Conflict("a temporary destination belongs to its connection: close that instead")
    destination = find(broker, kind, name)
    key: StatsKey = (kind, name)
    if destination is None:
        kept = broker.statistics.retired.pop(key, None)
        if kept is None:
            raise NotFound(f"no {kind} named {name!r}")
        broker.statistics.drop(kept[0])
        return 0
    if destination.subscriptions:
        count = len(destination.subscriptions)
        raise Conflict(f"{kind} {name!r} has {count} consumer(s); they must leave first")
    if isinstance(destination, DurableSubscription):
        held = destination.depth()
        try:
            broker.delete_durable(destination.client_id, destination.subscription_name)
        except DestinationError as exc:
            raise Conflict(str(exc)) from None
    else:
        held = broker.destinations.delete(destination)
        broker.counters["purged"] += held
    log.info("deleted {kind} {name} ({held} message(s))", kind=kind, name=name, held=held)
    return held


def replay_dead_letters(broker: Broker, kind: str, name: str, limit: int = 0) -> dict[str, int]:
    """Send the dead letters waiting in a queue back to their ``original-destination``.

    Returns ``replayed``, ``skipped`` (no ``original-destination``, or it names this same
    queue), ``failed`` (the original destination refused it: gone, full), and ``remaining``
    (still waiting here). Only messages in memory are replayed (at most the queue's memory
    window): call again for those that were paged out. ``limit`` (0: none) bounds how many.
    An expired message comes back with its ``ttl`` (if it had one) counted from now.
    """
    queue = _queue(broker, kind, name, "replayed")
    result = {"replayed": 0, "skipped": 0, "failed": 0, "remaining": 0}
    if queue is None:
        return result
    for message in list(queue.buffer):
        if limit and result["replayed"] >= limit:
            break
        back = replay(message, queue.address)
        if back is None:
            result["skipped"] += 1
            continue
        original, headers = back
        try:
            broker.send(original, headers, message.body, message.persistent)
        except (DestinationError, ValueError) as exc:
            result["failed"] += 1
            log.warn(
                "could not replay {id} to {destination}: {error}",
                id=message.message_id,
                destination=original,
                error=str(exc),
            )
            continue
        queue.discard(message)
        result["replayed"] += 1
    result["remaining"] = queue.depth()
    queue.backlog.fill()  # the next page of dead letters, for the next call
    log.info(
        "replayed {replayed} dead letter(s) from {kind} {name}; {skipped} skipped,"
        " {failed} failed, {remaining} remaining",
        kind=kind,
        name=name,
        **result,
    )
    broker.forget_if_unused(queue)
    return result

"""Duplicate detection: the ids of messages a queue has taken, so that a resent one is not
delivered twice.

A SEND may carry ``_AMQ_DUPL_ID`` (Artemis' spelling). Each queue remembers the ids it
took, oldest first, in a ``DuplicateWindow``:

* at most ``duplicate_window`` ids (the policy's; 0: no detection); a new one pushes the
  oldest out;
* each for ``duplicate_ttl_ms`` (0: until pushed out), measured with the broker's clock;
* a send whose id is remembered is a *duplicate*: it gets its receipt, is not delivered,
  and is counted (``duplicates``);
* the ids of persistent messages go to the store with the message's row, in the same batch
  (``IMessageStore.remember``), and leave it when pushed out (``forget``): after a crash
  an id is remembered exactly when its message was kept. An ACK does not forget an id.

The windows belong to the ``Router`` by queue address, not to the ``Queue``: a queue the
broker forgets when it is empty keeps its window.

In a cluster (a store with ``ISharedQueues``), a shared queue's window is the cluster's,
in the database: a send with an id is not checked here but published with it
(``deliver_once``, ``SharedBacklog.hold_once``); the batch that writes it says whether it
took the id, and the message is delivered (claimed) only then, or counted as a duplicate.
A scheduled send's id is taken the same way, at the send, by the batch that writes its
scheduled record for the cluster (``SharedSchedule.hold``, ``ISharedQueues.schedule_once``).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from ._message import Message
from ._send_headers import MessageError
from ._shared import SharedBacklog

if TYPE_CHECKING:
    from ._registry import Destinations
    from ._routing import Route

#: The header naming a message's id for duplicate detection.
DUPLICATE_HEADER = "_AMQ_DUPL_ID"
#: The longest id accepted, in characters.
MAX_DUPLICATE_ID = 256


def check_duplicate_id(value: str) -> None:
    """Raise the MessageError an unusable ``_AMQ_DUPL_ID`` value meets."""
    if not value or len(value) > MAX_DUPLICATE_ID:
        raise MessageError(
            f"invalid {DUPLICATE_HEADER} {value[:40]!r}: expected 1 to"
            f" {MAX_DUPLICATE_ID} characters"
        )


class DuplicateWindow:
    """The ids one queue took lately: id -> expiry in epoch ms (0: none), oldest first."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: OrderedDict[str, float] = OrderedDict()

    def seen(self, dupl_id: str, now_ms: float) -> bool:
        """Whether ``dupl_id`` is remembered and not expired (an expired one is forgotten)."""
        expires = self.ids.get(dupl_id)
        if expires is None:
            return False
        if expires and expires <= now_ms:
            del self.ids[dupl_id]
            return False
        return True

    def add(self, dupl_id: str, expires: float, size: int) -> list[str]:
        """Remember ``dupl_id`` until ``expires``; return the ids pushed out (``size``: most)."""
        ids = self.ids
        ids[dupl_id] = expires
        ids.move_to_end(dupl_id)
        pushed = []
        while len(ids) > size:
            pushed.append(ids.popitem(last=False)[0])
        return pushed


class Duplicates:
    """The windows of every queue, by address; ``persist(address, id, expires)`` and
    ``forget(address, id)`` tell the store (None: no store). Duplicates found are counted
    in ``counters`` and the queue's statistics."""

    def __init__(
        self, now_ms: Callable[[], float], destinations: Destinations, counters: Counter[str]
    ) -> None:
        self._now_ms = now_ms
        self._destinations = destinations
        self._counters = counters
        self.windows: dict[str, DuplicateWindow] = {}
        self.persist: Callable[[str, str, float], None] | None = None
        self.forget: Callable[[str, str], None] | None = None

    # -- a send's routes ---------------------------------------------------------------

    def shared(self, route: Route) -> bool:
        """Whether the cluster's database decides for ``route``: a shared queue that
        detects duplicates."""
        return (
            route[0] == "queue"
            and bool(route[3].duplicate_window)
            and self._destinations.shared is not None
        )

    def refused(self, route: Route, dupl_id: str) -> bool:
        """Whether the queue of ``route`` took ``dupl_id`` lately, by this node's window
        (counted if so); never for a shared queue (``deliver_once`` finds out later)."""
        kind, name, address, policy, _ = route
        if kind != "queue" or not policy.duplicate_window or self.shared(route):
            return False
        if not self.seen(address, dupl_id):
            return False
        self.count(name)
        return True

    def remember(self, route: Route, message: Message, dupl_id: str) -> None:
        """The queue of ``route`` took ``message`` with ``dupl_id``: into its window (not a
        shared queue's: its batch wrote it)."""
        kind, _, address, policy, _ = route
        if kind == "queue" and policy.duplicate_window and not self.shared(route):
            self.took(
                address,
                dupl_id,
                policy.duplicate_window,
                policy.duplicate_ttl_ms,
                message.persistent,
            )

    def deliver_once(
        self, route: Route, message: Message, dupl_id: str, owner: str | None
    ) -> Deferred[None]:
        """Publish ``message`` to the shared queue of ``route`` if no node's send took
        ``dupl_id`` lately; fires once its batch committed (counted as a duplicate, or as
        an arrival)."""
        _, name, _, policy, _ = route
        queue = self._destinations.queue(name)
        queue.senders.add(owner)
        backlog = queue.backlog
        assert isinstance(backlog, SharedBacklog), "a queue of a cluster has a shared backlog"
        window, ttl_ms = policy.duplicate_window, policy.duplicate_ttl_ms
        taken = backlog.hold_once(message, dupl_id, window, ttl_ms)
        backlog.fill()
        return taken.addCallback(self._answered, name)

    def _answered(self, taken: bool, name: str) -> None:
        if taken:
            queue = self._destinations.queue(name)
            queue.arrived += 1
        else:
            self.count(name)

    def count(self, name: str) -> None:
        """A send to queue ``name`` was a duplicate."""
        queue = self._destinations.queue(name)
        queue.stats.duplicates += 1
        self._counters["duplicates"] += 1

    # -- the windows -------------------------------------------------------------------

    def seen(self, address: str, dupl_id: str) -> bool:
        """Whether queue ``address`` took a message with ``dupl_id`` within its window."""
        window = self.windows.get(address)
        if window is None:
            return False
        if dupl_id not in window.ids:
            return False
        if window.seen(dupl_id, self._now_ms()):
            return True
        if self.forget is not None:
            self.forget(address, dupl_id)  # it expired: the store lets it go too
        return False

    def took(self, address: str, dupl_id: str, size: int, ttl_ms: int, persistent: bool) -> None:
        """Queue ``address`` took a message with ``dupl_id``: remember it (and store it)."""
        window = self.windows.get(address)
        if window is None:
            window = self.windows[address] = DuplicateWindow()
        expires = self._now_ms() + ttl_ms if ttl_ms else 0.0
        pushed = window.add(dupl_id, expires, size)
        if persistent and self.persist is not None:
            self.persist(address, dupl_id, expires)
        if pushed and self.forget is not None:
            for old in pushed:
                self.forget(address, old)

    def restore(self, address: str, dupl_id: str, expires: float) -> None:
        """At start: a remembered id from the store (oldest first)."""
        if expires and expires <= self._now_ms():
            if self.forget is not None:
                self.forget(address, dupl_id)
            return
        window = self.windows.get(address)
        if window is None:
            window = self.windows[address] = DuplicateWindow()
        window.ids[dupl_id] = expires

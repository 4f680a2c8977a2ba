"""The paged backlog: a queue keeps a bounded window of messages in memory, the rest on disk.

``PagedBacklog`` is the ``Backlog`` (``_backlog``) of every queue and durable subscription of
a broker with a store: it writes persistent messages behind to the store, pages out what does
not fit the window, and is the one place that deletes the queue's rows.

States of a stored queue::

    in memory --(window full)--> paging --(every paged message loaded)--> in memory

* In memory: new messages join the queue's buffer (persistent ones are also
  written to the store).
* Paging: every new message, persistent or not, goes to the store only (a
  non-persistent one as a *transient* row) and is counted here by priority, so
  that order is kept: within a priority, nothing new overtakes a paged message.
* Whenever the buffer falls below half the window, the backlog loads the next
  page: the highest priority with paged messages first, oldest first. One load
  is in flight at a time; messages paged meanwhile are counted and loaded later.
* A high-priority message paged while lower ones sit in memory waits until the
  buffer drains below half the window: priority holds across pages only that far.
* For every priority with paged messages, the rows with ``seq`` at or after its cursor
  are exactly the paged ones (what memory holds, or has in flight, came before).
* A paged message whose latency is measured (``Message.born``) leaves its time here,
  by ``seq``, and gets it back when loaded (lost at a restart).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._message import PRIORITIES, Message
from ._store import TRANSIENT, IMessageStore

if TYPE_CHECKING:
    from ._queue import Queue
    from ._subscription import Subscription

log = Logger(namespace="stompbroker.paging")

#: Messages of at least this size count as this many bytes (headers, bookkeeping).
OVERHEAD_BYTES = 256


class PagedBacklog:
    """The paged part of one queue and its rows: counts and the next ``seq`` to load, per
    priority."""

    __slots__ = (
        "_sized_by",
        "_sized_for",
        "born",
        "bytes",
        "counts",
        "cursors",
        "loading",
        "queue",
        "size",
        "store",
        "total",
    )

    def __init__(self, queue: Queue, store: IMessageStore) -> None:
        self.queue = queue
        self.store = store
        self.counts = [0] * PRIORITIES
        self.cursors = [0] * PRIORITIES
        #: Messages on disk only, not yet loaded, and the size of their bodies.
        self.total = 0
        self.bytes = 0
        self.loading = False
        #: The window for messages of the size seen last, that size (-1: none yet) and
        #: the policy it was worked out under (a reload may change it).
        self.size = queue.policy.memory_window
        self._sized_for = -1
        self._sized_by = queue.policy
        #: When the timed paged messages arrived, by seq.
        self.born: dict[int, float] = {}

    #: Dispatch asks for a fill only while something is paged out.
    refills = False

    def idle(self) -> None:
        """The queue's last subscription left: what memory holds stays there."""

    def window(self, message: Message) -> int:
        """How many messages like ``message`` the queue may keep in memory."""
        length = len(message.body)
        policy = self.queue.policy
        if length == self._sized_for and policy is self._sized_by:
            return self.size
        by_size = policy.memory_window_bytes // (length + OVERHEAD_BYTES)
        self.size = size = max(1, min(policy.memory_window, by_size))
        self._sized_for = length
        self._sized_by = policy
        return size

    def holds_back(self, message: Message) -> bool:
        """Whether a new message goes to disk only: the queue pages already, or its buffer
        holds the window."""
        if self.total:
            return True
        held = len(self.queue.buffer)
        return bool(held) and held >= self.window(message)

    def keep(self, message: Message) -> Deferred[None]:
        """A new persistent message joins the buffer: write its row."""
        queue = self.queue
        message.store_key = queue.store_key
        return self.store.add(queue.store_key, message, queue.policy.fsync)

    def handed(self, subscription: Subscription, message: Message) -> None:
        """A stored message went out: its row goes (auto ack), or records the delivery."""
        assert message.store_key is not None
        if subscription.auto:
            self.store.remove(message.store_key, message)
            message.store_key = None
        else:
            self.store.delivered(message.store_key, message)

    def done(self, message: Message) -> None:
        """A message is finished: its row goes."""
        if message.store_key is not None:
            self.store.remove(message.store_key, message)
            message.store_key = None

    def group_closed(self, group: str) -> None:
        """One node's groups are the queue's alone: nothing is stored of them."""

    def drop_all(self) -> None:
        """The queue is deleted: every row goes."""
        self.store.drop(self.queue.store_key)

    def renewed(self) -> PagedBacklog:
        """An empty paged backlog for the same queue and store (after a purge or a close)."""
        return PagedBacklog(self.queue, self.store)

    def hold(self, message: Message) -> Deferred[None]:
        """Keep ``message`` on disk only; fires as its persistence asks."""
        queue = self.queue
        sync = queue.policy.fsync if message.persistent else TRANSIENT
        written = self.store.add(queue.store_key, message, sync)
        priority = message.priority
        if not self.counts[priority]:
            self.cursors[priority] = message.seq
        self.counts[priority] += 1
        self.total += 1
        self.bytes += len(message.body)
        if message.born:
            self.born[message.seq] = message.born
        return written

    def restore(self, priorities: dict[int, tuple[int, int]], size: int) -> None:
        """At start: what the store holds for this queue (``size`` bytes) is all paged."""
        for priority, (count, first) in priorities.items():
            self.counts[priority] = count
            self.cursors[priority] = first
            self.total += count
        self.bytes += size
        self.fill()

    def fill(self) -> None:
        """Load the next page if the buffer is below half the window."""
        if self.loading or not self.total:
            return
        queue = self.queue
        room = self.size - len(queue.buffer)
        if room * 2 < self.size:
            return
        priority = max(p for p in range(PRIORITIES) if self.counts[p])
        limit = max(1, min(room, self.counts[priority]))
        self.loading = True
        loaded = self.store.load(queue.store_key, priority, self.cursors[priority], limit)
        loaded.addCallbacks(self._loaded, self._failed, callbackArgs=(priority,))

    def _loaded(self, messages: list[Message], priority: int) -> None:
        self.loading = False
        if self.queue.backlog is not self:
            return  # the queue was closed (a deleted durable subscription) meanwhile
        count = len(messages)
        if count == 0:
            log.error(
                "{queue}: {count} paged messages of priority {priority} are missing from the store",
                queue=self.queue.address,
                count=self.counts[priority],
                priority=priority,
            )
            count = self.counts[priority]
        else:
            self.cursors[priority] = messages[-1].seq + 1
            self.window(messages[len(messages) // 2])
        self.counts[priority] -= count
        self.total -= count
        self.bytes = max(0, self.bytes - sum(len(m.body) for m in messages))
        born = self.born
        if born:
            for message in messages:
                message.born = born.pop(message.seq, 0.0)
        self.queue.paged_in(messages)

    def purge(self, dropped: list[Message]) -> int:
        """Delete the rows of ``dropped`` (the queue's buffer) and every paged row; return
        how many paged messages went. The backlog is spent: the queue takes ``renewed()``."""
        for message in dropped:
            self.done(message)
        key = self.queue.store_key
        for priority, count in enumerate(self.counts):
            if count:
                self.store.drop_from(key, priority, self.cursors[priority])
        return self.total

    def _failed(self, failure: object) -> None:
        self.loading = False
        log.error("{queue}: loading paged messages failed", queue=self.queue.address)

"""Scheduled delivery in a cluster: the scheduled messages are the cluster's, in the database
every node shares (``ISharedQueues.schedule_shared``), and whichever live node asks first
when one is due releases it, once.

A node keeps no record in memory, only a timer, for the earliest due time it knows of: that
of the messages scheduled through it, and the cluster's earliest as the store last read it
(every poll, ``follow_scheduled``; and each release's answer). When it fires, the node asks
the store to *release* what is due (``release_due``), in the transaction of one batch: a
queue's or a durable subscription's record becomes a new message of its shared queue there,
and a topic's comes back (``Released.handed``) for this node to publish (to its subscribers,
and through the bus to the other nodes'), after the commit: at most once, as any topic
message. A repeating record is moved on by its period in the same transaction, a last one
deleted; rows another node's batch is releasing are skipped (``FOR UPDATE SKIP LOCKED``).
States::

    idle --a due time known (scheduled here; the poll; an answer)--> armed
    armed --its time--> asking --answer: as many as asked: ask again at once
                                       \\-- fewer: armed at the next due time after now,
                                           else idle (due ones are another node's: the
                                           poll tells if they are still waiting)
                               --failed: idle (the poll tells what is due)

A node that dies while releasing rolls its transaction back: its records wait, due, for the
next node's timer or poll. ``counts`` are the cluster's as last polled, plus what was
scheduled here since and less what was released here for the last time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._clock import Clock
from ._registry import Fanout
from ._scheduled import RELEASE_BATCH, EarliestTimer, Release, count_key
from ._store import TRANSIENT, ISharedQueues, Released, ScheduledRecord

log = Logger(namespace="stompbroker.scheduled")


class SharedSchedule:
    """Scheduled messages kept by the cluster's store, released by one node when due; a
    message's ids there start with ``id_prefix``; ``duplicate(queue name)`` counts a
    scheduled send whose ``_AMQ_DUPL_ID`` the queue had taken."""

    def __init__(
        self,
        clock: Clock,
        now_ms: Callable[[], float],
        release: Release,
        store: ISharedQueues,
        fanout: Fanout,
        id_prefix: str,
        duplicate: Callable[[str], None],
    ) -> None:
        self._clock = clock
        self._now_ms = now_ms
        self._release = release
        self.store = store
        self._fanout = fanout
        self._id_prefix = id_prefix
        #: Counts a scheduled send to a queue (by name) that was a duplicate.
        self._duplicate = duplicate
        self._timer = EarliestTimer(clock, self._fire)
        #: A release is on its way; the earliest due time learnt meanwhile (None: none).
        self._asking = False
        self._meanwhile: float | None = None
        self._stopped = False
        #: Scheduled messages of the cluster by what they are counted under: (kind, name).
        self.counts: Counter[tuple[str, str]] = Counter()
        #: Records this node released.
        self.released = 0
        store.follow_scheduled(self._known)

    def __len__(self) -> int:
        return sum(self.counts.values())

    # -- holding --------------------------------------------------------------------

    def hold(
        self,
        record: ScheduledRecord,
        owner: str | None,
        sync: str,
        once: tuple[str, int, int] | None = None,
    ) -> Deferred[None] | None:
        """Keep ``record`` for the cluster until due; the Deferred of its write (None:
        nothing to wait for: non-persistent, or a durable subscription's copy it does not
        select). ``owner`` is not kept: a release anywhere is nobody's send. With ``once``
        (a queue's record: its ``_AMQ_DUPL_ID``, the queue's window and TTL), it is kept
        only if the cluster's database finds the id new for the queue (else counted as a
        duplicate); the Deferred fires once that is known, persistent or not."""
        target = record.target
        into: str | None = None
        if target[0] == "queue":
            into = "/queue/" + target[1]
        elif target[0] == "durable":
            durable = self._fanout.durable(target[1], target[2])
            if durable is not None and durable.cluster_wide:
                if not durable.wants(record.message):
                    return None  # its selector is fixed: it would not take it when due
                into = durable.store_key
        self.counts[count_key(target)] += 1
        persistent = record.message.persistent
        level = sync if persistent else TRANSIENT
        self._arm(record.due)
        if once is not None:
            assert into is not None, "only a queue's record takes an id"
            taken = self.store.schedule_once(record, into, *once, level)
            return taken.addCallback(self._taken, target)
        written = self.store.schedule_shared(record, into, level)
        return written if persistent else None

    def _taken(self, taken: bool, target: tuple[str, ...]) -> None:
        """Whether a scheduled send to queue ``target`` took its duplicate id (else it was
        not kept: a duplicate)."""
        if not taken:
            self._forget(target)
            self._duplicate(target[1])

    def recover(self, counts: tuple[tuple[tuple[str, ...], int], ...]) -> None:
        """At start: release what is due now (whoever scheduled it), and learn what comes
        next. ``counts`` (this node's own table's) are none since the cluster's."""
        for target, count in counts:
            self.counts[count_key(target)] += count
        self._arm(0)

    # -- releasing ------------------------------------------------------------------

    def _known(self, due: int | None, counts: tuple[tuple[tuple[str, ...], int], ...]) -> None:
        """The poll read the cluster's scheduled records: the earliest due, the counts."""
        self.counts = Counter()
        for target, count in counts:
            self.counts[count_key(target)] += count
        if due is not None:
            self._arm(due)

    def _arm(self, due_ms: float) -> None:
        """Have the timer fire at ``due_ms`` (epoch ms) unless it fires before."""
        if self._stopped:
            return
        if self._asking:
            if self._meanwhile is None or due_ms < self._meanwhile:
                self._meanwhile = due_ms
            return
        self._timer.within(max(0.0, (due_ms - self._now_ms()) / 1000.0))

    def _fire(self) -> None:
        if self._stopped:
            return
        self._asking = True
        now = int(self._now_ms())
        asked = self.store.release_due(now, RELEASE_BATCH, self._id_prefix)
        asked.addCallbacks(self._released, self._failed, callbackArgs=(now,))

    def _released(self, released: Released, now: int) -> None:
        self._asking = False
        meanwhile, self._meanwhile = self._meanwhile, None
        for record in released.handed:
            try:
                self._release(record, None)
            except Exception:
                log.failure("releasing a scheduled message to {to} failed", to=record.target)
        for target in released.ended:
            self._forget(target)
        self.released += released.count
        if released.count >= RELEASE_BATCH:
            self._arm(0)  # more may be due
        elif released.next_due is not None and released.next_due > now:
            self._arm(released.next_due)
        if meanwhile is not None:
            self._arm(meanwhile)

    def _forget(self, target: tuple[str, ...]) -> None:
        """One record of ``target`` fewer in the counts."""
        key = count_key(target)
        if self.counts[key] > 1:
            self.counts[key] -= 1
        else:
            del self.counts[key]

    def _failed(self, failure: Any) -> None:
        """The release's batch failed (the store logged why): nothing was released; the
        next poll finds it due (and what was learnt meanwhile is armed)."""
        self._asking = False
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            self._arm(meanwhile)

    # -- shutting down ----------------------------------------------------------------

    def stop(self) -> None:
        """Release nothing more (the broker is stopping; the cluster keeps what is due)."""
        self._timer.cancel()
        self._stopped = True

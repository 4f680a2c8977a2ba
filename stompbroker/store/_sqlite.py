"""The embedded durable store: one SQLite database in WAL mode, written in batches off the reactor.

How a write travels::

    reactor thread                      worker thread (one batch at a time)
    add/remove/delivered/load/...  -->  pending batch
    flush timer fires, or the running   BEGIN; durable definitions and drops;
    batch ends with more pending  ----> inserts; delivery counts; deletes; loads;
                                        COMMIT (fsync when the batch asks)
    waiters fire, loads answer     <--  results

* Calls made while a batch is in the worker gather in the next one, so
  concurrent producers share one fsync (group commit): the more producers, the
  more messages per fsync.
* A batch fsyncs at commit (``PRAGMA synchronous=FULL``) when it holds a row
  added at sync level ``always`` or ``batch``; otherwise it commits with
  ``synchronous=NORMAL``: written to the operating system, not forced to disk.
* ``always`` and ``never`` adds, loads and durable definitions start a batch on
  the next reactor turn; ``batch`` adds wait up to ``batch_ms``; removals,
  delivery counts and transient rows up to ``lazy_ms``.
* A row removed before its batch left the reactor is never written (a message
  consumed as fast as it arrives costs no disk work); its waiter still fires
  with the batch.
* Freed pages are reused, and given back to the file system a slice per batch
  once they make up a quarter of the file (``auto_vacuum=INCREMENTAL``).
* The worker times each COMMIT with ``timer`` (a monotonic clock: it measures, it never
  decides); ``commits`` counts the batches and holds the times of those that fsynced.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from stompbroker.core import (
    TRANSIENT,
    Clock,
    CommitStats,
    DelayedCall,
    DurableRecord,
    IMessageStore,
    Message,
    Recovery,
    ScheduledRecord,
)

from ._database import FORGET, REMEMBER, RESCHEDULE, UNSCHEDULE, Database, Spot

log = Logger(namespace="stompbroker.store")

#: Runs a function in the worker thread and fires with its result on the reactor.
Runner = Callable[..., "Deferred[Any]"]

#: The database file's name in the data directory.
FILENAME = "stompbroker.sqlite3"
#: Free pages are given back to the file system when the store has been idle this
#: long (seconds), a slice at a time (``_database.RECLAIM_PAGES``), the next slice
#: RECLAIM_NEXT_S later; meanwhile SQLite reuses them.
RECLAIM_IDLE_S = 1.0
RECLAIM_NEXT_S = 0.05


class _Batch:
    """Everything asked for since the last batch left for the worker."""

    __slots__ = (
        "adds",
        "counts",
        "deletes",
        "first",
        "loads",
        "scheduled",
        "scheduled_loads",
        "sync",
        "urgent",
        "waiters",
    )

    def __init__(self) -> None:
        self.adds: dict[Spot, Message] = {}
        self.counts: dict[Spot, int] = {}
        self.deletes: list[Spot] = []
        #: Drops and durable definitions: (sql, parameters), applied first.
        self.first: list[tuple[str, tuple[Any, ...]]] = []
        self.loads: list[tuple[Spot, int, Deferred[list[Message]]]] = []
        #: Scheduled records to write, by seq; scheduled loads.
        self.scheduled: dict[int, ScheduledRecord] = {}
        self.scheduled_loads: list[
            tuple[tuple[int, int], int, Deferred[list[ScheduledRecord]]]
        ] = []
        self.waiters: list[Deferred[None]] = []
        #: Whether to fsync at commit, and whether to leave on the next reactor turn.
        self.sync = False
        self.urgent = False

    def size(self) -> int:
        return (
            len(self.adds)
            + len(self.counts)
            + len(self.deletes)
            + len(self.first)
            + len(self.scheduled)
        )

    def writes(self) -> bool:
        return bool(
            self.adds
            or self.counts
            or self.deletes
            or self.first
            or self.loads
            or self.scheduled
            or self.scheduled_loads
        )


@implementer(IMessageStore)
class SqliteStore:
    """Messages and durable definitions in ``<data dir>/stompbroker.sqlite3``.

    ``run`` executes a function in a worker thread (``deferToThreadPool``; the
    tests pass one that runs it at once); ``clock`` schedules the flushes; ``timer``
    measures commits in the worker.
    """

    name = "sqlite"

    def __init__(
        self,
        path: str,
        clock: Clock,
        run: Runner,
        batch_ms: float = 5.0,
        lazy_ms: float = 50.0,
        max_batch: int = 20_000,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.path = path
        self._timer_fn = timer
        self.clock = clock
        self._run = run
        self._batch_s = batch_ms / 1000.0
        self._lazy_s = lazy_ms / 1000.0
        self._max_batch = max_batch
        self._db: Database | None = None
        self._pending = _Batch()
        self._busy = False
        self._timer: DelayedCall | None = None
        self._due = 0.0
        self._idle: list[Deferred[None]] = []
        #: Whether rows were deleted since free pages were last given back.
        self._freed = False
        self._reclaim_timer: DelayedCall | None = None
        #: Batches committed with an fsync.
        self.fsyncs = 0
        self.commits = CommitStats()

    # -- opening -------------------------------------------------------------------

    def open(self) -> Deferred[Recovery]:
        database = Database(self.path, self._timer_fn)
        self._db = database
        return self._run(database.open)

    # -- writes --------------------------------------------------------------------

    def add(self, store_key: str, message: Message, sync: str) -> Deferred[None]:
        batch = self._pending
        batch.adds[(store_key, message.priority, message.seq)] = message
        return self._wait(batch, sync)

    def _wait(self, batch: _Batch, sync: str) -> Deferred[None]:
        """A waiter for a write at level ``sync`` in ``batch``, which leaves in time for it."""
        waiter: Deferred[None] = Deferred()
        batch.waiters.append(waiter)
        if sync == "always" or sync == "never":
            batch.sync = batch.sync or sync == "always"
            batch.urgent = True
            self._schedule(0.0)
        elif sync == TRANSIENT:
            self._schedule(self._lazy_s)
        else:
            batch.sync = True
            self._schedule(self._batch_s)
        return waiter

    def delivered(self, store_key: str, message: Message) -> None:
        self._pending.counts[(store_key, message.priority, message.seq)] = message.delivery_count
        self._schedule(self._lazy_s)

    def remove(self, store_key: str, message: Message) -> None:
        batch = self._pending
        spot = (store_key, message.priority, message.seq)
        batch.counts.pop(spot, None)
        if batch.adds.pop(spot, None) is None:
            batch.deletes.append(spot)
            self._schedule(self._lazy_s)

    def drop(self, store_key: str) -> None:
        batch = self._pending
        for spot in [spot for spot in batch.adds if spot[0] == store_key]:
            del batch.adds[spot]
        batch.first.append(("DELETE FROM messages WHERE qkey=?", (store_key,)))
        self._schedule(self._lazy_s)

    def drop_from(self, store_key: str, priority: int, from_seq: int) -> None:
        batch = self._pending
        for spot in [s for s in batch.adds if s[0] == store_key and s[1] == priority]:
            if spot[2] >= from_seq:
                del batch.adds[spot]
        batch.first.append(
            (
                "DELETE FROM messages WHERE qkey=? AND priority=? AND seq>=?",
                (store_key, priority, from_seq),
            )
        )
        self._schedule(self._lazy_s)

    def remember(self, address: str, dupl_id: str, expires: float) -> None:
        self._pending.first.append((REMEMBER, (address, dupl_id, int(expires))))
        self._schedule(self._lazy_s)

    def forget(self, address: str, dupl_id: str) -> None:
        self._pending.first.append((FORGET, (address, dupl_id)))
        self._schedule(self._lazy_s)

    def schedule(self, record: ScheduledRecord, sync: str) -> Deferred[None]:
        batch = self._pending
        batch.scheduled[record.message.seq] = record
        return self._wait(batch, sync)

    def unschedule(self, seq: int) -> None:
        if self._pending.scheduled.pop(seq, None) is None:
            self._pending.first.append((UNSCHEDULE, (seq,)))
            self._schedule(self._lazy_s)

    def reschedule(self, seq: int, due: int, repeats: int) -> None:
        batch = self._pending
        record = batch.scheduled.get(seq)
        if record is not None:
            batch.scheduled[seq] = replace(record, due=due, repeats=repeats)
            return
        batch.first.append((RESCHEDULE, (due, repeats, seq)))
        self._schedule(self._lazy_s)

    def load_scheduled(self, after: tuple[int, int], limit: int) -> Deferred[list[ScheduledRecord]]:
        answer: Deferred[list[ScheduledRecord]] = Deferred()
        self._pending.scheduled_loads.append((after, limit, answer))
        self._pending.urgent = True
        self._schedule(0.0)
        return answer

    def add_durable(self, record: DurableRecord) -> Deferred[None]:
        batch = self._pending
        batch.first.append(
            (
                "INSERT OR REPLACE INTO durables (client_id, name, pattern, selector, no_local)"
                " VALUES (?,?,?,?,?)",
                (
                    record.client_id,
                    record.name,
                    record.pattern,
                    record.selector,
                    int(record.no_local),
                ),
            )
        )
        batch.sync = batch.urgent = True
        waiter: Deferred[None] = Deferred()
        batch.waiters.append(waiter)
        self._schedule(0.0)
        return waiter

    def remove_durable(self, client_id: str, name: str) -> None:
        self._pending.first.append(
            ("DELETE FROM durables WHERE client_id=? AND name=?", (client_id, name))
        )
        self._schedule(self._lazy_s)

    def load(
        self, store_key: str, priority: int, from_seq: int, limit: int
    ) -> Deferred[list[Message]]:
        answer: Deferred[list[Message]] = Deferred()
        self._pending.loads.append(((store_key, priority, from_seq), limit, answer))
        self._pending.urgent = True
        self._schedule(0.0)
        return answer

    def flush(self) -> Deferred[None]:
        if not self._busy and not self._pending.writes() and not self._pending.waiters:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._idle.append(done)
        self._schedule(0.0)
        return done

    def close(self) -> Deferred[None]:
        if self._reclaim_timer is not None and self._reclaim_timer.active():
            self._reclaim_timer.cancel()
        self._reclaim_timer = None

        def closed(_: object) -> Deferred[None]:
            database, self._db = self._db, None
            if database is None:
                return succeed(None)
            return self._run(database.close)

        return self.flush().addCallback(closed)

    def size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(self.path + suffix).st_size
        return total

    # -- batching ------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        """Have the pending batch leave within ``delay`` s (or when the worker is free)."""
        if self._busy:
            return
        if self._pending.size() >= self._max_batch:
            delay = 0.0
        due = self.clock.seconds() + delay
        timer = self._timer
        if timer is not None and timer.active():
            if self._due <= due:
                return
            timer.cancel()
        self._due = due
        self._timer = self.clock.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        batch = self._pending
        if self._busy:
            return
        if not batch.writes():
            for waiter in batch.waiters:
                waiter.callback(None)
            batch.waiters.clear()
            self._settle_idle()
            return
        self._pending = _Batch()
        self._busy = True
        database = self._db
        assert database is not None, "the store is not open"
        work = self._run(
            database.write,
            list(batch.first),
            list(batch.adds.items()),
            [(count, *spot) for spot, count in batch.counts.items()],
            batch.deletes,
            [(spot, limit) for spot, limit, _ in batch.loads],
            batch.sync,
            list(batch.scheduled.values()),
            [(after, limit) for after, limit, _ in batch.scheduled_loads],
        )
        work.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _written(
        self,
        result: tuple[list[list[Message]], list[list[ScheduledRecord]], float],
        batch: _Batch,
    ) -> None:
        loaded, loaded_scheduled, elapsed = result
        self._busy = False
        self.commits.batches += 1
        if batch.sync:
            self.fsyncs += 1
            self.commits.fsync.observe(elapsed)
        if batch.deletes or batch.first:
            self._freed = True
        for waiter in batch.waiters:
            waiter.callback(None)
        for (_, _, answer), messages in zip(batch.loads, loaded, strict=True):
            answer.callback(messages)
        for (_, _, found), records in zip(batch.scheduled_loads, loaded_scheduled, strict=True):
            found.callback(records)
        self._next()

    def _failed(self, failure: Any, batch: _Batch) -> None:
        self._busy = False
        log.failure("the message store failed to write a batch", failure)
        for waiter in batch.waiters:
            waiter.errback(failure)
        for _, _, answer in batch.loads:
            answer.errback(failure)
        for _, _, found in batch.scheduled_loads:
            found.errback(failure)
        self._next()

    def _next(self) -> None:
        """The worker is free: send what gathered meanwhile, as soon as it asks."""
        pending = self._pending
        if pending.urgent or self._idle:
            self._schedule(0.0)
        elif pending.waiters:
            self._schedule(self._batch_s)
        elif pending.writes():
            self._schedule(self._lazy_s)
        else:
            self._settle_idle()
            if self._freed and self._reclaim_timer is None and self._db is not None:
                self._reclaim_timer = self.clock.callLater(RECLAIM_IDLE_S, self._reclaim)

    def _reclaim(self) -> None:
        """Idle: give free pages back to the file system, a slice at a time."""
        self._reclaim_timer = None
        database = self._db
        if self._busy or self._pending.writes() or database is None:
            return
        self._freed = False
        self._busy = True

        def done(more: bool) -> None:
            self._busy = False
            self._freed = self._freed or more
            self._next()
            timer = self._reclaim_timer
            if more and timer is not None and timer.active():
                # More to give back and still idle: the next slice soon.
                timer.cancel()
                self._reclaim_timer = self.clock.callLater(RECLAIM_NEXT_S, self._reclaim)

        def failed(failure: Any) -> None:
            log.failure("giving free space back failed", failure)
            done(False)

        self._run(database.reclaim).addCallbacks(done, failed)

    def _settle_idle(self) -> None:
        if self._busy or self._pending.writes() or self._pending.waiters:
            return
        idle, self._idle = self._idle, []
        for done in idle:
            done.callback(None)

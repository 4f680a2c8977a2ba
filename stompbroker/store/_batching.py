"""The reactor side of a durable store: calls gathered in batches, one batch at a time in a worker.

How a write travels::

    reactor thread                      worker thread (one batch at a time)
    add/remove/delivered/load/...  -->  pending batch
    flush timer fires, or the running   BEGIN; durable definitions and drops;
    batch ends with more pending  ----> inserts; delivery counts; deletes; loads;
                                        COMMIT (durable when the batch asks)
    waiters fire, loads answer     <--  results

* Calls made while a batch is in the worker gather in the next one, so
  concurrent producers share one commit (group commit): the more producers, the
  more messages per commit.
* A batch asks for a durable commit (``sync``) when it holds a row added at sync
  level ``always`` or ``batch``, or a durable definition; the database decides what
  that means (SQLite: an fsync, PostgreSQL: ``synchronous_commit``).
* ``always`` and ``never`` adds, loads and durable definitions start a batch on
  the next reactor turn; ``batch`` adds wait up to ``batch_ms``; removals,
  delivery counts and transient rows up to ``lazy_ms``.
* A row removed before its batch left the reactor is never written (a message
  consumed as fast as it arrives costs no database work); its waiter still fires
  with the batch.
* The worker times each COMMIT (a monotonic clock: it measures, it never decides);
  ``commits`` counts the batches and holds the times of those that asked to sync.

* A batch of the PostgreSQL store may carry the shared queues' work too (``Batch.shared``:
  ``_pg_shared``), applied last in the same transaction; its answer goes to the store's
  ``_shared_done`` once the batch's waiters and loads have fired.

The worker side is a ``Worker`` (``_database.Database`` for SQLite,
``_pg_database.PgDatabase`` for PostgreSQL); the statements of the ``first`` list are
the database's ``Statements``, each taking its parameters in the order given here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypedDict, Unpack

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from stompbroker.core import (
    TRANSIENT,
    Clock,
    CommitStats,
    DelayedCall,
    DurableRecord,
    Message,
    Recovery,
    ScheduledRecord,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from ._pg_shared import SharedBatch, SharedDone, SharedWork

log = Logger(namespace="stompbroker.store")

#: Runs a function in the worker thread and fires with its result on the reactor.
Runner = Callable[..., "Deferred[Any]"]
#: Where a row is: (store key, priority, seq).
Spot = tuple[str, int, int]
#: What a batch's loads and scheduled loads found, how long its COMMIT took (s), and what
#: its shared work found (``_pg_shared``; None: it had none).
Written = tuple[list[list[Message]], list[list[ScheduledRecord]], float, "SharedDone | None"]


class Statements(NamedTuple):
    """A database's statements for the work that goes first in a batch, in its dialect."""

    #: (store key)
    drop: str
    #: (store key, priority, from seq)
    drop_from: str
    #: (address, id, expires): remember, or remember again as the newest.
    remember: str
    #: (address, id)
    forget: str
    #: (seq)
    unschedule: str
    #: (due, repeats, seq)
    reschedule: str
    #: (client id, name, pattern, selector, no local): keep or replace.
    add_durable: str
    #: (client id, name)
    remove_durable: str


class Work(NamedTuple):
    """One batch as the worker applies it, in one transaction, in this order."""

    #: (sql of ``Statements``, parameters), applied first, in the order asked.
    first: list[tuple[str, tuple[Any, ...]]]
    adds: list[tuple[Spot, Message]]
    #: (delivery count, store key, priority, seq)
    counts: list[tuple[int, str, int, int]]
    deletes: list[Spot]
    #: (where to start, how many rows at most)
    loads: list[tuple[Spot, int]]
    #: Whether to commit durably.
    sync: bool
    scheduled: list[ScheduledRecord]
    #: (the first key (due, seq), how many records at most)
    scheduled_loads: list[tuple[tuple[int, int], int]]
    #: The shared queues' work (``_pg_shared``: the PostgreSQL store's only), applied last.
    shared: SharedWork | None = None


class Worker(Protocol):
    """The database connection a batching store hands its batches to, in the worker."""

    def open(self) -> Recovery: ...

    def write(self, work: Work) -> Written: ...

    def close(self) -> None: ...


def slices(adds: list[tuple[Spot, Message]], budget: int) -> list[list[tuple[Spot, Message]]]:
    """``adds`` cut into runs whose bodies stay under ``budget`` bytes (one row at least)."""
    out: list[list[tuple[Spot, Message]]] = []
    start = 0
    while start < len(adds):
        end, size = start + 1, len(adds[start][1].body)
        while end < len(adds) and size + len(adds[end][1].body) <= budget:
            size += len(adds[end][1].body)
            end += 1
        out.append(adds[start:end])
        start = end
    return out


class BatchOptions(TypedDict, total=False):
    """How a batching store batches (the keyword arguments of every such store)."""

    #: How long a ``batch`` add may wait for others to share its commit.
    batch_ms: float
    #: How long removals, delivery counts and transient rows may wait.
    lazy_ms: float
    #: A batch this large leaves at once.
    max_batch: int
    #: Measures the COMMITs (in the worker; a monotonic clock).
    timer: Callable[[], float]


class Batch:
    """Everything asked for since the last batch left for the worker."""

    __slots__ = (
        "adds",
        "counts",
        "deletes",
        "first",
        "loads",
        "scheduled",
        "scheduled_loads",
        "shared",
        "sync",
        "urgent",
        "waiters",
    )

    def __init__(self) -> None:
        self.adds: dict[Spot, Message] = {}
        self.counts: dict[Spot, int] = {}
        self.deletes: list[Spot] = []
        #: Drops, duplicate ids, durable definitions: (sql, parameters), applied first.
        self.first: list[tuple[str, tuple[Any, ...]]] = []
        self.loads: list[tuple[Spot, int, Deferred[list[Message]]]] = []
        #: Scheduled records to write, by seq; scheduled loads.
        self.scheduled: dict[int, ScheduledRecord] = {}
        self.scheduled_loads: list[
            tuple[tuple[int, int], int, Deferred[list[ScheduledRecord]]]
        ] = []
        self.waiters: list[Deferred[None]] = []
        #: The shared queues' work, made by the first call that asks for some.
        self.shared: SharedBatch | None = None
        #: Whether to commit durably, and whether to leave on the next reactor turn.
        self.sync = False
        self.urgent = False

    def size(self) -> int:
        return (
            len(self.adds)
            + len(self.counts)
            + len(self.deletes)
            + len(self.first)
            + len(self.scheduled)
            + (self.shared.size() if self.shared is not None else 0)
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
            or (self.shared is not None and self.shared.writes())
        )


class BatchingStore:
    """What SqliteStore and PostgresStore share: the IMessageStore calls gathered in batches.

    ``run`` executes a function in a worker thread (``deferToThreadPool``; the tests pass
    one that runs it at once); ``clock`` schedules the flushes; ``timer`` measures commits
    in the worker. A subclass says how to make its ``Worker`` (``_worker``) and which
    ``statements`` it speaks.
    """

    name = "batching"
    statements: Statements

    def __init__(self, clock: Clock, run: Runner, **options: Unpack[BatchOptions]) -> None:
        self.clock = clock
        self._run = run
        self._batch_s = options.get("batch_ms", 5.0) / 1000.0
        self._lazy_s = options.get("lazy_ms", 50.0) / 1000.0
        self._max_batch = options.get("max_batch", 20_000)
        self._timer_fn = options.get("timer", time.perf_counter)
        self._db: Worker | None = None
        self._pending = Batch()
        self._busy = False
        #: The last batch failed for want of the database (logged once, until one is written).
        self._unavailable = False
        self._timer: DelayedCall | None = None
        self._due = 0.0
        self._idle: list[Deferred[None]] = []
        #: Batches committed durably (with an fsync, or synchronous_commit on).
        self.fsyncs = 0
        self.commits = CommitStats()

    def _worker(self) -> Worker:
        """A new connection to the database, for the worker (not opened yet)."""
        raise NotImplementedError

    # -- opening -------------------------------------------------------------------

    def open(self) -> Deferred[Recovery]:
        database = self._worker()
        self._db = database
        return self._run(database.open)

    # -- writes --------------------------------------------------------------------

    def add(self, store_key: str, message: Message, sync: str) -> Deferred[None]:
        batch = self._pending
        batch.adds[(store_key, message.priority, message.seq)] = message
        return self._wait(batch, sync)

    def _wait(self, batch: Batch, sync: str) -> Deferred[None]:
        """A waiter for a write at level ``sync`` in ``batch``, which leaves in time for it."""
        waiter: Deferred[None] = Deferred()
        batch.waiters.append(waiter)
        self._leave_for(batch, sync)
        return waiter

    def _leave_for(self, batch: Batch, sync: str) -> None:
        """Have ``batch`` leave in time for, and commit as durably as, a write at ``sync``."""
        if sync == "always" or sync == "never":
            batch.sync = batch.sync or sync == "always"
            batch.urgent = True
            self._schedule(0.0)
        elif sync == TRANSIENT:
            self._schedule(self._lazy_s)
        else:
            batch.sync = True
            self._schedule(self._batch_s)

    def _first(self, sql: str, parameters: tuple[Any, ...]) -> None:
        """Apply ``sql`` first in the next batch, which leaves within ``lazy_ms``."""
        self._pending.first.append((sql, parameters))
        self._schedule(self._lazy_s)

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
        self._first(self.statements.drop, (store_key,))

    def drop_from(self, store_key: str, priority: int, from_seq: int) -> None:
        batch = self._pending
        for spot in [s for s in batch.adds if s[0] == store_key and s[1] == priority]:
            if spot[2] >= from_seq:
                del batch.adds[spot]
        self._first(self.statements.drop_from, (store_key, priority, from_seq))

    def remember(self, address: str, dupl_id: str, expires: float) -> None:
        self._first(self.statements.remember, (address, dupl_id, int(expires)))

    def forget(self, address: str, dupl_id: str) -> None:
        self._first(self.statements.forget, (address, dupl_id))

    def schedule(self, record: ScheduledRecord, sync: str) -> Deferred[None]:
        batch = self._pending
        batch.scheduled[record.message.seq] = record
        return self._wait(batch, sync)

    def unschedule(self, seq: int) -> None:
        if self._pending.scheduled.pop(seq, None) is None:
            self._first(self.statements.unschedule, (seq,))

    def reschedule(self, seq: int, due: int, repeats: int) -> None:
        batch = self._pending
        record = batch.scheduled.get(seq)
        if record is not None:
            batch.scheduled[seq] = replace(record, due=due, repeats=repeats)
            return
        self._first(self.statements.reschedule, (due, repeats, seq))

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
                self.statements.add_durable,
                (record.client_id, record.name, record.pattern, record.selector, record.no_local),
            )
        )
        batch.sync = batch.urgent = True
        waiter: Deferred[None] = Deferred()
        batch.waiters.append(waiter)
        self._schedule(0.0)
        return waiter

    def remove_durable(self, client_id: str, name: str) -> None:
        self._first(self.statements.remove_durable, (client_id, name))

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
        def closed(_: object) -> Deferred[None]:
            database, self._db = self._db, None
            if database is None:
                return succeed(None)
            return self._run(database.close)

        return self.flush().addCallback(closed)

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
        self._pending = Batch()
        self._busy = True
        database = self._db
        assert database is not None, "the store is not open"
        work = self._run(
            database.write,
            Work(
                list(batch.first),
                list(batch.adds.items()),
                [(count, *spot) for spot, count in batch.counts.items()],
                batch.deletes,
                [(spot, limit) for spot, limit, _ in batch.loads],
                batch.sync,
                list(batch.scheduled.values()),
                [(after, limit) for after, limit, _ in batch.scheduled_loads],
                batch.shared.work() if batch.shared is not None else None,
            ),
        )
        work.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _written(self, result: Written, batch: Batch) -> None:
        loaded, loaded_scheduled, elapsed, shared = result
        self._busy = False
        if self._unavailable:
            self._unavailable = False
            log.info("the message store writes again")
        self.commits.batches += 1
        if batch.sync:
            self.fsyncs += 1
            self.commits.fsync.observe(elapsed)
        self._committed(batch)
        for waiter in batch.waiters:
            waiter.callback(None)
        for (_, _, answer), messages in zip(batch.loads, loaded, strict=True):
            answer.callback(messages)
        for (_, _, found), records in zip(batch.scheduled_loads, loaded_scheduled, strict=True):
            found.callback(records)
        if shared is not None:
            assert batch.shared is not None
            self._shared_done(batch.shared, shared)
        self._next()

    def _committed(self, batch: Batch) -> None:
        """A hook: ``batch`` was committed (its waiters fire next)."""

    def _shared_done(self, work: SharedBatch, done: SharedDone) -> None:
        """A hook: what the batch's shared work found (its waiters and loads have fired)."""

    def _shared_failed(self, work: SharedBatch, failure: Any) -> None:
        """A hook: the batch that carried ``work`` failed."""

    def _failed(self, failure: Any, batch: Batch) -> None:
        self._busy = False
        if not failure.check(StoreUnavailable):
            log.failure("the message store failed to write a batch", failure)
        elif not self._unavailable:  # one line until a batch is written again
            self._unavailable = True
            log.warn(
                "the message store cannot write: {why}; the batches meanwhile fail (their"
                " producers get an ERROR), and are not logged until one is written",
                why=failure.getErrorMessage(),
            )
        for waiter in batch.waiters:
            waiter.errback(failure)
        for _, _, answer in batch.loads:
            answer.errback(failure)
        for _, _, found in batch.scheduled_loads:
            found.errback(failure)
        if batch.shared is not None:
            self._shared_failed(batch.shared, failure)
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
            self._became_idle()

    def _became_idle(self) -> None:
        """A hook: nothing is pending nor in the worker."""

    def _settle_idle(self) -> None:
        if self._busy or self._pending.writes() or self._pending.waiters:
            return
        idle, self._idle = self._idle, []
        for done in idle:
            done.callback(None)

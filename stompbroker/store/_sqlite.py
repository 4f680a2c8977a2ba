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
import sqlite3
import time
from collections.abc import Callable
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
    StoredQueue,
)

from ._rows import messages_from_page, pack_rows

log = Logger(namespace="stompbroker.store")

#: Runs a function in the worker thread and fires with its result on the reactor.
Runner = Callable[..., "Deferred[Any]"]

#: The database file's name in the data directory.
FILENAME = "stompbroker.sqlite3"
#: Free pages are given back to the file system when the store has been idle this
#: long (seconds), RECLAIM_PAGES (16 MiB) at a time, once there are RECLAIM_MIN_PAGES
#: and they make up a quarter of the file; meanwhile SQLite reuses them.
RECLAIM_IDLE_S = 1.0
RECLAIM_NEXT_S = 0.05
RECLAIM_PAGES = 1024
RECLAIM_MIN_PAGES = 256

_SCHEMA = (
    # Rows are appended in arrival order (rowid), which keeps pages full and
    # loads sequential; the index finds a queue's rows by priority and seq.
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        qkey TEXT NOT NULL, priority INTEGER NOT NULL, seq INTEGER NOT NULL,
        message_id TEXT NOT NULL, destination TEXT NOT NULL, headers TEXT NOT NULL,
        body BLOB NOT NULL, expires INTEGER NOT NULL, delivery_count INTEGER NOT NULL,
        persistent INTEGER NOT NULL, grp TEXT)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_by_queue ON messages (qkey, priority, seq)",
    """CREATE TABLE IF NOT EXISTS durables (
        client_id TEXT NOT NULL, name TEXT NOT NULL, pattern TEXT NOT NULL, selector TEXT,
        PRIMARY KEY (client_id, name))""",
)
# A batch's rows go in one statement, so in one step: their fields as a JSON array of
# arrays, their bodies concatenated in one BLOB (each row holds its body's 1-based
# offset and length). Python's sqlite3 lets go of the GIL for every step, and a worker
# stepping row by row waited for the GIL once per row while the reactor thread was busy.
_INSERT = (
    "INSERT OR REPLACE INTO messages (qkey, priority, seq, message_id, destination, headers,"
    " body, expires, delivery_count, persistent, grp) SELECT"
    " json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),"
    # sqlite3 binds an empty BLOB (every body empty) as NULL.
    " coalesce(substr(?2, json_extract(value, '$[6]'), json_extract(value, '$[7]')), x''),"
    " json_extract(value, '$[8]'), json_extract(value, '$[9]'), json_extract(value, '$[10]'),"
    " json_extract(value, '$[11]') FROM json_each(?1)"
)
_COUNT = "UPDATE messages SET delivery_count=? WHERE qkey=? AND priority=? AND seq=?"
# Deletes go in one statement per queue and priority, the seqs in a JSON array.
_DELETE = (
    "DELETE FROM messages WHERE qkey=? AND priority=? AND seq IN (SELECT value FROM json_each(?))"
)
# A page is read in one step too, packed by SQLite into two values: the rows' fields as
# JSON and their bodies concatenated (group_concat reads a BLOB's bytes as they are;
# the CAST hands them back as bytes).
_LOAD = (
    "SELECT json_group_array(json_array(seq, message_id, destination, json(headers),"
    " length(body), expires, delivery_count, persistent, grp)),"
    " CAST(group_concat(body, '') AS BLOB)"
    " FROM (SELECT seq, message_id, destination, headers, body, expires, delivery_count,"
    " persistent, grp FROM messages WHERE qkey=? AND priority=? AND seq>=? ORDER BY seq LIMIT ?)"
)
_Spot = tuple[str, int, int]


class _Batch:
    """Everything asked for since the last batch left for the worker."""

    __slots__ = ("adds", "counts", "deletes", "first", "loads", "sync", "urgent", "waiters")

    def __init__(self) -> None:
        self.adds: dict[_Spot, Message] = {}
        self.counts: dict[_Spot, int] = {}
        self.deletes: list[_Spot] = []
        #: Drops and durable definitions: (sql, parameters), applied first.
        self.first: list[tuple[str, tuple[Any, ...]]] = []
        self.loads: list[tuple[_Spot, int, Deferred[list[Message]]]] = []
        self.waiters: list[Deferred[None]] = []
        #: Whether to fsync at commit, and whether to leave on the next reactor turn.
        self.sync = False
        self.urgent = False

    def size(self) -> int:
        return len(self.adds) + len(self.counts) + len(self.deletes) + len(self.first)

    def writes(self) -> bool:
        return bool(self.adds or self.counts or self.deletes or self.first or self.loads)


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
        self._db: _Database | None = None
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
        database = _Database(self.path, self._timer_fn)
        self._db = database
        return self._run(database.open)

    # -- writes --------------------------------------------------------------------

    def add(self, store_key: str, message: Message, sync: str) -> Deferred[None]:
        batch = self._pending
        batch.adds[(store_key, message.priority, message.seq)] = message
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

    def add_durable(self, record: DurableRecord) -> Deferred[None]:
        batch = self._pending
        batch.first.append(
            (
                "INSERT OR REPLACE INTO durables VALUES (?,?,?,?)",
                (record.client_id, record.name, record.pattern, record.selector),
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
        if self._pending.size() >= self._max_batch:
            delay = 0.0
        if self._busy:
            return
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
        )
        work.addCallbacks(self._written, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _written(self, result: tuple[list[list[Message]], float], batch: _Batch) -> None:
        loaded, elapsed = result
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
        self._next()

    def _failed(self, failure: Any, batch: _Batch) -> None:
        self._busy = False
        log.failure("the message store failed to write a batch", failure)
        for waiter in batch.waiters:
            waiter.errback(failure)
        for _, _, answer in batch.loads:
            answer.errback(failure)
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


class _Database:
    """The SQLite connection, used by one thread at a time (the store keeps one batch in flight)."""

    def __init__(self, path: str, timer: Callable[[], float] = time.perf_counter) -> None:
        self.path = path
        self._timer = timer
        self._conn: sqlite3.Connection | None = None
        self._synchronous = ""
        self._batches = 0

    def open(self) -> Recovery:
        fresh = not os.path.exists(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn = conn
        try:
            conn.execute("SELECT json_group_array(value) FROM json_each('[1]')").fetchone()
        except sqlite3.OperationalError as e:
            conn.close()
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version} has no JSON functions ({e}); the store needs"
                " them (built in since SQLite 3.38, an option before)"
            ) from e
        if fresh:
            # Pages are read back by casting bodies to text: byte for byte in UTF-8 only.
            conn.execute("PRAGMA encoding='UTF-8'")
            # 16 KiB pages hold 1 KiB messages without waste (measured: 4 KiB pages
            # with an index-organised table took 4x the space and a third the speed).
            conn.execute("PRAGMA page_size=16384")
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA journal_size_limit=67108864")
        conn.execute("PRAGMA cache_size=-16384")
        self._set_synchronous(True)
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("DELETE FROM messages WHERE persistent=0")
        durables = tuple(
            DurableRecord(*row)
            for row in conn.execute("SELECT client_id, name, pattern, selector FROM durables")
        )
        queues: dict[str, dict[int, tuple[int, int]]] = {}
        sizes: dict[str, int] = {}
        for key, priority, count, first, size in conn.execute(
            "SELECT qkey, priority, count(*), min(seq), sum(length(body)) FROM messages"
            " GROUP BY qkey, priority"
        ):
            queues.setdefault(key, {})[priority] = (count, first)
            sizes[key] = sizes.get(key, 0) + size
        (last_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()
        stored = tuple(
            StoredQueue(key, priorities, sizes[key]) for key, priorities in queues.items()
        )
        return Recovery(durables, stored, last_seq)

    def _set_synchronous(self, full: bool) -> None:
        wanted = "FULL" if full else "NORMAL"
        if wanted != self._synchronous:
            assert self._conn is not None
            self._conn.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted

    def write(
        self,
        first: list[tuple[str, tuple[Any, ...]]],
        adds: list[tuple[_Spot, Message]],
        counts: list[tuple[int, str, int, int]],
        deletes: list[_Spot],
        loads: list[tuple[_Spot, int]],
        sync: bool,
    ) -> tuple[list[list[Message]], float]:
        """Apply one batch in one transaction; return what each load found, and how long
        the COMMIT took (seconds)."""
        conn = self._conn
        assert conn is not None, "the store is closed"
        self._set_synchronous(sync)
        conn.execute("BEGIN")
        try:
            for sql, parameters in first:
                conn.execute(sql, parameters)
            if adds:
                conn.execute(_INSERT, pack_rows(adds))
            if counts:
                conn.executemany(_COUNT, counts)
            if deletes:
                groups: dict[tuple[str, int], list[str]] = {}
                for key, priority, seq in deletes:
                    groups.setdefault((key, priority), []).append(str(seq))
                for (key, priority), seqs in groups.items():
                    conn.execute(_DELETE, (key, priority, "[" + ",".join(seqs) + "]"))
            loaded = []
            for spot, limit in loads:
                meta, bodies = conn.execute(_LOAD, (*spot, limit)).fetchone()
                loaded.append(messages_from_page(spot[0], spot[1], meta, bodies))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        started = self._timer()
        conn.execute("COMMIT")
        elapsed = self._timer() - started
        self._batches += 1
        if deletes and self._batches % 64 == 0:
            self.reclaim()
        return loaded, elapsed

    def reclaim(self) -> bool:
        """Give up to 1024 free pages back once they are a quarter of the file; True if more."""
        conn = self._conn
        assert conn is not None, "the store is closed"
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        if free < RECLAIM_MIN_PAGES or free * 4 < pages:
            return False
        # executescript steps the pragma to the end (execute frees one page only).
        conn.executescript(f"PRAGMA incremental_vacuum({RECLAIM_PAGES});")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return free - RECLAIM_PAGES >= RECLAIM_MIN_PAGES

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.execute("PRAGMA optimize")
            conn.close()

"""The embedded durable store: one SQLite database in WAL mode, written in batches off the reactor.

The batching (``_batching.BatchingStore``) is shared with the PostgreSQL store; what is
SQLite's own:

* A batch fsyncs at commit (``PRAGMA synchronous=FULL``) when it holds a row
  added at sync level ``always`` or ``batch``; otherwise it commits with
  ``synchronous=NORMAL``: written to the operating system, not forced to disk.
* Freed pages are reused, and given back to the file system a slice per batch
  once they make up a quarter of the file (``auto_vacuum=INCREMENTAL``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Unpack

from twisted.internet.defer import Deferred
from zope.interface import implementer

from stompbroker.core import Clock, DelayedCall, IMessageStore

from ._batching import Batch, BatchingStore, BatchOptions, Runner, log
from ._database import STATEMENTS, Database

#: The database file's name in the data directory.
FILENAME = "stompbroker.sqlite3"
#: Free pages are given back to the file system when the store has been idle this
#: long (seconds), a slice at a time (``_database.RECLAIM_PAGES``), the next slice
#: RECLAIM_NEXT_S later; meanwhile SQLite reuses them.
RECLAIM_IDLE_S = 1.0
RECLAIM_NEXT_S = 0.05


@implementer(IMessageStore)
class SqliteStore(BatchingStore):
    """Messages and durable definitions in ``<data dir>/stompbroker.sqlite3``.

    ``run`` executes a function in a worker thread (``deferToThreadPool``; the
    tests pass one that runs it at once); ``clock`` schedules the flushes; ``timer``
    measures commits in the worker.
    """

    name = "sqlite"
    statements = STATEMENTS

    def __init__(
        self, path: str, clock: Clock, run: Runner, **options: Unpack[BatchOptions]
    ) -> None:
        super().__init__(clock, run, **options)
        self.path = path
        #: Whether rows were deleted since free pages were last given back.
        self._freed = False
        self._reclaim_timer: DelayedCall | None = None

    def _worker(self) -> Database:
        return Database(self.path, self._timer_fn)

    def close(self) -> Deferred[None]:
        if self._reclaim_timer is not None and self._reclaim_timer.active():
            self._reclaim_timer.cancel()
        self._reclaim_timer = None
        return super().close()

    def size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(self.path + suffix).st_size
        return total

    # -- giving space back ---------------------------------------------------------

    def _committed(self, batch: Batch) -> None:
        if batch.deletes or batch.first:
            self._freed = True

    def _became_idle(self) -> None:
        if self._freed and self._reclaim_timer is None and self._db is not None:
            self._reclaim_timer = self.clock.callLater(RECLAIM_IDLE_S, self._reclaim)

    def _reclaim(self) -> None:
        """Idle: give free pages back to the file system, a slice at a time."""
        self._reclaim_timer = None
        database = self._db
        if self._busy or self._pending.writes() or not isinstance(database, Database):
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

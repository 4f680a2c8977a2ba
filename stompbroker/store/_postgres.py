"""The PostgreSQL store: the same batches as the SQLite store, in a PostgreSQL database.

The reactor side is ``_batching.BatchingStore`` (shared with ``SqliteStore``); the worker
side is ``_pg_database.PgDatabase`` (one connection), over the schema of ``_pg_schema``.
One node per database for now: at open the store takes a session-level advisory lock and
refuses to open (``StoreRefused``) while another node holds it.
"""

from __future__ import annotations

from collections import Counter
from typing import Unpack

from zope.interface import implementer

from stompbroker.core import Clock, IMessageStore

from ._batching import BatchingStore, BatchOptions, Runner
from ._pg_database import STATEMENTS, PgDatabase


@implementer(IMessageStore)
class PostgresStore(BatchingStore):
    """Messages and durable definitions in the PostgreSQL database ``dsn`` names.

    ``dsn`` is a libpq connection string (several hosts allowed: ``host=db1,db2
    target_session_attrs=read-write``); ``node`` is this node's name, which the server
    shows in ``pg_stat_activity`` (``application_name``). ``run``, ``clock`` and ``timer``
    are as for ``SqliteStore``.
    """

    name = "postgresql"
    statements = STATEMENTS

    def __init__(
        self, dsn: str, clock: Clock, run: Runner, node: str = "", **options: Unpack[BatchOptions]
    ) -> None:
        super().__init__(clock, run, **options)
        self.dsn = dsn
        self.node = node
        self._database: PgDatabase | None = None

    def _worker(self) -> PgDatabase:
        self._database = PgDatabase(self.dsn, self.node, self._timer_fn)
        return self._database

    @property
    def synchronous_commits(self) -> Counter[str]:
        """How many committed batches ran with ``synchronous_commit`` on, and off."""
        return self._database.synchronous_commits if self._database else Counter()

    def size(self) -> int:
        """Bytes the store's tables take in the database (read every few batches)."""
        return self._database.size if self._database is not None else 0

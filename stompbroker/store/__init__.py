"""Message stores: ``MemoryStore`` (nothing kept across restarts), ``SqliteStore`` (on disk)
and ``PostgresStore`` (in a PostgreSQL database; needs the ``postgresql`` extra: psycopg);
``PgListener`` (LISTEN/NOTIFY: ``QUEUES_CHANNEL`` wakes a ``PostgresStore``'s shared queues)
and ``PgTopicBus`` over it, topics across a cluster's nodes."""

from ._memory import MemoryStore
from ._pg_bus import PgTopicBus
from ._pg_database import dsn_problem, dsn_shown, psycopg_missing
from ._pg_listen import PgListener
from ._pg_schema import StoreRefused
from ._pg_shared import CHANNEL as QUEUES_CHANNEL
from ._postgres import PostgresStore
from ._sqlite import FILENAME, SqliteStore

__all__ = [
    "FILENAME",
    "QUEUES_CHANNEL",
    "MemoryStore",
    "PgListener",
    "PgTopicBus",
    "PostgresStore",
    "SqliteStore",
    "StoreRefused",
    "dsn_problem",
    "dsn_shown",
    "psycopg_missing",
]

"""Message stores: ``MemoryStore`` (nothing kept across restarts), ``SqliteStore`` (on disk)
and ``PostgresStore`` (in a PostgreSQL database; needs the ``postgresql`` extra: psycopg)."""

from ._memory import MemoryStore
from ._pg_database import dsn_problem, dsn_shown, psycopg_missing
from ._pg_schema import StoreRefused
from ._postgres import PostgresStore
from ._sqlite import FILENAME, SqliteStore

__all__ = [
    "FILENAME",
    "MemoryStore",
    "PostgresStore",
    "SqliteStore",
    "StoreRefused",
    "dsn_problem",
    "dsn_shown",
    "psycopg_missing",
]

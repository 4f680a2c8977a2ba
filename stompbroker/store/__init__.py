"""Message stores: ``MemoryStore`` (nothing kept across restarts) and ``SqliteStore`` (on disk)."""

from ._memory import MemoryStore
from ._sqlite import FILENAME, SqliteStore

__all__ = ["FILENAME", "MemoryStore", "SqliteStore"]

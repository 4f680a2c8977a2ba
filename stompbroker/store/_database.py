"""The SQLite side of the store: the schema, the statements, and the connection the worker
thread uses (``SqliteStore`` in ``_sqlite`` does the batching on the reactor's side).

Every kind of work in a batch is one statement, so one step: Python's sqlite3 lets go of
the GIL around each step and takes it back after, and a worker stepping row by row
(``executemany``, a cursor over a page) waited for the GIL once per row while the
reactor thread was busy. SQLite's JSON functions carry the rows in and out.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable

from stompbroker.core import DurableRecord, Recovery, StoredQueue

from ._batching import Statements, Work, Written, slices
from ._rows import messages_from_page, pack_rows, scheduled_from_row, scheduled_row

#: One statement carries at most about this many bytes of bodies: a batch of writes is
#: split into statements of this size, a page of reads stops once it holds this much
#: (with one row at least). SQLite refuses a string or BLOB over 1e9 bytes, and a
#: page's bodies are briefly held twice.
STATEMENT_BYTES = 32 * 1024 * 1024

#: Free pages are given back RECLAIM_PAGES (16 MiB) at a time, once there are
#: RECLAIM_MIN_PAGES and they make up a quarter of the file.
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
        no_local INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (client_id, name))""",
    # Duplicate ids by queue address, in the order remembered (rowid); a table of their
    # own, so that a message's row going (ACK) keeps its id. A data file written before
    # gains it at open.
    """CREATE TABLE IF NOT EXISTS duplicate_ids (
        id INTEGER PRIMARY KEY, address TEXT NOT NULL, dupl_id TEXT NOT NULL,
        expires INTEGER NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS duplicate_ids_by_queue ON duplicate_ids (address, dupl_id)",
    # Scheduled messages, one row per message and target (``target``: a JSON array), read
    # in due-time order; a data file written before gains the table at open.
    """CREATE TABLE IF NOT EXISTS scheduled (
        seq INTEGER PRIMARY KEY, due INTEGER NOT NULL, target TEXT NOT NULL,
        repeats INTEGER NOT NULL, period INTEGER NOT NULL, priority INTEGER NOT NULL,
        message_id TEXT NOT NULL, destination TEXT NOT NULL, headers TEXT NOT NULL,
        body BLOB NOT NULL, expires INTEGER NOT NULL, persistent INTEGER NOT NULL, grp TEXT)""",
    "CREATE INDEX IF NOT EXISTS scheduled_by_due ON scheduled (due, seq)",
)
#: The statements of the work that goes first in a batch (``_batching.Statements``).
STATEMENTS = Statements(
    drop="DELETE FROM messages WHERE qkey=?",
    drop_from="DELETE FROM messages WHERE qkey=? AND priority=? AND seq>=?",
    # Remember (or remember again, as the newest) one duplicate id; forget one.
    remember="INSERT OR REPLACE INTO duplicate_ids (address, dupl_id, expires) VALUES (?,?,?)",
    forget="DELETE FROM duplicate_ids WHERE address=? AND dupl_id=?",
    # Take a scheduled message out; move a repeating one on.
    unschedule="DELETE FROM scheduled WHERE seq=?",
    reschedule="UPDATE scheduled SET due=?, repeats=? WHERE seq=?",
    add_durable="INSERT OR REPLACE INTO durables (client_id, name, pattern, selector, no_local)"
    " VALUES (?,?,?,?,?)",
    remove_durable="DELETE FROM durables WHERE client_id=? AND name=?",
)
_SCHEDULE = (
    "INSERT OR REPLACE INTO scheduled (seq, due, target, repeats, period, priority, message_id,"
    " destination, headers, body, expires, persistent, grp) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_LOAD_SCHEDULED = (
    "SELECT seq, due, target, repeats, period, priority, message_id, destination, headers,"
    " body, expires, persistent, grp FROM scheduled WHERE (due, seq) >= (?, ?)"
    " ORDER BY due, seq LIMIT ?"
)
#: Columns added since the first schema, by table: a data file written before gains them
#: at open (``ALTER TABLE ... ADD COLUMN``), its rows taking the default.
_ADDED_COLUMNS = (("durables", "no_local", "INTEGER NOT NULL DEFAULT 0"),)
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
# How many of the next ``limit`` rows to load so that the bodies before the last one
# stay under a number of bytes (one step: the window runs over the rows' lengths only).
_PAGE_ROWS = (
    "SELECT count(*) FROM (SELECT size, sum(size) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING)"
    " AS upto FROM (SELECT seq, length(body) AS size FROM messages"
    " WHERE qkey=? AND priority=? AND seq>=? ORDER BY seq LIMIT ?)) WHERE upto - size < ?"
)
_loads = json.loads


def _add_columns(conn: sqlite3.Connection) -> None:
    """Give a database written by an earlier version the columns it lacks."""
    for table, column, definition in _ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


class Database:
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
        _add_columns(conn)
        conn.execute("DELETE FROM messages WHERE persistent=0")
        conn.execute("DELETE FROM scheduled WHERE persistent=0")
        durables = tuple(
            DurableRecord(client_id, name, pattern, selector, bool(no_local))
            for client_id, name, pattern, selector, no_local in conn.execute(
                "SELECT client_id, name, pattern, selector, no_local FROM durables"
            )
        )
        queues: dict[str, dict[int, tuple[int, int]]] = {}
        sizes: dict[str, int] = {}
        for key, priority, count, first, size in conn.execute(
            "SELECT qkey, priority, count(*), min(seq), sum(length(body)) FROM messages"
            " GROUP BY qkey, priority"
        ):
            queues.setdefault(key, {})[priority] = (count, first)
            sizes[key] = sizes.get(key, 0) + size
        (last_seq,) = conn.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM messages), 0),"
            " coalesce((SELECT max(seq) FROM scheduled), 0))"
        ).fetchone()
        stored = tuple(
            StoredQueue(key, priorities, sizes[key]) for key, priorities in queues.items()
        )
        duplicate_ids = tuple(
            (address, dupl_id, float(expires))
            for address, dupl_id, expires in conn.execute(
                "SELECT address, dupl_id, expires FROM duplicate_ids ORDER BY id"
            )
        )
        scheduled = tuple(
            (tuple(_loads(target)), count)
            for target, count in conn.execute(
                "SELECT target, count(*) FROM scheduled GROUP BY target"
            )
        )
        return Recovery(durables, stored, last_seq, duplicate_ids, scheduled)

    def _set_synchronous(self, full: bool) -> None:
        wanted = "FULL" if full else "NORMAL"
        if wanted != self._synchronous:
            assert self._conn is not None
            self._conn.execute(f"PRAGMA synchronous={wanted}")
            self._synchronous = wanted

    def write(self, work: Work) -> Written:
        """Apply one batch in one transaction; return what each load and each scheduled load
        found, and how long the COMMIT took (seconds)."""
        conn = self._conn
        assert conn is not None, "the store is closed"
        first, adds, counts, deletes, loads, sync, scheduled, scheduled_loads, shared = work
        assert shared is None, "SQLite keeps no shared queues"
        self._set_synchronous(sync)
        conn.execute("BEGIN")
        try:
            for sql, parameters in first:
                conn.execute(sql, parameters)
            for part in slices(adds, STATEMENT_BYTES):
                conn.execute(_INSERT, pack_rows(part))
            if scheduled:
                conn.executemany(_SCHEDULE, [scheduled_row(record) for record in scheduled])
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
                (rows,) = conn.execute(_PAGE_ROWS, (*spot, limit, STATEMENT_BYTES)).fetchone()
                meta, bodies = conn.execute(_LOAD, (*spot, rows)).fetchone()
                loaded.append(messages_from_page(spot[0], spot[1], meta, bodies))
            loaded_scheduled = [
                [scheduled_from_row(row) for row in conn.execute(_LOAD_SCHEDULED, (*after, limit))]
                for after, limit in scheduled_loads
            ]
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        started = self._timer()
        conn.execute("COMMIT")
        elapsed = self._timer() - started
        self._batches += 1
        if deletes and self._batches % 64 == 0:
            self.reclaim()
        return loaded, loaded_scheduled, elapsed, None

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

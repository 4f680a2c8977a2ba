"""The PostgreSQL store's schema: its tables, its version, how it is created or migrated, and
the advisory lock that keeps a second node off a database it cannot share yet.

Everything lives in the PostgreSQL schema ``stompbroker`` of the configured database:

* ``messages``: one row per persistent message per holding queue, by (qkey, priority, seq);
* ``transient``: the same columns, UNLOGGED (no WAL), for paged-out non-persistent
  messages; emptied at open (PostgreSQL empties it too after a crash);
* ``durables``, ``duplicate_ids`` (in the order remembered: ``id``), ``scheduled`` (by
  seq, read in (due, seq) order): as the SQLite store's tables;
* ``schema_version``: one row, the version of this layout.

Opening, in order: take the advisory lock (else refuse: another node uses the database),
read the version (refuse a newer one than ``SCHEMA_VERSION``), create the tables (a new
database) or apply ``MIGRATIONS`` from the version found, in one transaction.
"""

from __future__ import annotations

from typing import Any

#: The layout this code writes and reads. A database at a newer version is refused.
SCHEMA_VERSION = 1
#: The PostgreSQL schema holding the tables.
SCHEMA = "stompbroker"
#: The session-level advisory lock a node holds while it has the database open
#: (``pg_try_advisory_lock``): the bytes of "stompbro" as a signed 64-bit number.
LOCK_KEY = int.from_bytes(b"stompbro", "big", signed=True)

#: One refusal per line, said as it is at start.
LOCKED = "another stompbroker node is using this database; clustering is not supported yet"

#: The tables of version 1, created in a new database.
CREATE = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE {SCHEMA}.schema_version (version integer NOT NULL)",
    f"""CREATE TABLE {SCHEMA}.messages (
        qkey text NOT NULL, priority smallint NOT NULL, seq bigint NOT NULL,
        message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
        body bytea NOT NULL, expires bigint NOT NULL, delivery_count integer NOT NULL,
        grp text, PRIMARY KEY (qkey, priority, seq))""",
    f"CREATE UNLOGGED TABLE {SCHEMA}.transient (LIKE {SCHEMA}.messages INCLUDING ALL)",
    f"""CREATE TABLE {SCHEMA}.durables (
        client_id text NOT NULL, name text NOT NULL, pattern text NOT NULL, selector text,
        no_local boolean NOT NULL DEFAULT false, PRIMARY KEY (client_id, name))""",
    f"""CREATE TABLE {SCHEMA}.duplicate_ids (
        id bigserial NOT NULL, address text NOT NULL, dupl_id text NOT NULL,
        expires bigint NOT NULL, PRIMARY KEY (address, dupl_id))""",
    f"""CREATE TABLE {SCHEMA}.scheduled (
        seq bigint PRIMARY KEY, due bigint NOT NULL, target text NOT NULL,
        repeats integer NOT NULL, period bigint NOT NULL, priority smallint NOT NULL,
        message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
        body bytea NOT NULL, expires bigint NOT NULL, persistent boolean NOT NULL, grp text)""",
    f"CREATE INDEX scheduled_by_due ON {SCHEMA}.scheduled (due, seq)",
    f"INSERT INTO {SCHEMA}.schema_version (version) VALUES ({SCHEMA_VERSION})",
)
#: From version N to N+1: the statements, by N. A database at an older version is brought
#: up to SCHEMA_VERSION at open, each step in the transaction of the open.
MIGRATIONS: dict[int, tuple[str, ...]] = {}


class StoreRefused(Exception):
    """The store will not open this database; ``str()`` is the one line to tell the operator."""


def one(conn: Any, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
    """The one value of the one row ``sql`` answers."""
    row = conn.execute(sql, parameters).fetchone()
    assert row is not None, sql
    return row[0]


def newer(found: int) -> str:
    """The refusal of a database whose layout is newer than this code knows."""
    return (
        f"the database's stompbroker schema is version {found}, newer than this stompbroker"
        f" knows ({SCHEMA_VERSION}): run a stompbroker at least as new as the one that wrote it"
    )


def lock(conn: Any) -> None:
    """Take the node's advisory lock on ``conn``'s session; StoreRefused if another holds it."""
    if one(conn, "SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)):
        return
    holder = conn.execute(
        "SELECT a.application_name, host(a.client_addr) FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.database ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())"
        # A bigint key shows as its high and low 32 bits, objsubid 1.
        " AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1",
        ((LOCK_KEY >> 32) & 0xFFFFFFFF, LOCK_KEY & 0xFFFFFFFF),
    ).fetchone()
    line = LOCKED
    if holder is not None and holder[0]:
        where = f" from {holder[1]}" if holder[1] else ""
        line += f" (held by {holder[0]}{where})"
    raise StoreRefused(line)


def create_or_migrate(conn: Any) -> None:
    """Bring the tables to SCHEMA_VERSION, in one transaction; StoreRefused if newer."""
    with conn.transaction():
        if not one(conn, "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.schema_version",)):
            if not conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
            ).fetchone():
                conn.execute(CREATE[0])
            for statement in CREATE[1:]:
                conn.execute(statement)
            return
        found = one(conn, f"SELECT max(version) FROM {SCHEMA}.schema_version")
        if found is None:
            raise StoreRefused(f"the table {SCHEMA}.schema_version is empty: it was not ours")
        if found > SCHEMA_VERSION:
            raise StoreRefused(newer(found))
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if found < SCHEMA_VERSION:
            conn.execute(f"UPDATE {SCHEMA}.schema_version SET version = %s", (SCHEMA_VERSION,))

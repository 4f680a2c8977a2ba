"""The PostgreSQL store's schema: its tables, its version, how it is created or migrated, and
how a node joins the cluster (its number, its liveness lock, its incarnation).

Tables shared by every node, in the PostgreSQL schema ``stompbroker``:

* ``schema_version``: one row, the version of this layout;
* ``nodes``: one row per node name ever seen, with a stable ``number``; the node's current
  ``incarnation`` (a new one at every connection of its worker: a claim made under an older
  one is no longer the node's);
* ``shared``: the messages of every queue, one row each, by ``id`` (the cluster's arrival
  order); ``owner`` is the incarnation that claimed the row, NULL while it waits. The
  waiting rows are indexed by (queue, priority desc, id), the order they are claimed in;
* ``temporaries``: the temporary queues of every node, by global address, with the
  incarnation of their owner's node (rows sent to one that is not there are swept);
* ``exclusives``: the queues an exclusive consumer holds, by the incarnation of its node
  (no other node claims from them meanwhile);
* ``groups``: the message groups of each queue, by the incarnation of the node that
  delivers them (no other node claims their messages meanwhile);
* ``durables``: the durable subscriptions' definitions, by (client id, name): the
  cluster's (their messages are shared rows, by the subscription's store key; the
  subscriber's node holds it in ``exclusives``); ``durable_changes``: one row, a number
  bumped by every change of a definition (a node reads the definitions again when it
  sees a new one);
* ``duplicates`` (since version 4): the ``_AMQ_DUPL_ID`` values each queue took, by (qkey,
  dupl_id), with their expiry (epoch ms, 0: none), the message and the incarnation that took
  them, and ``id``, their order (a take, or a take again, is the newest): the window of
  duplicate detection for the whole cluster (``_pg_shared``);
* ``scheduled`` (since version 5): the cluster's scheduled messages, one row a message and
  target, by ``id`` (read in (due, id) order): its target (``["queue", name]``, ...), the
  shared queue it is released into (``qkey``: a queue's or a durable subscription's store
  key; NULL for a topic's subscribers: handed to the node that releases it), its repeats
  and period, the message, and the incarnation that scheduled it (``_pg_scheduled``).

Tables of one node, in its own PostgreSQL schema ``stompbroker_n<number>`` (the worker's
``search_path`` names it first, so the statements say ``messages``, not where):

* ``messages``: as the SQLite store's, by (qkey, priority, seq); ``transient``: the same,
  UNLOGGED, emptied at open. A cluster node keeps its queues and durable subscriptions
  in ``shared``: these stay empty but for what the node keeps of its own (none today);
* ``duplicate_ids`` (in the order remembered: ``id``), ``scheduled`` (by seq, read in
  (due, seq) order): as the SQLite store's tables, empty since version 5 (``duplicate_ids``
  held the ids of scheduled sends only in version 4): a cluster node's queues remember their
  ids in ``duplicates``, its scheduled messages are the cluster's ``scheduled``.

A node is alive while its worker's session holds the advisory lock (``NODE_LOCK``, number):
PostgreSQL drops it with the session, so a node killed, or cut off from the server, loses it
at once (or when TCP keepalives give up on it). A second process with the name of a live node
is refused.

Opening, in order, in one transaction serialised between nodes (a transaction-level advisory
lock): read the version (refuse a newer one than ``SCHEMA_VERSION``), create the shared tables
(a new database) or apply ``MIGRATIONS`` from the version found; then join: take the node's
number (a name seen before keeps its number; the first node after the migration from version
1 inherits that one node's tables), its liveness lock, a new incarnation, and its own tables.
"""

from __future__ import annotations

from typing import Any

from stompbroker.core import StoreUnavailable

#: The layout this code writes and reads. A database at a newer version is refused.
SCHEMA_VERSION = 5
#: The PostgreSQL schema holding the shared tables.
SCHEMA = "stompbroker"
#: The first key of the advisory locks: a node's liveness lock is (NODE_LOCK, its number);
#: (NODE_LOCK, 0), held for the transaction, serialises the opening of nodes.
NODE_LOCK = int.from_bytes(b"stom", "big", signed=True)
#: The first key of the transaction-level advisory lock (GROUP_LOCK, hash of a queue) that
#: serialises the claims of a queue with grouped messages waiting: the bytes of "stog".
GROUP_LOCK = int.from_bytes(b"stog", "big", signed=True)
#: The session-level advisory lock a version 1 node held while it had the database open:
#: the bytes of "stompbro" as a signed 64-bit number. A migration waits for no such node.
V1_LOCK_KEY = int.from_bytes(b"stompbro", "big", signed=True)

_S = SCHEMA

#: The tables every node shares (since version 2) but the durable subscriptions'.
_CLUSTER = (
    f"""CREATE TABLE {_S}.nodes (
        number serial PRIMARY KEY, name text UNIQUE, incarnation bigint,
        joined timestamptz)""",
    f"CREATE SEQUENCE {_S}.incarnations",
    f"""CREATE TABLE {_S}.shared (
        id bigserial PRIMARY KEY, qkey text NOT NULL, priority smallint NOT NULL,
        message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
        body bytea NOT NULL, expires bigint NOT NULL, delivery_count integer NOT NULL,
        persistent boolean NOT NULL, grp text, owner bigint)""",
    f"CREATE INDEX shared_waiting ON {_S}.shared (qkey, priority DESC, id) WHERE owner IS NULL",
    f"CREATE INDEX shared_claimed ON {_S}.shared (owner) WHERE owner IS NOT NULL",
    f"""CREATE TABLE {_S}.temporaries (
        address text PRIMARY KEY, incarnation bigint NOT NULL)""",
    f"""CREATE TABLE {_S}.exclusives (
        qkey text PRIMARY KEY, incarnation bigint NOT NULL)""",
    f"""CREATE TABLE {_S}.groups (
        qkey text NOT NULL, grp text NOT NULL, incarnation bigint NOT NULL,
        PRIMARY KEY (qkey, grp))""",
    f"CREATE INDEX shared_grouped ON {_S}.shared (qkey) WHERE grp IS NOT NULL AND owner IS NULL",
)

#: The cluster's durable subscriptions (since version 3; each node had its own before).
_DURABLES = (
    f"""CREATE TABLE {_S}.durables (
        client_id text NOT NULL, name text NOT NULL, pattern text NOT NULL, selector text,
        no_local boolean NOT NULL DEFAULT false, PRIMARY KEY (client_id, name))""",
    f"CREATE TABLE {_S}.durable_changes (version bigint NOT NULL)",
    f"INSERT INTO {_S}.durable_changes (version) VALUES (0)",
)


def _each_node(table: str, *statements: str) -> str:
    """A block that runs ``statements`` for each node whose schema has ``table``, in the
    order of their numbers: each is the text of a SQL string literal (quotes doubled), its
    ``%s`` the node's number."""
    executes = "".join(f"\n        EXECUTE format('{statement}', n);" for statement in statements)
    return f"""DO $$
DECLARE
    n integer;
BEGIN
    FOR n IN SELECT number FROM {_S}.nodes ORDER BY number LOOP
        CONTINUE WHEN to_regclass(format('{_S}_n%s.{table}', n)) IS NULL;{executes}
    END LOOP;
END $$"""


#: Version 2 to 3, for each node's schema: its durable subscriptions become the cluster's
#: (of two nodes' of one client id and name, the lower node number's definition stays, and
#: both backlogs go to it), its stored durable messages shared rows, waiting.
_DURABLES_SHARED = _each_node(
    "durables",
    f"INSERT INTO {_S}.durables SELECT client_id, name, pattern, selector, no_local"
    f" FROM {_S}_n%s.durables ON CONFLICT DO NOTHING",
    f"INSERT INTO {_S}.shared (qkey, priority, message_id, destination, headers, body,"
    " expires, delivery_count, persistent, grp) SELECT qkey, priority, message_id,"
    " destination, headers, body, expires, delivery_count, true, grp"
    f" FROM {_S}_n%s.messages ORDER BY priority DESC, seq",
    f"DELETE FROM {_S}_n%s.messages",
    f"DROP TABLE {_S}_n%s.durables",
)

#: The ids duplicate detection remembers, for the whole cluster (since version 4; each node
#: had its own before, in ``duplicate_ids``).
_DUPLICATES = (
    f"""CREATE TABLE {_S}.duplicates (
        qkey text NOT NULL, dupl_id text NOT NULL, expires bigint NOT NULL,
        message_id text NOT NULL, incarnation bigint NOT NULL, id bigserial NOT NULL,
        PRIMARY KEY (qkey, dupl_id))""",
    f"CREATE INDEX duplicates_by_age ON {_S}.duplicates (qkey, id)",
)

#: Version 3 to 4, for each node's schema: the ids it remembered become the cluster's (oldest
#: first, node by node; an id two nodes remembered for one queue stays once).
_DUPLICATES_SHARED = _each_node(
    "duplicate_ids",
    f"INSERT INTO {_S}.duplicates (qkey, dupl_id, expires, message_id, incarnation)"
    f" SELECT address, dupl_id, expires, '''', 0 FROM {_S}_n%s.duplicate_ids ORDER BY id"
    " ON CONFLICT DO NOTHING",
    f"DELETE FROM {_S}_n%s.duplicate_ids",
)

#: The cluster's scheduled messages (since version 5; each node had its own before, in
#: ``scheduled``).
_SCHEDULED = (
    f"""CREATE TABLE {_S}.scheduled (
        id bigserial PRIMARY KEY, due bigint NOT NULL, target text NOT NULL, qkey text,
        repeats integer NOT NULL, period bigint NOT NULL, priority smallint NOT NULL,
        message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
        body bytea NOT NULL, expires bigint NOT NULL, persistent boolean NOT NULL,
        grp text, incarnation bigint NOT NULL)""",
    f"CREATE INDEX scheduled_by_due ON {_S}.scheduled (due, id)",
)

#: Version 4 to 5, for each node's schema: its persistent scheduled messages become the
#: cluster's, in (due, seq) order (its non-persistent ones went at its next start anyway);
#: a queue's are released into its shared queue, a durable subscription's into the cluster's
#: subscription (its store key, as ``_durables.durable_store_key`` writes it), a topic's to
#: the subscribers of the node that releases them.
_SCHEDULED_SHARED = _each_node(
    "scheduled",
    f"INSERT INTO {_S}.scheduled (due, target, qkey, repeats, period, priority, message_id,"
    " destination, headers, body, expires, persistent, grp, incarnation)"
    " SELECT due, target, CASE t->>0 WHEN ''queue'' THEN ''/queue/'' || (t->>1)"
    " WHEN ''durable'' THEN ''durable:'' || json_build_array(t->>1, t->>2)::text END,"
    " repeats, period, priority, message_id, destination, headers, body, expires, true, grp, 0"
    f" FROM {_S}_n%s.scheduled, LATERAL (SELECT target::json) AS j(t) WHERE persistent"
    " ORDER BY due, seq",
    f"DELETE FROM {_S}_n%s.scheduled",
)

#: The shared tables of the current version, created in a new database.
CREATE = (
    f"CREATE SCHEMA IF NOT EXISTS {_S}",
    f"CREATE TABLE {_S}.schema_version (version integer NOT NULL)",
    *_CLUSTER,
    *_DURABLES,
    *_DUPLICATES,
    *_SCHEDULED,
    f"INSERT INTO {_S}.schema_version (version) VALUES ({SCHEMA_VERSION})",
)

#: From version N to N+1: the statements, by N. A database at an older version is brought
#: up to SCHEMA_VERSION at open, each step in the transaction of the open.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Version 1 was one node's: every stored message (its queues' and its durable
    # subscriptions') becomes a shared row; its other tables (durable subscriptions,
    # duplicate ids, scheduled messages) become the tables of node 1 (taken by the first node
    # to open: its name is NULL until then).
    1: (
        *_CLUSTER,
        f"CREATE SCHEMA {_S}_n1",
        *(
            f"ALTER TABLE {_S}.{table} SET SCHEMA {_S}_n1"
            for table in ("messages", "transient", "durables", "duplicate_ids", "scheduled")
        ),
        f"INSERT INTO {_S}.shared (qkey, priority, message_id, destination, headers, body,"
        " expires, delivery_count, persistent, grp) SELECT qkey, priority, message_id,"
        f" destination, headers, body, expires, delivery_count, true, grp FROM {_S}_n1.messages"
        " ORDER BY priority DESC, seq",
        f"DELETE FROM {_S}_n1.messages",
        f"INSERT INTO {_S}.nodes (number, name) VALUES (1, NULL)",
        f"SELECT setval('{_S}.nodes_number_seq', 1)",
    ),
    # Version 2 kept durable subscriptions per node: they become the cluster's.
    2: (*_DURABLES, _DURABLES_SHARED),
    # Version 3 kept duplicate ids per node: they become the cluster's.
    3: (*_DUPLICATES, _DUPLICATES_SHARED),
    # Version 4 kept scheduled messages, and the ids of scheduled sends, per node: they
    # become the cluster's.
    4: (*_SCHEDULED, _SCHEDULED_SHARED, _DUPLICATES_SHARED),
}


def local_tables(schema: str) -> tuple[str, ...]:
    """The statements that create one node's tables in ``schema`` (if they are not there)."""
    return (
        f"CREATE SCHEMA IF NOT EXISTS {schema}",
        f"""CREATE TABLE IF NOT EXISTS {schema}.messages (
            qkey text NOT NULL, priority smallint NOT NULL, seq bigint NOT NULL,
            message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
            body bytea NOT NULL, expires bigint NOT NULL, delivery_count integer NOT NULL,
            grp text, PRIMARY KEY (qkey, priority, seq))""",
        f"CREATE UNLOGGED TABLE IF NOT EXISTS {schema}.transient"
        f" (LIKE {schema}.messages INCLUDING ALL)",
        f"""CREATE TABLE IF NOT EXISTS {schema}.duplicate_ids (
            id bigserial NOT NULL, address text NOT NULL, dupl_id text NOT NULL,
            expires bigint NOT NULL, PRIMARY KEY (address, dupl_id))""",
        f"""CREATE TABLE IF NOT EXISTS {schema}.scheduled (
            seq bigint PRIMARY KEY, due bigint NOT NULL, target text NOT NULL,
            repeats integer NOT NULL, period bigint NOT NULL, priority smallint NOT NULL,
            message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
            body bytea NOT NULL, expires bigint NOT NULL, persistent boolean NOT NULL,
            grp text)""",
        f"CREATE INDEX IF NOT EXISTS scheduled_by_due ON {schema}.scheduled (due, seq)",
    )


class StoreRefused(StoreUnavailable):
    """The store will not open this database (at start), or cannot now (a reconnection);
    ``str()`` is the one line to tell the operator."""


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


def running(name: str, holder: tuple[Any, ...] | None) -> str:
    """The refusal of a node whose name a live node has."""
    line = f"a stompbroker node named {name!r} is running on this database already"
    if holder is not None and holder[0] is not None:
        line += f" (from {holder[0]})"
    return line + ": give each node its own postgresql.node"


#: A version 1 node still holds the database: it would not survive the migration.
OLD_NODE = (
    "a stompbroker node of an older version (schema 1) is using this database: stop it before"
    " starting this one, which migrates the schema"
)


class Membership:
    """What joining gave a node: its number, its own tables' schema, its incarnation."""

    __slots__ = ("incarnation", "number", "schema")

    def __init__(self, number: int, incarnation: int) -> None:
        self.number = number
        self.schema = f"{SCHEMA}_n{number}"
        self.incarnation = incarnation


def open_schema(conn: Any, name: str) -> Membership:
    """Bring the tables to SCHEMA_VERSION and join as node ``name``, in one transaction;
    StoreRefused if the schema is newer, or a node of that name is alive."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (NODE_LOCK,))
        create_or_migrate(conn)
        return join(conn, name)


def create_or_migrate(conn: Any) -> None:
    """Bring the shared tables to SCHEMA_VERSION (in the caller's transaction)."""
    if not one(conn, "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.schema_version",)):
        if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)).fetchone():
            conn.execute(CREATE[0])
        for statement in CREATE[1:]:
            conn.execute(statement)
        return
    found = one(conn, f"SELECT max(version) FROM {SCHEMA}.schema_version")
    if found is None:
        raise StoreRefused(f"the table {SCHEMA}.schema_version is empty: it was not ours")
    if found > SCHEMA_VERSION:
        raise StoreRefused(newer(found))
    if found == 1 and not one(conn, "SELECT pg_try_advisory_xact_lock(%s)", (V1_LOCK_KEY,)):
        raise StoreRefused(OLD_NODE)
    for version in range(found, SCHEMA_VERSION):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    if found < SCHEMA_VERSION:
        conn.execute(f"UPDATE {SCHEMA}.schema_version SET version = %s", (SCHEMA_VERSION,))


def join(conn: Any, name: str) -> Membership:
    """Take node ``name``'s number, liveness lock and a new incarnation; make its tables."""
    row = conn.execute(f"SELECT number FROM {SCHEMA}.nodes WHERE name = %s", (name,)).fetchone()
    if row is None:
        row = conn.execute(
            f"UPDATE {SCHEMA}.nodes SET name = %s WHERE number ="
            f" (SELECT min(number) FROM {SCHEMA}.nodes WHERE name IS NULL) RETURNING number",
            (name,),
        ).fetchone()
    if row is None:
        row = conn.execute(
            f"INSERT INTO {SCHEMA}.nodes (name) VALUES (%s) RETURNING number", (name,)
        ).fetchone()
    number = row[0]
    if not one(conn, "SELECT pg_try_advisory_lock(%s, %s)", (NODE_LOCK, number)):
        holder = conn.execute(
            "SELECT host(a.client_addr) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            f" WHERE {_LIVE_LOCK} AND l.objid = %s::oid",
            (NODE_LOCK, number),
        ).fetchone()
        raise StoreRefused(running(name, holder))
    incarnation = one(conn, f"SELECT nextval('{SCHEMA}.incarnations')")
    conn.execute(
        f"UPDATE {SCHEMA}.nodes SET incarnation = %s, joined = now() WHERE number = %s",
        (incarnation, number),
    )
    membership = Membership(number, incarnation)
    for statement in local_tables(membership.schema):
        conn.execute(statement)
    conn.execute("SELECT set_config('search_path', %s, false)", (f"{membership.schema}, {SCHEMA}",))
    return membership


#: The granted liveness locks of the current database (a two-key advisory lock shows as
#: classid and objid, objsubid 2). Takes the first key as its parameter.
_LIVE_LOCK = (
    "l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = %s::oid"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
#: The incarnations of the live nodes (takes NODE_LOCK).
LIVE_INCARNATIONS = (
    f"SELECT n.incarnation FROM {SCHEMA}.nodes n JOIN pg_locks l ON l.objid = n.number::oid"
    f" WHERE {_LIVE_LOCK}"
)
#: The live nodes: (number, name, incarnation, joined, client address) (takes NODE_LOCK).
LIVE_NODES = (
    "SELECT n.number, n.name, n.incarnation, n.joined, host(a.client_addr)"
    f" FROM {SCHEMA}.nodes n JOIN pg_locks l ON l.objid = n.number::oid"
    f" LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE {_LIVE_LOCK} ORDER BY n.number"
)

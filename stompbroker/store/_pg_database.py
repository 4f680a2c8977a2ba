"""The PostgreSQL side of the store: the statements, and the one connection the worker thread
uses (``PostgresStore`` in ``_postgres`` does the batching on the reactor's side).

A batch is one transaction, sent in pipeline mode (psycopg's ``Connection.pipeline``): the
statements go out without waiting for each answer, so a batch costs two round trips to the
server (its work, then its COMMIT, timed alone). Each kind of work is one statement: the
batch's rows go in one ``INSERT ... SELECT FROM json_array_elements(...)`` per table, its
deletes and delivery counts in one statement each (``unnest`` of arrays bound in binary).

``synchronous_commit`` is set for the transaction only (``set_config(..., true)``, which is
``SET LOCAL``): ``on`` for a batch that asks to sync (an ``always`` or ``batch`` add, a
durable definition), ``off`` otherwise: the COMMIT returns before its WAL is flushed (a
crash of the server may lose the last few hundred milliseconds of such batches, never
corrupt anything).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from stompbroker.core import DurableRecord, Message, Recovery, StoredQueue

from . import _pg_shared
from ._batching import Spot, Statements, Work, Written, slices
from ._pg_schema import SCHEMA, Membership, StoreRefused, one, open_schema
from ._rows import _loads, message_from_row, pack_rows, scheduled_from_row, scheduled_row

#: One statement carries at most about this many bytes of bodies: a batch of writes is
#: split into statements of this size, a page of reads stops once it holds this much
#: (with one row at least). PostgreSQL refuses a value over 1 GB.
STATEMENT_BYTES = 32 * 1024 * 1024
#: The store's size on disk is read again after this many batches (it is a look at
#: every table's files: cheap, not free).
SIZE_EVERY = 64

#: What every connection sets unless the DSN says otherwise: TCP keepalives (a server that
#: went away, or a network that broke, is noticed in about ten seconds, not the system's two
#: hours), and a bound on connecting (a server that does not answer holds no batch for long).
KEEPALIVES: dict[str, str] = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
}
#: The same on the server's side of the session: a node whose machine is lost loses its
#: liveness lock (the server ends its session) in about ten seconds.
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 5,
    "tcp_keepalives_interval": 2,
    "tcp_keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}

#: After a failed attempt to connect again, batches fail at once, without trying, for this
#: long; each further failure doubles it, up to RECONNECT_MAX_S. A connection made resets it.
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0

MISSING = (
    "broker.store is postgresql but psycopg is not installed: pip install 'stompbroker[postgresql]'"
)

# The node's own tables are named without their schema: the connection's search_path
# starts with it (``_pg_schema.join``).
_M, _T = "messages", "transient"

#: The statements of the work that goes first in a batch (``_batching.Statements``). A
#: drop empties both the persistent and the transient table.
STATEMENTS = Statements(
    drop=f"WITH p(k) AS (SELECT %s::text), a AS (DELETE FROM {_M} WHERE qkey = (SELECT k FROM p))"
    f" DELETE FROM {_T} WHERE qkey = (SELECT k FROM p)",
    drop_from="WITH p(k, pr, s) AS (SELECT %s::text, %s::smallint, %s::bigint),"
    f" a AS (DELETE FROM {_M} m USING p WHERE m.qkey = p.k AND m.priority = p.pr AND m.seq >= p.s)"
    f" DELETE FROM {_T} t USING p WHERE t.qkey = p.k AND t.priority = p.pr AND t.seq >= p.s",
    # Remembered again, an id takes a new place: the newest.
    remember="INSERT INTO duplicate_ids (address, dupl_id, expires) VALUES (%s, %s, %s)"
    " ON CONFLICT (address, dupl_id) DO UPDATE SET expires = EXCLUDED.expires, id = DEFAULT",
    forget="DELETE FROM duplicate_ids WHERE address = %s AND dupl_id = %s",
    unschedule="DELETE FROM scheduled WHERE seq = %s",
    reschedule="UPDATE scheduled SET due = %s, repeats = %s WHERE seq = %s",
    # The definitions are the cluster's (``_pg_schema``: ``durables``).
    add_durable=f"INSERT INTO {SCHEMA}.durables (client_id, name, pattern, selector, no_local)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (client_id, name) DO UPDATE SET"
    " pattern = EXCLUDED.pattern, selector = EXCLUDED.selector, no_local = EXCLUDED.no_local",
    remove_durable=f"DELETE FROM {SCHEMA}.durables WHERE client_id = %s AND name = %s",
)

# A batch's rows go in one statement per table, packed as for SQLite (``_rows.pack_rows``):
# their fields as one JSON array of arrays, their bodies concatenated in one bytea (each
# row holds its body's 1-based offset and length). Measured against arrays bound in binary
# (``unnest``), as fast for the server and half the worker's CPU (JSON is encoded in C).
_INSERT = (
    "INSERT INTO {table} AS m (qkey, priority, seq, message_id, destination, headers, body,"
    " expires, delivery_count, grp) SELECT v->>0, (v->>1)::smallint, (v->>2)::bigint, v->>3,"
    " v->>4, (v->5)::text, substring(%b::bytea FROM (v->>6)::integer FOR (v->>7)::integer),"
    " (v->>8)::bigint, (v->>9)::integer, v->>11 FROM json_array_elements(%b::json) AS e(v)"
    " ON CONFLICT (qkey, priority, seq) DO UPDATE SET"
    " message_id = EXCLUDED.message_id, destination = EXCLUDED.destination,"
    " headers = EXCLUDED.headers, body = EXCLUDED.body, expires = EXCLUDED.expires,"
    " delivery_count = EXCLUDED.delivery_count, grp = EXCLUDED.grp"
)
_SPOTS = "SELECT * FROM unnest(%b::text[], %b::smallint[], %b::bigint[])"
_MATCH = "{t}.qkey = g.qkey AND {t}.priority = g.priority AND {t}.seq = g.seq"
_DELETE = (
    f"WITH g(qkey, priority, seq) AS ({_SPOTS}),"
    f" a AS (DELETE FROM {_M} m USING g WHERE {_MATCH.format(t='m')})"
    f" DELETE FROM {_T} t USING g WHERE {_MATCH.format(t='t')}"
)
_COUNT = (
    "WITH g(n, qkey, priority, seq) AS (SELECT * FROM unnest(%b::integer[], %b::text[],"
    " %b::smallint[], %b::bigint[])),"
    f" a AS (UPDATE {_M} m SET delivery_count = g.n FROM g WHERE {_MATCH.format(t='m')})"
    f" UPDATE {_T} t SET delivery_count = g.n FROM g WHERE {_MATCH.format(t='t')}"
)
# A page: the rows of both tables in seq order, up to the limit, that start under the
# byte budget. The columns are a Row's (``_rows``).
_PAGE = "SELECT priority, seq, message_id, destination, headers, body, expires, delivery_count"
_LOAD = (
    "SELECT priority, seq, message_id, destination, headers, body, expires, delivery_count,"
    " persistent, grp FROM (SELECT *, sum(octet_length(body)) OVER (ORDER BY seq ROWS"
    " UNBOUNDED PRECEDING) - octet_length(body) AS before FROM ("
    f"({_PAGE}, true AS persistent, grp FROM {_M}"
    " WHERE qkey = %s AND priority = %s AND seq >= %s ORDER BY seq LIMIT %s) UNION ALL"
    f" ({_PAGE}, false, grp FROM {_T}"
    " WHERE qkey = %s AND priority = %s AND seq >= %s ORDER BY seq LIMIT %s)"
    ") u ORDER BY seq LIMIT %s) w WHERE before < %s ORDER BY seq"
)
_SCHEDULE = (
    "INSERT INTO scheduled (seq, due, target, repeats, period, priority, message_id,"
    " destination, headers, body, expires, persistent, grp)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (seq) DO UPDATE SET"
    " due = EXCLUDED.due, target = EXCLUDED.target, repeats = EXCLUDED.repeats,"
    " period = EXCLUDED.period, priority = EXCLUDED.priority,"
    " message_id = EXCLUDED.message_id, destination = EXCLUDED.destination,"
    " headers = EXCLUDED.headers, body = EXCLUDED.body, expires = EXCLUDED.expires,"
    " persistent = EXCLUDED.persistent, grp = EXCLUDED.grp"
)
_LOAD_SCHEDULED = (
    "SELECT seq, due, target, repeats, period, priority, message_id, destination, headers,"
    " body, expires, persistent, grp FROM scheduled WHERE (due, seq) >= (%s, %s)"
    " ORDER BY due, seq LIMIT %s"
)
_SIZE = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN (%s, %s)"
    " AND c.relkind = 'r'"
)


def psycopg_missing() -> str | None:
    """The line to say at start when psycopg cannot be imported (None when it can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return MISSING
    return None


def connection_settings(dsn: str) -> dict[str, Any]:
    """``dsn``'s settings, with ``KEEPALIVES`` for those it does not set (every connection
    of a node: the store's and the listener's)."""
    import psycopg

    return {**KEEPALIVES, **psycopg.conninfo.conninfo_to_dict(dsn)}


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with ``dsn`` as a libpq connection string (None: nothing)."""
    import psycopg

    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        return str(exc).splitlines()[0]
    return None


def dsn_shown(dsn: str) -> str:
    """``dsn`` as a log may show it: without its password."""
    import psycopg

    parts = psycopg.conninfo.conninfo_to_dict(dsn)
    parts.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **parts)


class PgDatabase:
    """The connection to PostgreSQL, used by one thread at a time (one batch in flight).

    ``node`` names this node: in the cluster (``nodes``: its number and own tables) and to
    the server (``application_name``, seen by an operator in ``pg_stat_activity``). Its
    connection holds the node's liveness lock; a new connection (the old one was lost)
    joins again under a new incarnation, which the next batch's answer carries.
    """

    def __init__(
        self, dsn: str, node: str = "", timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self.dsn = dsn
        self.node = node
        self._timer = timer
        self._conn: Any = None
        self._batches = 0
        #: Failed attempts to connect again in a row, the last one's reason, and until when
        #: (``timer``'s time) batches fail without trying.
        self._failures = 0
        self._refusal = ""
        self._retry_at = 0.0
        #: What joining gave this node (set at open, renewed at a reconnection).
        self.membership: Membership | None = None
        #: Bytes the tables take on disk, as last read.
        self.size = 0
        #: The ``synchronous_commit`` each committed batch ran with, as the server said.
        self.synchronous_commits: Counter[str] = Counter()

    def open(self) -> Recovery:
        conn = self._connect()
        try:
            recovery = self._recover(conn)
            self.size = self._size(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return recovery

    def _connect(self) -> Any:
        """A new connection that joined the cluster (``_pg_schema.open_schema``: the schema
        created or migrated, the liveness lock taken); StoreRefused if it cannot."""
        missing = psycopg_missing()
        if missing is not None:
            raise StoreRefused(missing)
        import psycopg

        name = f"stompbroker {self.node}".strip()[:63]
        try:
            settings = connection_settings(self.dsn)
            settings["application_name"] = name
            conninfo = psycopg.conninfo.make_conninfo("", **settings)
            conn = psycopg.connect(conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            why = " ".join(str(exc).split())
            raise StoreRefused(f"cannot connect to PostgreSQL: {why}") from None
        try:
            for setting, value in SERVER_KEEPALIVES.items():
                conn.execute(f"SET {setting} = {value}")
            self.membership = open_schema(conn, self.node)
        except BaseException:
            conn.close()
            raise
        return conn

    def _size(self, conn: Any) -> int:
        assert self.membership is not None
        return int(one(conn, _SIZE, (SCHEMA, self.membership.schema)))

    def _recover(self, conn: Any) -> Recovery:
        """Drop transient rows; read what the broker needs at start (of this node's tables)."""
        with conn.transaction():
            conn.execute(f"TRUNCATE {_T}")
            conn.execute("DELETE FROM scheduled WHERE NOT persistent")
            durables = tuple(
                DurableRecord(client_id, name, pattern, selector, no_local)
                for client_id, name, pattern, selector, no_local in conn.execute(
                    f"SELECT client_id, name, pattern, selector, no_local FROM {SCHEMA}.durables"
                )
            )
            queues: dict[str, dict[int, tuple[int, int]]] = {}
            sizes: dict[str, int] = {}
            for key, priority, count, first, size in conn.execute(
                "SELECT qkey, priority, count(*), min(seq), sum(octet_length(body))"
                f" FROM {_M} GROUP BY qkey, priority"
            ):
                queues.setdefault(key, {})[priority] = (count, first)
                sizes[key] = sizes.get(key, 0) + int(size)
            (last_seq,) = conn.execute(
                f"SELECT greatest((SELECT max(seq) FROM {_M}), (SELECT max(seq) FROM scheduled), 0)"
            ).fetchone()
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
        stored = tuple(StoredQueue(k, priorities, sizes[k]) for k, priorities in queues.items())
        return Recovery(durables, stored, last_seq, duplicate_ids, scheduled)

    def write(self, work: Work) -> Written:
        """Apply one batch in one transaction; return what each load, each scheduled load and
        the shared work found, and how long the COMMIT took (seconds)."""
        conn = self._connection()
        assert self.membership is not None
        incarnation = self.membership.incarnation
        shared = work.shared
        try:
            with conn.pipeline() as pipeline:
                mode, pages, found = self._send(conn, work)
                cursors = _pg_shared.apply(conn, shared, incarnation) if shared else None
                pipeline.sync()
                (setting,) = mode.fetchone()
                loaded = [
                    [message_from_row(spot[0], row) for row in page.fetchall()]
                    for (spot, _), page in zip(work.loads, pages, strict=True)
                ]
                loaded_scheduled = [
                    [scheduled_from_row(row) for row in cursor.fetchall()] for cursor in found
                ]
                done = None
                if shared is not None and cursors is not None:
                    done = _pg_shared.answer(shared, cursors, incarnation)
                started = self._timer()
                conn.execute("COMMIT")
                if shared and done is not None:
                    _pg_shared.notify(conn, shared, incarnation, done.scheduled.woken)
                pipeline.sync()
                elapsed = self._timer() - started
        except BaseException:
            if not conn.closed:
                conn.execute("ROLLBACK")
            raise
        self.synchronous_commits[setting] += 1
        self._batches += 1
        if self._batches % SIZE_EVERY == 0:
            self.size = self._size(conn)
        return loaded, loaded_scheduled, elapsed, done

    def _connection(self) -> Any:
        """The open connection; a new one if it was lost (the batch that found out failed),
        which joins again, under a new incarnation (the schema is there since open).

        After a failed attempt, the batches of the next RECONNECT_FIRST_S seconds fail at once
        (StoreRefused) without trying, twice as long after each further failure."""
        assert self._conn is not None, "the store is closed"
        if self._conn.closed:
            now = self._timer()
            if now < self._retry_at:
                wait = self._retry_at - now
                raise StoreRefused(f"{self._refusal} (the next attempt in {wait:.2f} s)")
            try:
                self._conn = self._connect()
            except Exception as exc:
                self._failures += 1
                backoff = RECONNECT_FIRST_S * 2.0 ** min(self._failures - 1, 16)
                self._retry_at = now + min(backoff, RECONNECT_MAX_S)
                self._refusal = " ".join(str(exc).split())
                raise
            self._failures = 0
            self._retry_at = 0.0
        return self._conn

    def _send(self, conn: Any, work: Work) -> tuple[Any, list[Any], list[Any]]:
        """Queue a batch's statements, COMMIT aside, in the pipeline; return the cursors of
        its synchronous_commit setting, of its loads and of its scheduled loads."""
        conn.execute("BEGIN")
        mode = conn.execute(
            "SELECT set_config('synchronous_commit', %s, true)", ("on" if work.sync else "off",)
        )
        for sql, parameters in work.first:
            conn.execute(sql, parameters)
        self._insert(conn, work.adds)
        if work.scheduled:
            rows = [scheduled_row(record) for record in work.scheduled]
            conn.cursor().executemany(_SCHEDULE, rows)
        if work.counts:
            conn.execute(_COUNT, [list(column) for column in zip(*work.counts, strict=True)])
        if work.deletes:
            conn.execute(_DELETE, [list(column) for column in zip(*work.deletes, strict=True)])
        pages = [
            conn.execute(_LOAD, (*spot, limit, *spot, limit, limit, STATEMENT_BYTES), binary=True)
            for spot, limit in work.loads
        ]
        found = [
            conn.execute(_LOAD_SCHEDULED, (*after, limit)) for after, limit in work.scheduled_loads
        ]
        return mode, pages, found

    def _insert(self, conn: Any, adds: list[tuple[Spot, Message]]) -> None:
        """Queue the inserts of ``adds``: persistent rows to ``messages``, others to
        ``transient``, a statement per STATEMENT_BYTES of bodies."""
        for persistent, table in ((True, _M), (False, _T)):
            rows = [add for add in adds if bool(add[1].persistent) is persistent]
            for part in slices(rows, STATEMENT_BYTES):
                meta, bodies = pack_rows(part)
                conn.execute(_INSERT.format(table=table), (bodies, meta))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

"""Scheduled messages for the whole cluster, in PostgreSQL: rows of ``stompbroker.scheduled``
(``_pg_schema``), written and released in a batch's transaction (``_pg_shared``).

* A scheduled message is one row per target (``ISharedQueues.schedule_shared``), with the
  shared queue it goes into when due (``qkey``: a queue's or a durable subscription's store
  key) or NULL (a topic's subscribers: handed to the node that releases it). A send with
  an ``_AMQ_DUPL_ID`` to a queue (``schedule_once``) writes its row only if the batch took
  the id (``_pg_duplicates``: the take goes first in the transaction), as a new message's.
* A *release* (``release_due``), in one statement: the rows due at the node's time
  (``now``, the node's clock, a parameter: not the server's), earliest first, up to a limit,
  skipping the rows another node's batch holds (``FOR UPDATE SKIP LOCKED``); the last
  delivery of each is deleted, a repeating one moved on by its period; those with a
  ``qkey`` become new rows of ``shared`` (their message ids the releasing node's prefix,
  ``s`` and the row's id), in due order; the statement answers every released row (the
  bodies of the handed ones only). The transaction commits the whole, or nothing: a node
  that dies while releasing leaves its rows due for the next.
* The poll reads the earliest due time and the rows' count by target.

After the COMMIT the queues that got rows are woken (``_pg_shared.notify``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from twisted.internet.defer import Deferred

from stompbroker.core import Released, ScheduledRecord

from ._pg_schema import SCHEMA
from ._rows import _loads, message_from_row, scheduled_row

_SC = f"{SCHEMA}.scheduled"
_SH = f"{SCHEMA}.shared"

# A row with a duplicate id to take is written only if the id's row names its message and
# this incarnation (after the row's columns: the id (NULL: none), then the queue, the id,
# the message id and the incarnation).
_SCHEDULE = (
    f"INSERT INTO {_SC} (due, target, repeats, period, priority, message_id, destination,"
    " headers, body, expires, persistent, grp, qkey, incarnation)"
    " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s WHERE %s::text IS NULL"
    f" OR EXISTS (SELECT 1 FROM {SCHEMA}.duplicates d WHERE d.qkey = %s AND d.dupl_id = %s"
    " AND d.message_id = %s AND d.incarnation = %s)"
)
_COLUMNS = "priority, message_id, destination, headers, body, expires, persistent, grp"
_RELEASE = (
    f"WITH d AS (SELECT id FROM {_SC} WHERE due <= %(now)s ORDER BY due, id LIMIT %(n)s"
    " FOR UPDATE SKIP LOCKED),"
    f" gone AS (DELETE FROM {_SC} s USING d WHERE s.id = d.id AND s.repeats <= 0"
    f" RETURNING s.id, s.due, s.target, s.qkey, s.repeats, {_COLUMNS}),"
    f" moved AS (UPDATE {_SC} s SET due = s.due + s.period, repeats = s.repeats - 1 FROM d"
    " WHERE s.id = d.id AND s.repeats > 0"
    f" RETURNING s.id, s.due - s.period, s.target, s.qkey, s.repeats + 1, {_COLUMNS}),"
    " r AS (SELECT * FROM gone UNION ALL SELECT * FROM moved),"
    f" q AS (SELECT nextval('{_SH}_id_seq') AS i, o.* FROM"
    " (SELECT * FROM r WHERE qkey IS NOT NULL ORDER BY due, id) o),"
    f" i AS (INSERT INTO {_SH} (id, qkey, priority, message_id, destination, headers, body,"
    " expires, delivery_count, persistent, grp) SELECT i, qkey, priority,"
    " %(prefix)s || 's' || i, destination, headers, body, expires, 0, persistent, grp FROM q)"
    " SELECT target, qkey, repeats, priority, message_id, destination, headers,"
    " CASE WHEN qkey IS NULL THEN body END, expires, persistent, grp FROM r ORDER BY due, id"
)
_NEXT_DUE = f"SELECT min(due) FROM {_SC}"
_COUNTS = f"SELECT target, count(*) FROM {_SC} GROUP BY target"

#: What the poll reads: the earliest due time (None: no row), the counts by target.
Known = tuple[int | None, tuple[tuple[tuple[str, ...], int], ...]]


class ScheduledWork(NamedTuple):
    """A batch's work on the cluster's scheduled messages, as the worker applies it."""

    #: (record, the shared queue it goes into when due (None: handed to a node), the
    #: duplicate id it must take to be written (None: none)): new rows.
    adds: list[tuple[ScheduledRecord, str | None, str | None]]
    #: (now in epoch ms, how many at most, the message ids' prefix): a release (None: none).
    release: tuple[int, int, str] | None
    #: Whether to read the earliest due time and the counts (the poll).
    read: bool


class ScheduledDone(NamedTuple):
    """What the worker answers for it."""

    #: What the release did (None: none asked).
    released: Released | None
    #: What the poll read (None: no poll).
    known: Known | None
    #: The store keys the release gave new messages (to wake).
    woken: list[str]


class ScheduledBatch:
    """The work asked for since the last batch left, on the reactor's side."""

    __slots__ = ("adds", "answer", "release")

    def __init__(self) -> None:
        self.adds: list[tuple[ScheduledRecord, str | None, str | None]] = []
        self.release: tuple[int, int, str] | None = None
        self.answer: Deferred[Released] | None = None

    def size(self) -> int:
        return len(self.adds)

    def writes(self) -> bool:
        return bool(self.adds) or self.release is not None

    def work(self, poll: bool) -> ScheduledWork:
        return ScheduledWork(self.adds, self.release, poll)


#: The cursors of a release and its next due time (None: none asked), of the poll's reads.
Cursors = tuple[Any, Any, Any, Any]


def apply(conn: Any, work: ScheduledWork, incarnation: int) -> Cursors:
    """Queue ``work``'s statements in the pipeline of ``conn``'s open transaction (the new
    rows first: a release in the same batch sees them)."""
    if work.adds:
        rows = [
            (
                *_row(record, into, incarnation),
                dupl_id,
                into,
                dupl_id,
                record.message.message_id,
                incarnation,
            )
            for record, into, dupl_id in work.adds
        ]
        conn.cursor().executemany(_SCHEDULE, rows)
    released = next_due = due = counts = None
    if work.release is not None:
        now, limit, prefix = work.release
        released = conn.execute(_RELEASE, {"now": now, "n": limit, "prefix": prefix})
        next_due = conn.execute(_NEXT_DUE)
    if work.read:
        due = conn.execute(_NEXT_DUE)
        counts = conn.execute(_COUNTS)
    return released, next_due, due, counts


def answer(cursors: Cursors) -> ScheduledDone:
    """What the worker found, from the cursors ``apply`` returned."""
    released_cursor, next_due, due, counts = cursors
    released = None
    woken: set[str] = set()
    if released_cursor is not None:
        handed = []
        ended = []
        rows = released_cursor.fetchall()
        for target_text, qkey, repeats, *columns in rows:
            target = tuple(_loads(target_text))
            if not repeats:
                ended.append(target)
            if qkey is not None:
                woken.add(qkey)
                continue
            priority, message_id, destination, headers, body, expires, persistent, grp = columns
            message = message_from_row(
                "",
                (priority, 0, message_id, destination, headers, body, expires, 0, persistent, grp),
            )
            message.store_key = None  # held by no queue until published
            handed.append(ScheduledRecord(target, message, 0))
        (earliest,) = next_due.fetchone()
        released = Released(tuple(handed), tuple(ended), len(rows), _due(earliest))
    known = None
    if due is not None:
        (earliest,) = due.fetchone()
        found = tuple((tuple(_loads(target)), int(count)) for target, count in counts.fetchall())
        known = (_due(earliest), found)
    return ScheduledDone(released, known, sorted(woken))


def _due(value: Any) -> int | None:
    return None if value is None else int(value)


def _row(record: ScheduledRecord, into: str | None, incarnation: int) -> tuple[Any, ...]:
    """The columns of ``_SCHEDULE`` for ``record``: the single-node table's but ``seq``."""
    return (*scheduled_row(record)[1:], into, incarnation)

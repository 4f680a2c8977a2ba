"""Duplicate detection for the whole cluster, in PostgreSQL: the ``_AMQ_DUPL_ID`` values each
shared queue took, rows of ``stompbroker.duplicates`` (``_pg_schema``), decided in the batch
that writes the message.

A send with an id to a shared queue (``ISharedQueues.publish_once``) is, in its batch's
transaction, in this order:

1. a *take*: ``INSERT ... ON CONFLICT (qkey, dupl_id) DO UPDATE ... WHERE`` the row there is
   expired or beyond the window (``window`` newer rows of its queue) ``RETURNING``: the
   row names this message and this incarnation exactly when the send took the id. Two nodes
   taking one id at once: the second waits for the first's commit, then finds the id
   taken (or takes it, if the first rolled back);
2. its message's row, written with the batch's other new rows (in order) only if the id's
   row names it (``_pg_shared``): a message is kept exactly when its id is remembered, and
   once in the cluster;
3. every ``window // 16`` takes of a queue (on a node), a *prune*: its rows beyond the
   newest ``window``, and its expired ones, go (``FOR UPDATE SKIP LOCKED``: a row another
   node's batch holds waits for a later prune). Between prunes, a take counts the newer
   rows itself, so the window is exact whenever the prune runs.

A second send of one id to one queue in the same batch takes nothing: it is a duplicate of
the first (a take names each id once). Takes lock their rows in one order on every node, by
(window, queue, id), so that two nodes' batches never deadlock on them. Expiry is in epoch
ms of the clock of the node that took the id (and of the node that checks it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._pg_schema import SCHEMA

_DUP = f"{SCHEMA}.duplicates"

_TAKE = (
    f"INSERT INTO {_DUP} AS d (qkey, dupl_id, expires, message_id, incarnation)"
    " SELECT q, k, x, m, %(inc)b FROM unnest(%(q)b::text[], %(k)b::text[], %(x)b::bigint[],"
    " %(m)b::text[]) AS t(q, k, x, m) ORDER BY q, k"
    " ON CONFLICT (qkey, dupl_id) DO UPDATE SET expires = EXCLUDED.expires,"
    " message_id = EXCLUDED.message_id, incarnation = EXCLUDED.incarnation, id = DEFAULT"
    " WHERE (d.expires <> 0 AND d.expires <= %(now)b) OR (SELECT count(*) FROM (SELECT 1"
    f" FROM {_DUP} n WHERE n.qkey = d.qkey AND n.id > d.id LIMIT %(w)b) s) >= %(w)b"
    " RETURNING d.qkey, d.dupl_id"
)
_PRUNE = (
    f"DELETE FROM {_DUP} WHERE qkey = %(k)s AND id IN (SELECT id FROM {_DUP}"
    " WHERE qkey = %(k)s AND ((expires <> 0 AND expires <= %(now)s) OR id <= (SELECT id"
    f" FROM {_DUP} WHERE qkey = %(k)s ORDER BY id DESC OFFSET %(w)s LIMIT 1))"
    " FOR UPDATE SKIP LOCKED)"
)
#: Whether a new row of a batch's publishes is written: it has no id to take (NULL), or the
#: row of its id names it and the batch's incarnation. Takes the incarnation.
WRITTEN_IF_TAKEN = (
    " o.k IS NULL OR EXISTS (SELECT 1 FROM"
    f" {_DUP} d WHERE d.qkey = v->>0 AND d.dupl_id = o.k AND d.message_id = v->>3"
    " AND d.incarnation = %b)"
)


class Once(NamedTuple):
    """A new row of a batch's publishes that is written only if it takes its id."""

    #: Its place in the batch's publishes (-1: a scheduled record's, ``_pg_scheduled``).
    place: int
    store_key: str
    dupl_id: str
    #: Until when the id is remembered (epoch ms; 0: until pushed out of the window).
    expires: int
    #: How many ids its queue remembers.
    window: int
    message_id: str
    #: Whether it is the batch's first send of that id to that queue (the only one that may
    #: take it).
    first: bool


def take(conn: Any, once: list[Once], now_ms: int, incarnation: int) -> list[Any]:
    """Queue the takes of ``once``'s first sends (one statement per window size); return
    their cursors."""
    by_window: dict[int, list[Once]] = {}
    for entry in once:
        if entry.first:
            by_window.setdefault(entry.window, []).append(entry)
    cursors = []
    for window in sorted(by_window):
        entries = by_window[window]
        parameters = {
            "q": [entry.store_key for entry in entries],
            "k": [entry.dupl_id for entry in entries],
            "x": [entry.expires for entry in entries],
            "m": [entry.message_id for entry in entries],
            "inc": incarnation,
            "now": now_ms,
            "w": window,
        }
        cursors.append(conn.execute(_TAKE, parameters, binary=True))
    return cursors


def marks(count: int, once: list[Once]) -> list[str | None]:
    """For each of a batch's ``count`` new rows, the id it must take to be written (None:
    none), the parameter of ``WRITTEN_IF_TAKEN``."""
    ids: list[str | None] = [None] * count
    for entry in once:
        if entry.place >= 0:
            ids[entry.place] = entry.dupl_id
    return ids


def prune(conn: Any, prunes: list[tuple[str, int]], now_ms: int) -> None:
    """Queue the prunes of ``prunes``: (store key, window)."""
    for key, window in prunes:
        conn.execute(_PRUNE, {"k": key, "now": now_ms, "w": window})


def answers(once: list[Once], cursors: list[Any]) -> list[bool]:
    """Whether each of ``once`` took its id, from the cursors of ``take``."""
    taken = {(row[0], row[1]) for cursor in cursors for row in cursor.fetchall()}
    return [entry.first and (entry.store_key, entry.dupl_id) in taken for entry in once]

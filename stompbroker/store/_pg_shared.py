"""Shared queues in PostgreSQL: the work a batch carries for them, and its statements.

Every node's queues keep their messages in one table, ``stompbroker.shared`` (``_pg_schema``),
one row a message. A node never dispatches a row it has not *claimed*::

    published (owner NULL) --claim--> claimed (owner: an incarnation of a node)
        ^                                |  ACK, auto ack, dead letter: the row goes
        +---- NACK given up, consumer ---+  (``AND owner =`` its claimer: a fenced
              gone, node dead (swept)       node's late ACK changes nothing)

* A claim takes the waiting rows of one queue, highest priority then oldest, up to a limit,
  skipping rows another node is claiming (``FOR UPDATE SKIP LOCKED``), in the batch's
  transaction: it sees the batch's own publishes.
* A sweep (every poll) gives back the rows claimed by incarnations that are not alive any
  more (their node died, or its worker reconnected under a new one), counting one more
  delivery: they come back flagged redelivered.
* A new row with an ``_AMQ_DUPL_ID`` (``publish_once``) is written only if its send takes
  the id (``_pg_duplicates``: the take goes first in the transaction).
* After the COMMIT, one ``pg_notify`` per queue that got rows wakes the other nodes
  (outside the transaction: NOTIFY serialises commits). Notifications are a hint; the poll
  is the safety net.

``SharedBatch`` gathers a batch's shared work on the reactor's side; ``SharedWork`` is what
the worker applies (``apply``), ``SharedDone`` what it answers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from twisted.internet.defer import Deferred

from stompbroker.core import DurableRecord, Member, Message

from . import _pg_duplicates, _pg_scheduled
from ._pg_duplicates import WRITTEN_IF_TAKEN, Once
from ._pg_scheduled import ScheduledBatch, ScheduledDone, ScheduledWork
from ._pg_schema import GROUP_LOCK, LIVE_INCARNATIONS, LIVE_NODES, NODE_LOCK, SCHEMA
from ._rows import message_from_row, pack_rows

#: The channel other nodes LISTEN on; a notification's payload is the sending incarnation
#: and a queue's store key, a space between (``wake_payload``).
CHANNEL = "stompbroker_queues"
#: The key a notification of ``CHANNEL`` carries when a durable subscription was defined or
#: deleted (no store key starts with "!").
DEFINITIONS_KEY = "!durables"
#: A notification's payload must be shorter than this (PostgreSQL's limit is 8000 bytes).
PAYLOAD_BYTES = 7900

_SH = f"{SCHEMA}.shared"

_PUBLISH_ROWS = (
    f"INSERT INTO {_SH} (qkey, priority, message_id, destination, headers, body, expires,"
    " delivery_count, persistent, grp) SELECT v->>0, (v->>1)::smallint, v->>3, v->>4,"
    " (v->5)::text, substring(%b::bytea FROM (v->>6)::integer FOR (v->>7)::integer),"
    " (v->>8)::bigint, (v->>9)::integer, (v->>10)::boolean, v->>11"
    " FROM json_array_elements(%b::json) WITH ORDINALITY AS e(v, n)"
)
_PUBLISH = _PUBLISH_ROWS + " ORDER BY n"
# With rows that are written only if they take their duplicate id: each row's id to take
# (NULL: none), by place; the incarnation.
_PUBLISH_ONCE = (
    _PUBLISH_ROWS
    + " JOIN unnest(%b::text[]) WITH ORDINALITY AS o(k, i) ON o.i = e.n WHERE"
    + WRITTEN_IF_TAKEN
    + " ORDER BY n"
)
# A message this node delivers itself: its row is written claimed (by the batch's
# incarnation), with the id the node reserved for it (``seq`` in the packed row).
_PUBLISH_CLAIMED = (
    f"INSERT INTO {_SH} (id, owner, qkey, priority, message_id, destination, headers, body,"
    " expires, delivery_count, persistent, grp) SELECT (v->>2)::bigint, %b, v->>0,"
    " (v->>1)::smallint, v->>3, v->>4, (v->5)::text,"
    " substring(%b::bytea FROM (v->>6)::integer FOR (v->>7)::integer), (v->>8)::bigint,"
    " (v->>9)::integer, (v->>10)::boolean, v->>11 FROM json_array_elements(%b::json) AS e(v)"
)
_RESERVE = f"SELECT nextval('{_SH}_id_seq') FROM generate_series(1, %b)"
_SETTLE = f"DELETE FROM {_SH} WHERE id = ANY(%b::bigint[]) AND owner = %b"
_RELEASE = (
    f"UPDATE {_SH} s SET owner = NULL, delivery_count = g.n"
    " FROM unnest(%b::bigint[], %b::integer[]) AS g(id, n) WHERE s.id = g.id AND s.owner = %b"
)
_PURGE = f"DELETE FROM {_SH} WHERE qkey = %s AND owner IS NULL"
_DROP = f"DELETE FROM {_SH} WHERE qkey = %s"
_EXCLUSIVES = f"{SCHEMA}.exclusives"
# A claim takes nothing from a queue whose exclusive consumer is another incarnation's.
_GROUPS = f"{SCHEMA}.groups"
# ... nor a message of a group another incarnation delivers; the groups of what it claims
# become its incarnation's (those no one had).
_CLAIM = (
    f"WITH c AS (SELECT id, grp FROM {_SH} w WHERE qkey = %(k)s AND owner IS NULL"
    " AND id <> ALL(%(skip)b::bigint[])"
    f" AND NOT EXISTS (SELECT 1 FROM {_EXCLUSIVES} x"
    " WHERE x.qkey = %(k)s AND x.incarnation <> %(inc)b)"
    f" AND (w.grp IS NULL OR NOT EXISTS (SELECT 1 FROM {_GROUPS} g"
    " WHERE g.qkey = %(k)s AND g.grp = w.grp AND g.incarnation <> %(inc)b))"
    " ORDER BY priority DESC, id LIMIT %(n)b FOR UPDATE SKIP LOCKED),"
    f" o AS (INSERT INTO {_GROUPS} (qkey, grp, incarnation)"
    " SELECT DISTINCT %(k)s, grp, %(inc)b FROM c WHERE grp IS NOT NULL"
    " ON CONFLICT (qkey, grp) DO NOTHING)"
    f" UPDATE {_SH} s SET owner = %(inc)b FROM c WHERE s.id = c.id"
    " RETURNING s.priority, s.id, s.message_id, s.destination, s.headers, s.body, s.expires,"
    " s.delivery_count, s.persistent, s.grp"
)
# Claims of a queue with grouped messages waiting take turns between nodes (so that two
# never take one new group at once): the lock is the transaction's.
_GROUP_TURN = (
    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
    f" WHERE EXISTS (SELECT 1 FROM {_SH} WHERE qkey = %s AND grp IS NOT NULL AND owner IS NULL)"
)
_GIVE_UP_GROUPS = f"DELETE FROM {_GROUPS} WHERE qkey = %s AND incarnation = %s"
# A group its producer closed (JMSXGroupSeq -1) is free for any node's next claim.
_CLOSE_GROUP = f"DELETE FROM {_GROUPS} WHERE qkey = %s AND grp = %s AND incarnation = %s"
_SWEEP_GROUPS = f"DELETE FROM {_GROUPS} WHERE incarnation <> ALL(ARRAY({LIVE_INCARNATIONS}))"
_SWEEP = (
    f"UPDATE {_SH} SET owner = NULL, delivery_count = delivery_count + 1"
    f" WHERE owner IS NOT NULL AND owner <> ALL(ARRAY({LIVE_INCARNATIONS}))"
)
# An exclusive consumer's node takes its queue, unless a live incarnation holds it.
_TAKE_EXCLUSIVE = (
    f"INSERT INTO {_EXCLUSIVES} AS x (qkey, incarnation) VALUES (%s, %s) ON CONFLICT (qkey)"
    " DO UPDATE SET incarnation = EXCLUDED.incarnation"
    f" WHERE x.incarnation <> ALL(ARRAY({LIVE_INCARNATIONS}))"
)
_GIVE_UP_EXCLUSIVE = f"DELETE FROM {_EXCLUSIVES} WHERE qkey = %s AND incarnation = %s"
_SWEEP_EXCLUSIVES = (
    f"DELETE FROM {_EXCLUSIVES} WHERE incarnation <> ALL(ARRAY({LIVE_INCARNATIONS}))"
)
_HELD_ELSEWHERE = f"SELECT qkey FROM {_EXCLUSIVES} WHERE incarnation <> %s"
# A durable subscription's subscriber holds it for the cluster: its node takes the
# subscription as an exclusive consumer's takes its queue, and reads whether it holds it.
_HOLDS = f"SELECT EXISTS (SELECT 1 FROM {_EXCLUSIVES} WHERE qkey = %s AND incarnation = %s)"
_CHANGES = f"{SCHEMA}.durable_changes"
_DEFINED = f"UPDATE {_CHANGES} SET version = version + 1"
# The definitions, with the number of their last change, unless it is the one known: one
# row (NULL columns but the number) when there are none.
_DEFINITIONS = (
    "SELECT v.version, d.client_id, d.name, d.pattern, d.selector, d.no_local"
    f" FROM {_CHANGES} v LEFT JOIN {SCHEMA}.durables d ON true WHERE v.version <> %s"
    " ORDER BY d.client_id, d.name"
)
_TEMPORARIES = f"{SCHEMA}.temporaries"
_DECLARE = (
    f"INSERT INTO {_TEMPORARIES} (address, incarnation) VALUES (%s, %s)"
    " ON CONFLICT (address) DO UPDATE SET incarnation = EXCLUDED.incarnation"
)
_UNDECLARE = f"DELETE FROM {_TEMPORARIES} WHERE address = %s"
# The temporary queues of dead incarnations go; then the rows of temporary queues that are
# not there (sent to after their owner left, or to a dead node's).
_SWEEP_TEMPORARIES = (
    f"DELETE FROM {_TEMPORARIES} WHERE incarnation <> ALL(ARRAY({LIVE_INCARNATIONS}))"
)
_SWEEP_ORPHANS = (
    f"DELETE FROM {_SH} s WHERE s.qkey LIKE '/remote-temp-queue/%'"
    f" AND NOT EXISTS (SELECT 1 FROM {_TEMPORARIES} t WHERE t.address = s.qkey)"
)
_PEEK = (
    "SELECT priority, id, message_id, destination, headers, body, expires, delivery_count,"
    f" persistent, grp FROM {_SH} WHERE qkey = %s AND owner IS NULL"
    " ORDER BY priority DESC, id LIMIT %b"
)
_DEPTHS = (
    f"SELECT qkey, count(*), coalesce(sum(octet_length(body)), 0) FROM {_SH}"
    " WHERE owner IS NULL GROUP BY qkey"
)
_NOTIFY = "SELECT pg_notify(%s, %s || ' ' || k) FROM unnest(%s::text[]) AS k"


class SharedWork(NamedTuple):
    """A batch's shared work, applied in this order after the node's own tables' work."""

    #: ((store key, priority, seq), message): new rows.
    publishes: list[tuple[tuple[str, int, int], Message]]
    #: Claimed rows done with (ACK): their ids.
    settles: list[int]
    #: Claimed rows given back: (id, delivery count, store key).
    releases: list[tuple[int, int, str]]
    #: (store key, whether claimed rows go too): a purge (waiting rows), a deleted queue (all).
    purges: list[tuple[str, bool]]
    #: (store key, how many rows at most, the ids to skip, whether for an exclusive
    #: consumer: the queue is taken first, if no live incarnation holds it).
    claims: list[tuple[str, int, list[int], bool]]
    #: Whether to sweep the dead incarnations' claims and read every queue's depth.
    poll: bool
    #: (store key, how many rows at most): waiting rows read, not claimed (a browser's).
    peeks: list[tuple[str, int]]
    #: ((store key, priority, id), message): new rows claimed by this node (it delivers
    #: them itself), under ids it reserved.
    claimed_publishes: list[tuple[tuple[str, int, int], Message]]
    #: How many row ids to reserve for such rows (0: none).
    reserve: int
    #: (global address, True: declared / False: gone): this node's temporary queues.
    temporaries: list[tuple[str, bool]]
    #: The cluster's scheduled messages: new ones, a release (``_pg_scheduled``).
    scheduled: ScheduledWork
    #: (store key, groups too): queues this node holds no more for an exclusive consumer
    #: (with groups too: nor the message groups it delivered; it has no consumer left).
    give_ups: list[tuple[str, bool]]
    #: Durable subscriptions this node's subscriber takes for itself (``exclusives``).
    holds: list[str]
    #: Whether the batch defined or deleted a durable subscription (its definition written
    #: by the batch's first statements): the change's number is bumped, other nodes told.
    defined: bool
    #: The change number of the definitions this node knows: they are read if it is not the
    #: last (-1: read them; None: not in this batch).
    definitions: int | None
    #: The publishes written only if they take their duplicate id, in the order asked.
    once: list[Once]
    #: (store key, window): queues whose old and expired duplicate ids go.
    prunes: list[tuple[str, int]]
    #: The time (epoch ms) duplicate ids are found expired at.
    now_ms: int
    #: (store key, group): message groups this node delivered that their producer closed.
    closed_groups: list[tuple[str, str]]


class SharedDone(NamedTuple):
    """What the worker answers for a batch's shared work."""

    #: The rows of each claim, in claim order (priority desc, id).
    claimed: list[list[Message]]
    #: Waiting rows and their bodies' bytes, by store key (None: no poll in the batch).
    depths: dict[str, tuple[int, int]] | None
    #: The incarnation the batch ran under (a new one: the worker reconnected).
    incarnation: int
    #: The rows of each peek, in claim order.
    peeked: list[list[Message]]
    #: The row ids reserved, in order.
    reserved: list[int]
    #: The live nodes (None: no poll in the batch).
    members: list[Member] | None
    #: The queues another incarnation's exclusive consumer holds (None: no poll).
    held_elsewhere: set[str] | None
    #: Whether this node holds each durable subscription it took (in ``holds`` order).
    held: list[bool]
    #: (change number, every definition), when they changed since the number known (None:
    #: unchanged, or not read).
    definitions: tuple[int, tuple[DurableRecord, ...]] | None
    #: Whether each publish of ``once`` took its duplicate id (and was written).
    once: list[bool]
    #: What the scheduled messages' work did and read.
    scheduled: ScheduledDone


class SharedBatch:
    """The shared work asked for since the last batch left, on the reactor's side."""

    __slots__ = (
        "claimed_publishes",
        "claims",
        "closed_groups",
        "defined",
        "definitions",
        "give_ups",
        "holds",
        "known",
        "now_ms",
        "once",
        "peeks",
        "poll",
        "prunes",
        "publishes",
        "purges",
        "releases",
        "reserve",
        "scheduled",
        "settles",
        "taking",
        "temporaries",
    )

    def __init__(self, known: int = -1) -> None:
        self.publishes: list[tuple[tuple[str, int, int], Message]] = []
        self.settles: list[int] = []
        self.releases: dict[int, tuple[int, str]] = {}
        self.purges: list[tuple[str, bool]] = []
        self.claims: list[tuple[str, int, list[int], bool, Deferred[list[Message]]]] = []
        self.poll = False
        self.peeks: list[tuple[str, int, Deferred[list[Message]]]] = []
        #: By id: a row settled before its batch left is never written.
        self.claimed_publishes: dict[int, tuple[tuple[str, int, int], Message]] = {}
        self.reserve = 0
        self.temporaries: list[tuple[str, bool]] = []
        self.give_ups: list[tuple[str, bool]] = []
        self.closed_groups: list[tuple[str, str]] = []
        self.holds: list[tuple[str, Deferred[bool]]] = []
        self.defined = False
        #: Read the definitions (whatever change number is known).
        self.definitions = False
        #: The change number of the definitions this node knows: with the poll, they are
        #: read if it is not the last.
        self.known = known
        #: Publishes that take a duplicate id (each with its answer), the (store key, id)
        #: pairs they name, the queues to prune (store key -> window) and the time.
        self.once: list[tuple[Once, Deferred[bool]]] = []
        self.taking: set[tuple[str, str]] = set()
        self.prunes: dict[str, int] = {}
        self.now_ms = 0
        self.scheduled = ScheduledBatch()

    def size(self) -> int:
        return (
            len(self.publishes)
            + len(self.claimed_publishes)
            + len(self.settles)
            + len(self.releases)
            + len(self.purges)
            + len(self.temporaries)
            + len(self.give_ups)
            + len(self.closed_groups)
            + len(self.holds)
            + self.defined
            + self.scheduled.size()
        )

    def writes(self) -> bool:
        return (
            bool(self.size() or self.claims or self.poll or self.peeks or self.reserve)
            or self.definitions
            or self.scheduled.writes()
        )

    def work(self) -> SharedWork:
        return SharedWork(
            self.publishes,
            self.settles,
            [(id_, count, key) for id_, (count, key) in self.releases.items()],
            self.purges,
            [(key, limit, skip, exclusive) for key, limit, skip, exclusive, _ in self.claims],
            self.poll,
            [(key, limit) for key, limit, _ in self.peeks],
            list(self.claimed_publishes.values()),
            self.reserve,
            self.temporaries,
            self.scheduled.work(self.poll),
            self.give_ups,
            [key for key, _ in self.holds],
            self.defined,
            -1 if self.definitions else self.known if self.poll else None,
            [entry for entry, _ in self.once],
            list(self.prunes.items()),
            self.now_ms,
            self.closed_groups,
        )


#: The cursors of a batch's claims, peeks, depths, live nodes and queues held elsewhere
#: (None: no poll), of its reserved ids (None: none asked), of its holds, of the
#: definitions (None: not read), of its duplicate ids' takes and of its scheduled work.
Cursors = tuple[
    list[Any], list[Any], Any, Any, Any, Any, list[Any], Any, list[Any], _pg_scheduled.Cursors
]


def apply(conn: Any, work: SharedWork, incarnation: int) -> Cursors:
    """Queue ``work``'s statements in the pipeline of ``conn``'s open transaction; return the
    cursors of what it reads."""
    if work.defined:
        conn.execute(_DEFINED)
    for address, declared in work.temporaries:
        if declared:
            conn.execute(_DECLARE, (address, incarnation))
        else:
            conn.execute(_UNDECLARE, (address,))
    takes = _pg_duplicates.take(conn, work.once, work.now_ms, incarnation)
    if work.publishes:
        meta, bodies = pack_rows(work.publishes)
        if work.once:
            once = _pg_duplicates.marks(len(work.publishes), work.once)
            conn.execute(_PUBLISH_ONCE, (bodies, meta, once, incarnation))
        else:
            conn.execute(_PUBLISH, (bodies, meta))
    _pg_duplicates.prune(conn, work.prunes, work.now_ms)
    if work.claimed_publishes:
        meta, bodies = pack_rows(work.claimed_publishes)
        conn.execute(_PUBLISH_CLAIMED, (incarnation, bodies, meta))
    if work.settles:
        conn.execute(_SETTLE, (work.settles, incarnation))
    if work.releases:
        ids, counts, _ = zip(*work.releases, strict=True)
        conn.execute(_RELEASE, (list(ids), list(counts), incarnation))
    for key, claimed_too in work.purges:
        conn.execute(_DROP if claimed_too else _PURGE, (key,))
    scheduled = _pg_scheduled.apply(conn, work.scheduled, incarnation)  # before the claims
    if work.poll:
        conn.execute(_SWEEP, (NODE_LOCK,))
        conn.execute(_SWEEP_TEMPORARIES, (NODE_LOCK,))
        conn.execute(_SWEEP_ORPHANS)
        conn.execute(_SWEEP_EXCLUSIVES, (NODE_LOCK,))
        conn.execute(_SWEEP_GROUPS, (NODE_LOCK,))
    claims = []
    for key, limit, skip, exclusive in work.claims:
        if exclusive:
            conn.execute(_TAKE_EXCLUSIVE, (key, incarnation, NODE_LOCK))
        conn.execute(_GROUP_TURN, (GROUP_LOCK, key, key))
        parameters = {"k": key, "skip": skip, "inc": incarnation, "n": limit}
        claims.append(conn.execute(_CLAIM, parameters, binary=True))
    holds = []
    for key in work.holds:
        conn.execute(_TAKE_EXCLUSIVE, (key, incarnation, NODE_LOCK))
        holds.append(conn.execute(_HOLDS, (key, incarnation)))
    # After the claims and holds: a give-up is asked after the claim that took the queue
    # (its answer was on its way when the consumer left).
    for key, groups in work.give_ups:
        conn.execute(_GIVE_UP_EXCLUSIVE, (key, incarnation))
        if groups:
            conn.execute(_GIVE_UP_GROUPS, (key, incarnation))
    for key, group in work.closed_groups:
        conn.execute(_CLOSE_GROUP, (key, group, incarnation))
    peeks = [conn.execute(_PEEK, (key, limit), binary=True) for key, limit in work.peeks]
    depths = conn.execute(_DEPTHS) if work.poll else None
    members = conn.execute(LIVE_NODES, (NODE_LOCK,)) if work.poll else None
    held = conn.execute(_HELD_ELSEWHERE, (incarnation,)) if work.poll else None
    reserved = conn.execute(_RESERVE, (work.reserve,)) if work.reserve else None
    known = work.definitions
    definitions = conn.execute(_DEFINITIONS, (known,)) if known is not None else None
    return claims, peeks, depths, members, held, reserved, holds, definitions, takes, scheduled


def answer(work: SharedWork, cursors: Cursors, incarnation: int) -> SharedDone:
    """What the worker found, from the cursors ``apply`` returned (after the pipeline's sync)."""
    claims, peeks, depths, members, held, reserved, holds, definitions, takes, scheduled = cursors
    claimed = []
    for (key, _, _, _), cursor in zip(work.claims, claims, strict=True):
        rows = sorted(cursor.fetchall(), key=lambda row: (-row[0], row[1]))
        claimed.append([message_from_row(key, row) for row in rows])
    found = None
    if depths is not None:
        found = {key: (int(count), int(size)) for key, count, size in depths.fetchall()}
    peeked = []
    for (key, _), cursor in zip(work.peeks, peeks, strict=True):
        peeked.append([message_from_row(key, row) for row in cursor.fetchall()])
    for messages in peeked:
        for message in messages:
            message.store_key = None  # a browser's copy: no row of its own
    ids = [row[0] for row in reserved.fetchall()] if reserved is not None else []
    live = None
    if members is not None:
        live = [
            Member(name, incarnation, joined.timestamp(), address)
            for _, name, incarnation, joined, address in members.fetchall()
        ]
    elsewhere = {row[0] for row in held.fetchall()} if held is not None else None
    taken = [bool(cursor.fetchone()[0]) for cursor in holds]
    once = _pg_duplicates.answers(work.once, takes)
    return SharedDone(
        claimed,
        found,
        incarnation,
        peeked,
        ids,
        live,
        elsewhere,
        taken,
        _defined(definitions),
        once,
        _pg_scheduled.answer(scheduled),
    )


def _defined(cursor: Any) -> tuple[int, tuple[DurableRecord, ...]] | None:
    """The change number and the definitions a read found (None: unchanged, or none read)."""
    rows = cursor.fetchall() if cursor is not None else []
    if not rows:
        return None
    records = tuple(
        DurableRecord(client_id, name, pattern, selector, no_local)
        for _, client_id, name, pattern, selector, no_local in rows
        if client_id is not None
    )
    return int(rows[0][0]), records


def woken_by(payload: str, incarnation: int) -> str | None:
    """The store key a notification of ``CHANNEL`` wakes, unless it is this incarnation's
    own (or not one of ours)."""
    sender, _, key = payload.partition(" ")
    if not key or sender == str(incarnation):
        return None
    return key


def notify(conn: Any, work: SharedWork, incarnation: int, released: list[str]) -> None:
    """Wake the other nodes for the queues ``work`` published to or gave rows back to, and
    those its scheduled messages were ``released`` to (after its COMMIT; a store key too
    long for a payload waits for the poll)."""
    keys = {key for (key, _, _), _ in work.publishes}
    keys.update(released)
    keys.update(key for _, _, key in work.releases)
    keys.update(key for key, _ in work.give_ups)
    if work.defined:
        keys.add(DEFINITIONS_KEY)
    keys = {key for key in keys if len(key.encode()) < PAYLOAD_BYTES}
    if keys:
        conn.execute(_NOTIFY, (CHANNEL, str(incarnation), sorted(keys)))

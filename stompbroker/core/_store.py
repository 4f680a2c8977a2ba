"""What the core asks of a message store, and what a store gives back at start.

A store keeps *rows*: one per message per queue that holds it (a message copied
to three durable subscriptions is three rows), identified by the holding queue's
``store_key``, the message's priority and its ``seq``. The core writes a row for
every persistent message it accepts into a queue or a durable subscription, and
for a non-persistent one only when it pages it out of memory (a *transient*
row, forgotten at the next start). Rows go when their message is done
(acknowledged, dead-lettered, expired, dropped).

Every method returns at once; work is done in order of the calls. ``add`` fires
its Deferred when the row is as safe as the ``sync`` level asks:

* ``always``: on disk (fsync) before the Deferred fires;
* ``batch``: as ``always``, but the store may wait a few milliseconds to share
  one fsync among more rows;
* ``never``: handed to the operating system (survives the broker's crash, not
  the machine's);
* ``transient``: whenever convenient (a paged-out non-persistent message).

Removals and delivery counts are written with the next batch, with no fsync of
their own: after a crash a message may come back once more, never get lost.

The ids a queue remembers for duplicate detection (``_AMQ_DUPL_ID``) are kept apart
from the rows, by queue address: ``remember`` asked in the same reactor turn as a
message's ``add`` is written in the same batch (so an id is on disk exactly when its
message is), and an id stays when its message's row goes; ``forget`` removes one
(pushed out of the window). ``open`` hands them back oldest first.

Scheduled messages (``_scheduled``: a SEND with a delivery delay) are kept apart too, one
record per message and target, keyed by the message's ``seq`` and read back in due-time
order (``load_scheduled``), so that the broker holds only the earliest in memory. A record
taken out (``unschedule``, when its message was delivered) or moved on (``reschedule``, a
repeating one) in the same reactor turn as the delivered message's ``add`` is written in
the same batch: a crash never loses a due message, nor delivers it twice.

A *topic bus* (``ITopicBus``) carries topic publishes between the nodes of a cluster: what
one node publishes to a topic reaches the subscribers on the others, at most once, stored
nowhere (``store._pg_bus`` over PostgreSQL's LISTEN/NOTIFY).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from ._message import Message
from ._stats import Histogram

SYNC_LEVELS = ("always", "batch", "never")
TRANSIENT = "transient"


class StoreUnavailable(Exception):
    """The store cannot reach its database now (a batch failed without being tried, or its
    connection could not be made); ``str()`` says why in one line."""


@dataclass(frozen=True)
class DurableRecord:
    """A durable subscription's definition, as stored."""

    client_id: str
    name: str
    pattern: str
    selector: str | None = None
    #: No-local: it keeps no message sent on its subscriber's own connection.
    no_local: bool = False


@dataclass(frozen=True)
class ScheduledRecord:
    """A message waiting for its delivery time, for one target.

    ``target`` is where it goes when due: ``("queue", name)``, ``("topic", name)`` (the
    subscribers present then) or ``("durable", client id, subscription name)``. ``due`` is in
    epoch ms; ``repeats`` is how many more deliveries follow this one, every ``period`` ms.
    """

    target: tuple[str, ...]
    message: Message
    due: int
    repeats: int = 0
    period: int = 0

    @property
    def key(self) -> tuple[int, int]:
        """Its place in due-time order: (due, seq)."""
        return (self.due, self.message.seq)


@dataclass(frozen=True)
class Released:
    """What a release of the cluster's due scheduled messages did (``release_due``)."""

    #: The due records this node hands to their targets itself (a topic's subscribers), in
    #: due order: their messages have no ``seq`` yet.
    handed: tuple[ScheduledRecord, ...] = ()
    #: The targets of the records released for the last time (no repeat left).
    ended: tuple[tuple[str, ...], ...] = ()
    #: How many records were released (repeats and shared queues' ones included).
    count: int = 0
    #: The earliest due time (epoch ms) of what waits in the cluster now, as this release saw
    #: it (records other nodes were releasing meanwhile included); None: nothing waits.
    next_due: int | None = None


@dataclass(frozen=True)
class StoredQueue:
    """What a store holds for one queue: per priority, how many rows and the first ``seq``."""

    store_key: str
    #: priority -> (row count, smallest seq)
    priorities: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: The bodies' total size.
    bytes: int = 0


class CommitStats:
    """What a store's writes cost: batches committed, and how long those with an fsync took."""

    __slots__ = ("batches", "fsync")

    def __init__(self) -> None:
        self.batches = 0
        #: Seconds each committing batch that fsynced took (the COMMIT, fsync included).
        self.fsync = Histogram()

    def as_dict(self) -> dict[str, object]:
        """The JSON shape: batches, and the fsync histogram."""
        return {"batches": self.batches, "fsync": self.fsync.as_dict()}


@dataclass(frozen=True)
class Recovery:
    """Everything a store hands the broker at start."""

    durables: tuple[DurableRecord, ...] = ()
    queues: tuple[StoredQueue, ...] = ()
    #: The largest ``seq`` ever stored; the broker continues after it.
    last_seq: int = 0
    #: Remembered duplicate ids, oldest first: (queue address, id, expiry in epoch ms, 0: none).
    duplicate_ids: tuple[tuple[str, str, float], ...] = ()
    #: How many scheduled records each target has.
    scheduled: tuple[tuple[tuple[str, ...], int], ...] = ()


class IMessageStore(Interface):
    """Where queued messages and durable subscription definitions are kept."""

    name = Attribute("A short name for logs: 'memory', 'sqlite'.")
    commits = Attribute("A CommitStats: batches written, and how long their fsyncs took.")

    def open() -> Deferred[Recovery]:
        """Open (creating if needed), drop transient rows, and describe what is stored."""

    def add(store_key: str, message: Message, sync: str) -> Deferred[None]:
        """Write a row for ``message`` in queue ``store_key``; fires when as safe as ``sync``."""

    def delivered(store_key: str, message: Message) -> None:
        """Record ``message.delivery_count`` (batched, no fsync)."""

    def remove(store_key: str, message: Message) -> None:
        """Delete the row of ``message`` in ``store_key`` (batched, no fsync)."""

    def load(store_key: str, priority: int, from_seq: int, limit: int) -> Deferred[list[Message]]:
        """Up to ``limit`` rows of ``store_key`` at ``priority`` with ``seq >= from_seq``, in order.

        Sees every write asked for before it.
        """

    def drop(store_key: str) -> None:
        """Delete every row of ``store_key`` (a deleted durable subscription or queue)."""

    def drop_from(store_key: str, priority: int, from_seq: int) -> None:
        """Delete the rows of ``store_key`` at ``priority`` with ``seq >= from_seq`` (batched)."""

    def remember(address: str, dupl_id: str, expires: float) -> None:
        """Keep a duplicate id of queue ``address`` (in the batch of the add asked with it)."""

    def forget(address: str, dupl_id: str) -> None:
        """Drop a duplicate id of queue ``address`` (batched, no fsync)."""

    def schedule(record: ScheduledRecord, sync: str) -> Deferred[None]:
        """Keep a scheduled message (key: its message's ``seq``); fires when as safe as ``sync``."""

    def unschedule(seq: int) -> None:
        """Forget the scheduled record of ``seq`` (batched, no fsync)."""

    def reschedule(seq: int, due: int, repeats: int) -> None:
        """Move the scheduled record of ``seq`` on to ``due``, ``repeats`` left (batched)."""

    def load_scheduled(after: tuple[int, int], limit: int) -> Deferred[list[ScheduledRecord]]:
        """Up to ``limit`` scheduled records with key (due, seq) ``>= after``, in key order.

        Sees every write asked for before it.
        """

    def add_durable(record: DurableRecord) -> Deferred[None]:
        """Keep (or replace) a durable subscription's definition; fires once on disk."""

    def remove_durable(client_id: str, name: str) -> None:
        """Forget a durable subscription's definition (its rows go with ``drop``)."""

    def flush() -> Deferred[None]:
        """Fires once everything asked so far is written (and fsynced if any asked)."""

    def close() -> Deferred[None]:
        """Flush and release the store; no call may follow."""

    def size() -> int:
        """Bytes the store uses on disk (0 in memory)."""


@dataclass(frozen=True)
class Member:
    """A live node of a cluster, as the store last read it."""

    name: str
    #: Its current incarnation (a new one at every connection it opens).
    incarnation: int
    #: When that incarnation joined (epoch seconds), and where from (None: a local socket).
    joined: float
    address: str | None


class ISharedQueues(Interface):
    """Queues whose messages live in a database every node of a cluster shares (the
    PostgreSQL store), one row a message. A node dispatches only what it *claimed*; a
    claimed message is settled (its row goes) or released (it waits again). Every method
    returns at once; work is done in order of the calls, in the store's batches."""

    node = Attribute("This node's name in the cluster.")
    incarnation = Attribute("This node's incarnation: a number, new at each connection it opens.")

    def publish(store_key: str, message: Message, sync: str) -> Deferred[None]:
        """A new message for queue ``store_key``, waiting to be claimed; fires when as safe
        as ``sync`` (``IMessageStore.add``'s levels)."""

    def publish_once(
        store_key: str, message: Message, dupl_id: str, window: int, ttl_ms: int, sync: str
    ) -> Deferred[bool]:
        """A new message for queue ``store_key``, as ``publish``, written only if it takes
        ``dupl_id``: no send through any node took that id for the queue within its last
        ``window`` ids and ``ttl_ms`` (0: no limit), nor earlier in this batch. Fires once
        the batch is committed (as safe as ``sync``), with whether it took the id (False: a
        duplicate, not written)."""

    def keeps_now() -> bool:
        """Whether ``publish_claimed`` may be called now (the store has a row id at hand)."""

    def publish_claimed(store_key: str, message: Message, sync: str) -> Deferred[None]:
        """A new message this node delivers itself: its row is written claimed by this node
        (``message.seq`` becomes the row's id, ``store_key`` is set); fires as ``publish``.
        Settled before its batch leaves, it is never written."""

    def claim(
        store_key: str, limit: int, skip: list[int], exclusive: bool
    ) -> Deferred[list[Message]]:
        """Claim up to ``limit`` waiting messages of ``store_key``, highest priority first,
        then oldest, but those whose ``seq`` is in ``skip``; each comes with ``store_key``
        set and its row's id as ``seq``. Nothing while another node's exclusive consumer
        holds the queue; ``exclusive`` (this node has one): take the queue first if no live
        node holds it. Sees every write asked for before it."""

    def give_up(store_key: str, groups: bool) -> None:
        """This node's exclusive consumers of ``store_key`` are gone: other nodes may claim
        (with ``groups``: it has no consumer of it left, and gives up the message groups it
        delivered too)."""

    def close_group(store_key: str, group: str) -> None:
        """The producer of message group ``group`` of ``store_key`` closed it (``JMSXGroupSeq:
        -1``) as this node delivered its last message: any node may take its next ones."""

    def hold(store_key: str) -> Deferred[bool]:
        """Take ``store_key`` for this node alone (a durable subscription's one subscriber is
        here), unless a live node holds it: no other node claims from it meanwhile; it goes
        with ``give_up``. Fires with whether this node holds it now."""

    def held_elsewhere(store_key: str) -> bool:
        """Whether another node's exclusive consumer holds ``store_key`` (as last polled)."""

    def peek(store_key: str, limit: int) -> Deferred[list[Message]]:
        """Up to ``limit`` waiting messages of ``store_key`` in claim order, claimed by no
        one (what a browser sees). Sees every write asked for before it."""

    def settle(message: Message) -> None:
        """A claimed message is done (acknowledged, dead-lettered): its row goes, if it is
        still this node's."""

    def release(message: Message) -> None:
        """A claimed message waits again for any node, with its delivery count."""

    def purge(store_key: str, claimed_too: bool) -> None:
        """The waiting messages of ``store_key`` go (with ``claimed_too``, every one: the
        queue is deleted)."""

    def declare_temporary(address: str, declared: bool) -> None:
        """This node's temporary queue ``address`` is there (``declared``) or gone: messages
        other nodes send to one that is not there are dropped (batched, no fsync)."""

    def depth(store_key: str) -> tuple[int, int]:
        """How many messages of ``store_key`` wait in the whole cluster, and their bodies'
        bytes, as last read (the store reads them every poll)."""

    def members() -> list[Member]:
        """The live nodes of the cluster, this one among them, as last read (every poll)."""

    def follow_durables(defined: Callable[[tuple[DurableRecord, ...]], None]) -> None:
        """Call ``defined(records)`` with every durable subscription's definition in the
        cluster (``add_durable`` writes the cluster's) whenever a node changed one."""

    def schedule_shared(record: ScheduledRecord, into: str | None, sync: str) -> Deferred[None]:
        """Keep a scheduled message for the cluster: when due, one node releases it, into the
        shared queue ``into`` (a queue's or a durable subscription's store key) in the
        transaction that takes it out or moves it on, or (None) to itself, for a topic's
        subscribers (``release_due``). Fires when as safe as ``sync``."""

    def schedule_once(
        record: ScheduledRecord, into: str, dupl_id: str, window: int, ttl_ms: int, sync: str
    ) -> Deferred[bool]:
        """A scheduled message for queue ``into``, as ``schedule_shared``, kept only if it
        takes ``dupl_id`` (``publish_once``'s rule, in the same table of ids). Fires once
        the batch is committed, with whether it took the id (False: a duplicate, not kept)."""

    def release_due(now_ms: int, limit: int, id_prefix: str) -> Deferred[Released]:
        """Release up to ``limit`` of the cluster's scheduled records due at ``now_ms``, in
        due order, but those another node is releasing: each goes into its shared queue
        (as a new message, its id ``id_prefix`` and its row's), or comes back in
        ``handed``; then is forgotten, or moved on by its period. Sees every write asked
        for before it."""

    def follow_scheduled(
        known: Callable[[int | None, tuple[tuple[tuple[str, ...], int], ...]], None],
    ) -> None:
        """Call ``known(earliest due, counts by target)`` with the cluster's scheduled
        records (None: there are none) at every poll."""

    def watch(woken: Callable[[str | None], None], fenced: Callable[[], None]) -> None:
        """Call ``woken(store_key)`` when messages may wait in a queue (None: in any), and
        ``fenced()`` when what this node claimed before is not its own any more (it lost
        its liveness lock, and joined again)."""


#: What a topic bus hands its broker: (topic name, message) for a publish made elsewhere.
Delivery = Callable[[str, Message], None]


class ITopicBus(Interface):
    """Topic publishes between the nodes of a cluster (non-persistent, at most once).

    The broker hands the bus every message published on this node to a topic; the bus
    hands the broker what the other nodes published. A message crossing keeps its id,
    headers, body, persistent flag, priority and expiry; the receiver numbers it (``seq``).
    """

    def attach(deliver: Delivery) -> None:
        """Hand what other nodes publish to ``deliver(topic name, message)`` (its ``seq``
        is 0 and its own to change: the receiver numbers it)."""

    def publish(topic: str, message: Message) -> None:
        """Send ``message``, published here to topic ``topic``, to the other nodes; returns at
        once (never blocks, never fails: a message that cannot go now is lost)."""

    def start() -> Deferred[None]:
        """Start carrying messages; fires once messages from other nodes arrive."""

    def stop() -> Deferred[None]:
        """Stop carrying messages (what is still waiting to go is dropped)."""

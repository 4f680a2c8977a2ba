"""The PostgreSQL store: the same batches as the SQLite store, in a PostgreSQL database any
number of nodes share.

The reactor side is ``_batching.BatchingStore`` (shared with ``SqliteStore``); the worker
side is ``_pg_database.PgDatabase`` (one connection), over the schema of ``_pg_schema``. A
node's queues' and durable subscriptions' messages, those subscriptions' definitions, the
duplicate ids its queues took (``_pg_duplicates``) and its scheduled messages
(``_pg_scheduled``) are the cluster's (``ISharedQueues``, ``_pg_shared``): every batch may
carry shared work, and every ``poll_s`` one sweeps the claims of dead nodes, reads the
queues' depths (then wakes every queue: the safety net under the notifications), the
earliest due time of the scheduled messages and, if they changed, the durable definitions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Unpack

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from stompbroker.core import (
    Clock,
    DelayedCall,
    DurableRecord,
    IMessageStore,
    ISharedQueues,
    Member,
    Message,
    Released,
    ScheduledRecord,
)

from ._batching import BatchingStore, BatchOptions, Runner
from ._pg_database import STATEMENTS, PgDatabase
from ._pg_duplicates import Once
from ._pg_shared import DEFINITIONS_KEY, SharedBatch, SharedDone, woken_by

log = Logger(namespace="stompbroker.store")

#: Seconds between two polls (a sweep of dead nodes' claims, every queue's depth).
POLL_S = 1.0
#: Row ids reserved at a time for the messages this node delivers itself, at first; each
#: time they ran out (a message that could go to a consumer here was published for want of
#: one), twice as many, up to RESERVE_MAX. More are asked for when a quarter is left.
RESERVE = 1000
RESERVE_MAX = 16_000
#: A queue's old and expired duplicate ids are pruned every ``window // PRUNE_PARTS`` of its
#: sends that take one (on this node).
PRUNE_PARTS = 16


@implementer(IMessageStore, ISharedQueues)
class PostgresStore(BatchingStore):
    """Messages and durable definitions in the PostgreSQL database ``dsn`` names.

    ``dsn`` is a libpq connection string (several hosts allowed: ``host=db1,db2
    target_session_attrs=read-write``); ``node`` is this node's name in the cluster, which
    the server also shows in ``pg_stat_activity`` (``application_name``). ``run``,
    ``clock`` and ``timer`` are as for ``SqliteStore``; ``poll_s`` is the time between polls.
    """

    name = "postgresql"
    statements = STATEMENTS

    def __init__(
        self,
        dsn: str,
        clock: Clock,
        run: Runner,
        node: str = "",
        poll_s: float = POLL_S,
        **options: Unpack[BatchOptions],
    ) -> None:
        super().__init__(clock, run, **options)
        self.dsn = dsn
        self.node = node
        self.poll_s = poll_s
        self._database: PgDatabase | None = None
        #: The shared queues' waiting messages and bytes, by store key, as last polled.
        self._depths: dict[str, tuple[int, int]] = {}
        self._woken: Callable[[str | None], None] | None = None
        self._fenced: Callable[[], None] | None = None
        #: The incarnation the last batch ran under (0: none yet).
        self.incarnation = 0
        self._poller: DelayedCall | None = None
        self._closing = False
        #: Row ids reserved for messages this node delivers itself (popped from the end).
        self._ids: list[int] = []
        self._reserving = False
        #: How many ids the next reservation asks for; whether they ran out since the last
        #: reservation came (the size doubled then).
        self._reserve_size = RESERVE
        self._ran_out = False
        #: The live nodes, and the queues other nodes' exclusive consumers hold, as last polled.
        self._members: list[Member] = []
        self._held_elsewhere: set[str] = set()
        #: Who hears of the cluster's durable definitions, and the change number of those
        #: it last heard (-1: none yet).
        self._defined: Callable[[tuple[DurableRecord, ...]], None] | None = None
        self._known = -1
        #: Sends with a duplicate id since each queue's last prune, by store key.
        self._takes: dict[str, int] = {}
        #: Who hears of the cluster's scheduled messages at each poll.
        self._scheduled: Callable[[int | None, Any], None] | None = None

    def _worker(self) -> PgDatabase:
        self._database = PgDatabase(self.dsn, self.node, self._timer_fn)
        return self._database

    def open(self) -> Deferred[Any]:
        def opened(recovery: Any) -> Any:
            assert self._database is not None and self._database.membership is not None
            self.incarnation = self._database.membership.incarnation
            self._poll_later()
            self._reserve()
            return recovery

        return super().open().addCallback(opened)

    def close(self) -> Deferred[None]:
        self._closing = True
        if self._poller is not None and self._poller.active():
            self._poller.cancel()
        self._poller = None
        return super().close()

    @property
    def synchronous_commits(self) -> Counter[str]:
        """How many committed batches ran with ``synchronous_commit`` on, and off."""
        return self._database.synchronous_commits if self._database else Counter()

    def size(self) -> int:
        """Bytes the store's tables take in the database (read every few batches)."""
        return self._database.size if self._database is not None else 0

    # -- shared queues (ISharedQueues) ---------------------------------------------

    def _shared(self) -> SharedBatch:
        batch = self._pending
        if batch.shared is None:
            batch.shared = SharedBatch(self._known)
        return batch.shared

    def publish(self, store_key: str, message: Message, sync: str) -> Deferred[None]:
        self._shared().publishes.append(((store_key, message.priority, message.seq), message))
        return self._wait(self._pending, sync)

    def publish_once(
        self, store_key: str, message: Message, dupl_id: str, window: int, ttl_ms: int, sync: str
    ) -> Deferred[bool]:
        shared = self._shared()
        answer = self._take(store_key, dupl_id, window, ttl_ms, message, len(shared.publishes))
        shared.publishes.append(((store_key, message.priority, message.seq), message))
        self._leave_for(self._pending, sync)
        return answer

    def _take(
        self, store_key: str, dupl_id: str, window: int, ttl_ms: int, message: Message, place: int
    ) -> Deferred[bool]:
        """The batch takes ``dupl_id`` for ``store_key`` (``_pg_duplicates``) for the new
        row at ``place`` of its publishes (-1: a scheduled record's); fires with whether
        it took it."""
        shared = self._shared()
        now = int(self.clock.seconds() * 1000)
        pair = (store_key, dupl_id)
        entry = Once(
            place,
            store_key,
            dupl_id,
            now + ttl_ms if ttl_ms else 0,
            window,
            message.message_id,
            pair not in shared.taking,
        )
        shared.taking.add(pair)
        answer: Deferred[bool] = Deferred()
        shared.once.append((entry, answer))
        shared.now_ms = now
        takes = self._takes.get(store_key, 0) + 1
        if takes >= max(1, window // PRUNE_PARTS):
            shared.prunes[store_key] = window
            takes = 0
        self._takes[store_key] = takes
        return answer

    def claim(
        self, store_key: str, limit: int, skip: list[int], exclusive: bool
    ) -> Deferred[list[Message]]:
        answer: Deferred[list[Message]] = Deferred()
        self._shared().claims.append((store_key, limit, skip, exclusive, answer))
        self._pending.urgent = True
        self._schedule(0.0)
        return answer

    def peek(self, store_key: str, limit: int) -> Deferred[list[Message]]:
        answer: Deferred[list[Message]] = Deferred()
        self._shared().peeks.append((store_key, limit, answer))
        self._pending.urgent = True
        self._schedule(0.0)
        return answer

    def keeps_now(self) -> bool:
        """Whether a row id is at hand; if none is, the next reservation is twice as large
        (once until one comes), and asked for unless it is on its way."""
        if self._ids:
            return True
        if not self._ran_out:
            self._ran_out = True
            self._reserve_size = min(self._reserve_size * 2, RESERVE_MAX)
        self._reserve()  # unless on its way (a failed batch may have carried the last ask)
        return False

    def publish_claimed(self, store_key: str, message: Message, sync: str) -> Deferred[None]:
        ids = self._ids
        assert ids, "publish_claimed without an id at hand (keeps_now said so)"
        row = ids.pop()
        if len(ids) < self._reserve_size // 4:
            self._reserve()
        message.seq = row
        message.store_key = store_key
        self._shared().claimed_publishes[row] = ((store_key, message.priority, row), message)
        return self._wait(self._pending, sync)

    def _reserve(self) -> None:
        if not self._reserving and not self._closing:
            self._reserving = True
            self._shared().reserve = self._reserve_size
            self._pending.urgent = True
            self._schedule(0.0)

    def settle(self, message: Message) -> None:
        shared = self._shared()
        if shared.claimed_publishes.pop(message.seq, None) is not None:
            return  # done before its batch left: never written
        shared.settles.append(message.seq)
        self._schedule(self._lazy_s)

    def release(self, message: Message) -> None:
        assert message.store_key is not None
        self._shared().releases[message.seq] = (message.delivery_count, message.store_key)
        self._pending.urgent = True
        self._schedule(0.0)

    def purge(self, store_key: str, claimed_too: bool) -> None:
        self._shared().purges.append((store_key, claimed_too))
        self._pending.urgent = True
        self._schedule(0.0)

    def give_up(self, store_key: str, groups: bool) -> None:
        self._shared().give_ups.append((store_key, groups))
        self._pending.urgent = True
        self._schedule(0.0)

    def close_group(self, store_key: str, group: str) -> None:
        self._shared().closed_groups.append((store_key, group))
        self._schedule(self._lazy_s)

    def hold(self, store_key: str) -> Deferred[bool]:
        answer: Deferred[bool] = Deferred()
        self._shared().holds.append((store_key, answer))
        self._pending.urgent = True
        self._schedule(0.0)
        return answer

    def held_elsewhere(self, store_key: str) -> bool:
        return store_key in self._held_elsewhere

    def declare_temporary(self, address: str, declared: bool) -> None:
        self._shared().temporaries.append((address, declared))
        self._schedule(self._lazy_s)

    def depth(self, store_key: str) -> tuple[int, int]:
        return self._depths.get(store_key, (0, 0))

    def members(self) -> list[Member]:
        return list(self._members)

    def schedule_shared(
        self, record: ScheduledRecord, into: str | None, sync: str
    ) -> Deferred[None]:
        self._shared().scheduled.adds.append((record, into, None))
        return self._wait(self._pending, sync)

    def schedule_once(
        self,
        record: ScheduledRecord,
        into: str,
        dupl_id: str,
        window: int,
        ttl_ms: int,
        sync: str,
    ) -> Deferred[bool]:
        answer = self._take(into, dupl_id, window, ttl_ms, record.message, -1)
        self._shared().scheduled.adds.append((record, into, dupl_id))
        self._leave_for(self._pending, sync)
        return answer

    def release_due(self, now_ms: int, limit: int, id_prefix: str) -> Deferred[Released]:
        scheduled = self._shared().scheduled
        assert scheduled.answer is None, "one release at a time"
        answer: Deferred[Released] = Deferred()
        scheduled.release = (now_ms, limit, id_prefix)
        scheduled.answer = answer
        self._pending.urgent = True
        self._schedule(0.0)
        return answer

    def follow_scheduled(self, known: Callable[[int | None, Any], None]) -> None:
        self._scheduled = known

    def watch(self, woken: Callable[[str | None], None], fenced: Callable[[], None]) -> None:
        self._woken = woken
        self._fenced = fenced

    def follow_durables(self, defined: Callable[[tuple[DurableRecord, ...]], None]) -> None:
        self._defined = defined

    def add_durable(self, record: DurableRecord) -> Deferred[None]:
        self._shared().defined = True
        return super().add_durable(record)

    def remove_durable(self, client_id: str, name: str) -> None:
        self._shared().defined = True
        super().remove_durable(client_id, name)

    def notified(self, payload: str) -> None:
        """A notification of ``_pg_shared.CHANNEL`` (LISTENed to by ``PgListener``): another
        node published to, or gave back rows of, a queue; or changed the durable
        subscriptions' definitions (read them again)."""
        key = woken_by(payload, self.incarnation)
        if key == DEFINITIONS_KEY:
            self._shared().definitions = True
            self._pending.urgent = True
            self._schedule(0.0)
        elif key is not None:
            self.wake(key)

    def wake(self, store_key: str | None) -> None:
        """Messages may wait in ``store_key`` (a notification; None: rescan every queue)."""
        if self._woken is not None:
            self._woken(store_key)

    # -- the poll, and what batches found -------------------------------------------

    def _poll_later(self) -> None:
        if not self._closing:
            self._poller = self.clock.callLater(self.poll_s, self._poll)

    def _poll(self) -> None:
        self._poller = None
        self._shared().poll = True
        self._pending.urgent = True
        self._schedule(0.0)

    def _shared_done(self, work: SharedBatch, done: SharedDone) -> None:
        if done.incarnation != self.incarnation:
            log.warn(
                "the connection to PostgreSQL was lost: this node joined again (incarnation"
                " {incarnation}); what it had claimed goes back to the queues",
                incarnation=done.incarnation,
            )
            self.incarnation = done.incarnation
            if self._fenced is not None:
                self._fenced()
        for (_, once), new in zip(work.once, done.once, strict=True):
            once.callback(new)
        for (*_, answer), messages in zip(work.claims, done.claimed, strict=True):
            answer.callback(messages)
        for (_, _, seen), messages in zip(work.peeks, done.peeked, strict=True):
            seen.callback(messages)
        for (_, taken), held in zip(work.holds, done.held, strict=True):
            taken.callback(held)
        self._scheduled_done(work, done)
        if done.definitions is not None:
            self._definitions_read(*done.definitions)
        if done.members is not None:
            self._members = done.members
        if done.held_elsewhere is not None:
            self._held_elsewhere = done.held_elsewhere
        if done.depths is not None:
            self._depths = done.depths
            self.wake(None)
        if work.poll:
            self._poll_later()
        if work.reserve:
            self._reserving = False
            self._ran_out = False
            self._ids.extend(reversed(done.reserved))
            if self._ids:
                self.wake(None)  # queues that published for want of ids may take directly

    def _scheduled_done(self, work: SharedBatch, done: SharedDone) -> None:
        """The scheduled messages' answer: the release's, the queues it gave messages to
        (woken here: notifications skip their sender), what the poll read."""
        scheduled = done.scheduled
        if work.scheduled.answer is not None:
            assert scheduled.released is not None
            work.scheduled.answer.callback(scheduled.released)
        for key in scheduled.woken:
            self.wake(key)
        if scheduled.known is not None and self._scheduled is not None:
            self._scheduled(*scheduled.known)

    def _definitions_read(self, known: int, records: tuple[DurableRecord, ...]) -> None:
        """The cluster's durable definitions, as of change ``known``: for the broker, unless
        this node changed one since (in a batch not yet gone): then read again after it."""
        pending = self._pending.shared
        if pending is not None and pending.defined:
            pending.definitions = True
            return
        self._known = known
        if self._defined is not None:
            self._defined(records)

    def _shared_failed(self, work: SharedBatch, failure: Any) -> None:
        for _, once in work.once:
            once.errback(failure)
        for *_, answer in work.claims:
            answer.errback(failure)
        for _, taken in work.holds:
            taken.errback(failure)
        for _, _, seen in work.peeks:
            seen.errback(failure)
        if work.scheduled.answer is not None:
            work.scheduled.answer.errback(failure)
        if work.poll:
            self._poll_later()
        if work.reserve:
            self._reserving = False

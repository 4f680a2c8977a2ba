"""A store in memory: the contract of IMessageStore without a disk, for tests and brokers
that keep nothing across restarts.

Rows are snapshots: what ``load`` returns are new Message objects, as from disk,
so a test can "restart" a broker on the same MemoryStore.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from stompbroker.core import (
    CommitStats,
    DurableRecord,
    IMessageStore,
    Message,
    Recovery,
    ScheduledRecord,
    StoredQueue,
)

from ._rows import Row, message_from_row, row_from_message, scheduled_from_row, scheduled_row


@implementer(IMessageStore)
class MemoryStore:
    """Rows and durable definitions in dictionaries; every Deferred has fired on return."""

    name = "memory"

    def __init__(self) -> None:
        #: store key -> {(priority, seq): row}
        self.rows: dict[str, dict[tuple[int, int], Row]] = {}
        self.durables: dict[tuple[str, str], DurableRecord] = {}
        #: Duplicate ids: address -> {id: expiry}, oldest first.
        self.duplicate_ids: dict[str, dict[str, float]] = {}
        #: Scheduled records as stored columns, by seq.
        self.scheduled: dict[int, tuple[Any, ...]] = {}
        self.closed = False
        self.commits = CommitStats()

    def open(self) -> Deferred[Recovery]:
        self.closed = False
        queues = []
        last_seq = 0
        for key, rows in self.rows.items():
            for spot in [spot for spot, row in rows.items() if not row.persistent]:
                del rows[spot]
            priorities: dict[int, tuple[int, int]] = {}
            for priority, seq in rows:
                count, first = priorities.get(priority, (0, seq))
                priorities[priority] = (count + 1, min(first, seq))
                last_seq = max(last_seq, seq)
            if priorities:
                size = sum(len(row.body) for row in rows.values())
                queues.append(StoredQueue(key, priorities, size))
        duplicate_ids = tuple(
            (address, dupl_id, expires)
            for address, ids in self.duplicate_ids.items()
            for dupl_id, expires in ids.items()
        )
        targets: Counter[tuple[str, ...]] = Counter()
        for seq, row in list(self.scheduled.items()):
            record = scheduled_from_row(row)
            if not record.message.persistent:
                del self.scheduled[seq]
                continue
            targets[record.target] += 1
            last_seq = max(last_seq, seq)
        return succeed(
            Recovery(
                tuple(self.durables.values()),
                tuple(queues),
                last_seq,
                duplicate_ids,
                tuple(targets.items()),
            )
        )

    def add(self, store_key: str, message: Message, sync: str) -> Deferred[None]:
        row = row_from_message(message)
        self.rows.setdefault(store_key, {})[(row.priority, row.seq)] = row
        return succeed(None)

    def delivered(self, store_key: str, message: Message) -> None:
        rows = self.rows.get(store_key)
        spot = (message.priority, message.seq)
        if rows is not None and spot in rows:
            rows[spot] = rows[spot]._replace(delivery_count=message.delivery_count)

    def remove(self, store_key: str, message: Message) -> None:
        rows = self.rows.get(store_key)
        if rows is not None:
            rows.pop((message.priority, message.seq), None)
            if not rows:
                del self.rows[store_key]

    def load(
        self, store_key: str, priority: int, from_seq: int, limit: int
    ) -> Deferred[list[Message]]:
        rows = self.rows.get(store_key, {})
        seqs = sorted(seq for p, seq in rows if p == priority and seq >= from_seq)[:limit]
        return succeed([message_from_row(store_key, rows[(priority, seq)]) for seq in seqs])

    def drop(self, store_key: str) -> None:
        self.rows.pop(store_key, None)

    def drop_from(self, store_key: str, priority: int, from_seq: int) -> None:
        rows = self.rows.get(store_key)
        if rows is None:
            return
        for spot in [s for s in rows if s[0] == priority and s[1] >= from_seq]:
            del rows[spot]
        if not rows:
            del self.rows[store_key]

    def remember(self, address: str, dupl_id: str, expires: float) -> None:
        ids = self.duplicate_ids.setdefault(address, {})
        ids.pop(dupl_id, None)
        ids[dupl_id] = expires

    def forget(self, address: str, dupl_id: str) -> None:
        ids = self.duplicate_ids.get(address)
        if ids is not None:
            ids.pop(dupl_id, None)
            if not ids:
                del self.duplicate_ids[address]

    def schedule(self, record: ScheduledRecord, sync: str) -> Deferred[None]:
        self.scheduled[record.message.seq] = scheduled_row(record)
        return succeed(None)

    def unschedule(self, seq: int) -> None:
        self.scheduled.pop(seq, None)

    def reschedule(self, seq: int, due: int, repeats: int) -> None:
        row = self.scheduled.get(seq)
        if row is not None:
            self.scheduled[seq] = (row[0], due, row[2], repeats, *row[4:])

    def load_scheduled(self, after: tuple[int, int], limit: int) -> Deferred[list[ScheduledRecord]]:
        keys = sorted((row[1], seq) for seq, row in self.scheduled.items())
        found = [key for key in keys if key >= after][:limit]
        return succeed([scheduled_from_row(self.scheduled[seq]) for _, seq in found])

    def add_durable(self, record: DurableRecord) -> Deferred[None]:
        self.durables[(record.client_id, record.name)] = record
        return succeed(None)

    def remove_durable(self, client_id: str, name: str) -> None:
        self.durables.pop((client_id, name), None)

    def flush(self) -> Deferred[None]:
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)

    def size(self) -> int:
        return 0

    def count(self) -> int:
        """Rows held, in every queue (for tests)."""
        return sum(len(rows) for rows in self.rows.values())

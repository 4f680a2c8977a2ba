"""The IMessageStore contract, run against every store; then what only the SQLite store does
(the PostgreSQL store's own: tests/test_postgres.py)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent
from zope.interface.verify import verifyObject

from stompbroker.core import DurableRecord, IMessageStore, Message, Recovery, ScheduledRecord
from stompbroker.store import FILENAME, MemoryStore, PostgresStore, SqliteStore, _database

from .helpers import fired


def run_now(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """A worker 'thread' that runs at once (the real one is the reactor's thread pool)."""
    return maybeDeferred(function, *args)


@dataclass
class Harness:
    """A store, how to let its batches go, and how to get a fresh one on the same data."""

    store: Any
    clock: Clock
    reopen: Callable[[], Any]

    def settle(self) -> None:
        """Let every scheduled batch run."""
        for _ in range(20):
            self.clock.advance(1.0)

    def result(self, deferred: Deferred[Any]) -> Any:
        """The result of ``deferred`` once the batches have run."""
        self.settle()
        return fired(deferred)

    def restart(self) -> Recovery:
        """Close (flushing) and open a new store on the same data; return its recovery."""
        self.result(self.store.close())
        self.store = self.reopen()
        recovery: Recovery = self.result(self.store.open())
        return recovery


def _memory(tmp_path: Path) -> Harness:
    store = MemoryStore()
    return Harness(store, Clock(), lambda: store)


def _sqlite(tmp_path: Path) -> Harness:
    clock = Clock()
    path = str(tmp_path / FILENAME)
    return Harness(
        SqliteStore(path, clock, run_now), clock, lambda: SqliteStore(path, clock, run_now)
    )


def _postgres(dsn: str) -> Harness:
    clock = Clock()
    return Harness(
        PostgresStore(dsn, clock, run_now), clock, lambda: PostgresStore(dsn, clock, run_now)
    )


@pytest.fixture(params=[_memory, _sqlite, _postgres], ids=["memory", "sqlite", "postgresql"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param is _postgres:
        h = _postgres(request.getfixturevalue("postgres_dsn"))
    else:
        h = request.param(tmp_path)
    h.result(h.store.open())
    yield h
    h.result(h.store.close())


def _message(seq: int, priority: int = 4, persistent: bool = True, body: bytes = b"") -> Message:
    message = Message(
        f"ID-test-{seq}",
        "/queue/q",
        {"colour": "blue", "ünï": "cödé\nline"},
        body or b"body %d" % seq,
        persistent,
        seq,
        priority,
        expires=1_900_000_000_000 + seq,
        group="g" if seq % 2 else None,
    )
    return message


def _load(h: Harness, key: str, priority: int = 4, from_seq: int = 0, limit: int = 100) -> list:
    return h.result(h.store.load(key, priority, from_seq, limit))


# -- the contract -------------------------------------------------------------------


def test_store_provides_the_interface(harness: Harness) -> None:
    """Every store implements IMessageStore fully."""
    assert verifyObject(IMessageStore, harness.store)


def test_empty_store_recovers_nothing(harness: Harness) -> None:
    """A new store holds no queues, no durable subscriptions, and no seq."""
    recovery = harness.restart()
    assert recovery == Recovery()


def test_added_messages_survive_a_restart_with_every_field(harness: Harness) -> None:
    """A stored message comes back with its id, headers, body, priority, expiry and group."""
    for seq in (1, 2, 3):
        harness.result(harness.store.add("/queue/q", _message(seq), "always"))
    recovery = harness.restart()
    assert recovery.last_seq == 3
    (stored,) = recovery.queues
    assert stored.store_key == "/queue/q"
    assert stored.priorities == {4: (3, 1)}
    loaded = _load(harness, "/queue/q")
    assert [m.seq for m in loaded] == [1, 2, 3]
    first = loaded[0]
    expected = _message(1)
    for attribute in ("message_id", "destination", "headers", "body", "priority", "expires"):
        assert getattr(first, attribute) == getattr(expected, attribute)
    assert first.group == "g" and loaded[1].group is None
    assert first.persistent and first.store_key == "/queue/q"


def test_load_is_by_priority_in_seq_order_from_a_seq_up_to_a_limit(harness: Harness) -> None:
    """load() answers one priority, oldest first, from ``from_seq``, at most ``limit``."""
    for seq in range(1, 11):
        harness.store.add("/queue/q", _message(seq, priority=9 if seq % 3 == 0 else 4), "never")
    assert [m.seq for m in _load(harness, "/queue/q", 9)] == [3, 6, 9]
    assert [m.seq for m in _load(harness, "/queue/q", 4, from_seq=5, limit=3)] == [5, 7, 8]
    assert _load(harness, "/queue/other", 4) == []


def test_load_sees_every_write_asked_before_it(harness: Harness) -> None:
    """A load issued right after an add (same batch) finds the added row."""
    harness.store.add("/queue/q", _message(1), "transient")
    assert [m.seq for m in _load(harness, "/queue/q")] == [1]


BODIES = [
    b"",
    b"\0",
    bytes(range(256)),
    b"\xff\xfe not UTF-8 \xc3",
    "héllo wörld".encode(),
    b"\0" * 70_000,
    bytes(range(256)) * 4096,
]


def test_bodies_and_headers_come_back_byte_for_byte(harness: Harness) -> None:
    """Any body (empty, NULs, not UTF-8, a megabyte) and any header text is kept exactly."""
    headers = {"quote": 'say "hi"\\', "json": '{"a": [1]}', "ünï": "\u2603\n:", "": ""}
    for seq, body in enumerate(BODIES, 1):
        message = Message(f"ID-{seq}-\u00e9", "/queue/ü", headers, body, True, seq)
        message.delivery_count = seq
        harness.store.add("/queue/ü", message, "never")
    harness.restart()
    loaded = _load(harness, "/queue/ü")
    assert [m.body for m in loaded] == BODIES
    assert all(m.headers == headers and m.destination == "/queue/ü" for m in loaded)
    assert [m.message_id for m in loaded] == [f"ID-{seq}-\u00e9" for seq in range(1, 8)]
    assert [m.delivery_count for m in loaded] == list(range(1, 8))
    # A page whose bodies are all empty, and a page of one row each.
    assert [m.body for m in _load(harness, "/queue/ü", limit=1)] == [b""]
    assert [m.body for m in _load(harness, "/queue/ü", from_seq=3, limit=1)] == [bytes(range(256))]


def test_a_batch_of_empty_bodies_is_stored(harness: Harness) -> None:
    """Messages with empty bodies, alone in their batch, are stored and come back empty."""
    for seq in (1, 2):
        harness.store.add("/queue/q", Message(f"ID-{seq}", "/queue/q", {}, b"", True, seq), "never")
    harness.restart()
    assert [(m.seq, m.body) for m in _load(harness, "/queue/q")] == [(1, b""), (2, b"")]


def test_many_removals_in_one_batch_remove_exactly_those_rows(harness: Harness) -> None:
    """Removals across queues and priorities, with gaps, taken in one batch."""
    kept: dict[tuple[str, int], list[int]] = {}
    removed = []
    for seq in range(1, 301):
        key, priority = ("/queue/a" if seq % 2 else "/queue/b"), seq % 3
        message = _message(seq, priority)
        harness.store.add(key, message, "never")
        if seq % 5 in (1, 2):
            removed.append((key, message))
        else:
            kept.setdefault((key, priority), []).append(seq)
    harness.settle()
    for key, message in removed:
        harness.store.remove(key, message)
    harness.restart()
    for (key, priority), seqs in kept.items():
        assert [m.seq for m in _load(harness, key, priority, limit=1000)] == seqs


def test_removed_messages_stay_removed_after_a_restart(harness: Harness) -> None:
    """remove() deletes one row of one queue; others stay."""
    messages = [_message(seq) for seq in (1, 2, 3)]
    for message in messages:
        harness.result(harness.store.add("/queue/q", message, "always"))
    harness.store.remove("/queue/q", messages[1])
    harness.restart()
    assert [m.seq for m in _load(harness, "/queue/q")] == [1, 3]


def test_the_same_message_in_two_queues_is_two_rows(harness: Harness) -> None:
    """A message kept by two durable subscriptions is removed from each separately."""
    message = _message(1)
    harness.store.add("durable:a", message, "always")
    harness.result(harness.store.add("durable:b", message, "always"))
    harness.store.remove("durable:a", message)
    harness.restart()
    assert _load(harness, "durable:a") == []
    assert [m.seq for m in _load(harness, "durable:b")] == [1]


def test_delivery_counts_survive_a_restart(harness: Harness) -> None:
    """delivered() records how often a message was handed out."""
    message = _message(1)
    harness.result(harness.store.add("/queue/q", message, "always"))
    message.delivery_count = 2
    harness.store.delivered("/queue/q", message)
    harness.restart()
    (loaded,) = _load(harness, "/queue/q")
    assert loaded.delivery_count == 2


def test_transient_rows_are_gone_after_a_restart(harness: Harness) -> None:
    """Non-persistent (paged-out) rows are dropped at open; persistent ones stay."""
    harness.store.add("/queue/q", _message(1, persistent=False), "transient")
    harness.result(harness.store.add("/queue/q", _message(2), "always"))
    recovery = harness.restart()
    assert [m.seq for m in _load(harness, "/queue/q")] == [2]
    assert recovery.queues[0].priorities == {4: (1, 2)}


def test_drop_deletes_one_queue_only(harness: Harness) -> None:
    """drop() empties one queue, including rows added just before it."""
    harness.store.add("/queue/a", _message(1), "always")
    harness.store.add("/queue/b", _message(2), "always")
    harness.store.drop("/queue/a")
    harness.result(harness.store.add("/queue/a", _message(3), "always"))
    harness.restart()
    assert [m.seq for m in _load(harness, "/queue/a")] == [3]
    assert [m.seq for m in _load(harness, "/queue/b")] == [2]


def test_durable_definitions_are_kept_replaced_and_removed(harness: Harness) -> None:
    """add_durable() keeps a definition (the last one per client and name); remove forgets."""
    harness.store.add_durable(DurableRecord("c1", "s1", "news.>", None))
    harness.store.add_durable(DurableRecord("c1", "s2", "a", "x > 1"))
    harness.result(harness.store.add_durable(DurableRecord("c1", "s1", "sport.*", "y = 2")))
    harness.store.remove_durable("c1", "s2")
    recovery = harness.restart()
    assert recovery.durables == (DurableRecord("c1", "s1", "sport.*", "y = 2"),)


def test_durable_no_local_flag_is_kept_and_replaced(harness: Harness) -> None:
    """A definition's no-local flag survives a restart, and a replacing definition's wins."""
    harness.store.add_durable(DurableRecord("c1", "on", "news", None, no_local=True))
    harness.store.add_durable(DurableRecord("c1", "off", "news", None, no_local=True))
    harness.result(harness.store.add_durable(DurableRecord("c1", "off", "news", None)))
    recovery = harness.restart()
    assert sorted(recovery.durables, key=lambda r: r.name) == [
        DurableRecord("c1", "off", "news", None, no_local=False),
        DurableRecord("c1", "on", "news", None, no_local=True),
    ]


def _scheduled(seq: int, due: int, target: tuple[str, ...] = ("queue", "q"), **kw: Any) -> Any:
    return ScheduledRecord(target, _message(seq, **kw), due)


def test_scheduled_records_come_back_in_due_order_with_every_field(harness: Harness) -> None:
    """Scheduled records survive a restart, counted by target, and load by (due, seq) from a
    key, up to a limit; the largest seq counts them too."""
    store = harness.store
    durable = ("durable", "client", "name")
    harness.result(store.schedule(_scheduled(7, 3000), "always"))
    harness.result(store.schedule(_scheduled(5, 1000, durable), "batch"))
    harness.result(
        store.schedule(ScheduledRecord(("topic", "t"), _message(6), 1000, 2, 500), "never")
    )
    recovery = harness.restart()
    assert recovery.last_seq == 7
    assert sorted(recovery.scheduled) == [
        (("durable", "client", "name"), 1),
        (("queue", "q"), 1),
        (("topic", "t"), 1),
    ]
    records = harness.result(harness.store.load_scheduled((0, 0), 10))
    assert [(r.due, r.message.seq, r.target) for r in records] == [
        (1000, 5, durable),
        (1000, 6, ("topic", "t")),
        (3000, 7, ("queue", "q")),
    ]
    assert (records[1].repeats, records[1].period) == (2, 500)
    expected = _message(5)
    for attribute in (
        "message_id",
        "destination",
        "headers",
        "body",
        "priority",
        "expires",
        "group",
    ):
        assert getattr(records[0].message, attribute) == getattr(expected, attribute)
    later = harness.result(harness.store.load_scheduled((1000, 6), 1))
    assert [r.message.seq for r in later] == [6]


def test_unschedule_and_reschedule_are_kept(harness: Harness) -> None:
    """A record taken out is gone after a restart; one moved on comes back at its new time."""
    store = harness.store
    for seq in (1, 2):
        harness.result(store.schedule(_scheduled(seq, 1000 * seq), "always"))
    store.unschedule(1)
    store.reschedule(2, 9000, 3)
    store.schedule(_scheduled(3, 500), "always")
    store.unschedule(3)  # in the same batch as its write: never stored
    harness.restart()
    (record,) = harness.result(harness.store.load_scheduled((0, 0), 10))
    assert (record.message.seq, record.due, record.repeats) == (2, 9000, 3)


def test_transient_scheduled_records_are_gone_after_a_restart(harness: Harness) -> None:
    """A non-persistent message's scheduled record does not outlive the broker."""
    harness.store.schedule(_scheduled(1, 1000, persistent=False), "transient")
    harness.result(harness.store.flush())
    recovery = harness.restart()
    assert recovery.scheduled == ()
    assert harness.result(harness.store.load_scheduled((0, 0), 10)) == []


@pytest.mark.parametrize("sync", ["always", "batch", "never", "transient"])
def test_add_answers_for_every_sync_level(harness: Harness, sync: str) -> None:
    """add() fires its Deferred at every sync level, and the row is kept."""
    assert harness.result(harness.store.add("/queue/q", _message(1), sync)) is None
    assert [m.seq for m in _load(harness, "/queue/q")] == [1]


def test_flush_waits_for_everything_asked(harness: Harness) -> None:
    """flush() fires once earlier writes are done, and at once when there are none."""
    harness.store.add("/queue/q", _message(1), "transient")
    assert harness.result(harness.store.flush()) is None
    assert harness.result(harness.store.flush()) is None


# -- SQLite only ----------------------------------------------------------------------


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Harness]:
    h = _sqlite(tmp_path)
    h.result(h.store.open())
    yield h
    h.result(h.store.close())


def test_sqlite_data_file_without_the_no_local_column_opens_and_keeps_its_durables(
    tmp_path: Path,
) -> None:
    """A database written before no-local gains the column at open; its durables stay."""
    path = str(tmp_path / FILENAME)
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE durables (client_id TEXT NOT NULL, name TEXT NOT NULL,"
        " pattern TEXT NOT NULL, selector TEXT, PRIMARY KEY (client_id, name))"
    )
    old.execute("INSERT INTO durables VALUES ('c1', 'old', 'news.>', 'x > 1')")
    old.commit()
    old.close()
    clock = Clock()
    h = Harness(SqliteStore(path, clock, run_now), clock, lambda: SqliteStore(path, clock, run_now))
    recovery = h.result(h.store.open())
    assert recovery.durables == (DurableRecord("c1", "old", "news.>", "x > 1", no_local=False),)
    h.result(h.store.add_durable(DurableRecord("c1", "new", "news", None, no_local=True)))
    recovery = h.restart()
    h.result(h.store.close())
    assert sorted(recovery.durables, key=lambda r: r.name) == [
        DurableRecord("c1", "new", "news", None, no_local=True),
        DurableRecord("c1", "old", "news.>", "x > 1", no_local=False),
    ]


def test_sqlite_receipt_waits_for_the_commit(sqlite: Harness) -> None:
    """An ``always`` add fires only after its batch was written and fsynced."""
    written = sqlite.store.add("/queue/q", _message(1), "always")
    assert not written.called
    sqlite.clock.advance(0)
    assert written.called
    assert sqlite.store.fsyncs == 1


def test_sqlite_concurrent_adds_share_one_fsync(sqlite: Harness) -> None:
    """Adds asked in the same reactor turn go in one batch: one commit, one fsync."""
    waiters = [sqlite.store.add("/queue/q", _message(s), "always") for s in range(1, 101)]
    sqlite.clock.advance(0)
    assert all(w.called for w in waiters)
    assert sqlite.store.fsyncs == 1


def test_sqlite_batch_level_waits_a_few_ms(sqlite: Harness) -> None:
    """A ``batch`` add waits for the group-commit interval, then fsyncs."""
    written = sqlite.store.add("/queue/q", _message(1), "batch")
    sqlite.clock.advance(0.001)
    assert not written.called
    sqlite.clock.advance(0.01)
    assert written.called and sqlite.store.fsyncs == 1


def test_sqlite_never_level_does_not_fsync(sqlite: Harness) -> None:
    """A ``never`` add is written at once, without an fsync."""
    written = sqlite.store.add("/queue/q", _message(1), "never")
    sqlite.clock.advance(0)
    assert written.called and sqlite.store.fsyncs == 0


def test_sqlite_removal_batched_without_fsync(sqlite: Harness) -> None:
    """Removals wait for the lazy interval and cost no fsync."""
    message = _message(1)
    sqlite.result(sqlite.store.add("/queue/q", message, "always"))
    sqlite.store.remove("/queue/q", message)
    sqlite.settle()
    assert sqlite.store.fsyncs == 1
    assert _load(sqlite, "/queue/q") == []


def test_sqlite_row_removed_before_its_batch_left_is_never_written(sqlite: Harness) -> None:
    """A message consumed before its batch left costs no write, and its waiter still fires."""
    message = _message(1)
    written = sqlite.store.add("/queue/q", message, "always")
    sqlite.store.remove("/queue/q", message)
    sqlite.clock.advance(0)
    assert written.called
    assert sqlite.store.fsyncs == 0


def test_sqlite_batches_while_busy_gather_in_the_next(tmp_path: Path) -> None:
    """Adds asked while a batch is in the worker leave together once it is done."""
    clock = Clock()
    pending: list[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def run_later(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        pending.append((answer, function, args))
        return answer

    store = SqliteStore(str(tmp_path / FILENAME), clock, run_later)
    opened = store.open()
    answer, function, args = pending.pop()
    answer.callback(function(*args))
    assert opened.called
    first = store.add("/queue/q", _message(1), "always")
    clock.advance(0)
    later = [store.add("/queue/q", _message(s), "always") for s in range(2, 12)]
    clock.advance(0)
    assert len(pending) == 1, "one batch in the worker at a time"
    for _ in range(2):
        answer, function, args = pending.pop()
        answer.callback(function(*args))
        clock.advance(0)
    assert first.called and all(w.called for w in later)
    assert store.fsyncs == 2


def test_sqlite_reuses_the_space_of_consumed_messages(sqlite: Harness) -> None:
    """Under a steady flow (add, then remove) the data files stop growing."""
    sizes = []
    seq = 0
    for _ in range(8):
        batch = []
        for _ in range(2000):
            seq += 1
            batch.append(_message(seq, body=os.urandom(1024)))
            sqlite.store.add("/queue/q", batch[-1], "never")
        sqlite.settle()
        for message in batch:
            sqlite.store.remove("/queue/q", message)
        sqlite.settle()
        sizes.append(sqlite.store.size())
    # The write-ahead log fills to its checkpoint size first; then nothing grows.
    assert sizes[-1] <= sizes[3] * 1.2, sizes


def test_sqlite_failed_write_fails_the_waiters(
    sqlite: Harness, logged_failures: list[LogEvent]
) -> None:
    """If the disk write fails, the waiting receipts fail; the store keeps working after."""
    bad = _message(1)
    bad.headers = {"x": object()}  # type: ignore[dict-item]
    written = sqlite.store.add("/queue/q", bad, "always")
    with pytest.raises(TypeError):
        sqlite.result(written)
    (failure,) = logged_failures
    assert formatEvent(failure) == "the message store failed to write a batch"
    assert failure["log_failure"].check(TypeError)
    assert sqlite.result(sqlite.store.add("/queue/q", _message(2), "always")) is None
    assert [m.seq for m in _load(sqlite, "/queue/q")] == [2]


def test_sqlite_gives_space_back_once_idle(sqlite: Harness) -> None:
    """After a large backlog is consumed, the idle store shrinks its file."""
    messages = [_message(seq, body=os.urandom(4096)) for seq in range(1, 6001)]
    for message in messages:
        sqlite.store.add("/queue/q", message, "never")
    sqlite.settle()
    peak = sqlite.store.size()
    for message in messages:
        sqlite.store.remove("/queue/q", message)
    for _ in range(10):
        sqlite.settle()
    assert sqlite.store.size() < peak / 4, (peak, sqlite.store.size())


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    messages=st.lists(
        st.tuples(
            st.binary(max_size=300),
            st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=4),
            st.integers(min_value=0, max_value=9),
        ),
        max_size=12,
    )
)
def test_sqlite_keeps_any_batch_of_messages_exactly(tmp_path: Path, messages: list) -> None:
    """Whatever the bodies, headers and priorities of a batch, a restart gives them back."""
    path = str(tmp_path / f"{uuid.uuid4().hex}.sqlite3")
    clock = Clock()
    h = Harness(SqliteStore(path, clock, run_now), clock, lambda: SqliteStore(path, clock, run_now))
    h.result(h.store.open())
    for seq, (body, headers, priority) in enumerate(messages, 1):
        h.store.add(
            "/queue/q",
            Message(f"ID-{seq}", "/queue/q", headers, body, True, seq, priority),
            "never",
        )
    h.restart()
    for priority in range(10):
        expected = [
            (seq, body, headers)
            for seq, (body, headers, p) in enumerate(messages, 1)
            if p == priority
        ]
        got = [(m.seq, m.body, m.headers) for m in _load(h, "/queue/q", priority)]
        assert got == expected
    h.result(h.store.close())


def _sized(seq: int, size: int) -> Message:
    return Message(f"ID-{seq}", "/queue/q", {}, bytes([seq % 256]) * size, True, seq)


def test_sqlite_a_page_stops_at_its_byte_budget(
    sqlite: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page holds the rows that start under the byte budget (one at least), whatever the
    row limit asked: a queue of large messages never loads more than it can hold."""
    monkeypatch.setattr(_database, "STATEMENT_BYTES", 2500)
    for seq in range(1, 7):
        sqlite.store.add("/queue/q", _sized(seq, 1000), "never")
    sqlite.store.add("/queue/q", _sized(7, 5000), "never")
    assert [m.seq for m in _load(sqlite, "/queue/q")] == [1, 2, 3]
    assert [m.seq for m in _load(sqlite, "/queue/q", from_seq=4)] == [4, 5, 6]
    assert [m.seq for m in _load(sqlite, "/queue/q", from_seq=7)] == [7]


def test_sqlite_a_batch_over_the_statement_budget_is_written_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose bodies pass the budget of one statement goes in several, all of it."""
    monkeypatch.setattr(_database, "STATEMENT_BYTES", 2500)
    h = _sqlite(tmp_path)
    h.result(h.store.open())
    sizes = [1000, 1000, 1000, 5000, 0, 2500, 1, 1200, 1300]
    expected = [_sized(seq, size) for seq, size in enumerate(sizes, 1)]
    for message in expected:
        h.store.add("/queue/q", message, "never")
    h.restart()
    monkeypatch.setattr(_database, "STATEMENT_BYTES", 1 << 30)
    assert [(m.seq, m.body) for m in _load(h, "/queue/q")] == [(m.seq, m.body) for m in expected]
    h.result(h.store.close())


def test_duplicate_ids_come_back_oldest_first_and_forgotten_ones_do_not(harness: Harness) -> None:
    """Remembered ids survive a restart in order (a re-remembered one is newest); forgotten go."""
    store = harness.store
    store.remember("/queue/q", "a", 0)
    store.remember("/queue/q", "b", 1_900_000_000_000)
    store.remember("/queue/r", "a", 0)
    store.remember("/queue/q", "a", 0)
    store.forget("/queue/r", "a")
    store.forget("/queue/r", "never")
    recovery = harness.restart()
    assert recovery.duplicate_ids == (
        ("/queue/q", "b", 1_900_000_000_000),
        ("/queue/q", "a", 0),
    )


def test_duplicate_ids_outlive_their_messages_rows(harness: Harness) -> None:
    """Removing a message's row (its ACK) keeps the id remembered with it."""
    message = _message(1)
    harness.store.add("/queue/q", message, "always")
    harness.store.remember("/queue/q", "x", 0)
    harness.settle()
    harness.store.remove("/queue/q", message)
    recovery = harness.restart()
    assert recovery.queues == () and recovery.duplicate_ids == (("/queue/q", "x", 0),)


def test_sqlite_data_file_without_duplicate_ids_gains_the_table_at_open(tmp_path: Path) -> None:
    """A database written before duplicate detection opens, and then keeps ids."""
    path = str(tmp_path / FILENAME)
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE durables (client_id TEXT, name TEXT, pattern TEXT, selector TEXT)")
    old.commit()
    old.close()
    clock = Clock()
    h = Harness(SqliteStore(path, clock, run_now), clock, lambda: SqliteStore(path, clock, run_now))
    assert h.result(h.store.open()).duplicate_ids == ()
    h.store.remember("/queue/q", "x", 0)
    recovery = h.restart()
    h.result(h.store.close())
    assert recovery.duplicate_ids == (("/queue/q", "x", 0),)

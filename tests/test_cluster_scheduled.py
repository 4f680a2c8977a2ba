"""Scheduled messages of a cluster on one real PostgreSQL database: one row in the cluster's
table, released once when due by whichever live node asks first (into the shared queue, or
to the topic's subscribers on every node), repeats moved on once, nothing stranded by a node
that died or stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from stompbroker.codec import Frame
from stompbroker.testing import Client

from .test_cluster import Node, _terminate, linked, nodes, settle
from .test_cluster_duplicates import Held, Threads
from .test_cluster_durables import TOPIC
from .test_cluster_durables import _subscriber as _durable
from .test_store import run_now

__all__ = ["nodes"]  # the fixture: three nodes on one database, one clock

DELAY = "AMQ_SCHEDULED_DELAY"
DUP = "_AMQ_DUPL_ID"
QUEUE = "/queue/orders"


def _schedule(
    client: Client, body: bytes, delay_ms: int, receipt: str, to: str = QUEUE, **more: str
) -> None:
    client.send("SEND", {"destination": to, DELAY: str(delay_ms), "receipt": receipt, **more}, body)


def _consumer(node: Node, destination: str = QUEUE) -> Client:
    client = node.client()
    client.subscribe(destination, ack="auto")
    return client


def _receipts(frames: list[Frame]) -> list[str | None]:
    return [f.headers.get("receipt-id") for f in frames if f.command == "RECEIPT"]


def _rows(dsn: str, column: str = "body") -> list[tuple[int, str, Any]]:
    """The cluster's scheduled rows: (due, target, ``column``), in due order."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT due, target, {column} FROM stompbroker.scheduled ORDER BY due, id"
        )
        return [(due, target, value) for due, target, value in rows.fetchall()]


def _gone(node: Node) -> None:
    """``node`` dies: its database session ends and it does nothing more."""
    node.broker.router.scheduled.stop()
    node.store._poll = lambda: None  # type: ignore[method-assign]


def _stopped(node: Node) -> None:
    """``node`` is stopped as the service stops it: no more releases, its store closed."""
    node.broker.router.scheduled.stop()
    box: list[object] = []
    node.store.close().addBoth(box.append)
    settle(node.clock)
    assert box == [None]


def test_a_message_scheduled_through_one_node_is_released_once_through_another(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """Scheduled through A for 2 s: its RECEIPT once its row is in the cluster's table; no
    consumer (nor browser) anywhere sees it before; then exactly one consumer of the cluster
    (on B or C) gets it, once, and the row is gone. Every node counts it while it waits."""
    a, b, c = nodes
    consumers = [_consumer(b), _consumer(c)]
    producer = a.client()
    _schedule(producer, b"later", 2000, "r1", persistent="true")
    settle(a.clock, 1.5)
    assert _receipts(producer.frames()) == ["r1"]
    assert [body for _, _, body in _rows(postgres_dsn)] == [b"later"]
    assert [consumer.bodies() for consumer in consumers] == [[], []]
    browser = b.client()
    browser.subscribe(QUEUE, "br", browser="true")
    settle(a.clock, 0.1)
    assert [f.headers.get("browser") for f in browser.frames()] == ["end"]
    assert [n.broker.router.scheduled.counts[("queue", "orders")] for n in nodes] == [1, 1, 1]
    settle(a.clock, 1.5)
    got = [body for consumer in consumers for body in consumer.bodies()]
    assert got == [b"later"]
    assert _rows(postgres_dsn) == []
    assert sum(n.broker.router.scheduled.released for n in nodes) == 1
    settle(a.clock, 1.5)
    assert [n.broker.router.scheduled.counts[("queue", "orders")] for n in nodes] == [0, 0, 0]


def test_a_persistent_scheduled_sends_receipt_waits_for_its_row(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """While A's batch is held in its worker, a persistent scheduled SEND has no RECEIPT;
    it comes once the batch (its row) is committed. A non-persistent one's comes at once."""
    a, _, _ = nodes
    held = Held()
    a.store._run = held.run
    producer = a.client()
    _schedule(producer, b"kept", 2000, "r1", persistent="true")
    a.clock.advance(0)
    assert _receipts(producer.frames()) == []
    assert _rows(postgres_dsn) == []
    held.release()
    a.clock.advance(0)
    assert _receipts(producer.frames()) == ["r1"]
    assert [body for _, _, body in _rows(postgres_dsn)] == [b"kept"]
    _schedule(producer, b"light", 2000, "r2", persistent="false")
    a.clock.advance(0)
    assert _receipts(producer.frames()) == ["r2"]
    while held.batches:
        held.release()
    a.store._run = run_now


@pytest.mark.parametrize("persistent", ["true", "false"])
def test_a_dead_nodes_scheduled_messages_are_released_by_another(
    postgres_dsn: str, nodes: list[Node], logged_failures: list[LogEvent], persistent: str
) -> None:
    """A schedules a message for 2 s and dies (its session killed) before it is due: B or
    C, which knew of it only from their polls, releases it to B's consumer when due, once.
    Persistent or not: a non-persistent one waits in the cluster's table too (its RECEIPT
    does not wait for it)."""
    a, b, c = nodes
    consumer = _consumer(b)
    settle(a.clock)  # the nodes' releases at start are done: B and C learn of it by polling
    producer = a.client()
    _schedule(producer, b"orphan", 2000, "r1", persistent=persistent)
    settle(a.clock, 1.2)
    assert _receipts(producer.frames()) == ["r1"]
    _gone(a)
    _terminate(postgres_dsn, a.backend_pid())
    assert consumer.bodies() == []
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"orphan"]
    settle(a.clock, 3)
    assert consumer.bodies() == []
    assert (b.broker.router.scheduled.released, c.broker.router.scheduled.released) in (
        (1, 0),
        (0, 1),
    )


def test_a_stopped_nodes_scheduled_messages_are_released_by_another(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A schedules a message for 3 s and is stopped: B or C releases it when due (to a
    consumer on B)."""
    a, b, _ = nodes
    consumer = _consumer(b)
    settle(a.clock)  # the nodes' releases at start are done: B and C learn of it by polling
    _schedule(a.client(), b"left behind", 3000, "r1")
    settle(a.clock, 1.2)
    _stopped(a)
    settle(a.clock, 1.2)
    assert consumer.bodies() == []
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"left behind"]
    assert a.broker.router.scheduled.released == 0


def test_repeats_are_delivered_repeat_plus_one_times_across_the_cluster(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """AMQ_SCHEDULED_REPEAT 3, every 1000 ms, first after 1000 ms, consumers on A and B:
    4 deliveries in the whole cluster (each its own message-id), one a period, then none;
    the row moved on each time and gone after the last."""
    a, b, _ = nodes
    consumers = [_consumer(a), _consumer(b)]
    repeat = {"AMQ_SCHEDULED_PERIOD": "1000", "AMQ_SCHEDULED_REPEAT": "3"}
    _schedule(b.client(), b"tick", 1000, "r1", **repeat)
    settle(a.clock, 0.5)
    per_period = []
    ids: set[str] = set()
    for _ in range(6):
        settle(a.clock, 1.0)
        frames = [frame for consumer in consumers for frame in consumer.messages()]
        per_period.append(len(frames))
        ids.update(frame.headers["message-id"] for frame in frames)
    assert per_period == [1, 1, 1, 1, 0, 0]
    assert len(ids) == 4
    assert _rows(postgres_dsn) == []


def test_a_topic_message_reaches_the_subscribers_of_every_node_once(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """Scheduled through A to a topic, with the bus between the nodes: a subscriber on each
    node gets it once when due, whichever node released it; a durable subscription (its
    subscriber away) keeps its copy in the cluster, released into its shared queue, and gets
    it once on another node."""
    linked(nodes)
    a, b, c = nodes
    durable = _durable(c)
    settle(a.clock, 1.5)
    durable.send("DISCONNECT")
    durable.lose()
    subscribers = [_consumer(node, TOPIC) for node in nodes]
    _schedule(a.client(), b"news", 2000, "r1", TOPIC)
    settle(a.clock, 1.5)
    assert sorted((target, qkey) for _, target, qkey in _rows(postgres_dsn, "qkey")) == [
        ('["durable","app","audit"]', 'durable:["app", "audit"]'),  # released into it there
        ('["topic","orders"]', None),  # handed to the node that releases it
    ]
    assert [s.bodies() for s in subscribers] == [[], [], []]
    settle(a.clock, 1.5)
    assert [s.bodies() for s in subscribers] == [[b"news"]] * 3
    settle(a.clock, 1.5)
    assert [s.bodies() for s in subscribers] == [[], [], []]
    back = _durable(b)
    settle(a.clock, 1.5)
    assert back.bodies() == [b"news"]
    assert _rows(postgres_dsn) == []


def test_a_transactions_scheduled_send_is_the_clusters_from_commit(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A scheduled SEND in a transaction on A is nowhere until COMMIT, whose RECEIPT follows
    its row; then it is released when due (2 s after the COMMIT, as on one node) to a
    consumer on B."""
    a, b, _ = nodes
    consumer = _consumer(b)
    producer = a.client()
    producer.send("BEGIN", {"transaction": "t"})
    _schedule(producer, b"staged", 2000, "r1", transaction="t")
    settle(a.clock, 0.5)
    assert _rows(postgres_dsn) == []
    producer.send("COMMIT", {"transaction": "t", "receipt": "c"})
    settle(a.clock, 0.5)
    assert _receipts(producer.frames()) == ["r1", "c"]
    assert [body for _, _, body in _rows(postgres_dsn)] == [b"staged"]
    settle(a.clock, 1.3)
    assert consumer.bodies() == []
    settle(a.clock, 1.5)  # A releases it; B claims it at its poll (no NOTIFY listener here)
    assert consumer.bodies() == [b"staged"]


def test_scheduled_messages_survive_a_restart_and_are_released_in_due_order(
    postgres_dsn: str,
) -> None:
    """The only node schedules four messages (through two connections, out of due order)
    and stops before any is due; started again once all are due, it releases them in one
    batch, in due order: its consumer gets them so."""
    clock = Clock()
    node = Node(postgres_dsn, clock, "a:61613")
    producers = [node.client(), node.client()]
    for n, (delay, body) in enumerate([(3000, b"3"), (1000, b"1"), (4000, b"4"), (2000, b"2")]):
        _schedule(producers[n % 2], body, delay, f"r{n}", persistent="true")
    settle(clock, 0.5)
    _stopped(node)
    clock.advance(10)
    again = Node(postgres_dsn, clock, "a:61613")
    consumer = _consumer(again)
    settle(clock, 0.5)
    assert consumer.bodies() == [b"1", b"2", b"3", b"4"]
    assert again.broker.router.scheduled.released == 4
    assert _rows(postgres_dsn) == []


def test_a_scheduled_sends_duplicate_id_is_the_clusters(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A scheduled send with _AMQ_DUPL_ID x through A takes x for the queue at the send:
    its resend through B, scheduled or not, is a duplicate (its RECEIPT, counted on B, not
    kept); an id taken by a plain send through C refuses a scheduled send of it through A.
    Only the first of each is delivered, once, when due."""
    a, b, c = nodes
    consumer = _consumer(c)
    _schedule(a.client(), b"first x", 2000, "r1", **{DUP: "x"})
    settle(a.clock, 0.5)
    resender = b.client()
    _schedule(resender, b"x again, scheduled", 1000, "r2", **{DUP: "x"})
    resender.send("SEND", {"destination": QUEUE, DUP: "x", "receipt": "r3"}, b"x now")
    c.client().send("SEND", {"destination": QUEUE, DUP: "y"}, b"first y")
    settle(a.clock, 0.5)
    late = a.client()
    _schedule(late, b"y again, scheduled", 500, "r4", **{DUP: "y"})
    settle(a.clock, 0.5)
    assert _receipts(resender.frames()) == ["r2", "r3"]
    assert _receipts(late.frames()) == ["r4"]
    assert [body for _, _, body in _rows(postgres_dsn)] == [b"first x"]
    settle(a.clock, 2.5)
    assert consumer.bodies() == [b"first y", b"first x"]
    duplicates = [n.broker.destinations.queue("orders").stats.duplicates for n in nodes]
    assert duplicates == [1, 2, 0]


def _waits_for_a_lock(dsn: str, pid: int) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return found is not None and found[0] == "Lock"


def test_two_nodes_releasing_at_once_release_a_repeat_once(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A and B release at the same time: while A's transaction holds the due row of a
    message that repeats twice (A released it, not committed yet), B's release skips it,
    without waiting for A, and releases nothing; A's commit moves it on once: one message
    in the shared queue, the row due a period later with one repeat left."""
    a, b, _ = nodes
    settle(a.clock)
    repeat = {"AMQ_SCHEDULED_PERIOD": "1000", "AMQ_SCHEDULED_REPEAT": "2"}
    _schedule(a.client(), b"tick", 5000, "r1", **repeat)
    settle(a.clock, 0.1)
    (due,) = [due for due, _, _ in _rows(postgres_dsn)]
    for node in nodes:
        node.broker.router.scheduled.stop()  # only the two releases asked here
    threads = Threads()
    a_db = a.store._database
    assert a_db is not None
    b_pid = b.backend_pid()
    measure = a_db._timer
    a_holds, b_done = threading.Event(), threading.Event()
    b_waited: list[bool] = []

    def commit_after_b() -> float:
        """A's worker, before its COMMIT: B's release runs meanwhile, to its end."""
        a_db._timer = measure
        a_holds.set()
        deadline = time.monotonic() + 30
        while not b_done.is_set() and time.monotonic() < deadline:
            if _waits_for_a_lock(postgres_dsn, b_pid):
                b_waited.append(True)
                break
            threading.Event().wait(0.005)
        return measure()

    def b_after_a(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        def run(*args: Any) -> Any:
            a_holds.wait(30)
            try:
                return function(*args)
            finally:
                b_done.set()

        return threads.run(run, *args)

    a_db._timer = commit_after_b
    a.store._run, b.store._run = threads.run, b_after_a
    released: dict[str, int] = {}
    for node in (a, b):
        asked = node.store.release_due(due, 500, f"ID-{node.name}-")
        asked.addCallback(lambda done, name: released.update({name: done.count}), node.name)
        a.clock.advance(0)  # A's batch releases and stops before its COMMIT; B's runs then
    threads.finish()
    a.store._run = b.store._run = run_now
    assert (released, b_waited) == ({a.name: 1, b.name: 0}, [])
    with psycopg.connect(postgres_dsn) as conn:
        shared = conn.execute("SELECT body FROM stompbroker.shared").fetchall()
        left = conn.execute("SELECT due, repeats FROM stompbroker.scheduled").fetchall()
    assert (shared, left) == ([(b"tick",)], [(due + 1000, 1)])


def test_a_release_whose_batch_failed_is_found_due_at_the_next_poll(
    postgres_dsn: str, nodes: list[Node], logged_failures: list[LogEvent]
) -> None:
    """A's connection is cut just before its message is due: the batch of its release fails
    (nothing released); A's next poll, on its new connection, finds it due, and its consumer
    gets the message, once."""
    a, b, c = nodes
    for node in (b, c):
        node.broker.router.scheduled.stop()  # A alone releases
    consumer = _consumer(a)
    settle(a.clock)
    _schedule(a.client(), b"retried", 1000, "r1")
    settle(a.clock, 0.95)
    _terminate(postgres_dsn, a.backend_pid())
    settle(a.clock, 0.1)  # due: A's release fails
    assert logged_failures
    assert (consumer.bodies(), a.broker.router.scheduled.released) == ([], 0)
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"retried"]
    assert a.broker.router.scheduled.released == 1

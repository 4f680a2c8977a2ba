"""Duplicate detection across a cluster on one real PostgreSQL database: a queue that took an
``_AMQ_DUPL_ID`` through any node treats a send of it through any node, within the window
and the TTL, as a duplicate (its RECEIPT, not delivered, counted); two nodes racing with one
id deliver one copy."""

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
from twisted.python.failure import Failure

from stompbroker.codec import Frame
from stompbroker.core import DestinationPolicy, PolicyMap
from stompbroker.testing import Client

from .test_cluster import Node, _terminate, settle
from .test_store import run_now

DUP = "_AMQ_DUPL_ID"
QUEUE = "/queue/orders"


def _nodes(dsn: str, **policy: Any) -> list[Node]:
    clock = Clock()
    policies = PolicyMap(default=DestinationPolicy(**policy)) if policy else None
    return [Node(dsn, clock, name, policies) for name in ("a:61613", "b:61613", "c:61613")]


@pytest.fixture
def nodes(postgres_dsn: str) -> list[Node]:
    return _nodes(postgres_dsn)


def _send(
    client: Client, body: bytes, dupl_id: str, receipt: str, queue: str = QUEUE, **more: str
) -> None:
    headers = {"destination": queue, DUP: dupl_id, "receipt": receipt, **more}
    client.send("SEND", headers, body)


def _receipts(frames: list[Frame]) -> list[str | None]:
    return [f.headers.get("receipt-id") for f in frames if f.command == "RECEIPT"]


def _consumer(node: Node, queue: str = QUEUE) -> Client:
    client = node.client()
    client.subscribe(queue, ack="auto")
    return client


def _duplicates(node: Node, name: str = "orders") -> tuple[int, int]:
    """The queue's duplicates statistic on ``node``, and the node's counter."""
    queue = node.broker.destinations.queue(name)
    return queue.stats.duplicates, node.broker.counters["duplicates"]


def _rows(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT qkey, dupl_id FROM stompbroker.duplicates ORDER BY id")
        return [(key, dupl_id) for key, dupl_id in rows.fetchall()]


@pytest.mark.parametrize("persistent", ["true", "false"])
def test_a_resend_through_another_node_is_a_duplicate(nodes: list[Node], persistent: str) -> None:
    """A producer on A sends id x; its resend through B gets its RECEIPT, is not delivered
    (to a consumer on C, nor on B), and is counted on B; a new id through B is delivered.
    Persistent or not: in a cluster both go through the database."""
    a, b, c = nodes
    far, near = _consumer(c), _consumer(b)
    first, again = a.client(), b.client()
    _send(first, b"order 1", "x", "r1", persistent=persistent)
    settle(a.clock)
    assert _receipts(first.frames()) == ["r1"]
    _send(again, b"order 1 again", "x", "r2", persistent=persistent)
    settle(a.clock)
    assert _receipts(again.frames()) == ["r2"]
    _send(again, b"order 2", "y", "r3", persistent=persistent)
    settle(a.clock, 1.5)
    assert _receipts(again.frames()) == ["r3"]
    assert sorted(far.bodies() + near.bodies()) == [b"order 1", b"order 2"]
    assert (_duplicates(a), _duplicates(b), _duplicates(c)) == ((0, 0), (1, 1), (0, 0))


def test_a_duplicate_through_the_node_that_took_it_is_not_delivered_to_its_consumer(
    nodes: list[Node],
) -> None:
    """A consumer on the producer's node (credit to spare) gets the first send of an id,
    once its batch committed, and not the resend through the same node or another."""
    a, b, _ = nodes
    consumer = _consumer(a)
    producer = a.client()
    _send(producer, b"one", "x", "r1")
    settle(a.clock, 0.1)
    assert consumer.bodies() == [b"one"]
    _send(producer, b"one again", "x", "r2")
    _send(b.client(), b"one again", "x", "r3")
    settle(a.clock, 1.5)
    assert consumer.bodies() == []
    assert _receipts(producer.frames()) == ["r1", "r2"]
    assert (_duplicates(a), _duplicates(b)) == ((1, 1), (1, 1))


def test_a_producers_order_holds_around_a_send_with_an_id(nodes: list[Node]) -> None:
    """A send with an id waits for its batch; the producer's next sends, without one, wait
    behind it (published too): a consumer on the same node gets them in order."""
    a, _, _ = nodes
    consumer = _consumer(a)
    settle(a.clock)
    producer = a.client()
    _send(producer, b"1", "x", "r1")
    for n in (2, 3):
        producer.publish(QUEUE, b"%d" % n, persistent="true")
    settle(a.clock, 0.1)
    assert consumer.bodies() == [b"1", b"2", b"3"]


def test_ids_are_per_queue_across_the_cluster(nodes: list[Node]) -> None:
    """The same id sent to two queues through two nodes is delivered on both."""
    a, b, _ = nodes
    orders, invoices = _consumer(b), _consumer(b, "/queue/invoices")
    _send(a.client(), b"an order", "x", "r1")
    _send(b.client(), b"an invoice", "x", "r2", queue="/queue/invoices")
    settle(a.clock, 1.5)
    assert (orders.bodies(), invoices.bodies()) == ([b"an order"], [b"an invoice"])
    assert _duplicates(b, "invoices") == (0, 0)


def test_ids_still_hold_after_a_node_restarts(postgres_dsn: str, nodes: list[Node]) -> None:
    """Sent through A and consumed, an id still refuses a resend through A started again
    (the same name) and through B."""
    a, b, _ = nodes
    consumer = _consumer(b)
    _send(a.client(), b"once", "x", "r1")
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"once"]
    box: list[object] = []
    a.store.close().addBoth(box.append)
    settle(a.clock)
    assert box == [None]
    again = Node(postgres_dsn, a.clock, a.name)
    _send(again.client(), b"twice", "x", "r2")
    _send(b.client(), b"thrice", "x", "r3")
    settle(a.clock, 1.5)
    assert consumer.bodies() == []
    assert (_duplicates(again), _duplicates(b)) == ((1, 1), (1, 1))


def test_the_window_pushes_out_old_ids_for_the_whole_cluster(postgres_dsn: str) -> None:
    """With duplicate_window 32 (a prune every 2 takes of a node): of 33 ids sent through A
    and B in turn, the 8 oldest are taken again through C, the newest is still a duplicate;
    the oldest, not pruned yet, is beyond the window all the same. However many ids come, the
    table holds the window and at most 2 takes of each node more."""
    a, b, c = _nodes(postgres_dsn, duplicate_window=32)
    consumer = _consumer(c)
    producers = [a.client(), b.client()]
    for n in range(33):
        _send(producers[n % 2], b"%d" % n, f"id-{n}", f"r{n}")
        settle(a.clock, 0.02)
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"%d" % n for n in range(33)]
    assert _rows(postgres_dsn)[0] == ("/queue/orders", "id-0")  # not pruned yet
    late = c.client()
    for n in [*range(8), 32]:
        _send(late, b"again %d" % n, f"id-{n}", f"again-{n}")
        settle(a.clock, 0.02)
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"again %d" % n for n in range(8)]
    assert _duplicates(c) == (1, 1)
    for n in range(33, 100):
        _send(producers[n % 2], b"%d" % n, f"id-{n}", f"r{n}")
    settle(a.clock, 1.5)
    assert 32 <= len(_rows(postgres_dsn)) <= 32 + 3 * 2


def test_an_id_is_taken_again_after_its_ttl(postgres_dsn: str) -> None:
    """With duplicate_ttl_ms 1000 (the nodes' clock): a resend through B after 0.5 s is a
    duplicate, after 1.1 s it is delivered."""
    a, b, _ = _nodes(postgres_dsn, duplicate_ttl_ms=1000)
    consumer = _consumer(b)
    _send(a.client(), b"first", "x", "r1")
    settle(a.clock, 0.5)
    producer = b.client()
    _send(producer, b"too soon", "x", "r2")
    settle(a.clock, 0.6)
    _send(producer, b"later", "x", "r3")
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"first", b"later"]
    assert _receipts(producer.frames()) == ["r2", "r3"]
    assert _duplicates(b) == (1, 1)


def test_a_transactions_sends_are_checked_at_commit_against_the_cluster(
    nodes: list[Node],
) -> None:
    """Id x taken through A; a transaction on B stages x, y and y again: at COMMIT only the
    first y is delivered (x is A's, the second y a duplicate of the first), every RECEIPT
    comes, the COMMIT's after its batch."""
    a, b, c = nodes
    consumer = _consumer(c)
    _send(a.client(), b"x from a", "x", "r0")
    settle(a.clock)
    producer = b.client()
    producer.send("BEGIN", {"transaction": "t"})
    for n, dupl_id in enumerate(["x", "y", "y"]):
        _send(producer, b"%s %d" % (dupl_id.encode(), n), dupl_id, f"r{n}", transaction="t")
    producer.send("COMMIT", {"transaction": "t", "receipt": "c"})
    settle(a.clock, 1.5)
    assert _receipts(producer.frames()) == ["r0", "r1", "r2", "c"]
    assert consumer.bodies() == [b"x from a", b"y 1"]
    assert _duplicates(b) == (2, 2)


def test_a_bad_id_is_refused_with_an_error_in_a_cluster_too(nodes: list[Node]) -> None:
    """An id over 256 characters through a cluster node is the same ERROR as on one node."""
    producer = nodes[0].client()
    _send(producer, b"m", "x" * 257, "r1")
    producer.error(f"invalid _AMQ_DUPL_ID {'x' * 40!r}: expected 1 to 256 characters")


def test_a_send_whose_batch_fails_is_not_stored_and_its_id_not_taken(
    postgres_dsn: str, nodes: list[Node], logged_failures: list[LogEvent]
) -> None:
    """A's connection to PostgreSQL is lost: the send with id x gets the ERROR 'message not
    stored', and its resend through B is delivered (the id went nowhere)."""
    a, b, _ = nodes
    consumer = _consumer(b)
    _terminate(postgres_dsn, a.backend_pid())
    producer = a.client()
    _send(producer, b"lost", "x", "r1")
    settle(a.clock)
    producer.error("message not stored")
    _send(b.client(), b"resent", "x", "r2")
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"resent"]
    assert _rows(postgres_dsn) == [("/queue/orders", "x")]


# -- races ---------------------------------------------------------------------------


class Threads:
    """A store runner that runs each batch in a thread of its own; ``finish`` joins them
    and fires their Deferreds on the test's thread (the reactor's, for the store)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[threading.Thread, Deferred[Any], list[Any]]] = []

    def run(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        box: list[Any] = []

        def target() -> None:
            try:
                box.append(function(*args))
            except BaseException:
                box.append(Failure())

        thread = threading.Thread(target=target, daemon=True)
        self.jobs.append((thread, answer, box))
        thread.start()
        return answer

    def finish(self) -> None:
        jobs, self.jobs = self.jobs, []
        for thread, answer, box in jobs:
            thread.join(30)
            assert box, "a batch did not finish in 30 s"
            (result,) = box
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(result)


def _quiet(*nodes: Node) -> None:
    """Let the nodes' batches run until none has one in its worker or waiting to leave."""
    clock = nodes[0].clock
    for _ in range(100):
        settle(clock, 0.1)
        if not any(n.store._busy or n.store._pending.writes() for n in nodes):
            return
    raise AssertionError("the nodes' stores never went quiet")


def _wait_for_a_lock(dsn: str, pid: int) -> None:
    """Return once the backend ``pid`` waits for a lock (20 s at most; else say what it did)."""
    deadline = time.monotonic() + 20
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            found = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if found is not None and found[0] == "Lock":
                return
            threading.Event().wait(0.005)
        seen = conn.execute(
            "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity WHERE pid = %s",
            (pid,),
        ).fetchone()
    raise AssertionError(f"backend {pid} never waited for a lock: (state, wait, query) {seen}")


def test_two_nodes_racing_with_one_id_deliver_one_copy(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A and B send id x at once, each with a consumer of its own with room: B's batch waits
    on A's uncommitted take of x (seen waiting in pg_stat_activity), A commits, B's finds x
    taken: one copy in the cluster, one duplicate counted (B's), both RECEIPTs."""
    a, b, _ = nodes
    consumers = [_consumer(a), _consumer(b)]
    producers = [a.client(), b.client()]
    _quiet(a, b)  # else a batch of B's own (a claim, a poll) may hold back the one with x
    threads = Threads()
    a_db, b_db = a.store._database, b.store._database
    assert a_db is not None and b_db is not None
    b_pid = b.backend_pid()
    measure = a_db._timer

    a_took_x = threading.Event()

    def commit_after_b_waits() -> float:
        """A's worker, before its COMMIT: B's batch must be waiting for A's row by then."""
        a_db._timer = measure
        a_took_x.set()
        _wait_for_a_lock(postgres_dsn, b_pid)
        return measure()

    a_db._timer = commit_after_b_waits
    a.store._run = b.store._run = threads.run
    _send(producers[0], b"from a", "x", "ra")
    a.clock.advance(0)  # A's batch leaves (and stops before its COMMIT)
    assert len(threads.jobs) == 1 and not b.store._busy, "B's store was not quiet"
    # B's batch leaves once A's took x (else B's thread may take it first, and commit).
    assert a_took_x.wait(20), "A's batch never reached its COMMIT"
    _send(producers[1], b"from b", "x", "rb")
    a.clock.advance(0)  # B's batch leaves and waits for A's
    assert len(threads.jobs) == 2, "A's and B's batches did not both leave"
    pending = b.store._pending.shared
    assert pending is None or not pending.once, "B's batch left without the send of x"
    threads.finish()
    a.store._run = b.store._run = run_now
    settle(a.clock, 1.5)
    got = [body for consumer in consumers for body in consumer.bodies()]
    assert got == [b"from a"]
    assert [_receipts(p.frames()) for p in producers] == [["ra"], ["rb"]]
    assert (_duplicates(a), _duplicates(b)) == ((0, 0), (1, 1))


class Held:
    """A store runner that keeps each batch until ``release`` runs it."""

    def __init__(self) -> None:
        self.batches: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []

    def run(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        self.batches.append((function, args, answer))
        return answer

    def release(self) -> None:
        function, args, answer = self.batches.pop(0)
        run_now(function, *args).chainDeferred(answer)


def test_a_message_published_while_a_claim_was_on_its_way_is_claimed_at_once(
    nodes: list[Node],
) -> None:
    """A consumer's claim is in A's worker when a send with an id is published through A:
    the claim comes back empty, and A claims again with the next batch (the publish's), so
    the message is delivered without waiting for the poll."""
    a, _, _ = nodes
    held = Held()
    a.store._run = held.run
    consumer = _consumer(a)
    a.clock.advance(0)
    assert len(held.batches) == 1  # the consumer's claim, in the worker
    producer = a.client()
    _send(producer, b"meanwhile", "x", "r1")
    a.clock.advance(0)
    held.release()  # the claim comes back short: the publish was not in its batch
    a.clock.advance(0)
    assert len(held.batches) == 1  # the publish, and a claim again
    held.release()
    a.clock.advance(0)
    assert consumer.bodies() == [b"meanwhile"]
    assert _receipts(producer.frames()) == ["r1"]
    a.store._run = run_now

"""Real ``twistd stompbroker`` nodes on a PostgreSQL primary with a synchronous standby
(tests/_standby.py), through a multi-host ``dsn`` with ``target_session_attrs=read-write``,
driven by stomp.py: a RECEIPT for a persistent SEND waits until the standby has the
message, and after the primary crashes and the standby is promoted the nodes carry on by
themselves: sends meanwhile get ERRORs, and every message that got its RECEIPT is consumed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests._standby import StandbyPair, standby_pair

from .conftest import TIMEOUT, Client, poll
from .test_cluster_twistd import Node, close, drop, started

__all__ = ["standby_pair"]  # the fixture

#: How long a RECEIPT must not come while the standby is down (a negative check: short).
NO_RECEIPT_S = 2.0
#: Persistent messages each producer sends in the failover test.
PER_PRODUCER = 60
#: ERRORs the producers get (retrying at once each time) before the standby is promoted.
OUTAGE_ERRORS = 10
#: Bound on a producer's whole run, outage included (seconds).
PRODUCER_S = 40.0


@pytest.fixture
def one_node(tmp_path: Path, standby_pair: StandbyPair) -> Iterator[Node]:
    """A node on the pair's multi-host dsn, started; killed at the end."""
    with started(tmp_path, standby_pair.dsn, 1) as (node,):
        yield node


@pytest.fixture
def two_nodes(tmp_path: Path, standby_pair: StandbyPair) -> Iterator[list[Node]]:
    """Two nodes on the pair's multi-host dsn, started; killed at the end."""
    with started(tmp_path, standby_pair.dsn, 2) as nodes:
        yield nodes


def _waiting_for_the_standby(pair: StandbyPair, node: Node) -> bool:
    """Whether a session of ``node`` on the primary waits for the standby (its COMMIT)."""
    with psycopg.connect(pair.primary.dsn, autocommit=True, connect_timeout=2) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s AND wait_event = 'SyncRep'",
            (f"stompbroker {node.name}",),
        ).fetchone()
    return row is not None and row[0] > 0


def test_a_receipt_for_a_persistent_send_waits_for_the_standby(
    one_node: Node, standby_pair: StandbyPair
) -> None:
    """The standby stopped: a persistent SEND's RECEIPT does not come (nor an ERROR) while
    its COMMIT waits for the standby; the standby started again: the RECEIPT comes and the
    message is consumed."""
    producer = one_node.client()
    standby_pair.stop_standby()
    frames = producer.frames
    producer.conn.send("/queue/sync", "held", headers={"persistent": "true", "receipt": "r-held"})
    poll(
        lambda: _waiting_for_the_standby(standby_pair, one_node),
        "the node's COMMIT to wait for the standby",
    )
    with frames._changed:
        answered = frames._changed.wait_for(
            lambda: bool(frames.receipts or frames.errors or frames.disconnected), NO_RECEIPT_S
        )
    assert not answered, (frames.receipts, [e.headers for e in frames.errors])

    standby_pair.start_standby()
    assert frames.wait_receipt("r-held").headers["receipt-id"] == "r-held"
    assert not frames.errors
    consumer = one_node.client()
    consumer.subscribe("/queue/sync")
    assert [m.body for m in consumer.wait_messages(1)] == ["held"]
    close(producer, consumer)


def _answer(client: Client, body: str, receipt: str) -> bool:
    """SEND ``body`` persistent asking for ``receipt``: True once the RECEIPT came, False on
    an ERROR or the connection's end (or no answer within TIMEOUT)."""
    frames = client.frames

    def received() -> bool:
        return any(r.headers.get("receipt-id") == receipt for r in frames.receipts)

    try:
        client.conn.send(
            "/queue/failover", body, headers={"persistent": "true", "receipt": receipt}
        )
    except Exception:  # the connection is gone: stomp.py says so in several ways
        return False
    with frames._changed:
        frames._changed.wait_for(
            lambda: received() or bool(frames.errors) or frames.disconnected, TIMEOUT
        )
    return received()


def _produce(node: Node, confirmed: list[str], refused: list[str], lock: threading.Lock) -> None:
    """Send PER_PRODUCER persistent messages through ``node``, each until its RECEIPT: after
    an ERROR (or a lost connection), on a new connection, again."""
    deadline = time.monotonic() + PRODUCER_S
    client = node.client()
    attempt = 0
    for n in range(PER_PRODUCER):
        body = f"{node.name}-{n}"
        while True:
            attempt += 1
            if _answer(client, body, f"r-{attempt}"):
                with lock:
                    confirmed.append(body)
                break
            with lock:
                refused.extend(e.headers.get("message", "") for e in client.frames.errors)
            drop(client)
            assert time.monotonic() < deadline, f"{body}: no RECEIPT within {PRODUCER_S} s"
            client = node.client()
    close(client)


def test_after_the_primary_dies_and_the_standby_is_promoted_nothing_receipted_is_lost(
    two_nodes: list[Node], standby_pair: StandbyPair
) -> None:
    """Producers on two nodes send persistent messages with receipts; the primary is
    crashed: sends get the ERROR "message not stored" while no server takes writes; the
    standby is promoted; the nodes reconnect through the multi-host dsn by themselves, the
    producers (retrying on new connections) get their RECEIPTs again, and every message that
    got one is consumed afterwards."""
    confirmed: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run(node: Node) -> None:
        try:
            _produce(node, confirmed, refused, lock)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(node,), daemon=True) for node in two_nodes]
    for thread in threads:
        thread.start()
    poll(lambda: len(confirmed) >= 20, "receipts before the crash")
    standby_pair.kill_primary()
    poll(lambda: len(refused) >= OUTAGE_ERRORS, "ERRORs while no server takes writes")
    before = len(confirmed)
    standby_pair.promote()
    for thread in threads:
        thread.join(PRODUCER_S + TIMEOUT)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    assert len(confirmed) == 2 * PER_PRODUCER > before
    assert set(refused) == {"message not stored"}, refused
    for node in two_nodes:
        assert node.output is not None
        node.output.wait_for("this node joined again")

    consumers = [node.client() for node in two_nodes]
    for consumer in consumers:
        consumer.subscribe("/queue/failover")

    def consumed() -> set[str]:
        return {m.body for c in consumers for m in list(c.frames.messages)}

    poll(lambda: consumed() >= set(confirmed), "every receipted message", timeout=3 * TIMEOUT)
    close(*consumers)

"""Three real ``twistd stompbroker`` nodes on one PostgreSQL database, driven by stomp.py
(and @stomp/stompjs):
a queue is one queue for the cluster, and a node killed with SIGKILL loses nothing its
producers were told was received: what it had delivered unacknowledged comes back through
the other nodes, flagged redelivered."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._postgres import PostgresServer

from .conftest import Client, poll
from .test_durability import BrokerProcess
from .test_stompjs import node as nodejs
from .test_stompjs import run_node

__all__ = ["nodejs"]  # the fixture

#: Rounds of the kill test: in each, one node dies holding unacknowledged messages while
#: producers send with receipts through the others.
ROUNDS = 20


class Node(BrokerProcess):
    """One ``twistd -n stompbroker`` of the cluster (test_durability's process, on the
    cluster's database under its own name), started and killed at will."""

    def __init__(self, directory: Path, dsn: str, name: str) -> None:
        super().__init__(directory)
        self.name = name
        config = directory / "conf" / "stompbroker.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"broker:\n  store: postgresql\npostgresql:\n  dsn: '{dsn}'\n  node: '{name}'\n",
            encoding="utf-8",
        )

    def kill(self) -> None:
        """SIGKILL (if it runs): no flush, no goodbye."""
        if self.process is not None:
            super().kill()

    def client(self, client_id: str | None = None) -> Client:
        """A stomp.py 1.2 connection, connected (with ``client_id`` as its ``client-id``)."""
        client = Client(self.port, "1.2")
        if client_id is None:
            client.connect()
            return client
        client.conn.connect(wait=False, headers={"client-id": client_id})
        frames = client.frames
        frames.wait(lambda: bool(frames.connected or frames.errors), "CONNECTED")
        assert frames.connected, [e.headers for e in frames.errors]
        return client


@contextlib.contextmanager
def started(tmp_path: Path, dsn: str, count: int) -> Iterator[list[Node]]:
    """``count`` nodes on ``dsn`` (node-1, node-2, ...), started; killed at the end."""
    nodes = [Node(tmp_path / f"n{i}", dsn, f"node-{i}") for i in range(1, count + 1)]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture
def cluster(tmp_path: Path, postgres_dsn: str) -> Iterator[list[Node]]:
    """Three nodes on a new database, started; killed at the end."""
    with started(tmp_path, postgres_dsn, 3) as nodes:
        yield nodes


def close(*clients: Client) -> None:
    """DISCONNECT each of ``clients`` that is still open."""
    for client in clients:
        with contextlib.suppress(Exception):
            client.disconnect()


def drop(client: Client) -> None:
    """Close a connection the broker may have closed already (after an ERROR)."""
    with contextlib.suppress(Exception):
        client.conn.transport.disconnect_socket()


def test_each_message_goes_to_one_consumer_of_the_cluster(cluster: list[Node]) -> None:
    """A producer on node 1 sends 60 persistent messages with receipts; consumers on nodes 2
    and 3, acknowledging each: every message arrives once in the cluster, none twice."""
    consumers = [node.client() for node in cluster[1:]]
    for consumer in consumers:
        consumer.subscribe(
            "/queue/cluster", ack="client-individual", headers={"activemq.prefetchSize": "5"}
        )
    producer = cluster[0].client()
    sent = [f"m{n}" for n in range(60)]
    for body in sent:
        producer.send("/queue/cluster", body, headers={"persistent": "true"}, receipt=True)

    acked = [0, 0]

    def received() -> list[str]:
        return [m.body for c in consumers for m in c.frames.messages]

    def ack_new() -> bool:
        for i, consumer in enumerate(consumers):
            for message in list(consumer.frames.messages)[acked[i] :]:
                consumer.ack(message)
                acked[i] += 1
        return len(received()) >= len(sent)

    poll(ack_new, "every message, on some node, each acknowledged")
    assert sorted(received(), key=lambda b: int(b[1:])) == sent
    close(producer, *consumers)


#: The durable subscription of the durable test: its SUBSCRIBE headers.
ARCHIVE = {"activemq.subscriptionName": "archive"}


def test_a_durable_subscriber_comes_back_on_another_node_and_gets_what_it_missed(
    cluster: list[Node],
) -> None:
    """A durable subscriber (client-id "billing") made on node 1 leaves; a producer on node 2
    publishes 10 persistent messages with receipts; the subscriber comes back on node 3 and
    gets all 10, in order. Meanwhile a second subscriber of the name, on node 1, gets the
    "in use" ERROR. Deleted through node 2, it keeps nothing more: a new one, made on node
    1, gets only what is published after it."""
    first = cluster[0].client("billing")
    first.subscribe("/topic/invoices", headers=ARCHIVE)
    first.disconnect()
    producer = cluster[1].client()
    sent = [f"invoice-{n}" for n in range(10)]

    def published() -> bool:  # node 2 knows the subscription at its next poll, at worst
        producer.send("/topic/invoices", "probe", headers={"persistent": "true"}, receipt=True)
        return "probe" in [m.body for m in probe.frames.messages]

    probe = cluster[2].client("billing")
    probe.subscribe("/topic/invoices", ack="client-individual", headers=ARCHIVE)
    poll(published, "node 2 feeding the durable subscription made on node 1")
    close(probe)  # unacknowledged probes stay kept
    for body in sent:
        producer.send("/topic/invoices", body, headers={"persistent": "true"}, receipt=True)

    back = cluster[2].client("billing")
    back.subscribe("/topic/invoices", ack="client-individual", headers=ARCHIVE)
    poll(
        lambda: [m.body for m in back.frames.messages if m.body != "probe"] == sent,
        "the ten missed messages, in order",
    )
    second = cluster[0].client("billing")
    second.conn.subscribe("/topic/invoices", id="s", headers={**ARCHIVE, "receipt": "taken"})
    second.error("durable subscription 'archive' is in use by another connection")
    for message in back.frames.messages:
        back.ack(message)
    close(back)

    deleter = cluster[1].client("billing")
    deleter.subscribe("/topic/invoices", headers=ARCHIVE)
    deleter.conn.unsubscribe(id="sub-1", headers={**ARCHIVE, "receipt": "deleted"})
    deleter.frames.wait_receipt("deleted")
    close(deleter)
    producer.send("/topic/invoices", "unkept", headers={"persistent": "true"}, receipt=True)
    fresh = cluster[0].client("billing")
    fresh.subscribe("/topic/invoices", headers=ARCHIVE)

    def fed() -> bool:
        producer.send("/topic/invoices", "new", headers={"persistent": "true"}, receipt=True)
        return bool(fresh.frames.messages)

    poll(fed, "node 2 feeding the subscription made anew on node 1")
    assert {m.body for m in fresh.frames.messages} == {"new"}
    close(producer, fresh)


def _produce(node: Node, prefix: str, confirmed: list[str], lock: threading.Lock) -> None:
    """Send 10 persistent messages through ``node``, each with a receipt waited for."""
    producer = node.client()
    for n in range(10):
        body = f"{prefix}-{n}"
        producer.send("/queue/survive", body, headers={"persistent": "true"}, receipt=True)
        with lock:
            confirmed.append(body)
    close(producer)


def _kill_round(cluster: list[Node], round_: int) -> None:
    """One node holds messages unacknowledged while the others' producers send; it dies;
    a survivor gets every confirmed message, the held ones flagged; the node starts again."""
    victim = cluster[round_ % 3]
    others = [node for node in cluster if node is not victim]
    holder = victim.client()
    holder.subscribe("/queue/survive", ack="client", headers={"activemq.prefetchSize": "10"})
    confirmed: list[str] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_produce, args=(node, f"r{round_}-{i}", confirmed, lock))
        for i, node in enumerate(others)
    ]
    for thread in threads:
        thread.start()
    holder.frames.wait_messages(10)
    held = {m.body for m in holder.frames.messages}
    victim.kill()
    for thread in threads:
        thread.join(60)
    survivor = others[0].client()
    survivor.subscribe("/queue/survive", ack="client-individual")
    poll(
        lambda: {m.body for m in survivor.frames.messages} >= set(confirmed),
        f"round {round_}: every confirmed message",
    )
    messages = list(survivor.frames.messages)
    for message in messages:
        survivor.ack(message)
    flagged = {m.body for m in messages if m.headers.get("redelivered") == "true"}
    assert held <= flagged, f"round {round_}: {held - flagged} came back unflagged"
    close(survivor)
    victim.start()


def test_a_killed_nodes_unacknowledged_messages_come_back_through_the_others(
    cluster: list[Node],
) -> None:
    """Round after round, a consumer on one node holds messages unacknowledged while
    producers on the other two send with receipts; the node is killed (SIGKILL): every
    receipted message is delivered by the survivors, those the dead node had delivered
    flagged redelivered; then the node starts again and rejoins."""
    for round_ in range(ROUNDS):
        _kill_round(cluster, round_)


#: Messages the producer of the duplicate test may send before its node is killed.
DUPLICATE_MESSAGES = 5_000
DUPL = "_AMQ_DUPL_ID"


def _send_with_ids(client: Client, sent: list[str], stop: threading.Event) -> None:
    """Send persistent messages, each with a receipt and its body as its _AMQ_DUPL_ID, until
    the broker dies (or ``stop``)."""
    for n in range(DUPLICATE_MESSAGES):
        if stop.is_set():
            break
        body = f"m-{n}"
        sent.append(body)
        try:
            client.conn.send(
                "/queue/once",
                body,
                headers={"persistent": "true", "receipt": f"r{n}", DUPL: body},
            )
        except Exception:  # the broker is gone: stomp.py says so in several ways
            break


def test_a_resend_through_another_node_after_a_kill_is_delivered_once(
    cluster: list[Node],
) -> None:
    """A producer sends through node 1 with an _AMQ_DUPL_ID each; node 1 is killed (SIGKILL)
    mid-stream; the producer resends everything through node 2, with the same ids: a RECEIPT
    for each, and a consumer on node 3 gets every message exactly once (those node 1 had
    stored, answered or not, are duplicates; those it had not are taken)."""
    consumer = cluster[2].client()
    consumer.subscribe("/queue/once", ack="auto")
    producer = cluster[0].client()
    stop = threading.Event()
    sent: list[str] = []
    thread = threading.Thread(target=_send_with_ids, args=(producer, sent, stop), daemon=True)
    thread.start()
    poll(lambda: len(producer.frames.receipts) >= 200, "receipts before the kill")
    cluster[0].kill()
    stop.set()
    thread.join(60)
    with producer.frames._changed:
        receipted = len(producer.frames.receipts)
    assert receipted < len(sent), "the kill came after node 1 had answered everything"
    again = cluster[1].client()
    for n, body in enumerate(sent):
        again.conn.send(
            "/queue/once", body, headers={"persistent": "true", "receipt": f"a{n}", DUPL: body}
        )
    again.frames.wait(lambda: len(again.frames.receipts) >= len(sent), "every resend's RECEIPT")
    again.send("/queue/once", "end", receipt=True)
    poll(lambda: any(m.body == "end" for m in consumer.frames.messages), "the end marker")
    bodies = [m.body for m in consumer.frames.messages if m.body != "end"]
    assert sorted(bodies) == sorted(sent)
    close(again, consumer)


#: The headers of a scheduled send: its delay (ms), and repeats.
DELAY = "AMQ_SCHEDULED_DELAY"
REPEAT = {"AMQ_SCHEDULED_PERIOD": "500", "AMQ_SCHEDULED_REPEAT": "2"}


def test_a_killed_nodes_scheduled_messages_are_released_once_by_the_others(
    cluster: list[Node],
) -> None:
    """A producer schedules through node 1, with receipts, a persistent message due in 1.5 s
    and one due then that repeats twice every 0.5 s; node 1 is killed (SIGKILL) before they
    are due: a consumer on node 2 gets the first once and the second three times, no more,
    in due order (an end marker scheduled through node 3 to be due after them comes last)."""
    consumer = cluster[1].client()
    consumer.subscribe("/queue/later", ack="auto")
    producer = cluster[0].client()
    persistent = {"persistent": "true", DELAY: "1500"}
    producer.send("/queue/later", "once", headers=persistent, receipt=True)
    producer.send("/queue/later", "tick", headers={**persistent, **REPEAT}, receipt=True)
    cluster[0].kill()
    marker = cluster[2].client()
    marker.send("/queue/later", "end", headers={DELAY: "4000"}, receipt=True)
    poll(
        lambda: any(m.body == "end" for m in consumer.frames.messages),
        "the end marker, due last",
        timeout=30,
    )
    assert [m.body for m in consumer.frames.messages] == ["once", "tick", "tick", "tick", "end"]
    close(consumer, marker)


def _answered(client: Client, body: str, receipt: str) -> bool:
    """SEND ``body`` persistent asking for ``receipt``; True once the RECEIPT came, False
    on an ERROR (or the connection closing)."""
    frames = client.frames
    client.conn.send("/queue/outage", body, headers={"persistent": "true", "receipt": receipt})

    def received() -> bool:
        return any(r.headers.get("receipt-id") == receipt for r in frames.receipts)

    frames.wait(
        lambda: received() or bool(frames.errors) or frames.disconnected,
        f"the answer to {body}",
    )
    return received()


def _send_until(
    node: Node, stop: threading.Event, confirmed: list[str], refused: list[str]
) -> None:
    """Send persistent messages through ``node``, each waiting for its RECEIPT or an ERROR
    (then on a new connection), until ``stop`` is set."""
    client = node.client()
    for n in range(5000):
        if stop.is_set():
            break
        body = f"{node.name}-{n}"
        if _answered(client, body, f"r-{n}"):
            confirmed.append(body)
            continue
        refused.extend(e.headers.get("message", "") for e in client.frames.errors)
        drop(client)
        client = node.client()
    close(client)


def test_a_postgresql_restart_under_load_is_errors_never_silent_loss(
    cluster: list[Node], postgres_server: PostgresServer
) -> None:
    """PostgreSQL crashes and comes back while producers on two nodes send with receipts:
    sends meanwhile get the ERROR "message not stored", the nodes reconnect by themselves,
    and every message that got its RECEIPT is delivered afterwards."""
    stop = threading.Event()
    confirmed: list[str] = []
    refused: list[str] = []
    threads = [
        threading.Thread(target=_send_until, args=(node, stop, confirmed, refused))
        for node in cluster[:2]
    ]
    for thread in threads:
        thread.start()
    poll(lambda: len(confirmed) >= 50, "receipts before the crash")
    postgres_server.stop("immediate")
    postgres_server.start()
    before = len(confirmed)
    poll(lambda: len(confirmed) >= before + 100, "receipts after the restart", timeout=30)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert refused and set(refused) == {"message not stored"}, refused
    consumer = cluster[2].client()
    consumer.subscribe("/queue/outage", ack="auto")
    poll(
        lambda: {m.body for m in consumer.frames.messages} >= set(confirmed),
        "every confirmed message",
        timeout=30,
    )
    close(consumer)


def test_stompjs_clients_on_two_nodes_share_a_queue(cluster: list[Node], nodejs: str) -> None:
    """Real @stomp/stompjs over TCP: a consumer on node 2, a producer on node 1 sending 20
    persistent messages: the consumer gets every one, in order."""
    result = run_node(
        nodejs,
        "stompjs_client.mjs",
        {
            "scenario": "relay",
            "transport": "tcp",
            "port": cluster[1].port,
            "sendPort": cluster[0].port,
            "count": 20,
        },
    )
    bodies = [base64.b64decode(m["body"]) for m in result["received"]]
    assert bodies == [f"m{n}".encode() for n in range(20)]

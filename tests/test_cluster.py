"""Shared queues between nodes on one real PostgreSQL database: each message goes to one
consumer in the cluster; what a node claimed and did not settle goes back when its consumer
leaves, when the node dies, or when the node lost its claim (fenced)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from prometheus_client import generate_latest
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from stompbroker.admin import format_status
from stompbroker.codec import Frame
from stompbroker.config import load
from stompbroker.core import Broker, Message, PolicyMap
from stompbroker.store import PostgresStore
from stompbroker.store._pg_shared import woken_by
from stompbroker.store._postgres import RESERVE_MAX
from stompbroker.testing import Client
from stompbroker.transport import Connections, Management
from stompbroker.transport._prometheus import registry

from .test_store import run_now
from .test_topic_bus import FakeBus


class Node:
    """One broker on the shared database, on the test's clock."""

    def __init__(
        self, dsn: str, clock: Clock, name: str, policies: PolicyMap | None = None
    ) -> None:
        self.clock = clock
        self.name = name
        self.store = PostgresStore(dsn, clock, run_now, name, poll_s=1.0)
        prefix = f"ID-{name.replace(':', '-')}"
        self.broker = Broker(clock, id_prefix=prefix, store=self.store, policies=policies)
        box: list[object] = []
        self.store.open().addBoth(box.append)
        settle(clock)
        assert box and not hasattr(box[0], "raiseException"), box
        self.broker.recover(box[0])  # type: ignore[arg-type]
        self._clients = 0

    def client(self) -> Client:
        self._clients += 1
        client = Client(self.broker, self.clock, f"{self.name}-{self._clients}")
        client.connect()
        return client

    def backend_pid(self) -> int:
        database = self.store._database
        assert database is not None and database._conn is not None
        pid: int = database._conn.info.backend_pid
        return pid


def settle(clock: Clock, seconds: float = 0.5) -> None:
    """Let the batches (and the polls due in ``seconds``) run."""
    clock.pump([0.01] * int(seconds / 0.01))


def _terminate(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _bodies(frames: list[Frame]) -> list[bytes]:
    return [frame.body for frame in frames]


def _ack(client: Client, frames: list[Frame]) -> None:
    for frame in frames:
        client.send("ACK", {"id": frame.headers["ack"]})


def gather(clock: Clock, consumers: list[Client], rounds: int, seconds: float) -> list[bytes]:
    """The bodies ``consumers`` receive over ``rounds`` settles of ``seconds``, each
    acknowledged as it comes."""
    got: list[bytes] = []
    for _ in range(rounds):
        settle(clock, seconds)
        for client in consumers:
            frames = client.messages()
            got += _bodies(frames)
            _ack(client, frames)
    return got


@pytest.fixture
def nodes(postgres_dsn: str) -> list[Node]:
    clock = Clock()
    return [Node(postgres_dsn, clock, name) for name in ("a:61613", "b:61613", "c:61613")]


def test_a_message_sent_on_one_node_reaches_a_consumer_on_another(nodes: list[Node]) -> None:
    """A queue is one queue for the cluster: what a producer on node A sends, a consumer on
    node B receives, in order, and A's broker keeps none of it."""
    a, b, _ = nodes
    consumer = b.client()
    consumer.subscribe("/queue/orders")
    producer = a.client()
    for n in range(5):
        producer.publish("/queue/orders", b"order %d" % n)
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"order %d" % n for n in range(5)]
    assert a.broker.destinations.queues["orders"].buffer.clear() == []


def test_each_message_goes_to_exactly_one_consumer_in_the_cluster(nodes: list[Node]) -> None:
    """Consumers on three nodes, client acknowledgement, a small prefetch: every one of 300
    messages is delivered once in the whole cluster, none twice, none lost."""
    consumers = []
    for node in nodes:
        client = node.client()
        client.subscribe("/queue/work", ack="client-individual", prefetch_count="10")
        consumers.append(client)
    producer = nodes[0].client()
    for n in range(300):
        producer.publish("/queue/work", b"%d" % n, persistent="true")
    got = gather(nodes[0].clock, consumers, 60, 0.2)
    assert sorted(got, key=int) == [b"%d" % n for n in range(300)]


def test_a_consumer_leaving_gives_back_what_its_node_claimed(nodes: list[Node]) -> None:
    """Messages a consumer on A held unacknowledged go back to the cluster's queue when it
    leaves: a consumer on B gets them, flagged redelivered."""
    a, b, _ = nodes
    holder = a.client()
    holder.subscribe("/queue/jobs", ack="client-individual", prefetch_count="3")
    producer = a.client()
    for n in range(3):
        producer.publish("/queue/jobs", b"job %d" % n)
    settle(a.clock)
    assert holder.bodies() == [b"job 0", b"job 1", b"job 2"]
    holder.send("DISCONNECT")
    holder.lose()
    other = b.client()
    other.subscribe("/queue/jobs", ack="client-individual")
    settle(a.clock, 1.5)
    frames = other.messages()
    assert _bodies(frames) == [b"job 0", b"job 1", b"job 2"]
    assert {frame.headers.get("redelivered") for frame in frames} == {"true"}


def test_what_a_dead_node_claimed_is_redelivered_by_the_others(
    postgres_dsn: str, nodes: list[Node], logged_failures: list[LogEvent]
) -> None:
    """A node whose database session ends (killed, cut off) loses its liveness lock; within
    a poll another node gives back what it had claimed, and delivers it flagged
    redelivered."""
    a, b, _ = nodes
    doomed = a.client()
    doomed.subscribe("/queue/jobs", ack="client", prefetch_count="2")
    producer = b.client()
    for n in range(4):
        producer.publish("/queue/jobs", b"job %d" % n)
    settle(a.clock, 1.5)
    assert doomed.bodies() == [b"job 0", b"job 1"]
    a.store._poll = lambda: None  # type: ignore[method-assign]  # A is dead: it does nothing
    _terminate(postgres_dsn, a.backend_pid())
    survivor = b.client()
    survivor.subscribe("/queue/jobs", ack="client")
    settle(a.clock, 2.5)
    flags = {frame.body: frame.headers.get("redelivered") for frame in survivor.messages()}
    assert flags == {b"job 0": "true", b"job 1": "true", b"job 2": None, b"job 3": None}


def test_a_node_that_lost_its_claim_drops_it_and_its_late_ack_changes_nothing(
    postgres_dsn: str, nodes: list[Node], logged_failures: list[LogEvent]
) -> None:
    """A node whose connection was cut joins again under a new incarnation: the messages it
    held are given back (flagged redelivered) and its consumer's late ACK does not delete
    them; the node goes on consuming."""
    a, b, _ = nodes
    slow = a.client()
    slow.subscribe("/queue/jobs", ack="client-individual", prefetch_count="1")
    producer = b.client()
    producer.publish("/queue/jobs", b"held")
    settle(a.clock)
    (held,) = slow.messages()
    _terminate(postgres_dsn, a.backend_pid())
    settle(a.clock, 2.5)  # A's next batch fails, the one after joins again
    assert logged_failures
    _ack(slow, [held])
    settle(a.clock, 1.5)
    (again,) = slow.messages()
    assert (again.body, again.headers.get("redelivered")) == (b"held", "true")
    _ack(slow, [again])
    producer.publish("/queue/jobs", b"next")
    settle(a.clock, 1.5)
    assert slow.bodies() == [b"next"]


def test_priorities_and_the_depth_hold_across_nodes(nodes: list[Node]) -> None:
    """Messages wait in the cluster's queue: every node reports its depth after a poll;
    a consumer gets them highest priority first, then oldest first."""
    a, _, c = nodes
    producer = a.client()
    for n, priority in enumerate([1, 9, 4, 9]):
        producer.publish("/queue/ranked", b"m%d" % n, priority=str(priority))
    settle(a.clock, 1.5)
    for node in nodes:
        assert node.broker.destinations.queue("ranked").depth() == 4
    consumer = c.client()
    consumer.subscribe("/queue/ranked")
    settle(a.clock)
    assert consumer.bodies() == [b"m1", b"m3", b"m2", b"m0"]


def test_a_purge_on_one_node_empties_the_clusters_queue(nodes: list[Node]) -> None:
    """PURGE (the management action) on node B drops what waits, whichever node sent it."""
    a, b, _ = nodes
    producer = a.client()
    for n in range(3):
        producer.publish("/queue/old", b"%d" % n)
    settle(a.clock, 1.5)
    assert b.broker.destinations.queue("old").purge() == 3
    consumer = a.client()
    consumer.subscribe("/queue/old")
    settle(a.clock, 1.5)
    assert consumer.bodies() == []


def test_selectors_on_different_nodes_each_get_what_they_select(nodes: list[Node]) -> None:
    """A consumer on A selects red, one on B blue: a node gives back at once what its
    consumers do not select, so every message reaches the consumer that selects it."""
    a, b, c = nodes
    red = a.client()
    red.subscribe("/queue/paint", selector="color = 'red'")
    blue = b.client()
    blue.subscribe("/queue/paint", selector="color = 'blue'")
    producer = c.client()
    for n in range(10):
        producer.publish("/queue/paint", b"%d" % n, color="red" if n % 2 else "blue")
    settle(a.clock, 3.0)
    assert red.bodies() == [b"1", b"3", b"5", b"7", b"9"]
    assert blue.bodies() == [b"0", b"2", b"4", b"6", b"8"]


def test_a_transactions_sends_reach_another_node_only_at_commit(nodes: list[Node]) -> None:
    """SENDs in a transaction on A are in no queue of the cluster until COMMIT; then a
    consumer on B gets all of them; an aborted transaction's, none."""
    a, b, _ = nodes
    consumer = b.client()
    consumer.subscribe("/queue/tx")
    producer = a.client()
    producer.send("BEGIN", {"transaction": "t1"})
    for n in range(3):
        producer.send("SEND", {"destination": "/queue/tx", "transaction": "t1"}, b"%d" % n)
    settle(a.clock, 1.5)
    assert consumer.bodies() == []
    producer.send("COMMIT", {"transaction": "t1"})
    producer.send("BEGIN", {"transaction": "t2"})
    producer.send("SEND", {"destination": "/queue/tx", "transaction": "t2"}, b"aborted")
    producer.send("ABORT", {"transaction": "t2"})
    settle(a.clock, 1.5)
    assert consumer.bodies() == [b"0", b"1", b"2"]


def test_a_browser_on_any_node_sees_what_waits_in_the_cluster(nodes: list[Node]) -> None:
    """browser:true on node B lists the messages sent on A that wait in the cluster, in
    delivery order, with a selector too, and consumes none of them."""
    a, b, _ = nodes
    producer = a.client()
    for n, priority in enumerate([4, 4, 9]):
        producer.publish("/queue/look", b"%d" % n, priority=str(priority), n=str(n))
    settle(a.clock)
    browser = b.client()
    browser.subscribe("/queue/look", "all", browser="true")
    browser.subscribe("/queue/look", "some", browser="true", selector="n >= 1")
    settle(a.clock)
    frames = browser.messages()
    seen = [(f.headers["subscription"], f.body) for f in frames if f.body]
    assert seen == [("all", b"2"), ("all", b"0"), ("all", b"1"), ("some", b"2"), ("some", b"1")]
    consumer = b.client()
    consumer.subscribe("/queue/look")
    settle(a.clock)
    assert consumer.bodies() == [b"2", b"0", b"1"]


def test_a_node_delivers_to_its_own_ready_consumer_at_once_writing_what_it_must(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A message sent on A while A's consumer can take it goes to that consumer at once:
    acknowledged before its batch left, it is never written (its RECEIPT still waits for
    the commit); held unacknowledged, its row is A's claim, and comes back from it. (Once
    the consumer's first claim found the queue empty: until then, what may wait there from
    before goes first.)"""
    a, b, _ = nodes
    consumer = a.client()
    consumer.subscribe("/queue/near", ack="client-individual", prefetch_count="1")
    settle(a.clock)
    producer = a.client()
    producer.send(
        "SEND", {"destination": "/queue/near", "persistent": "true", "receipt": "r1"}, b"m"
    )
    (message,) = consumer.messages()
    assert producer.frames() == []  # no RECEIPT before the commit
    _ack(consumer, [message])
    settle(a.clock)
    assert [f.headers["receipt-id"] for f in producer.frames()] == ["r1"]
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM stompbroker.shared").fetchone() == (0,)
    producer.publish("/queue/near", b"held", persistent="true")
    settle(a.clock)
    assert consumer.bodies() == [b"held"]
    with psycopg.connect(postgres_dsn) as conn:
        row = conn.execute("SELECT body, owner FROM stompbroker.shared").fetchone()
    assert row == (b"held", a.store.incarnation)
    consumer.send("DISCONNECT")
    consumer.lose()
    other = b.client()
    other.subscribe("/queue/near")
    settle(a.clock, 1.5)
    (again,) = other.messages()
    assert (again.body, again.headers.get("redelivered")) == (b"held", "true")


def _sent_to_a_consumer(node: Node, queue: str, prefetch: int, count: int) -> tuple[Client, Client]:
    """A client-individual consumer of ``queue`` on ``node`` (its first claim back), then
    a producer that sent it ``count`` persistent messages, bodies b"0", b"1", ..."""
    consumer = node.client()
    consumer.subscribe(queue, ack="client-individual", prefetch_count=str(prefetch))
    settle(node.clock)
    producer = node.client()
    for n in range(count):
        producer.publish(queue, b"%d" % n, persistent="true")
    return consumer, producer


def test_a_message_sent_while_earlier_ones_wait_in_the_cluster_does_not_overtake_them(
    nodes: list[Node],
) -> None:
    """Order per producer: a consumer here with a prefetch of 2 takes 0 and 1 at once; its
    node keeps 2 and 3 for it (as many again as its prefetch); 4 and 5 wait in the cluster's
    table. Acknowledged, 0 and 1 free the prefetch for 2 and 3; 6, sent before A's claim of
    4 and 5 came back, waits behind them instead of going to the consumer at once."""
    a = nodes[0]
    consumer, producer = _sent_to_a_consumer(a, "/queue/fifo", 2, 6)
    first = consumer.messages()
    assert _bodies(first) == [b"0", b"1"]
    _ack(consumer, first)
    producer.publish("/queue/fifo", b"6", persistent="true")
    second = consumer.messages()
    assert _bodies(second) == [b"2", b"3"]
    _ack(consumer, second)
    assert consumer.messages() == []
    assert gather(a.clock, [consumer], 10, 0.3) == [b"4", b"5", b"6"]


def test_what_waited_behind_goes_back_to_the_cluster_in_order_when_the_consumer_leaves(
    nodes: list[Node],
) -> None:
    """A's consumer (prefetch 1) holds 0, then 1; 2 waits in the cluster's table and 3
    behind it, on A. The consumer leaves: B's consumer gets 1 (redelivered), 2 and 3, in
    that order."""
    a, b, _ = nodes
    consumer, producer = _sent_to_a_consumer(a, "/queue/back", 1, 3)
    first = consumer.messages()
    assert _bodies(first) == [b"0"]
    _ack(consumer, first)
    assert consumer.bodies() == [b"1"]
    producer.publish("/queue/back", b"3", persistent="true")
    settle(a.clock)
    consumer.send("DISCONNECT")
    consumer.lose()
    other = b.client()
    other.subscribe("/queue/back", ack="client-individual")
    frames = []
    for _ in range(10):
        settle(a.clock, 0.3)
        frames += other.messages()
    assert _bodies(frames) == [b"1", b"2", b"3"]
    assert [f.headers.get("redelivered") for f in frames] == ["true", None, None]


def test_one_claim_brings_up_to_2000_waiting_messages(nodes: list[Node]) -> None:
    """2,000 messages wait in the cluster; a consumer with that much prefetch subscribes on
    A: one claim brings them all (claims catch up with fast producers)."""
    a, b, _ = nodes
    producer = b.client()
    for n in range(2000):
        producer.publish("/queue/many", b"%d" % n, persistent="true")
    settle(a.clock)
    consumer = a.client()
    before = a.store.commits.batches
    consumer.subscribe("/queue/many", prefetch_count="2000")
    a.clock.advance(0)
    assert consumer.bodies() == [b"%d" % n for n in range(2000)]
    assert a.store.commits.batches - before == 2  # the claim, then one that finds none left


def test_a_node_that_ran_out_of_row_ids_reserves_twice_as_many(nodes: list[Node]) -> None:
    """A node reserves row ids for the messages it delivers to its own consumers (1,000 at
    first; a message without one is published for the cluster instead). When a burst used
    them all, the next reservations are twice as large, up to RESERVE_MAX."""
    a = nodes[0]

    def burst() -> int:
        taken: list[Message] = []
        while a.store.keeps_now():
            message = Message(f"m{len(taken)}", "/queue/ids", {}, b"", True, 0)
            a.store.publish_claimed("ids", message, "never")
            taken.append(message)
        for message in taken:
            a.store.settle(message)
        settle(a.clock)
        return len(taken)

    assert [burst() for _ in range(7)] == [1000, 1000, 2000, 4000, 8000, RESERVE_MAX, RESERVE_MAX]


def test_a_non_persistent_message_delivered_at_once_goes_to_the_cluster_when_left_behind(
    nodes: list[Node],
) -> None:
    """A non-persistent message A's consumer took at once (it has no row) and left
    unacknowledged when it unsubscribed is published for the cluster: B's consumer gets it,
    flagged redelivered."""
    a, b, _ = nodes
    consumer = a.client()
    consumer.subscribe("/queue/light", ack="client-individual")
    settle(a.clock)  # its first claim found the queue empty
    a.client().publish("/queue/light", b"light", persistent="false")
    assert consumer.bodies() == [b"light"]
    consumer.send("UNSUBSCRIBE", {"id": "0"})
    other = b.client()
    other.subscribe("/queue/light")
    settle(a.clock, 1.5)
    (again,) = other.messages()
    assert (again.body, again.headers.get("redelivered")) == (b"light", "true")


def test_the_shipped_cluster_configuration_is_valid_and_names_postgresql() -> None:
    """conf/cluster.yaml, the ready file docs/cluster.md points to, loads and names the
    PostgreSQL store with a multi-host dsn."""
    config = load(str(Path(__file__).parent.parent / "conf" / "cluster.yaml"))
    assert config.broker.store == "postgresql"
    assert config.postgresql.dsn is not None and "host=db1,db2" in config.postgresql.dsn


def test_every_node_lists_the_live_nodes_and_a_dead_one_leaves_the_list(
    postgres_dsn: str, nodes: list[Node], logged_failures: list[LogEvent]
) -> None:
    """The management API's broker (``cluster``), the metrics and stompbroker-admin show
    this node and the live nodes as last polled; a node whose session ended is gone from
    the list at the next poll."""
    a, b, _ = nodes
    settle(a.clock, 1.5)
    management = Management(b.broker, Connections(b.clock), b.store)
    cluster = management.broker_info()["cluster"]
    assert (cluster["node"], cluster["incarnation"]) == ("b:61613", b.store.incarnation)
    assert [n["name"] for n in cluster["nodes"]] == ["a:61613", "b:61613", "c:61613"]
    assert "cluster       node b:61613 (incarnation " in format_status(management.broker_info())
    a.store._poll = lambda: None  # type: ignore[method-assign]  # A is dead: it does nothing
    _terminate(postgres_dsn, a.backend_pid())
    settle(a.clock, 1.5)
    cluster = management.broker_info()["cluster"]
    assert [n["name"] for n in cluster["nodes"]] == ["b:61613", "c:61613"]
    metrics = generate_latest(registry(management)).decode()
    assert "stompbroker_cluster_nodes 2.0" in metrics


def linked(nodes: list[Node]) -> None:
    """Join ``nodes`` by an in-memory topic bus."""
    ends: list[FakeBus] = []
    for node in nodes:
        bus = FakeBus(ends)
        node.broker.router.bus = bus
        bus.attach(node.broker.published_elsewhere)


def _request(requesting: Node, responding: Node, temporary: str) -> tuple[Client, Client, str]:
    """A responder on ``responding`` gets a request from a requester on ``requesting``
    subscribed to ``temporary`` (its reply-to): the responder, the requester and the
    address the responder was given."""
    responder = responding.client()
    responder.subscribe("/queue/requests")
    requester = requesting.client()
    requester.subscribe(temporary, "r")
    requester.publish("/queue/requests", b"ping", reply_to=temporary)
    settle(requesting.clock, 1.5)
    (request,) = responder.messages()
    return responder, requester, request.headers["reply-to"]


def test_a_reply_to_a_temporary_queue_crosses_nodes_and_one_to_a_gone_one_is_swept(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A requester on A asks with reply-to /temp-queue/replies; a responder on B answers
    to the address it was given: the reply reaches the requester. Once the requester left,
    a reply to its address is accepted on B and dropped at the next poll."""
    a, b, _ = nodes
    responder, requester, reply_to = _request(a, b, "/temp-queue/replies")
    assert reply_to.startswith("/remote-temp-queue/")
    responder.publish(reply_to, b"pong")
    settle(a.clock, 1.5)
    assert requester.bodies() == [b"pong"]
    requester.send("DISCONNECT")
    requester.lose()
    settle(a.clock)
    responder.publish(reply_to, b"too late")
    settle(a.clock, 1.5)
    assert responder.frames() == []
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM stompbroker.shared").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM stompbroker.temporaries").fetchone() == (0,)


def test_a_reply_to_a_temporary_topic_crosses_nodes_through_the_bus(nodes: list[Node]) -> None:
    """A requester on A asks with reply-to /temp-topic/replies; a responder on B answers to
    the address it was given: the reply crosses the topic bus to A, reaches the requester
    (and nobody on C). Once the requester left, a reply is accepted and goes nowhere."""
    linked(nodes)
    a, b, c = nodes
    watcher = c.client()
    watcher.subscribe("/topic/>", "w")
    responder, requester, reply_to = _request(a, b, "/temp-topic/replies")
    assert reply_to.startswith("/remote-temp-topic/")
    responder.publish(reply_to, b"pong", receipt="p")
    settle(a.clock)
    assert [f.command for f in responder.frames()] == ["RECEIPT"]
    (reply,) = requester.messages()
    assert (reply.body, reply.headers["destination"]) == (b"pong", reply_to)
    assert watcher.frames() == []
    requester.send("DISCONNECT")
    requester.lose()
    responder.publish(reply_to, b"too late", receipt="q")
    settle(a.clock)
    assert [f.command for f in responder.frames()] == ["RECEIPT"]
    assert a.broker.temporaries.get(reply_to) is None


def test_an_exclusive_consumer_takes_a_queue_for_the_whole_cluster(nodes: list[Node]) -> None:
    """An exclusive consumer on A gets every message of the queue, one at a time (its
    prefetch is 1), though B has a consumer with room; once it leaves, B's consumer gets
    what follows."""
    a, b, c = nodes
    exclusive = a.client()
    exclusive.subscribe(
        "/queue/solo", ack="client-individual", prefetch_count="1", **{"activemq.exclusive": "true"}
    )
    settle(a.clock, 1.5)
    other = b.client()
    other.subscribe("/queue/solo")
    producer = c.client()
    for n in range(5):
        producer.publish("/queue/solo", b"%d" % n)
    got: list[bytes] = []
    for _ in range(5):
        settle(a.clock, 1.5)
        frames = exclusive.messages()
        got += _bodies(frames)
        _ack(exclusive, frames)
    assert got == [b"%d" % n for n in range(5)]
    assert other.bodies() == []
    exclusive.send("DISCONNECT")
    exclusive.lose()
    settle(a.clock)
    producer.publish("/queue/solo", b"after")
    settle(a.clock, 1.5)
    assert other.bodies() == [b"after"]


def test_a_message_group_stays_with_one_node_s_consumer(nodes: list[Node]) -> None:
    """Consumers on A and B take one message at a time; messages of groups g1 and g2 sent
    through C: every message of a group goes to the consumer that got its first, in order,
    and both nodes get work."""
    a, b, c = nodes
    consumers = [node.client() for node in (a, b)]
    for consumer in consumers:
        consumer.subscribe("/queue/grouped", ack="client-individual", prefetch_count="1")
    producer = c.client()
    for n in range(12):
        producer.publish("/queue/grouped", b"g%d-%d" % (n % 3 + 1, n), JMSXGroupID=f"g{n % 3 + 1}")
    got: dict[int, list[bytes]] = {0: [], 1: []}
    for _ in range(20):
        settle(a.clock, 0.6)
        for i, consumer in enumerate(consumers):
            frames = consumer.messages()
            got[i] += _bodies(frames)
            _ack(consumer, frames)
    assert sorted(got[0] + got[1]) == sorted(b"g%d-%d" % (n % 3 + 1, n) for n in range(12))
    owners = {body.split(b"-")[0]: i for i in (0, 1) for body in got[i]}
    for i in (0, 1):
        assert all(owners[body.split(b"-")[0]] == i for body in got[i]), got
        numbers = [int(body.split(b"-")[1]) for body in got[i]]
        assert numbers == sorted(numbers)
    assert got[0] and got[1], got


def _left_idle(a: Node, producer: Client, destination: str) -> None:
    """A consumer on ``a`` gets one message from ``producer`` (on another node) and leaves;
    the polls that follow stop watching the idle queue."""
    first = a.client()
    first.subscribe(destination)
    producer.publish(destination, b"one")
    settle(a.clock, 1.5)
    assert first.bodies() == [b"one"]
    first.send("DISCONNECT")
    first.lose()
    settle(a.clock, 2.5)


def test_a_consumer_coming_back_after_the_poll_forgot_its_idle_queue_is_fed(
    nodes: list[Node],
) -> None:
    """A queue drained, then left idle long enough for the poll to stop watching it: a new
    consumer on that node is still woken by what another node publishes."""
    a, b, _ = nodes
    producer = b.client()
    _left_idle(a, producer, "/queue/again")
    second = a.client()
    second.subscribe("/queue/again")
    settle(a.clock, 0.5)  # its claim finds nothing
    producer.publish("/queue/again", b"two")
    settle(a.clock, 2.5)
    assert second.bodies() == [b"two"]


def test_a_consumer_coming_back_claims_at_once_what_was_sent_while_its_queue_was_idle(
    nodes: list[Node],
) -> None:
    """What another node published while this node's queue had no consumer (and the poll
    watched it no more) is claimed as soon as a consumer subscribes here, not a poll later."""
    a, b, _ = nodes
    producer = b.client()
    _left_idle(a, producer, "/queue/idle")
    producer.publish("/queue/idle", b"two")
    settle(b.clock, 0.1)
    second = a.client()
    second.subscribe("/queue/idle")
    settle(a.clock, 0.2)
    assert second.bodies() == [b"two"]


def test_a_group_its_producer_closed_is_free_for_another_node(nodes: list[Node]) -> None:
    """A message with JMSXGroupSeq -1 closes its group for the whole cluster: while the
    consumer on A that had the group is busy, the group's next message goes to B's."""
    a, b, c = nodes
    first = a.client()
    first.subscribe("/queue/closing", ack="client-individual", prefetch_count="1")
    producer = c.client()
    for n, seq in ((1, "1"), (2, "-1")):
        producer.publish("/queue/closing", b"g-%d" % n, JMSXGroupID="g", JMSXGroupSeq=seq)
        settle(a.clock, 1.5)
        frames = first.messages()
        assert _bodies(frames) == [b"g-%d" % n]
        _ack(first, frames)
    producer.publish("/queue/closing", b"x")
    settle(a.clock, 1.5)
    assert first.bodies() == [b"x"]  # unacknowledged: A's consumer takes nothing more
    second = b.client()
    second.subscribe("/queue/closing", ack="client-individual", prefetch_count="1")
    producer.publish("/queue/closing", b"g-3", JMSXGroupID="g")
    settle(a.clock, 1.5)
    assert second.bodies() == [b"g-3"]


def test_a_publish_notifies_the_other_nodes_which_claim_at_once(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """After committing a message for a queue, a node sends one notification on
    stompbroker_queues naming its incarnation and the queue; given it, another node claims
    at once (without its poll); a node ignores its own."""
    a, b, _ = nodes
    b.store._poll = lambda: None  # type: ignore[method-assign]  # only the notification wakes B
    consumer = b.client()
    consumer.subscribe("/queue/woken")
    settle(a.clock)
    with psycopg.connect(postgres_dsn, autocommit=True) as listener:
        listener.execute("LISTEN stompbroker_queues")
        a.client().publish("/queue/woken", b"now")
        settle(a.clock, 0.1)
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == [f"{a.store.incarnation} /queue/woken"]
    assert consumer.bodies() == []
    assert woken_by(payloads[0], a.store.incarnation) is None  # its own: ignored
    b.store.notified(payloads[0])
    settle(a.clock, 0.1)
    assert consumer.bodies() == [b"now"]

"""Durable subscriptions of a cluster on one real PostgreSQL database: defined once for every
node, fed by whichever node a message is published through, attached to on any node by one
subscriber at a time, deleted for all."""

from __future__ import annotations

import psycopg
import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from stompbroker.core import Broker
from stompbroker.testing import Client

from .test_cluster import Node, _bodies, _terminate, gather, linked, settle

NAME = "audit"
TOPIC = "/topic/orders"


@pytest.fixture
def nodes(postgres_dsn: str) -> list[Node]:
    clock = Clock()
    return [Node(postgres_dsn, clock, name) for name in ("a:61613", "b:61613", "c:61613")]


def _subscriber(node: Node, ack: str = "auto", **headers: str) -> Client:
    """A client of ``node`` with client id "app", its durable subscription NAME to TOPIC
    (extra SUBSCRIBE headers as keyword arguments)."""
    node._clients += 1
    client = Client(node.broker, node.clock, f"{node.name}-{node._clients}")
    client.connect(client_id="app")
    client.subscribe(TOPIC, "s1", ack=ack, **{"activemq.subscriptionName": NAME}, **headers)
    return client


def _leave(client: Client) -> None:
    client.send("DISCONNECT")
    client.lose()


def _rows(dsn: str) -> list[tuple[str, bytes]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT qkey, body FROM stompbroker.shared ORDER BY id").fetchall()
    return [(key, body) for key, body in rows]


def test_a_durable_subscription_made_on_one_node_is_every_nodes(nodes: list[Node]) -> None:
    """Subscribed on A, the durable subscription is defined on B and C too (after a poll),
    with its topic; what a producer on B publishes while its subscriber is away is kept, and
    the subscriber coming back on C gets it, in order."""
    a, b, c = nodes
    subscriber = _subscriber(a, receipt="r")
    settle(a.clock)
    assert [f.command for f in subscriber.frames()] == ["RECEIPT"]
    _leave(subscriber)
    settle(a.clock, 1.5)
    for node in nodes:
        durable = node.broker.durables.get("app", NAME)
        assert durable is not None and durable.pattern == "orders", node.name
    producer = b.client()
    for n in range(3):
        producer.publish(TOPIC, b"order %d" % n, persistent="true")
    settle(a.clock, 1.5)
    back = _subscriber(c)
    settle(a.clock, 1.5)
    assert back.bodies() == [b"order 0", b"order 1", b"order 2"]


def test_a_publish_through_any_node_reaches_the_subscriber_once(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """With the topic bus between the nodes, a message published on A to the topic of a
    durable subscription whose subscriber is on B reaches it once (A kept the copy for the
    cluster; B does not keep the bus's too); a plain subscriber on B gets its own copy."""
    linked(nodes)
    a, b, _ = nodes
    subscriber = _subscriber(b)
    plain = b.client()
    plain.subscribe(TOPIC, "p")
    settle(a.clock, 1.5)
    subscriber.frames()
    producer = a.client()
    producer.publish(TOPIC, b"one", persistent="true")
    settle(a.clock, 1.5)
    assert subscriber.bodies() == [b"one"]
    assert plain.bodies() == [b"one"]
    assert _rows(postgres_dsn) == []


def test_a_second_subscriber_on_another_node_is_told_it_is_in_use(nodes: list[Node]) -> None:
    """While its subscriber is attached on A, a second one on B gets the same ERROR as on
    one node, and receives nothing; once the first has left, a subscriber on B attaches and
    gets what was published meanwhile."""
    a, b, _ = nodes
    first = _subscriber(a)
    settle(a.clock, 1.5)
    first.frames()
    second = _subscriber(b)
    settle(a.clock)
    second.error("durable subscription 'audit' is in use by another connection")
    _leave(first)
    settle(a.clock)
    a.client().publish(TOPIC, b"while away", persistent="true")
    settle(a.clock, 1.5)
    third = _subscriber(b)
    settle(a.clock, 1.5)
    assert third.bodies() == [b"while away"]


def test_a_dead_nodes_subscriber_comes_back_on_another_and_gets_what_it_had(
    postgres_dsn: str, nodes: list[Node], logged_failures: list[LogEvent]
) -> None:
    """A's session ends while its subscriber holds two unacknowledged messages: after the
    sweep, the subscriber attaches on B (A's hold is gone with its node) and gets them,
    flagged redelivered, then the rest."""
    a, b, _ = nodes
    subscriber = _subscriber(a, ack="client-individual")
    settle(a.clock, 1.5)
    subscriber.frames()
    producer = b.client()
    for n in range(2):
        producer.publish(TOPIC, b"%d" % n, persistent="true")
    settle(a.clock, 1.5)
    assert subscriber.bodies() == [b"0", b"1"]
    a.store._poll = lambda: None  # type: ignore[method-assign]  # A is dead: it does nothing
    _terminate(postgres_dsn, a.backend_pid())
    producer.publish(TOPIC, b"2", persistent="true")
    settle(a.clock, 2.5)
    back = _subscriber(b, ack="client-individual")
    settle(a.clock, 1.5)
    frames = back.messages()
    assert _bodies(frames) == [b"0", b"1", b"2"]
    assert [f.headers.get("redelivered") for f in frames] == ["true", "true", None]


def test_deleting_it_on_one_node_deletes_it_for_all(postgres_dsn: str, nodes: list[Node]) -> None:
    """UNSUBSCRIBE with the durable name deletes it on every node (after a poll) with what it
    kept; refused while its subscriber is attached on another node."""
    a, b, c = nodes
    holder = _subscriber(a)
    settle(a.clock, 1.5)
    holder.frames()
    deleter = Client(b.broker, b.clock, "deleter")
    deleter.connect(client_id="app")
    deleter.send("UNSUBSCRIBE", {"id": "x", "activemq.subscriptionName": NAME})
    deleter.error("durable subscription 'audit' is in use by another connection")
    _leave(holder)
    c.client().publish(TOPIC, b"kept", persistent="true")
    settle(a.clock, 1.5)
    assert [key for key, _ in _rows(postgres_dsn)] == ['durable:["app", "audit"]']
    deleter = Client(b.broker, b.clock, "deleter-2")
    deleter.connect(client_id="app")
    deleter.send("UNSUBSCRIBE", {"id": "x", "activemq.subscriptionName": NAME, "receipt": "d"})
    settle(a.clock, 1.5)
    assert [f.command for f in deleter.frames()] == ["RECEIPT"]
    assert [n.broker.durables.get("app", NAME) for n in nodes] == [None, None, None]
    assert _rows(postgres_dsn) == []


def test_a_node_started_later_knows_the_clusters_durable_subscriptions(
    postgres_dsn: str, nodes: list[Node]
) -> None:
    """A node that joins after a durable subscription was made elsewhere has it at start."""
    a, _, _ = nodes
    _subscriber(a)
    settle(a.clock)
    late = Node(postgres_dsn, a.clock, "d:61613")
    assert late.broker.durables.get("app", NAME) is not None
    assert isinstance(late.broker, Broker)


def test_a_shared_durable_subscription_lets_subscribers_on_every_node_compete(
    nodes: list[Node],
) -> None:
    """A shared durable subscription (RabbitMQ's x-queue-name, durable) takes subscribers on
    several nodes at once; each message goes to one of them."""
    subscribers = []
    for node in nodes[:2]:
        client = Client(node.broker, node.clock, f"shared-{node.name}")
        client.connect(client_id="app")
        client.subscribe(
            TOPIC, "s", ack="client-individual", durable="true", **{"x-queue-name": "pool"}
        )
        subscribers.append(client)
    settle(nodes[0].clock, 1.5)
    producer = nodes[2].client()
    for n in range(20):
        producer.publish(TOPIC, b"%d" % n, persistent="true")
    got = gather(nodes[0].clock, subscribers, 10, 0.3)
    assert sorted(got, key=int) == [b"%d" % n for n in range(20)]
    assert all(client.closing is False for client in subscribers)


def test_a_subscriber_attached_before_its_node_heard_of_the_deletion_defines_it_again(
    nodes: list[Node],
) -> None:
    """Deleted through B, then subscribed to through A before A heard of the deletion: the
    subscriber keeps it (A defines it again for the cluster), and what C publishes once it
    has heard of that reaches the subscriber."""
    a, b, c = nodes
    _leave(_subscriber(a))
    settle(a.clock, 1.5)
    poller = a.store._poller
    assert poller is not None
    poller.cancel()  # A hears nothing of the deletion until it polls again
    deleter = Client(b.broker, b.clock, "deleter")
    deleter.connect(client_id="app")
    deleter.send("UNSUBSCRIBE", {"id": "x", "activemq.subscriptionName": NAME, "receipt": "d"})
    settle(b.clock, 0.05)
    assert [f.command for f in deleter.frames()] == ["RECEIPT"]
    subscriber = _subscriber(a, receipt="r")
    settle(a.clock, 0.05)
    assert [f.command for f in subscriber.frames()] == ["RECEIPT"]
    a.store._poll()
    settle(a.clock, 2.5)
    assert [n.broker.durables.get("app", NAME) is not None for n in nodes] == [True] * 3
    c.client().publish(TOPIC, b"after", persistent="true")
    settle(a.clock, 1.5)
    assert _bodies(subscriber.messages()) == [b"after"]

"""Topics across the nodes of a cluster, the core's side: what a broker hands its topic bus
(``ITopicBus``) and what it does with a message another node published. Brokers joined by an
in-memory bus; no sockets, no sleeps."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from stompbroker.core import (
    STATS_TOPIC,
    Broker,
    DestinationPolicy,
    ITopicBus,
    Message,
    PolicyMap,
)
from stompbroker.core._store import Delivery
from stompbroker.store import MemoryStore
from stompbroker.testing import Client, RecordingConsumer

#: The tests' clock starts here (epoch seconds), so that epoch-ms times are realistic.
START = 1_700_000_000


@implementer(ITopicBus)
class FakeBus:
    """One node's end of an in-memory bus: a publish reaches every other end at once, as a
    message rebuilt from what crosses (seq 0), as the PostgreSQL bus does."""

    def __init__(self, ends: list[FakeBus]) -> None:
        self.ends = ends
        ends.append(self)
        self.deliver: Delivery | None = None
        #: What this node handed the bus: (topic name, message).
        self.published: list[tuple[str, Message]] = []

    def attach(self, deliver: Delivery) -> None:
        self.deliver = deliver

    def publish(self, topic: str, message: Message) -> None:
        self.published.append((topic, message))
        for end in self.ends:
            if end is not self and end.deliver is not None:
                end.deliver(topic, _crossed(message))

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)


def _crossed(message: Message) -> Message:
    """What another node rebuilds of ``message``: its fields, no seq, no state."""
    return Message(
        message.message_id,
        message.destination,
        message.headers,
        message.body,
        message.persistent,
        0,
        message.priority,
        message.expires,
        message.group,
    )


def _nodes(count: int = 2, **policy: object) -> list[Broker]:
    """``count`` brokers on one bus, sharing one clock (at START)."""
    clock = Clock()
    clock.advance(START)
    ends: list[FakeBus] = []
    policies = PolicyMap(default=DestinationPolicy(**policy)) if policy else None  # type: ignore[arg-type]
    return [
        Broker(
            clock,
            id_prefix=f"ID-n{n}",
            policies=policies,
            store=MemoryStore(),
            bus=FakeBus(ends),
        )
        for n in range(count)
    ]


def _bus(broker: Broker) -> FakeBus:
    bus = broker.router.bus
    assert isinstance(bus, FakeBus)
    return bus


def _consume(broker: Broker, destination: str, name: str = "s") -> RecordingConsumer:
    consumer = RecordingConsumer()
    broker.subscribe(consumer, name, destination, "auto", 1000)
    return consumer


def test_the_fake_bus_provides_the_interface() -> None:
    """The in-memory bus these tests use is a full ITopicBus."""
    assert verifyObject(ITopicBus, FakeBus([]))


def test_a_publish_reaches_a_subscriber_on_another_node_with_its_fields() -> None:
    """A message published on A reaches B's subscriber with A's id, headers, body, persistent
    flag, priority and expiry, numbered by B."""
    a, b = _nodes()
    b.router.next_seq()  # B's numbering is its own
    seq_before = b.router.next_seq()
    far = _consume(b, "/topic/news")
    a.send("/topic/news", {"priority": "7", "expires": str((START + 60) * 1000), "k": "v"}, b"x")
    sent = _bus(a).published[0][1]
    (got,) = far.take()
    assert (got.message_id, got.destination, got.body) == (sent.message_id, "/topic/news", b"x")
    assert (got.headers, got.persistent, got.priority) == (sent.headers, False, 7)
    assert got.expires == sent.expires == (START + 60) * 1000
    assert got.seq == seq_before + 1
    assert got.message_id.startswith("ID-n0-")


def test_wildcard_subscribers_on_another_node_get_the_publish() -> None:
    """B's subscriptions to a.* and a.> get a message published to a.b on A; a.c.* does not."""
    a, b = _nodes()
    star, rest = _consume(b, "/topic/a.*", "1"), _consume(b, "/topic/a.>", "2")
    other = _consume(b, "/topic/a.c.*", "3")
    a.send("/topic/a.b", {}, b"1")
    a.send("/topic/a.b.c", {}, b"2")
    assert star.bodies() == [b"1"]
    assert rest.bodies() == [b"1", b"2"]
    assert other.bodies() == []


def test_the_publishing_node_delivers_its_own_publish_once() -> None:
    """A's own subscriber gets A's publish once; B's delivery of it does not go back to the
    bus."""
    a, b = _nodes()
    near, far = _consume(a, "/topic/news"), _consume(b, "/topic/news")
    a.send("/topic/news", {}, b"once")
    assert near.bodies() == [b"once"] and far.bodies() == [b"once"]
    assert [name for name, _ in _bus(a).published] == ["news"]
    assert _bus(b).published == []


def test_a_durable_subscription_on_another_node_keeps_a_copy() -> None:
    """B's durable subscription keeps A's publish while its subscriber is away."""
    a, b = _nodes()
    b.declare_durable("c", "keep", "news.>", None)
    a.send("/topic/news.today", {}, b"kept")
    durable = b.durables.get("c", "keep")
    assert durable is not None and durable.depth() == 1


def test_consumer_queues_are_fed_by_the_publishing_node_only() -> None:
    """A virtual topic's publish lands in A's consumer queue once; B's consumer queue gets no
    copy from the bus (the publishing node copies into consumer queues for the cluster)."""
    a, b = _nodes()
    here = _consume(a, "/queue/Consumer.A.VirtualTopic.orders", "q")
    there = _consume(b, "/queue/Consumer.B.VirtualTopic.orders", "q")
    topic = _consume(b, "/topic/VirtualTopic.orders", "t")
    a.send("/topic/VirtualTopic.orders", {}, b"o")
    assert here.bodies() == [b"o"]
    assert there.bodies() == []
    assert topic.bodies() == [b"o"]


def test_an_expired_message_from_another_node_is_dropped_and_counted() -> None:
    """A message whose time ran out on its way is delivered to nobody on B, counted."""
    _, b = _nodes()
    far = _consume(b, "/topic/news")
    message = Message("ID-x-1", "/topic/news", {}, b"old", False, 0, 4, START * 1000 - 1)
    b.published_elsewhere("news", message)
    assert far.bodies() == []
    assert b.counters["expired"] == 1 and b.counters["dropped"] == 1


def test_a_message_to_a_queue_does_not_go_to_the_bus() -> None:
    """Queues are not the topic bus's: a SEND to a queue hands the bus nothing."""
    a, _ = _nodes()
    a.send("/queue/work", {}, b"q")
    assert _bus(a).published == []


def test_the_statistics_topic_stays_on_its_node() -> None:
    """Each node's statistics snapshots describe that node: they do not cross."""
    a, b = _nodes()
    far = _consume(b, STATS_TOPIC)
    a.send(STATS_TOPIC, {}, b"{}", persistent=False)
    assert _bus(a).published == [] and far.bodies() == []


def test_a_no_local_subscriber_gets_other_nodes_publishes() -> None:
    """No-local keeps out the subscriber's own connection's messages, not another node's."""
    a, b = _nodes()
    consumer = RecordingConsumer()
    b.subscribe(consumer, "s", "/topic/news", owner="b-1", no_local=True)
    a.send("/topic/news", {}, b"from a", owner="b-1")
    assert consumer.bodies() == [b"from a"]


def test_a_full_reject_durable_on_another_node_drops_its_copy_only() -> None:
    """A full reject durable subscription on B drops its copy (counted); B's live subscriber
    and A's sender are not refused."""
    a, b = _nodes(max_messages=1, on_full="reject")
    b.declare_durable("c", "keep", "news", None)
    live = _consume(b, "/topic/news")
    a.send("/topic/news", {}, b"1")
    a.send("/topic/news", {}, b"2")
    durable = b.durables.get("c", "keep")
    assert durable is not None and durable.depth() == 1
    assert live.bodies() == [b"1", b"2"]
    assert b.counters["dropped"] == 1 and durable.stats.dropped == 1


def test_a_scheduled_topic_message_crosses_when_due() -> None:
    """A delayed publish reaches B's subscriber when it is due on A, not before."""
    a, b = _nodes()
    far = _consume(b, "/topic/news")
    a.send("/topic/news", {"AMQ_SCHEDULED_DELAY": "2000"}, b"later")
    assert far.bodies() == []
    clock = a.clock
    assert isinstance(clock, Clock)
    clock.advance(2)
    assert far.bodies() == [b"later"]


def test_a_committed_transaction_publishes_across() -> None:
    """A topic SEND staged in a transaction crosses at COMMIT, not before."""
    a, b = _nodes()
    far = _consume(b, "/topic/news")
    client = Client(a)
    client.connect()
    client.send("BEGIN", {"transaction": "t"})
    client.publish("/topic/news", b"tx", transaction="t")
    assert far.bodies() == []
    client.send("COMMIT", {"transaction": "t"})
    assert far.bodies() == [b"tx"]


@pytest.mark.parametrize("persistent", [True, False])
def test_a_persistent_publish_stays_persistent_on_the_other_node(persistent: bool) -> None:
    """B's durable subscription keeps a persistent publish of A as persistent (and a
    non-persistent one as not)."""
    a, b = _nodes()
    b.declare_durable("c", "keep", "news", None)
    a.send("/topic/news", {}, b"p", persistent=persistent)
    durable = b.durables.get("c", "keep")
    assert durable is not None
    assert [m.persistent for m in durable.buffer] == [persistent]

"""Virtual topics (ActiveMQ's shared subscriptions): a publish to /topic/VirtualTopic.X also
lands in each existing queue /queue/Consumer.*.VirtualTopic.X, in the core and across a
restart. No sockets, no sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from stompbroker.core import Broker, DestinationError, DestinationPolicy, PolicyMap, VirtualTopics
from stompbroker.store import FILENAME, SqliteStore
from stompbroker.testing import RecordingConsumer
from tests.test_persistence import Node, run_now


def _consume(broker: Broker, destination: str, name: str = "s") -> RecordingConsumer:
    consumer = RecordingConsumer()
    broker.subscribe(consumer, name, destination, "auto", 1000)
    return consumer


def test_each_consumer_queue_gets_every_message() -> None:
    """Two consumer queues of one virtual topic each get every message sent to the topic."""
    broker = Broker(clock=Clock())
    a = _consume(broker, "/queue/Consumer.A.VirtualTopic.orders", "a")
    b = _consume(broker, "/queue/Consumer.B.VirtualTopic.orders", "b")
    broker.send("/topic/VirtualTopic.orders", {}, b"1")
    broker.send("/topic/VirtualTopic.orders", {}, b"2")
    assert a.bodies() == [b"1", b"2"] and b.bodies() == [b"1", b"2"]


def test_consumers_of_one_consumer_queue_compete() -> None:
    """Two consumers of the same consumer queue share its messages, round robin."""
    broker = Broker(clock=Clock())
    one = _consume(broker, "/queue/Consumer.A.VirtualTopic.orders", "1")
    two = _consume(broker, "/queue/Consumer.A.VirtualTopic.orders", "2")
    for n in range(4):
        broker.send("/topic/VirtualTopic.orders", {}, str(n).encode())
    assert sorted(one.bodies() + two.bodies()) == [b"0", b"1", b"2", b"3"]
    assert one.bodies() and two.bodies()


def test_topic_subscribers_still_get_their_copy() -> None:
    """A plain subscriber of the virtual topic gets the message too."""
    broker = Broker(clock=Clock())
    queue = _consume(broker, "/queue/Consumer.A.VirtualTopic.orders", "q")
    topic = _consume(broker, "/topic/VirtualTopic.orders", "t")
    broker.send("/topic/VirtualTopic.orders", {}, b"x")
    assert queue.bodies() == [b"x"] and topic.bodies() == [b"x"]


def test_a_consumer_queue_is_kept_while_unused_and_collects() -> None:
    """Once made, a consumer queue stays without consumers and collects messages."""
    broker = Broker(clock=Clock())
    consumer = RecordingConsumer()
    sub = broker.subscribe(consumer, "s", "/queue/Consumer.A.VirtualTopic.orders")
    broker.unsubscribe(sub)
    broker.send("/topic/VirtualTopic.orders", {}, b"while away")
    assert broker.queue_depth("Consumer.A.VirtualTopic.orders") == 1
    assert _consume(broker, "/queue/Consumer.A.VirtualTopic.orders").bodies() == [b"while away"]


def test_no_consumer_queue_no_copy() -> None:
    """Before any consumer queue exists, a publish to the virtual topic queues nothing."""
    broker = Broker(clock=Clock())
    broker.send("/topic/VirtualTopic.orders", {}, b"lost")
    assert broker.destinations.queues == {}


def test_other_topics_do_not_feed_consumer_queues() -> None:
    """A consumer queue gets only its own virtual topic's messages."""
    broker = Broker(clock=Clock())
    queue = _consume(broker, "/queue/Consumer.A.VirtualTopic.orders")
    broker.send("/topic/VirtualTopic.other", {}, b"no")
    broker.send("/topic/orders", {}, b"no")
    assert queue.bodies() == []


def test_a_deleted_consumer_queue_gets_no_more() -> None:
    """Deleting a consumer queue (an administrator) stops the copies; the cache forgets it."""
    broker = Broker(clock=Clock())
    sub = broker.subscribe(RecordingConsumer(), "s", "/queue/Consumer.A.VirtualTopic.o")
    broker.send("/topic/VirtualTopic.o", {}, b"1")
    broker.unsubscribe(sub)
    broker.destinations.delete(broker.destinations.queues["Consumer.A.VirtualTopic.o"])
    broker.send("/topic/VirtualTopic.o", {}, b"2")
    assert "Consumer.A.VirtualTopic.o" not in broker.destinations.queues


def test_configured_prefixes() -> None:
    """Other prefixes, e.g. VT. and Shared.*.*.: only queues under them are consumer queues."""
    broker = Broker(clock=Clock(), virtual_topics=VirtualTopics("VT.", "Shared.*.*."))
    mine = _consume(broker, "/queue/Shared.app.a.VT.news", "m")
    default = _consume(broker, "/queue/Consumer.A.VirtualTopic.news", "d")
    broker.send("/topic/VT.news", {}, b"x")
    broker.send("/topic/VirtualTopic.news", {}, b"y")
    assert mine.bodies() == [b"x"] and default.bodies() == []


def test_topic_of_reads_the_consumer_queue_name() -> None:
    """Which names are consumer queues: whole parts, * one non-empty part, a topic after."""
    virtual = VirtualTopics()
    assert virtual.topic_of("Consumer.A.VirtualTopic.orders") == "VirtualTopic.orders"
    assert virtual.topic_of("Consumer.A.VirtualTopic.eu.orders") == "VirtualTopic.eu.orders"
    assert virtual.topic_of("Consumer.A.VirtualTopic") is None
    assert virtual.topic_of("Consumer.VirtualTopic.orders") is None
    assert virtual.topic_of("Consumers.A.VirtualTopic.orders") is None
    assert virtual.topic_of("orders") is None


@pytest.mark.parametrize(
    ("topic", "consumer", "message"),
    [
        ("VirtualTopic", "Consumer.*.", "topic prefix 'VirtualTopic': expected name parts"),
        ("Virtual*.", "Consumer.*.", "topic prefix 'Virtual*.': expected no wildcards"),
        ("VirtualTopic.", "Consumer.>.", "consumer prefix 'Consumer.>.': expected '*' only"),
        ("VirtualTopic.", "Consumer..", "consumer prefix 'Consumer..': expected no empty"),
    ],
)
def test_a_bad_prefix_is_refused(topic: str, consumer: str, message: str) -> None:
    """A prefix that is not whole name parts ending with a dot is a ValueError saying so."""
    with pytest.raises(ValueError, match="virtual topics: " + message.replace("*", r"\*")):
        VirtualTopics(topic, consumer)


def test_a_full_reject_consumer_queue_refuses_the_publish() -> None:
    """A consumer queue with on_full: reject that is full refuses before any copy is made."""
    name = "/queue/Consumer.A.VirtualTopic.o"
    broker = Broker(
        clock=Clock(),
        policies=PolicyMap({name: DestinationPolicy(max_messages=1, on_full="reject")}),
    )
    broker.subscribe(RecordingConsumer(), "s", name, "client", 1)
    broker.send("/topic/VirtualTopic.o", {}, b"1")
    broker.send("/topic/VirtualTopic.o", {}, b"2")
    topic = _consume(broker, "/topic/VirtualTopic.o", "t")
    with pytest.raises(DestinationError):
        broker.send("/topic/VirtualTopic.o", {}, b"3")
    assert topic.bodies() == []


def test_a_consumer_queue_keeps_receiving_after_a_restart(tmp_path: Path) -> None:
    """SQLite: persistent messages in a consumer queue survive a restart, and the recovered
    queue is again a consumer queue: later publishes land in it."""
    node = Node(lambda clock: SqliteStore(str(tmp_path / FILENAME), clock, run_now))
    sub = node.broker.subscribe(RecordingConsumer(), "s", "/queue/Consumer.A.VirtualTopic.o")
    node.broker.unsubscribe(sub)
    node.wait(node.broker.send("/topic/VirtualTopic.o", {}, b"before", persistent=True).written)
    node.restart()
    assert "Consumer.A.VirtualTopic.o" in node.broker.destinations.consumer_queues
    node.wait(node.broker.send("/topic/VirtualTopic.o", {}, b"after", persistent=True).written)
    consumer, _ = node.subscribe("/queue/Consumer.A.VirtualTopic.o")
    assert consumer.bodies() == [b"before", b"after"]


def test_the_configuration_reaches_the_core() -> None:
    """broker.virtual_topics becomes the core's VirtualTopics; false becomes None (off)."""
    from stompbroker.config import parse
    from stompbroker.service import virtual_topics

    text = "broker:\n  virtual_topics: {topic_prefix: VT.}\n"
    made = virtual_topics(parse(text))
    assert made is not None and made.topic_of("Consumer.A.VT.x") == "VT.x"
    assert virtual_topics(parse("broker:\n  virtual_topics: false\n")) is None


def test_without_virtual_topics_a_consumer_queue_name_is_a_plain_queue() -> None:
    """virtual_topics=None: /queue/Consumer.A.VirtualTopic.o gets nothing from the topic."""
    broker = Broker(clock=Clock(), virtual_topics=None)
    queue = _consume(broker, "/queue/Consumer.A.VirtualTopic.o")
    broker.send("/topic/VirtualTopic.o", {}, b"x")
    assert queue.bodies() == []


def test_a_declared_consumer_queue_collects_from_the_start() -> None:
    """A destinations entry naming a consumer queue makes it at start: it collects at once."""
    from stompbroker.config import parse
    from stompbroker.service import declare_durables

    config = parse("destinations:\n  - name: /queue/Consumer.A.VirtualTopic.o\n")
    broker = Broker(clock=Clock())
    declare_durables(broker, config)
    broker.send("/topic/VirtualTopic.o", {}, b"early")
    assert broker.queue_depth("Consumer.A.VirtualTopic.o") == 1


def test_a_full_reject_consumer_queue_refuses_a_composite_send_first() -> None:
    """A composite send with a virtual topic member whose consumer queue is full (reject)
    is refused before the queue member gets its copy."""
    name = "/queue/Consumer.A.VirtualTopic.o"
    broker = Broker(
        clock=Clock(),
        policies=PolicyMap({name: DestinationPolicy(max_messages=1, on_full="reject")}),
    )
    broker.destinations.queue("Consumer.A.VirtualTopic.o")
    broker.send("/topic/VirtualTopic.o", {}, b"first")
    with pytest.raises(DestinationError):
        broker.send("/queue/a,/topic/VirtualTopic.o", {}, b"x")
    assert broker.queue_depth("a") == 0


def test_a_wildcard_consumer_queue_gets_every_matching_virtual_topic() -> None:
    """/queue/Consumer.A.VirtualTopic.orders.> is one queue fed by every virtual topic its
    pattern matches (ActiveMQ's wildcard consumer of virtual topics); '*' is one part."""
    broker = Broker(clock=Clock())
    every = _consume(broker, "/queue/Consumer.A.VirtualTopic.orders.>", "every")
    one_part = _consume(broker, "/queue/Consumer.B.VirtualTopic.orders.*", "one")
    broker.send("/topic/VirtualTopic.orders.eu", {}, b"eu")
    broker.send("/topic/VirtualTopic.orders.eu.new", {}, b"eu new")
    broker.send("/topic/VirtualTopic.orders", {}, b"bare")
    broker.send("/topic/VirtualTopic.prices.eu", {}, b"other")
    assert every.bodies() == [b"eu", b"eu new"]
    assert one_part.bodies() == [b"eu"]
    assert [m.destination for _, m in every.deliveries] == [
        "/topic/VirtualTopic.orders.eu",
        "/topic/VirtualTopic.orders.eu.new",
    ]


def test_a_wildcard_consumer_queue_collects_while_away_and_is_shared() -> None:
    """Like any consumer queue it is kept when unused, and its consumers compete."""
    broker = Broker(clock=Clock())
    sub = broker.subscribe(RecordingConsumer(), "s", "/queue/Consumer.A.VirtualTopic.>")
    broker.unsubscribe(sub)
    broker.send("/topic/VirtualTopic.a", {}, b"1")
    broker.send("/topic/VirtualTopic.b", {}, b"2")
    assert broker.queue_depth("Consumer.A.VirtualTopic.>") == 2
    first, second = RecordingConsumer(), RecordingConsumer()
    broker.subscribe(first, "1", "/queue/Consumer.A.VirtualTopic.>", "client", 1)
    broker.subscribe(second, "2", "/queue/Consumer.A.VirtualTopic.>", "client", 1)
    assert sorted(first.bodies() + second.bodies()) == [b"1", b"2"]
    assert first.bodies() and second.bodies()


@pytest.mark.parametrize(
    "destination",
    [
        "/queue/orders.>",
        "/queue/Consumer.*.VirtualTopic.orders",
        "/queue/Consumer.A.VirtualTopic.>.x",
    ],
)
def test_wildcards_on_queues_only_in_a_consumer_queues_topic_part(destination: str) -> None:
    """A wildcard in another queue, in the consumer name, or a misplaced '>': refused."""
    broker = Broker(clock=Clock())
    with pytest.raises(DestinationError) as raised:
        broker.subscribe(RecordingConsumer(), "s", destination)
    assert str(raised.value) == f"wildcards are supported on topics only, not in {destination!r}"


def test_no_send_to_a_wildcard_consumer_queue() -> None:
    broker = Broker(clock=Clock())
    _consume(broker, "/queue/Consumer.A.VirtualTopic.>")
    with pytest.raises(DestinationError) as raised:
        broker.send("/queue/Consumer.A.VirtualTopic.>", {}, b"x")
    assert str(raised.value) == (
        "cannot send to the wildcard destination '/queue/Consumer.A.VirtualTopic.>'"
    )


def test_a_wildcard_consumer_queue_keeps_receiving_after_a_restart(tmp_path: Path) -> None:
    """SQLite: the recovered wildcard consumer queue is again fed by its pattern."""
    node = Node(lambda clock: SqliteStore(str(tmp_path / FILENAME), clock, run_now))
    sub = node.broker.subscribe(RecordingConsumer(), "s", "/queue/Consumer.A.VirtualTopic.>")
    node.broker.unsubscribe(sub)
    node.wait(node.broker.send("/topic/VirtualTopic.a", {}, b"before", persistent=True).written)
    node.restart()
    node.wait(node.broker.send("/topic/VirtualTopic.b", {}, b"after", persistent=True).written)
    consumer, _ = node.subscribe("/queue/Consumer.A.VirtualTopic.>")
    assert consumer.bodies() == [b"before", b"after"]

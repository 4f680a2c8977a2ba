"""Shared subscriptions seen by stomp.py on a real socket: ActiveMQ's virtual topics (a SEND
to ``/topic/VirtualTopic.X`` lands in each ``/queue/Consumer.*.VirtualTopic.X``) and
RabbitMQ's ``x-queue-name`` (subscribers of one name compete)."""

from __future__ import annotations

import contextlib

import pytest

from stompbroker.config import parse

from .conftest import Client, RunningBroker, Starter


def _client(broker: RunningBroker) -> Client:
    client = Client(broker.port, "1.2")
    client.connect()
    return client


def _shared_out(one: Client, two: Client, count: int) -> list[str]:
    """The bodies ``one`` and ``two`` received together, once there are ``count`` (bounded:
    each client's wait wakes only for its own frames, so both are polled in short waits)."""

    def done() -> bool:
        return len(one.frames.messages) + len(two.frames.messages) >= count

    for _ in range(100):
        if done():
            break
        for client in (one, two):
            with contextlib.suppress(AssertionError):
                client.frames.wait(done, f"{count} in all", timeout=0.025)
    assert done(), (one.frames.messages, two.frames.messages)
    return sorted(m.body for m in [*one.frames.messages, *two.frames.messages])


def test_each_consumer_queue_gets_every_message(broker: RunningBroker) -> None:
    """Two consumer queues each get both messages; the two consumers of one queue compete."""
    a1, a2, b, producer = (_client(broker) for _ in range(4))
    a1.subscribe("/queue/Consumer.A.VirtualTopic.orders")
    a2.subscribe("/queue/Consumer.A.VirtualTopic.orders")
    b.subscribe("/queue/Consumer.B.VirtualTopic.orders")
    producer.send("/topic/VirtualTopic.orders", "1", receipt=True)
    producer.send("/topic/VirtualTopic.orders", "2", receipt=True)
    assert [m.body for m in b.wait_messages(2)] == ["1", "2"]
    assert _shared_out(a1, a2, 2) == ["1", "2"]
    assert a1.frames.messages and a2.frames.messages


def test_a_consumer_queue_collects_while_its_consumers_are_away(broker: RunningBroker) -> None:
    """A persistent SEND while nobody consumes is kept in the consumer queue for later."""
    first, producer = _client(broker), _client(broker)
    subscription = first.subscribe("/queue/Consumer.A.VirtualTopic.news")
    first.unsubscribe(subscription)
    producer.send("/topic/VirtualTopic.news", "late", {"persistent": "true"}, receipt=True)
    later = _client(broker)
    later.subscribe("/queue/Consumer.A.VirtualTopic.news")
    (message,) = later.wait_messages(1)
    assert message.body == "late"


def test_a_wildcard_consumer_queue_gets_every_matching_virtual_topic(
    broker: RunningBroker,
) -> None:
    """/queue/Consumer.audit.VirtualTopic.orders.> gets what is sent to each
    /topic/VirtualTopic.orders.X, each MESSAGE saying the topic it was sent to."""
    consumer, producer = _client(broker), _client(broker)
    consumer.subscribe("/queue/Consumer.audit.VirtualTopic.orders.>")
    producer.send("/topic/VirtualTopic.orders.eu", "eu", receipt=True)
    producer.send("/topic/VirtualTopic.prices.eu", "not this", receipt=True)
    producer.send("/topic/VirtualTopic.orders.us", "us", receipt=True)
    got = consumer.wait_messages(2)
    assert [(m.body, m.headers["destination"]) for m in got] == [
        ("eu", "/topic/VirtualTopic.orders.eu"),
        ("us", "/topic/VirtualTopic.orders.us"),
    ]


@pytest.fixture
def renamed(broker_with: Starter) -> RunningBroker:
    """A broker with other virtual topic prefixes."""
    config = "broker:\n  virtual_topics: {topic_prefix: VT., consumer_prefix: Shared.*.}\n"
    return broker_with(parse(config))


def test_configured_prefixes(renamed: RunningBroker) -> None:
    """With VT. and Shared.*., /queue/Shared.app.VT.x gets what is sent to /topic/VT.x."""
    consumer, producer = _client(renamed), _client(renamed)
    consumer.subscribe("/queue/Shared.app.VT.x")
    producer.send("/topic/VT.x", "hi", receipt=True)
    (message,) = consumer.wait_messages(1)
    assert message.body == "hi"


@pytest.mark.parametrize("durable", [False, True], ids=["non-durable", "durable"])
def test_x_queue_name_subscribers_compete(broker: RunningBroker, durable: bool) -> None:
    """RabbitMQ: two stomp.py SUBSCRIBEs to a topic with one x-queue-name share it."""
    extra = {"durable": "true", "auto-delete": "false"} if durable else {}
    one, two, producer = (_client(broker) for _ in range(3))
    for client in (one, two):
        client.subscribe("/topic/prices", headers={"x-queue-name": "prices-workers", **extra})
    for n in range(4):
        producer.send("/topic/prices", str(n), receipt=True)
    assert _shared_out(one, two, 4) == ["0", "1", "2", "3"]
    assert one.frames.messages and two.frames.messages


def test_an_empty_x_queue_name_is_an_error(broker: RunningBroker) -> None:
    """x-queue-name with no value: ERROR "invalid x-queue-name", the connection closes."""
    client = _client(broker)
    client.conn.subscribe("/topic/prices", id="s", headers={"x-queue-name": ""})
    client.error("invalid x-queue-name")

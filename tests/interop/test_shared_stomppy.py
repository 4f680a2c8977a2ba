"""Shared subscriptions seen by stomp.py on a real socket: ActiveMQ's virtual topics (a SEND
to ``/topic/VirtualTopic.X`` lands in each ``/queue/Consumer.*.VirtualTopic.X``)."""

from __future__ import annotations

import pytest

from stompbroker.config import parse

from .conftest import Client, RunningBroker, Starter


def _client(broker: RunningBroker) -> Client:
    client = Client(broker.port, "1.2")
    client.connect()
    return client


def test_each_consumer_queue_gets_every_message(broker: RunningBroker) -> None:
    """Two consumer queues each get both messages; the two consumers of one queue compete."""
    a1, a2, b, producer = (_client(broker) for _ in range(4))
    a1.subscribe("/queue/Consumer.A.VirtualTopic.orders")
    a2.subscribe("/queue/Consumer.A.VirtualTopic.orders")
    b.subscribe("/queue/Consumer.B.VirtualTopic.orders")
    producer.send("/topic/VirtualTopic.orders", "1", receipt=True)
    producer.send("/topic/VirtualTopic.orders", "2", receipt=True)
    assert [m.body for m in b.wait_messages(2)] == ["1", "2"]
    a1.frames.wait(lambda: len(a1.frames.messages) + len(a2.frames.messages) == 2, "2 in all")
    bodies = sorted(m.body for m in [*a1.frames.messages, *a2.frames.messages])
    assert bodies == ["1", "2"] and a1.frames.messages and a2.frames.messages


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

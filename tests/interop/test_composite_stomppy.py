"""Composite destinations and configured forwards, seen by stomp.py on a real socket: a SEND
to ``/queue/a,/topic/b`` (ActiveMQ's comma list) and a queue with ``forward_to``."""

from __future__ import annotations

import pytest

from stompbroker.config import parse

from .conftest import Client, RunningBroker, Starter

FORWARDS = """
destinations:
  - {name: /queue/orders, forward_to: [/queue/orders.audit, /topic/orders.seen]}
"""


@pytest.fixture
def forwarding(broker_with: Starter) -> RunningBroker:
    """A broker whose /queue/orders forwards to an audit queue and a topic."""
    return broker_with(parse(FORWARDS))


def _client(broker: RunningBroker) -> Client:
    client = Client(broker.port, "1.2")
    client.connect()
    return client


def test_a_comma_list_gives_each_destination_a_copy(broker: RunningBroker) -> None:
    """stomp.py SENDs to /queue/a,/topic/b with a receipt: one RECEIPT, a MESSAGE on each."""
    on_queue, on_topic, producer = _client(broker), _client(broker), _client(broker)
    on_queue.subscribe("/queue/a")
    on_topic.subscribe("/topic/b")
    producer.send("/queue/a,/topic/b", "both", headers={"persistent": "true"}, receipt=True)
    (to_queue,) = on_queue.wait_messages(1)
    (to_topic,) = on_topic.wait_messages(1)
    assert (to_queue.body, to_queue.headers["destination"]) == ("both", "/queue/a")
    assert (to_topic.body, to_topic.headers["destination"]) == ("both", "/topic/b")
    assert len(producer.frames.receipts) == 1


def test_a_bad_member_is_an_error_and_nothing_is_delivered(broker: RunningBroker) -> None:
    """A comma list with an empty member gets an ERROR naming it; the queue gets nothing."""
    producer = _client(broker)
    producer.conn.send("/queue/a,", "x")
    producer.error("composite destination '/queue/a,' has an empty member")
    assert broker.call(broker.broker.queue_depth, "a") == 0


def test_forward_to_copies_every_message(forwarding: RunningBroker) -> None:
    """A SEND to /queue/orders also reaches /queue/orders.audit and /topic/orders.seen."""
    watcher, producer = _client(forwarding), _client(forwarding)
    watcher.subscribe("/topic/orders.seen")
    producer.send("/queue/orders", "order 1", receipt=True)
    (seen,) = watcher.wait_messages(1)
    assert (seen.body, seen.headers["destination"]) == ("order 1", "/topic/orders.seen")
    auditor = _client(forwarding)
    auditor.subscribe("/queue/orders.audit")
    (audited,) = auditor.wait_messages(1)
    assert audited.body == "order 1"
    assert forwarding.call(forwarding.broker.queue_depth, "orders") == 1

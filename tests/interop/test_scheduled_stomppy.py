"""Scheduled delivery against real stomp.py clients, and across a SIGKILL of a real broker.

Every spelling users' clients send: ActiveMQ's AMQ_SCHEDULED_DELAY (with PERIOD and REPEAT),
Artemis' AMQ_SCHEDULED_TIME, RabbitMQ's x-delay. A held message is shown held by a marker
sent after it without a delay that arrives first; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from .conftest import Client, RunningBroker
from .test_durability import BrokerProcess, process  # noqa: F401 (the fixture)

#: Delays short enough for a quick suite, long enough that a marker sent after overtakes.
DELAY_MS = 400


def _epoch_ms() -> int:
    return int(time.time() * 1000)


def _pair(broker: RunningBroker, destination: str, version: str = "1.2") -> tuple[Client, Client]:
    """A consumer subscribed to ``destination`` (auto ack), and a producer, both connected."""
    consumer = Client(broker.port, version)
    consumer.connect()
    consumer.subscribe(destination, ack="auto")
    producer = Client(broker.port, version)
    producer.connect()
    return consumer, producer


@pytest.mark.parametrize(
    "header",
    ["AMQ_SCHEDULED_DELAY", "x-delay", "AMQ_SCHEDULED_TIME"],
)
def test_each_spelling_holds_the_message_past_a_later_one(
    broker: RunningBroker, header: str
) -> None:
    """A delayed SEND is receipted at once and delivered after a marker sent after it."""
    value = str(_epoch_ms() + DELAY_MS) if header == "AMQ_SCHEDULED_TIME" else str(DELAY_MS)
    consumer, producer = _pair(broker, "/queue/later")
    producer.send("/queue/later", "delayed", headers={header: value}, receipt=True)
    producer.send("/queue/later", "marker", receipt=True)
    messages = consumer.frames.wait_messages(2)
    assert [m.body for m in messages] == ["marker", "delayed"]
    assert messages[1].headers[header] == value
    for client in (producer, consumer):
        client.disconnect()


def test_period_and_repeat_deliver_repeat_plus_one_copies(broker: RunningBroker) -> None:
    """AMQ_SCHEDULED_REPEAT 2 every 100 ms: three deliveries, each with its own message-id."""
    consumer, producer = _pair(broker, "/queue/ticks", "1.1")
    headers = {"AMQ_SCHEDULED_PERIOD": "100", "AMQ_SCHEDULED_REPEAT": "2"}
    producer.send("/queue/ticks", "tick", headers=headers, receipt=True)
    messages = consumer.frames.wait_messages(3)
    assert [m.body for m in messages] == ["tick"] * 3
    assert len({m.headers["message-id"] for m in messages}) == 3
    for client in (producer, consumer):
        client.disconnect()


def test_a_scheduled_topic_message_reaches_the_subscriber(broker: RunningBroker) -> None:
    """On a topic, the subscriber present when the message is due gets it, after a marker."""
    consumer, producer = _pair(broker, "/topic/news")
    producer.send("/topic/news", "delayed", headers={"x-delay": str(DELAY_MS)}, receipt=True)
    producer.send("/topic/news", "marker", receipt=True)
    assert [m.body for m in consumer.frames.wait_messages(2)] == ["marker", "delayed"]
    for client in (producer, consumer):
        client.disconnect()


def test_a_negative_delay_is_an_error_naming_the_header(broker: RunningBroker) -> None:
    """AMQ_SCHEDULED_DELAY:-1 gets an ERROR naming the header, and the connection closes."""
    producer = Client(broker.port, "1.2")
    producer.connect()
    producer.conn.send("/queue/later", "x", headers={"AMQ_SCHEDULED_DELAY": "-1"})
    producer.error(
        "invalid AMQ_SCHEDULED_DELAY '-1': expected a non-negative integer (ms) of at most"
        " 15 digits"
    )


def test_scheduled_messages_survive_sigkill(process: BrokerProcess) -> None:  # noqa: F811
    """Receipted scheduled messages come back after SIGKILL: one still held until its time,
    one that fell due while the broker was down delivered at start."""
    process.start()
    producer = Client(process.port, "1.2")
    producer.connect()
    soon_ms, later_ms = 300, 4000
    producer.send(
        "/queue/held",
        "overdue",
        headers={"persistent": "true", "AMQ_SCHEDULED_DELAY": str(soon_ms)},
        receipt=True,
    )
    sent_at = _epoch_ms()  # before the broker reads the SEND: its due time is later
    producer.send(
        "/queue/held",
        "later",
        headers={"persistent": "true", "AMQ_SCHEDULED_DELAY": str(later_ms)},
        receipt=True,
    )
    process.kill()
    with contextlib.suppress(Exception):
        producer.drop()
    process.start()
    consumer = Client(process.port, "1.2")
    consumer.connect()
    consumer.subscribe("/queue/held", ack="auto")
    (first,) = consumer.frames.wait_messages(1)
    assert first.body == "overdue"
    messages = consumer.frames.wait_messages(2)
    arrived_at = _epoch_ms()
    assert [m.body for m in messages] == ["overdue", "later"]
    assert arrived_at >= sent_at + later_ms - 1, "delivered before it was due"
    consumer.disconnect()

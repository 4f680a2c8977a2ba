"""Queue size limits (max_messages, max_bytes) and what a full queue does (on_full)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from stompbroker.core import (
    Broker,
    DestinationError,
    DestinationFull,
    DestinationPolicy,
    PolicyMap,
)
from stompbroker.testing import Client, RecordingConsumer

#: The ERROR message for a SEND to the full reject queue /queue/q.a of max_messages 1.
FULL = (
    "destination /queue/q.a is full (max_messages 1, max_bytes unlimited); "
    "the message was not accepted"
)


def _broker(clock: Clock | None = None, **policy: object) -> Broker:
    entries = {"/queue/q.>": DestinationPolicy(**policy)}  # type: ignore[arg-type]
    return Broker(clock=clock or Clock(), policies=PolicyMap(entries))


def _fill(broker: Broker, count: int, destination: str = "/queue/q.a") -> None:
    for i in range(count):
        broker.send(destination, {}, b"%d" % i)


def test_reject_refuses_a_send_to_a_full_queue_naming_it() -> None:
    """on_full: reject raises DestinationFull naming the queue; what it held stays."""
    broker = _broker(max_messages=2, on_full="reject")
    _fill(broker, 2)
    with pytest.raises(DestinationFull, match=r"/queue/q\.a is full"):
        broker.send("/queue/q.a", {}, b"late")
    assert broker.queue_depth("q.a") == 2
    broker.send("/queue/other", {}, b"unlimited")


def test_reject_reaches_the_client_as_an_error_not_a_receipt() -> None:
    """A SEND with a receipt to a full reject queue gets an ERROR naming it, no RECEIPT."""
    broker = _broker(max_messages=1, on_full="reject")
    client = Client(broker)
    client.connect()
    client.publish("/queue/q.a", b"1", receipt="r1")
    client.publish("/queue/q.a", b"2", receipt="r2")
    receipt, error = client.frames()
    assert receipt.headers["receipt-id"] == "r1"
    assert (error.command, error.headers["message"]) == ("ERROR", FULL)
    assert error.headers.get("receipt-id") == "r2"
    assert client.closing


def test_max_bytes_counts_bodies() -> None:
    """max_bytes refuses the SEND whose body would pass the limit."""
    broker = _broker(max_bytes=10, on_full="reject")
    broker.send("/queue/q.a", {}, b"12345")
    broker.send("/queue/q.a", {}, b"12345")
    with pytest.raises(DestinationFull):
        broker.send("/queue/q.a", {}, b"1")


def test_drop_oldest_dead_letters_the_oldest_waiting_message() -> None:
    """on_full: drop-oldest makes room by dead-lettering the oldest message (any priority)."""
    broker = _broker(max_messages=2, on_full="drop-oldest")
    broker.send("/queue/q.a", {}, b"old")
    broker.send("/queue/q.a", {"priority": "9"}, b"urgent")
    broker.send("/queue/q.a", {}, b"new")
    consumer = RecordingConsumer()
    broker.subscribe(consumer, "s", "/queue/q.a")
    assert consumer.bodies() == [b"urgent", b"new"]
    dead = RecordingConsumer()
    broker.subscribe(dead, "d", "/queue/DLQ")
    (message,) = dead.take()
    assert message.body == b"old" and message.headers["dead-letter-reason"] == "queue-full"


def test_drop_oldest_without_a_dlq_drops_and_counts() -> None:
    """With dead_letter_queue: null, dropped messages are only counted."""
    broker = _broker(max_messages=1, on_full="drop-oldest", dead_letter_queue=None)
    _fill(broker, 3)
    assert broker.queue_depth("q.a") == 1
    assert broker.counters["dropped"] == 2


def test_block_accepts_then_holds_the_producer_until_there_is_room() -> None:
    """on_full: block lets the SEND in, stops reading the producer, and reads again once
    a consumer makes room."""
    clock = Clock()
    broker = _broker(clock, max_messages=2, on_full="block")
    producer = Client(broker, clock, "p")
    producer.connect()
    producer.publish("/queue/q.a", b"1")
    assert producer.transport.producerState == "producing"
    producer.publish("/queue/q.a", b"2")
    assert producer.transport.producerState == "paused"
    assert broker.queue_depth("q.a") == 2
    consumer = Client(broker, clock, "c")
    consumer.connect()
    consumer.subscribe("/queue/q.a", ack="client-individual", prefetch_count="1")
    assert producer.transport.producerState == "producing"


def test_full_durable_subscription_refuses_before_anyone_gets_a_copy() -> None:
    """A publish that a full reject durable subscription refuses reaches no subscriber."""
    broker = Broker(
        clock=Clock(),
        policies=PolicyMap({"/topic/news": DestinationPolicy(max_messages=1, on_full="reject")}),
    )
    broker.declare_durable("c", "keep", "news", None)
    live = RecordingConsumer()
    broker.subscribe(live, "s", "/topic/news")
    broker.send("/topic/news", {}, b"1")
    with pytest.raises(DestinationFull):
        broker.send("/topic/news", {}, b"2")
    assert live.bodies() == [b"1"]


def test_commit_into_a_full_reject_queue_fails_as_a_whole() -> None:
    """A COMMIT whose SEND goes to a full reject queue is refused before anything applies."""
    broker = _broker(max_messages=1, on_full="reject")
    client = Client(broker)
    client.connect()
    client.send("BEGIN", {"transaction": "t"})
    client.publish("/queue/other", b"x", transaction="t")
    client.publish("/queue/q.a", b"y", transaction="t")
    broker.send("/queue/q.a", {}, b"fills it")
    client.send("COMMIT", {"transaction": "t", "receipt": "c"})
    client.error(FULL)
    assert broker.queue_depth("other") == 0


# -- auto_create --------------------------------------------------------------------------


def test_without_auto_create_only_declared_destinations_may_be_used() -> None:
    """auto_create false: SEND or SUBSCRIBE to an undeclared destination is an ERROR;
    declared names, patterns and dead-letter queues work."""
    policies = PolicyMap(
        {"/queue/orders.>": DestinationPolicy(), "/topic/news": DestinationPolicy()}
    )
    broker = Broker(clock=Clock(), policies=policies, auto_create=False)
    broker.send("/queue/orders.eu", {}, b"x")
    broker.send("/topic/news", {}, b"x")
    broker.subscribe(RecordingConsumer(), "d", "/queue/DLQ")
    for destination in ("/queue/other", "/topic/other"):
        with pytest.raises(DestinationError, match="does not exist"):
            broker.send(destination, {}, b"x")
        with pytest.raises(DestinationError, match="does not exist"):
            broker.subscribe(RecordingConsumer(), "s", destination)


# -- slow topic subscribers ---------------------------------------------------------------


def _slow_subscriber(on_slow: str) -> tuple[Broker, RecordingConsumer]:
    policies = PolicyMap({"/topic/t": DestinationPolicy(max_pending=3, on_slow=on_slow)})
    broker = Broker(clock=Clock(), policies=policies)
    consumer = RecordingConsumer()
    subscription = broker.subscribe(consumer, "s", "/topic/t")
    broker.pause(subscription)  # its connection stopped reading
    for i in range(5):
        broker.send("/topic/t", {}, b"%d" % i)
    return broker, consumer


def test_slow_topic_subscriber_is_disconnected_beyond_max_pending() -> None:
    """on_slow: disconnect: the subscriber is abandoned with a reason naming the topic."""
    _, consumer = _slow_subscriber("disconnect")
    assert consumer.abandoned and "slow consumer" in consumer.abandoned[0]
    assert "/topic/t" in consumer.abandoned[0]


def test_slow_topic_subscriber_loses_its_oldest_messages_with_drop() -> None:
    """on_slow: drop: at most max_pending wait; the oldest go, counted."""
    broker, consumer = _slow_subscriber("drop")
    (subscription,) = broker.destinations.topics["t"].subscriptions
    broker.resume(subscription)
    assert consumer.bodies() == [b"2", b"3", b"4"]
    assert broker.counters["dropped"] == 2 and not consumer.abandoned


def test_slow_consumer_gets_an_error_frame_and_is_closed() -> None:
    """Through a session: the slow subscriber's connection gets ERROR "slow consumer"."""
    policies = PolicyMap({"/topic/t": DestinationPolicy(max_pending=2)})
    broker = Broker(clock=Clock(), policies=policies)
    slow = Client(broker, session_id="slow")
    slow.connect()
    slow.subscribe("/topic/t")
    slow.session.pause_delivery()
    for i in range(3):
        broker.send("/topic/t", {}, b"%d" % i)
    slow.error("slow consumer")

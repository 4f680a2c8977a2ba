"""The JMS model without sessions: dispatch, acknowledgement, flow control, cleanup."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from stompbroker.core import Broker, DestinationError, Subscription, parse_destination
from stompbroker.testing import RecordingConsumer
from tests.helpers import broker_is_empty


def _send(broker: Broker, destination: str, *bodies: bytes, **headers: str) -> None:
    for body in bodies:
        broker.send(destination, dict(headers), body)


def _subscribe(
    broker: Broker, destination: str, ack: str = "auto", prefetch: int = 1000, sub_id: str = "s"
) -> tuple[RecordingConsumer, Subscription]:
    consumer = RecordingConsumer()
    return consumer, broker.subscribe(consumer, sub_id, destination, ack, prefetch)


# -- queues ----------------------------------------------------------------------


def test_queue_round_robin_among_subscribers() -> None:
    """A queue hands consecutive messages to its subscribers in turn."""
    broker = Broker(clock=Clock())
    consumers = [_subscribe(broker, "/queue/q", sub_id=str(i))[0] for i in range(3)]
    _send(broker, "/queue/q", *[b"%d" % i for i in range(7)])
    assert consumers[0].bodies() == [b"0", b"3", b"6"]
    assert consumers[1].bodies() == [b"1", b"4"]
    assert consumers[2].bodies() == [b"2", b"5"]


def test_queue_message_goes_to_exactly_one_subscriber() -> None:
    """Each queue message is delivered once, to one subscriber only."""
    broker = Broker(clock=Clock())
    consumers = [_subscribe(broker, "/queue/q", sub_id=str(i))[0] for i in range(2)]
    _send(broker, "/queue/q", *[b"%d" % i for i in range(10)])
    received = sorted(consumers[0].bodies() + consumers[1].bodies(), key=int)
    assert received == [b"%d" % i for i in range(10)]


def test_queue_is_fifo() -> None:
    """One subscriber receives queue messages in the order they were sent."""
    broker = Broker(clock=Clock())
    consumer, _ = _subscribe(broker, "/queue/q")
    _send(broker, "/queue/q", b"a", b"b", b"c")
    assert consumer.bodies() == [b"a", b"b", b"c"]


def test_queue_messages_wait_for_a_consumer() -> None:
    """Messages sent to a queue with no subscriber are kept and delivered, in order, later."""
    broker = Broker(clock=Clock())
    _send(broker, "/queue/q", b"1", b"2")
    assert broker.queue_depth("q") == 2
    consumer, _ = _subscribe(broker, "/queue/q")
    assert consumer.bodies() == [b"1", b"2"]
    assert broker.queue_depth("q") == 0


def test_message_carries_producer_headers_but_not_broker_owned_ones() -> None:
    """The broker keeps the producer's headers and drops those it owns (a producer cannot
    forge a message id, a subscription, a redelivery), without changing what it was given."""
    broker = Broker(clock=Clock())
    consumer, _ = _subscribe(broker, "/queue/q")
    given = {
        "color": "red",
        "message-id": "forged",
        "subscription": "s",
        "redelivered": "true",
        "delivery-count": "9",
        "content-length": "99",
    }
    broker.send("/queue/q", given, b"x")
    (message,) = consumer.take()
    assert message.headers == {"color": "red"}
    assert message.message_id != "forged"
    assert len(given) == 6
    assert message.destination == "/queue/q"
    assert message.delivery_count == 1
    assert not message.redelivered


def test_message_ids_are_unique() -> None:
    """Every message the broker accepts gets its own id."""
    broker = Broker(clock=Clock())
    consumer, _ = _subscribe(broker, "/queue/q")
    _send(broker, "/queue/q", *[b"x"] * 5)
    ids = [m.message_id for m in consumer.take()]
    assert len(set(ids)) == 5


# -- topics ----------------------------------------------------------------------


def test_topic_every_subscriber_gets_a_copy() -> None:
    """Every current topic subscriber receives every message published."""
    broker = Broker(clock=Clock())
    consumers = [_subscribe(broker, "/topic/t", sub_id=str(i))[0] for i in range(3)]
    _send(broker, "/topic/t", b"1", b"2")
    for consumer in consumers:
        assert consumer.bodies() == [b"1", b"2"]


def test_topic_late_subscriber_gets_nothing_earlier() -> None:
    """A topic subscriber receives only what is published after it subscribed."""
    broker = Broker(clock=Clock())
    early, _ = _subscribe(broker, "/topic/t", sub_id="early")
    _send(broker, "/topic/t", b"before")
    late, _ = _subscribe(broker, "/topic/t", sub_id="late")
    _send(broker, "/topic/t", b"after")
    assert early.bodies() == [b"before", b"after"]
    assert late.bodies() == [b"after"]


def test_topic_without_subscribers_keeps_nothing() -> None:
    """Publishing to a topic nobody listens to leaves no destination behind."""
    broker = Broker(clock=Clock())
    _send(broker, "/topic/t", b"lost")
    assert broker_is_empty(broker)
    consumer, _ = _subscribe(broker, "/topic/t")
    assert consumer.bodies() == []


# -- prefetch and acknowledgement -----------------------------------------------


@pytest.mark.parametrize("ack", ["client", "client-individual"])
def test_prefetch_bounds_unacked(ack: str) -> None:
    """A client-ack queue subscription never holds more than ``prefetch`` unacked messages."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q", ack, prefetch=2)
    _send(broker, "/queue/q", b"1", b"2", b"3", b"4")
    assert consumer.bodies() == [b"1", b"2"]
    assert broker.queue_depth("q") == 2
    first = consumer.deliveries[0][1]
    assert broker.ack(sub, first.message_id)
    assert consumer.bodies() == [b"1", b"2", b"3"]
    assert len(sub.unacked) == 2


def test_prefetch_bounds_unacked_on_a_topic() -> None:
    """A client-ack topic subscription keeps extra copies pending until it acks."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/topic/t", "client-individual", prefetch=1)
    _send(broker, "/topic/t", b"1", b"2", b"3")
    assert consumer.bodies() == [b"1"]
    broker.ack(sub, consumer.deliveries[0][1].message_id)
    assert consumer.bodies() == [b"1", b"2"]


def test_prefetch_full_subscriber_skipped_in_round_robin() -> None:
    """A subscriber at its prefetch limit is passed over; another ready one gets the message."""
    broker = Broker(clock=Clock())
    full, _ = _subscribe(broker, "/queue/q", "client", prefetch=1, sub_id="full")
    other, _ = _subscribe(broker, "/queue/q", sub_id="other")
    _send(broker, "/queue/q", b"1", b"2", b"3")
    assert full.bodies() == [b"1"]
    assert other.bodies() == [b"2", b"3"]


def test_client_ack_is_cumulative() -> None:
    """In ``client`` mode an ACK settles that message and every one delivered before it."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q", "client")
    _send(broker, "/queue/q", b"1", b"2", b"3")
    messages = consumer.take()
    assert broker.ack(sub, messages[1].message_id)
    assert list(sub.unacked) == [messages[2].message_id]


def test_client_individual_ack_settles_one() -> None:
    """In ``client-individual`` mode an ACK settles that message alone."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q", "client-individual")
    _send(broker, "/queue/q", b"1", b"2", b"3")
    messages = consumer.take()
    assert broker.ack(sub, messages[1].message_id)
    assert list(sub.unacked) == [messages[0].message_id, messages[2].message_id]


def test_ack_of_unknown_or_settled_message_is_refused() -> None:
    """ACK/NACK of a message not awaiting acknowledgement returns False and changes nothing."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q", "client-individual")
    _send(broker, "/queue/q", b"1")
    (message,) = consumer.take()
    assert not broker.ack(sub, "no-such-id")
    assert broker.ack(sub, message.message_id)
    assert not broker.ack(sub, message.message_id)
    assert not broker.nack(sub, message.message_id)
    assert consumer.take() == []


def test_auto_ack_subscription_keeps_nothing_unacked() -> None:
    """An ``auto`` subscription considers a message done once delivered."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q")
    _send(broker, "/queue/q", b"1")
    (message,) = consumer.take()
    assert sub.unacked == {}
    assert not broker.ack(sub, message.message_id)


def test_unknown_ack_mode_is_rejected() -> None:
    """A subscription with an ack mode outside auto/client/client-individual is refused."""
    broker = Broker(clock=Clock())
    with pytest.raises(ValueError):
        broker.subscribe(RecordingConsumer(), "s", "/queue/q", "sometimes")


# -- NACK and redelivery ---------------------------------------------------------


def test_nack_redelivers_in_original_order() -> None:
    """A cumulative NACK gives messages back; they come again in order, marked redelivered."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q", "client")
    _send(broker, "/queue/q", b"1", b"2", b"3")
    messages = consumer.take()
    assert broker.nack(sub, messages[1].message_id)
    again = consumer.take()
    assert [m.body for m in again] == [b"1", b"2"]
    assert [m.delivery_count for m in again] == [2, 2]
    assert all(m.redelivered for m in again)


def test_nack_redelivered_before_newer_messages() -> None:
    """A NACKed message returns to its place, ahead of messages sent after it."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q", "client-individual", prefetch=1)
    _send(broker, "/queue/q", b"1", b"2", b"3")
    (first,) = consumer.take()
    broker.nack(sub, first.message_id)
    (again,) = consumer.take()
    assert again.body == b"1"
    assert again.delivery_count == 2
    broker.ack(sub, again.message_id)
    assert [m.body for m in consumer.take()] == [b"2"]


def test_nack_on_topic_redelivers_a_copy() -> None:
    """A topic NACK redelivers that subscriber's copy only, with a higher delivery count."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/topic/t", "client-individual", sub_id="a")
    other, _ = _subscribe(broker, "/topic/t", sub_id="b")
    _send(broker, "/topic/t", b"1")
    (message,) = consumer.take()
    assert broker.nack(sub, message.message_id)
    (again,) = consumer.take()
    assert again.body == b"1"
    assert again.delivery_count == 2
    assert [m.delivery_count for m in other.take()] == [1]


def test_nack_redelivery_may_go_to_another_subscriber() -> None:
    """A NACKed queue message can be redelivered to a different subscriber."""
    broker = Broker(clock=Clock())
    first, sub = _subscribe(broker, "/queue/q", "client-individual", sub_id="a")
    _send(broker, "/queue/q", b"1")
    (message,) = first.take()
    broker.pause(sub)
    second, _ = _subscribe(broker, "/queue/q", sub_id="b")
    broker.nack(sub, message.message_id)
    (again,) = second.take()
    assert again.body == b"1"
    assert again.redelivered


# -- unsubscribe -----------------------------------------------------------------


def test_unsubscribe_returns_unacked_in_order() -> None:
    """Detaching a client-ack subscription puts its unacked messages back in order."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q", "client-individual", prefetch=2)
    _send(broker, "/queue/q", b"1", b"2", b"3", b"4")
    consumer.take()
    broker.unsubscribe(sub)
    assert broker.queue_depth("q") == 4
    later, _ = _subscribe(broker, "/queue/q")
    received = later.take()
    assert [m.body for m in received] == [b"1", b"2", b"3", b"4"]
    assert [m.redelivered for m in received] == [True, True, False, False]


def test_unsubscribe_hands_unacked_to_remaining_subscriber() -> None:
    """Messages a departing subscriber held go to the subscribers that remain."""
    broker = Broker(clock=Clock())
    leaving, sub = _subscribe(broker, "/queue/q", "client", sub_id="a")
    _send(broker, "/queue/q", b"1", b"2")
    assert leaving.bodies() == [b"1", b"2"]
    staying, _ = _subscribe(broker, "/queue/q", sub_id="b")
    broker.unsubscribe(sub)
    assert staying.bodies() == [b"1", b"2"]


def test_unsubscribed_consumer_gets_nothing_more() -> None:
    """After unsubscribe, a consumer receives nothing from the destination."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/queue/q")
    broker.unsubscribe(sub)
    broker.unsubscribe(sub)  # twice is harmless
    _send(broker, "/queue/q", b"1")
    assert consumer.take() == []
    assert broker.queue_depth("q") == 1


# -- pause / resume --------------------------------------------------------------


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
def test_paused_subscription_receives_nothing_until_resumed(destination: str) -> None:
    """A paused subscription gets nothing; on resume it gets what waited, in order."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, destination)
    broker.pause(sub)
    _send(broker, destination, b"1", b"2")
    assert consumer.take() == []
    broker.resume(sub)
    assert [m.body for m in consumer.take()] == [b"1", b"2"]


def test_paused_queue_subscriber_is_skipped() -> None:
    """While one queue subscriber is paused, the others receive everything."""
    broker = Broker(clock=Clock())
    paused, sub = _subscribe(broker, "/queue/q", sub_id="a")
    other, _ = _subscribe(broker, "/queue/q", sub_id="b")
    broker.pause(sub)
    _send(broker, "/queue/q", b"1", b"2")
    assert paused.take() == []
    assert other.bodies() == [b"1", b"2"]


def test_topic_order_kept_across_pause() -> None:
    """Topic messages published while paused come before later ones after resume."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, "/topic/t")
    broker.pause(sub)
    _send(broker, "/topic/t", b"1")
    broker.resume(sub)
    _send(broker, "/topic/t", b"2")
    assert consumer.bodies() == [b"1", b"2"]


# -- no state left behind -------------------------------------------------------


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
@pytest.mark.parametrize("ack", ["auto", "client", "client-individual"])
def test_unused_destination_is_forgotten(destination: str, ack: str) -> None:
    """A destination with no subscription and no message left is removed from the broker."""
    broker = Broker(clock=Clock())
    consumer, sub = _subscribe(broker, destination, ack)
    _send(broker, destination, b"1")
    for message in consumer.take():
        broker.ack(sub, message.message_id)
    broker.unsubscribe(sub)
    assert broker_is_empty(broker)


def test_queue_with_messages_is_kept() -> None:
    """A queue still holding messages survives its last subscriber."""
    broker = Broker(clock=Clock())
    _, sub = _subscribe(broker, "/queue/q", "client")
    _send(broker, "/queue/q", b"1")
    broker.unsubscribe(sub)
    assert list(broker.destinations.queues) == ["q"]
    drain, sub2 = _subscribe(broker, "/queue/q")
    assert drain.bodies() == [b"1"]
    broker.unsubscribe(sub2)
    assert broker_is_empty(broker)


def test_topic_forgotten_only_after_last_subscriber() -> None:
    """A topic stays while any subscriber remains and is forgotten after the last."""
    broker = Broker(clock=Clock())
    _, a = _subscribe(broker, "/topic/t", sub_id="a")
    _, b = _subscribe(broker, "/topic/t", sub_id="b")
    broker.unsubscribe(a)
    assert list(broker.destinations.topics) == ["t"]
    broker.unsubscribe(b)
    assert broker_is_empty(broker)


# -- destination names -----------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("/queue/a", ("queue", "a")),
        ("/topic/a.b", ("topic", "a.b")),
        ("/queue/x/y", ("queue", "x/y")),
    ],
)
def test_parse_destination(destination: str, expected: tuple[str, str]) -> None:
    """Supported prefixes split into kind and name."""
    assert parse_destination(destination) == expected


@pytest.mark.parametrize("destination", ["/exchange/x", "queue/x", "/queue/", "", "/topicx"])
def test_unsupported_destination_raises(destination: str) -> None:
    """SEND or SUBSCRIBE to an unsupported or nameless destination raises DestinationError."""
    broker = Broker(clock=Clock())
    with pytest.raises(DestinationError):
        broker.send(destination, {}, b"x")
    with pytest.raises(DestinationError):
        broker.subscribe(RecordingConsumer(), "s", destination)
    assert broker_is_empty(broker)


@pytest.mark.parametrize("prefix", ["ID:broker", "a\\b", "x\ny", "x\ry"])
def test_id_prefix_needing_escapes_is_refused(prefix: str) -> None:
    """A message id prefix that would need header escaping is refused up front."""
    with pytest.raises(ValueError):
        Broker(id_prefix=prefix, clock=Clock())


def test_message_ids_need_no_escaping() -> None:
    """Message ids hold no colon, backslash, CR or LF."""
    broker = Broker(clock=Clock())
    consumer, _ = _subscribe(broker, "/queue/q")
    _send(broker, "/queue/q", b"x")
    (message,) = consumer.take()
    assert not set(message.message_id) & set(":\\\r\n")

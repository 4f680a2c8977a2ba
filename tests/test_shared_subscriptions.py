"""Shared topic subscriptions: RabbitMQ's x-queue-name (durable or not) and shared durables
declared in YAML (shared: true): several subscribers attached compete for the messages. In
the core, through sessions and across a restart. No sockets, no sleeps."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.task import Clock

from stompbroker.core import Broker
from stompbroker.store import FILENAME, SqliteStore
from stompbroker.testing import Client, RecordingConsumer, connected_clients
from tests.test_jms import join
from tests.test_persistence import Node, run_now


def _shared(broker: Broker, name: str, transient: bool = True) -> RecordingConsumer:
    consumer = RecordingConsumer()
    broker.durables.subscribe(
        consumer, name, "/topic/news", "", "Q", shared=True, transient=transient
    )
    return consumer


def test_shared_subscribers_compete() -> None:
    """Two subscribers of one shared subscription share its messages, each once."""
    broker = Broker(clock=Clock())
    one, two = _shared(broker, "1"), _shared(broker, "2")
    for n in range(4):
        broker.send("/topic/news", {}, str(n).encode())
    assert sorted(one.bodies() + two.bodies()) == [b"0", b"1", b"2", b"3"]
    assert one.bodies() and two.bodies()


def test_a_transient_shared_subscription_goes_with_its_last_subscriber() -> None:
    """A non-durable shared subscription is deleted when its last subscriber leaves."""
    broker = Broker(clock=Clock())
    _shared(broker, "1")
    (subscription,) = broker.durables.get("", "Q").subscriptions  # type: ignore[union-attr]
    broker.unsubscribe(subscription)
    assert broker.durables.get("", "Q") is None


def test_a_transient_shared_subscription_is_not_stored(tmp_path: Path) -> None:
    """A non-durable shared subscription writes no definition: it is gone after a restart."""
    node = Node(lambda clock: SqliteStore(str(tmp_path / FILENAME), clock, run_now))
    _shared(node.broker, "1")
    node.wait(node.broker.send("/topic/news", {}, b"x", persistent=True).written)
    node.restart()
    assert len(node.broker.durables) == 0


def test_a_shared_durable_keeps_messages_across_a_restart(tmp_path: Path) -> None:
    """A durable shared subscription keeps persistent messages across a restart, and two
    subscribers attached afterwards compete for them."""
    node = Node(lambda clock: SqliteStore(str(tmp_path / FILENAME), clock, run_now))
    node.broker.declare_durable("", "Q", "news", None, shared=True)
    for n in range(4):
        node.wait(node.broker.send("/topic/news", {}, str(n).encode(), persistent=True).written)
    node.restart()
    node.broker.declare_durable("", "Q", "news", None, shared=True)  # as the YAML does
    one, two = RecordingConsumer(), RecordingConsumer()
    for name, consumer in (("1", one), ("2", two)):
        node.broker.durables.subscribe(consumer, name, "/topic/news", "", "Q", "auto", 1)
    assert sorted(one.bodies() + two.bodies()) == [b"0", b"1", b"2", b"3"]


def test_a_shared_durable_declared_shared_lets_a_second_attach() -> None:
    """declare_durable(shared=True): a second subscriber attaches, no "in use" ERROR."""
    broker = Broker(clock=Clock())
    broker.declare_durable("c", "S", "news", None, shared=True)
    for name in "12":
        broker.durables.subscribe(RecordingConsumer(), name, "/topic/news", "c", "S")
    assert len(broker.durables.get("c", "S").subscriptions) == 2  # type: ignore[union-attr]


# -- through sessions: RabbitMQ's x-queue-name -----------------------------------------------


def _rabbit(broker: Broker, clock: Clock, name: str, **headers: str) -> Client:
    client = join(broker, clock, name)
    client.subscribe("/topic/news", "s", receipt="r", x_queue_name="Q", **headers)
    assert [f.command for f in client.frames()] == ["RECEIPT"]
    return client


def test_x_queue_name_subscribers_compete() -> None:
    """Two SUBSCRIBEs to a topic with the same x-queue-name share it: each message once."""
    broker, clock, (producer,) = connected_clients(1)
    one, two = _rabbit(broker, clock, "one"), _rabbit(broker, clock, "two")
    for n in range(4):
        producer.publish("/topic/news", str(n).encode())
    assert sorted(one.bodies() + two.bodies()) == [b"0", b"1", b"2", b"3"]


def test_durable_x_queue_name_subscribers_compete() -> None:
    """With durable:true too, the same x-queue-name from two connections is shared."""
    broker, clock, (producer,) = connected_clients(1)
    one = _rabbit(broker, clock, "one", durable="true", auto_delete="false")
    two = _rabbit(broker, clock, "two", durable="true", auto_delete="false")
    for n in range(4):
        producer.publish("/topic/news", str(n).encode())
    assert sorted(one.bodies() + two.bodies()) == [b"0", b"1", b"2", b"3"]
    assert not broker.durables.get("", "Q").transient  # type: ignore[union-attr]


def test_an_empty_x_queue_name_is_an_error() -> None:
    """x-queue-name with no value on a topic SUBSCRIBE: ERROR "invalid x-queue-name"."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/topic/news", "s", x_queue_name="")
    client.error("invalid x-queue-name")


def test_durable_and_non_durable_spellings_of_one_name_clash() -> None:
    """A non-durable SUBSCRIBE naming a durable shared subscription: an ERROR saying so."""
    broker, clock, _ = connected_clients(1)
    _rabbit(broker, clock, "one", durable="true")
    other = join(broker, clock, "other")
    other.subscribe("/topic/news", "s", x_queue_name="Q")
    other.error("shared subscription 'Q' is a durable one: subscribe to it with durable:true")


def test_a_non_durable_x_queue_name_goes_when_its_last_connection_drops() -> None:
    """x-queue-name without durable: the shared subscription stays while one subscriber is
    left, and goes when the last connection is lost."""
    broker, clock, (producer,) = connected_clients(1)
    one, two = _rabbit(broker, clock, "one"), _rabbit(broker, clock, "two")
    one.lose()
    producer.publish("/topic/news", b"to two")
    assert two.bodies() == [b"to two"]
    two.lose()
    assert broker.durables.get("", "Q") is None


def test_a_durable_x_queue_name_is_shared_again_after_a_restart(tmp_path: Path) -> None:
    """A durable x-queue-name subscription keeps its persistent messages across a restart,
    and two subscribers naming it again share them."""
    node = Node(lambda clock: SqliteStore(str(tmp_path / FILENAME), clock, run_now))
    first = _shared(node.broker, "1", transient=False)
    (subscription,) = node.broker.durables.get("", "Q").subscriptions  # type: ignore[union-attr]
    node.broker.unsubscribe(subscription)
    for n in range(4):
        node.wait(node.broker.send("/topic/news", {}, str(n).encode(), persistent=True).written)
    node.restart()
    one, two = RecordingConsumer(), RecordingConsumer()
    for name, consumer in (("1", one), ("2", two)):
        node.broker.durables.subscribe(
            consumer, name, "/topic/news", "", "Q", "auto", 1, shared=True
        )
    assert first.bodies() == []
    assert sorted(one.bodies() + two.bodies()) == [b"0", b"1", b"2", b"3"]

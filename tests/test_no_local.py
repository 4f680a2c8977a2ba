"""No-local subscriptions: a topic subscriber gets nothing its own connection sends."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from stompbroker.core import Broker
from stompbroker.testing import Client, RecordingConsumer, connected_clients

# -- core -----------------------------------------------------------------------------


def _topic_subscriber(
    broker: Broker, destination: str, owner: str, no_local: bool = True
) -> RecordingConsumer:
    consumer = RecordingConsumer()
    broker.subscribe(consumer, "s", destination, owner=owner, no_local=no_local)
    return consumer


def test_no_local_topic_subscription_skips_its_own_connections_messages() -> None:
    """A no-local topic subscriber gets what others send, not what its connection sends."""
    broker = Broker(clock=Clock())
    mine = _topic_subscriber(broker, "/topic/t", "a")
    broker.send("/topic/t", {}, b"own", owner="a")
    broker.send("/topic/t", {}, b"other", owner="b")
    assert mine.bodies() == [b"other"]


def test_subscription_without_no_local_gets_its_own_messages() -> None:
    """Without the flag a subscriber gets what its own connection sends."""
    broker = Broker(clock=Clock())
    plain = _topic_subscriber(broker, "/topic/t", "a", no_local=False)
    broker.send("/topic/t", {}, b"own", owner="a")
    assert plain.bodies() == [b"own"]


def test_no_local_skips_only_the_flagged_subscription() -> None:
    """Another subscriber on the sender's connection, or on another, still gets its copy."""
    broker = Broker(clock=Clock())
    no_local = _topic_subscriber(broker, "/topic/t", "a")
    same_plain = _topic_subscriber(broker, "/topic/t", "a", no_local=False)
    other = _topic_subscriber(broker, "/topic/t", "b")
    broker.send("/topic/t", {}, b"x", owner="a")
    assert (no_local.bodies(), same_plain.bodies(), other.bodies()) == ([], [b"x"], [b"x"])


def test_no_local_applies_to_wildcard_subscriptions() -> None:
    """A no-local subscription to a wildcard topic skips its connection's messages too."""
    broker = Broker(clock=Clock())
    mine = _topic_subscriber(broker, "/topic/orders.>", "a")
    broker.send("/topic/orders.eu", {}, b"own", owner="a")
    broker.send("/topic/orders.eu", {}, b"other", owner="b")
    assert mine.bodies() == [b"other"]


def test_no_local_applies_to_temporary_topics() -> None:
    """A no-local subscription to the connection's temporary topic skips its own sends."""
    broker = Broker(clock=Clock())
    mine = _topic_subscriber(broker, "/temp-topic/t", "a")
    broker.send("/temp-topic/t", {}, b"own", owner="a")
    assert mine.bodies() == []


def test_no_local_is_ignored_on_a_queue() -> None:
    """On a queue the flag means nothing (as in ActiveMQ): the sender's consumer gets it."""
    broker = Broker(clock=Clock())
    consumer = RecordingConsumer()
    subscription = broker.subscribe(consumer, "s", "/queue/q", owner="a", no_local=True)
    broker.send("/queue/q", {}, b"own", owner="a")
    assert consumer.bodies() == [b"own"]
    assert not subscription.no_local


def test_topic_counts_no_local_subscriptions_as_they_come_and_go() -> None:
    """The topic's no-local count follows subscribes and unsubscribes (publish's fast path)."""
    broker = Broker(clock=Clock())
    consumer = RecordingConsumer()
    subscription = broker.subscribe(consumer, "s", "/topic/t", owner="a", no_local=True)
    broker.subscribe(RecordingConsumer(), "p", "/topic/t", owner="a")
    topic = broker.destinations.topics["t"]
    assert topic._no_local == 1
    broker.unsubscribe(subscription)
    assert topic._no_local == 0


def test_durable_no_local_keeps_nothing_its_attached_connection_sends() -> None:
    """A durable no-local subscription keeps no copy of its attached connection's sends."""
    broker = Broker(clock=Clock())
    consumer = RecordingConsumer()
    broker.durables.subscribe(consumer, "s", "/topic/t", "c", "d", no_local=True, owner="a")
    broker.send("/topic/t", {}, b"own", owner="a")
    broker.send("/topic/t", {}, b"other", owner="b")
    assert consumer.bodies() == [b"other"]
    durable = broker.durables.get("c", "d")
    assert durable is not None and durable.depth() == 0


def test_durable_no_local_keeps_everything_while_no_one_is_attached() -> None:
    """Detached, a durable no-local subscription keeps what any connection sends."""
    broker = Broker(clock=Clock())
    subscription, _ = broker.durables.subscribe(
        RecordingConsumer(), "s", "/topic/t", "c", "d", no_local=True, owner="a"
    )
    broker.unsubscribe(subscription)
    broker.send("/topic/t", {}, b"by a, away", owner="a")
    again = RecordingConsumer()
    broker.durables.subscribe(again, "s", "/topic/t", "c", "d", no_local=True, owner="b")
    broker.send("/topic/t", {}, b"by a", owner="a")
    broker.send("/topic/t", {}, b"by b", owner="b")
    assert again.bodies() == [b"by a, away", b"by a"]


def test_durable_resubscribed_with_another_no_local_is_replaced() -> None:
    """Changing no-local on a durable subscription makes it anew (its kept messages go)."""
    broker = Broker(clock=Clock())
    subscription, _ = broker.durables.subscribe(
        RecordingConsumer(), "s", "/topic/t", "c", "d", owner="a"
    )
    broker.unsubscribe(subscription)
    broker.send("/topic/t", {}, b"kept", owner="b")
    again = RecordingConsumer()
    broker.durables.subscribe(again, "s", "/topic/t", "c", "d", no_local=True, owner="a")
    durable = broker.durables.get("c", "d")
    assert again.bodies() == [] and durable is not None and durable.no_local


# -- session --------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["activemq.noLocal", "no-local"])
def test_session_no_local_header_in_either_spelling(header: str) -> None:
    """SUBSCRIBE with activemq.noLocal:true or no-local:true skips the connection's sends."""
    _, _, (client, other) = connected_clients(2)
    client.subscribe("/topic/t", **{header: "true"})
    other.subscribe("/topic/t", **{header: "true"})
    client.publish("/topic/t", b"from client")
    other.publish("/topic/t", b"from other")
    assert (client.bodies(), other.bodies()) == ([b"from other"], [b"from client"])


def test_session_no_local_false_delivers_own_messages() -> None:
    """no-local:false (any case) is the default: the connection gets its own sends."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/topic/t", **{"no-local": "FALSE"})
    client.publish("/topic/t", b"own")
    assert client.bodies() == [b"own"]


@pytest.mark.parametrize("header", ["activemq.noLocal", "no-local"])
def test_session_bad_no_local_value_is_an_error_naming_the_header(header: str) -> None:
    """A no-local value other than true or false is an ERROR naming the header."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/topic/t", **{header: "yes"})
    error = client.error(f"invalid {header}")
    assert error.body == b"expected true or false, got 'yes'\n"


def test_session_no_local_on_a_queue_is_ignored() -> None:
    """no-local on a queue SUBSCRIBE is accepted and means nothing."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/queue/q", **{"no-local": "true"})
    client.publish("/queue/q", b"own")
    assert client.bodies() == [b"own"]


def test_session_durable_no_local_skips_its_connection() -> None:
    """A durable ActiveMQ subscription with activemq.noLocal keeps none of its own sends."""
    broker, clock, _ = connected_clients(0)
    client = Client(broker, clock, "session-1")
    client.connect(client_id="c")
    other = Client(broker, clock, "session-2")
    other.connect()
    client.subscribe("/topic/t", **{"activemq.subscriptionName": "d", "activemq.noLocal": "true"})
    client.publish("/topic/t", b"own")
    other.publish("/topic/t", b"other")
    assert client.bodies() == [b"other"]
    durable = broker.durables.get("c", "d")
    assert durable is not None and durable.no_local


def test_session_no_local_skips_own_messages_sent_in_a_transaction() -> None:
    """A committed transaction's sends count as the connection's own."""
    _, _, (client, other) = connected_clients(2)
    client.subscribe("/topic/t", **{"no-local": "true"})
    client.send("BEGIN", {"transaction": "tx"})
    client.publish("/topic/t", b"own", transaction="tx")
    client.send("COMMIT", {"transaction": "tx"})
    other.publish("/topic/t", b"other")
    assert client.bodies() == [b"other"]


def test_session_no_local_with_a_selector_applies_both() -> None:
    """No-local and a selector together: only others' matching messages arrive."""
    _, _, (client, other) = connected_clients(2)
    client.subscribe("/topic/t", selector="n > 1", **{"no-local": "true"})
    client.publish("/topic/t", b"own", n="5")
    other.publish("/topic/t", b"small", n="1")
    other.publish("/topic/t", b"big", n="5")
    assert client.bodies() == [b"big"]


def test_a_configured_durable_may_be_no_local() -> None:
    """durable_subscriptions[].no_local: true declares a no-local durable subscription: a
    subscriber attached by /dsub/NAME keeps none of its own connection's sends."""
    from stompbroker.config import parse
    from stompbroker.service import declare_durables

    broker, clock, _ = connected_clients(0)
    text = "durable_subscriptions:\n  - {name: d, client_id: c, topic: /topic/t, no_local: true}\n"
    declare_durables(broker, parse(text, "f.yaml"))
    durable = broker.durables.get("c", "d")
    assert durable is not None and durable.no_local
    client = Client(broker, clock, "session-1")
    client.connect(client_id="c")
    other = Client(broker, clock, "session-2")
    other.connect()
    client.subscribe("/dsub/d")
    client.publish("/topic/t", b"own")
    other.publish("/topic/t", b"other")
    assert client.bodies() == [b"other"]


def test_a_configured_no_local_must_be_true_or_false() -> None:
    from stompbroker.config import ConfigError, parse

    text = "durable_subscriptions:\n  - {name: d, topic: /topic/t, no_local: maybe}\n"
    with pytest.raises(ConfigError) as raised:
        parse(text, "f.yaml")
    assert str(raised.value) == (
        "f.yaml:2: durable_subscriptions[0].no_local: expected true or false, got 'maybe'"
    )

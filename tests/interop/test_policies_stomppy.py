"""Destination policies from the YAML file, seen by stomp.py: full queues, TTL, DLQ by pattern,
create-on-first-use, and a live reload."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.endpoints import serverFromString

from stompbroker.config import Config, parse

from .conftest import Client, RunningBroker, Starter, poll, reactor

POLICIES = """
destinations:
  - {name: /queue/full.reject, max_messages: 2, on_full: reject}
  - {name: /queue/full.block, max_messages: 2, on_full: block}
  - {name: /queue/full.drop, max_messages: 2, on_full: drop-oldest,
     dead_letter_queue: /queue/full.DLQ}
  - {name: /queue/short.>, message_ttl_ms: 1, dead_letter_queue: /queue/short.DLQ}
  - {name: /queue/orders.>, max_redeliveries: 0, dead_letter_queue: /queue/orders.DLQ}
"""


@pytest.fixture
def broker(broker_with: Starter) -> RunningBroker:
    """A broker with the policies above."""
    return broker_with(parse(POLICIES))


def _client(broker: RunningBroker) -> Client:
    client = Client(broker.port, "1.2")
    client.connect()
    return client


def _bodies(client: Client, count: int) -> list[str]:
    return [m.body for m in client.wait_messages(count)]


def test_full_reject_queue_answers_error_naming_it(broker: RunningBroker) -> None:
    """on_full: reject: the SEND beyond max_messages gets an ERROR naming the queue."""
    producer = _client(broker)
    producer.send("/queue/full.reject", "1", receipt=True)
    producer.send("/queue/full.reject", "2", receipt=True)
    producer.conn.send("/queue/full.reject", "3", headers={"receipt": "late"})
    producer.frames.wait(lambda: bool(producer.frames.errors), "an ERROR")
    error = producer.frames.errors[0]
    assert error.headers["message"] == (
        "destination /queue/full.reject is full (max_messages 2, max_bytes unlimited); "
        "the message was not accepted"
    )
    assert error.headers.get("receipt-id") == "late"
    assert broker.call(broker.broker.queue_depth, "full.reject") == 2


def test_full_block_queue_holds_the_producer_until_a_consumer_drains(
    broker: RunningBroker,
) -> None:
    """on_full: block: once the queue is at max_messages, the producer's next SEND is not read
    (no RECEIPT) until a consumer makes room; then everything arrives in order."""
    producer = _client(broker)
    for n in range(2):
        producer.send("/queue/full.block", f"m{n}", receipt=True)
    producer.conn.send("/queue/full.block", "m2", headers={"receipt": "held"})
    # Nothing may happen here, so this wait can only end by its (short) bound.
    with pytest.raises(AssertionError, match="timed out"):
        producer.frames.wait(
            lambda: any(r.headers.get("receipt-id") == "held" for r in producer.frames.receipts),
            "the held RECEIPT",
            timeout=0.5,
        )
    consumer = _client(broker)
    consumer.subscribe("/queue/full.block")
    assert _bodies(consumer, 3) == ["m0", "m1", "m2"]
    producer.frames.wait_receipt("held")


def test_full_drop_oldest_queue_dead_letters_the_oldest(broker: RunningBroker) -> None:
    """on_full: drop-oldest: the oldest message goes to the DLQ to make room."""
    producer = _client(broker)
    for n in range(3):
        producer.send("/queue/full.drop", f"m{n}", receipt=True)
    consumer = _client(broker)
    consumer.subscribe("/queue/full.drop")
    assert _bodies(consumer, 2) == ["m1", "m2"]
    consumer.subscribe("/queue/full.DLQ")
    dead = consumer.wait_messages(3)[2]
    assert dead.body == "m0" and dead.headers["dead-letter-reason"] == "queue-full"


def test_policy_ttl_expires_messages_into_their_dlq(broker: RunningBroker) -> None:
    """message_ttl_ms from a pattern entry: an old message is dead-lettered, not delivered."""
    producer = _client(broker)
    producer.send("/queue/short.lived", "stale", receipt=True)
    poll(lambda: broker.call(broker.broker.now_ms) > 0, "the clock")  # any later moment
    consumer = _client(broker)
    consumer.subscribe("/queue/short.DLQ")
    consumer.subscribe("/queue/short.lived")
    [dead] = consumer.wait_messages(1)
    assert dead.body == "stale" and dead.headers["dead-letter-reason"] == "expired"
    assert dead.headers["original-destination"] == "/queue/short.lived"


def test_dead_letters_are_routed_by_the_pattern_of_their_queue(broker: RunningBroker) -> None:
    """A NACKed message from /queue/orders.eu (max_redeliveries 0) goes to /queue/orders.DLQ."""
    client = _client(broker)
    client.send("/queue/orders.eu", "order", receipt=True)
    client.subscribe("/queue/orders.eu", ack="client-individual")
    [message] = client.wait_messages(1)
    client.nack(message)
    watcher = _client(broker)
    watcher.subscribe("/queue/orders.DLQ")
    [dead] = watcher.wait_messages(1)
    assert dead.body == "order" and dead.headers["original-destination"] == "/queue/orders.eu"


def test_without_auto_create_undeclared_destinations_get_an_error(
    broker_with: Starter,
) -> None:
    """broker.auto_create: false: a SEND to an undeclared queue is an ERROR naming it."""
    broker = broker_with(
        parse("broker: {auto_create: false}\ndestinations:\n  - {name: /queue/known}\n")
    )
    client = _client(broker)
    client.send("/queue/known", "fine", receipt=True)
    client.conn.send("/queue/unknown", "no")
    client.frames.wait(lambda: bool(client.frames.errors), "an ERROR")
    assert client.frames.errors[0].headers["message"] == (
        "destination /queue/unknown does not exist, and this broker creates only the "
        "destinations its configuration declares (broker.auto_create is false)"
    )


def test_reload_applies_new_policies_and_listeners_and_refuses_a_bad_file(
    broker_with: Starter,
) -> None:
    """A reload changes a policy for the queue already in use, starts a new listener, keeps
    connections; a reload of an invalid file is refused and changes nothing."""
    broker = broker_with(Config())
    client = _client(broker)
    client.send("/queue/live", "before", receipt=True)
    texts: list[str] = [
        "listeners:\n  stomp: ['tcp:0:interface=127.0.0.1']\n"
        "destinations:\n  - {name: /queue/live, max_messages: 1, on_full: reject}\n",
        "destinations:\n  - {name: /queue/live, max_messages: ten}\n",
    ]

    def reread() -> Config:
        return parse(texts.pop(0), "reloaded.yaml")

    def reload() -> bool:
        service: Any = broker.service
        service.reread = reread
        service.make_endpoint = lambda spec: serverFromString(reactor, spec)
        return bool(service.reload())

    assert broker.call(reload)
    client.conn.send("/queue/live", "over", headers={"receipt": "r"})
    client.frames.wait(lambda: bool(client.frames.errors), "an ERROR")
    assert client.frames.errors[0].headers["message"] == (
        "destination /queue/live is full (max_messages 1, max_bytes unlimited); "
        "the message was not accepted"
    )
    (listener,) = broker.service.by_key.values()
    port = broker.call(lambda: listener._waitingForPort).getHost().port
    other = Client(port, "1.2")
    other.connect()
    other.disconnect()
    assert not broker.call(reload)  # max_messages: ten
    policy = broker.call(broker.broker.policies.for_destination, "/queue/live")
    assert policy.max_messages == 1 and policy.on_full == "reject"
    assert other.is_open is False and client.is_open is False  # ERROR closed the first

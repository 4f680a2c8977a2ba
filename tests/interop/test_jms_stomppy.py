"""The JMS model against real stomp.py clients over TCP on 127.0.0.1.

Durable subscriptions in every broker's spelling, temporary destinations and
request/reply, transactions, redelivery and dead letters, expiry, priority,
selectors, no-local, prefetch, browsing, exclusive consumers, message groups and topic
wildcards. Every wait is bounded (``conftest.TIMEOUT``); absence is shown with a
marker message sent after the one that must not arrive, never with a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stompbroker.core import Broker, DestinationPolicy, PolicyMap

from .conftest import Client, RunningBroker, poll

Connect = Callable[..., Client]
ConnectAs = Callable[[str, str], Client]
SetPolicies = Callable[[dict[str, DestinationPolicy]], None]


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def connect_as(broker: RunningBroker) -> Iterator[ConnectAs]:
    """Make stomp.py clients that CONNECT with a ``client-id``; any left open are dropped."""
    made: list[Client] = []

    def make(version: str, client_id: str) -> Client:
        client = Client(broker.port, version)
        made.append(client)
        client.conn.connect(wait=False, headers={"client-id": client_id})
        frames = client.frames
        frames.wait(lambda: bool(frames.connected or frames.errors), "CONNECTED")
        assert frames.connected, frames.errors
        return client

    yield make
    for client in made:
        if client.is_open:
            client.drop()


@pytest.fixture
def set_policies(broker: RunningBroker) -> SetPolicies:
    """Replace the broker's destination policies (before any client uses the destinations)."""

    def apply(entries: dict[str, DestinationPolicy]) -> None:
        broker.call(_replace_policies, broker.broker, PolicyMap(entries))

    return apply


def _replace_policies(core: Broker, policies: PolicyMap) -> None:
    core.set_policies(policies)


def attach(
    client: Client, destination: str, sub_id: str, headers: dict[str, str], ack: str = "auto"
) -> None:
    """SUBSCRIBE with an explicit id and extra headers; wait for the RECEIPT."""
    receipt_id = f"sub-{sub_id}-{len(client.frames.receipts)}"
    client.conn.subscribe(
        destination, id=sub_id, ack=ack, headers={**headers, "receipt": receipt_id}
    )
    client.frames.wait_receipt(receipt_id)


def detach(client: Client, sub_id: str, headers: dict[str, str] | None = None) -> None:
    """UNSUBSCRIBE ``sub_id`` with extra headers; wait for the RECEIPT."""
    receipt_id = f"unsub-{sub_id}-{len(client.frames.receipts)}"
    client.conn.unsubscribe(id=sub_id, headers={**(headers or {}), "receipt": receipt_id})
    client.frames.wait_receipt(receipt_id)


def bodies(messages: list[Any]) -> list[Any]:
    """The bodies of stomp.py frames, in order."""
    return [m.body for m in messages]


def dead_letters(connect: Connect, count: int, queue: str = "/queue/DLQ") -> list[Any]:
    """The first ``count`` messages a fresh consumer of the dead-letter queue receives."""
    reader = connect("1.2")
    reader.subscribe(queue)
    return reader.wait_messages(count)


def depth(broker: RunningBroker, name: str) -> int:
    """Messages waiting in queue ``name``, read on the reactor thread."""
    return int(broker.call(broker.broker.queue_depth, name))


def nack(client: Client, message: Any, **headers: str) -> None:
    """NACK a 1.2 ``message`` with extra headers (``requeue``); wait for the RECEIPT."""
    receipt_id = f"nack-{len(client.frames.receipts)}"
    client.conn.nack(message.headers["ack"], receipt=receipt_id, **headers)
    client.frames.wait_receipt(receipt_id)


def now_ms() -> int:
    """The wall clock in epoch milliseconds (what SEND's ``expires`` is measured against)."""
    return int(time.time() * 1000)


# -- durable subscriptions -------------------------------------------------------------

#: (label, client-id or None, subscription id, SUBSCRIBE headers, deleting UNSUBSCRIBE headers)
SPELLINGS = [
    ("activemq", "C", "s1", {"activemq.subscriptionName": "S"}, {"activemq.subscriptionName": "S"}),
    (
        "artemis-subscription-name",
        "C",
        "s1",
        {"durable-subscription-name": "S"},
        {"durable-subscription-name": "S"},
    ),
    (
        "artemis-subscriber-name",
        "C",
        "s1",
        {"durable-subscriber-name": "S"},
        {"durable-subscriber-name": "S"},
    ),
    (
        "rabbitmq-durable",
        None,
        "S",
        {"durable": "true", "auto-delete": "false"},
        {"durable": "true"},
    ),
    (
        "rabbitmq-persistent",
        None,
        "S",
        {"persistent": "true", "auto-delete": "false"},
        {"persistent": "true"},
    ),
    (
        "rabbitmq-x-queue-name",
        None,
        "s1",
        {"durable": "true", "auto-delete": "false", "x-queue-name": "Q"},
        {"durable": "true", "x-queue-name": "Q"},
    ),
    ("apollo", None, "S", {"persistent": "true"}, {"persistent": "true"}),
]


def _open(connect: Connect, connect_as: ConnectAs, version: str, client_id: str | None) -> Client:
    return connect(version) if client_id is None else connect_as(version, client_id)


@pytest.mark.parametrize(
    ("label", "client_id", "sub_id", "subscribe", "delete"),
    SPELLINGS,
    ids=[s[0] for s in SPELLINGS],
)
def test_durable_subscription_lifecycle(
    broker: RunningBroker,
    connect: Connect,
    connect_as: ConnectAs,
    label: str,
    client_id: str | None,
    sub_id: str,
    subscribe: dict[str, str],
    delete: dict[str, str],
) -> None:
    """Kept while detached and delivered in order on return; the durable UNSUBSCRIBE deletes."""
    producer = connect("1.2")
    first = _open(connect, connect_as, "1.2", client_id)
    attach(first, "/topic/news", sub_id, subscribe)
    producer.send("/topic/news", "live", receipt=True)
    assert bodies(first.wait_messages(1)) == ["live"]
    detach(first, sub_id)
    first.disconnect()
    for body in ("1", "2", "3"):
        producer.send("/topic/news", body, receipt=True)
    again = _open(connect, connect_as, "1.2", client_id)
    attach(again, "/topic/news", sub_id, subscribe)
    assert bodies(again.wait_messages(3)) == ["1", "2", "3"]
    detach(again, sub_id, delete)
    assert broker.call(lambda: len(broker.broker.durables)) == 0
    producer.send("/topic/news", "after delete", receipt=True)
    attach(again, "/topic/news", sub_id, subscribe)
    producer.send("/topic/news", "fresh", receipt=True)
    assert bodies(again.wait_for_body("fresh"))[3:] == ["fresh"]


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_durable_survives_a_dropped_connection(
    connect: Connect, connect_as: ConnectAs, version: str
) -> None:
    """A dropped connection only detaches the ActiveMQ durable subscription (any version)."""
    producer = connect("1.2")
    first = connect_as(version, "C")
    attach(first, "/topic/news", "s1", {"activemq.subscriptionName": "S"})
    first.drop()
    producer.send("/topic/news", "while away", receipt=True)
    again = connect_as(version, "C")
    attach(again, "/topic/news", "s1", {"activemq.subscriptionName": "S"})
    assert bodies(again.wait_messages(1)) == ["while away"]


@pytest.mark.parametrize(
    "headers",
    [{"durable-subscription-name": "S"}, {"durable": "true", "auto-delete": "false"}],
    ids=["artemis", "rabbitmq"],
)
def test_second_live_connection_cannot_attach(
    connect_as: ConnectAs, connect: Connect, headers: dict[str, str]
) -> None:
    """A second connection's SUBSCRIBE to an attached durable subscription is an ERROR."""
    producer = connect("1.2")
    holder = connect_as("1.2", "C")
    attach(holder, "/topic/news", "S", headers)
    intruder = connect_as("1.2", "C")
    intruder.conn.subscribe("/topic/news", id="S", headers=headers)
    intruder.error("durable subscription 'S' is in use by another connection")
    producer.send("/topic/news", "still mine", receipt=True)
    assert bodies(holder.wait_messages(1)) == ["still mine"]


def test_deleting_a_durable_attached_elsewhere_is_an_error(connect_as: ConnectAs) -> None:
    """UNSUBSCRIBE with activemq.subscriptionName from another connection: ERROR, in use."""
    holder = connect_as("1.2", "C")
    attach(holder, "/topic/news", "s1", {"activemq.subscriptionName": "S"})
    other = connect_as("1.2", "C")
    other.conn.unsubscribe(id="s1", headers={"activemq.subscriptionName": "S"})
    other.error("durable subscription 'S' is in use by another connection")
    assert holder.is_open


def test_resubscribing_with_another_topic_replaces_the_durable(
    connect: Connect, connect_as: ConnectAs
) -> None:
    """Same durable name on another topic: what the old one kept is gone, the new topic flows."""
    producer = connect("1.2")
    client = connect_as("1.2", "C")
    attach(client, "/topic/a", "s1", {"activemq.subscriptionName": "S"})
    detach(client, "s1")
    producer.send("/topic/a", "kept for a", receipt=True)
    attach(client, "/topic/b", "s1", {"activemq.subscriptionName": "S"})
    producer.send("/topic/a", "a again", receipt=True)
    producer.send("/topic/b", "b", receipt=True)
    assert bodies(client.wait_for_body("b")) == ["b"]


def test_apollo_dsub_attaches_to_a_durable(connect: Connect) -> None:
    """Apollo: /dsub/ID attaches to the durable subscription made with persistent:true + id."""
    producer = connect("1.2")
    client = connect("1.2")
    attach(client, "/topic/a", "S", {"persistent": "true"})
    detach(client, "S")
    producer.send("/topic/a", "kept", receipt=True)
    attach(client, "/dsub/S", "other-id", {})
    (message,) = client.wait_messages(1)
    assert (message.body, message.headers["subscription"]) == ("kept", "other-id")


def test_durable_with_selector_keeps_only_matches(connect: Connect, connect_as: ConnectAs) -> None:
    """A durable subscription's selector decides what it keeps while its subscriber is away."""
    producer = connect("1.2")
    client = connect_as("1.2", "C")
    headers = {"activemq.subscriptionName": "S", "selector": "level >= 3"}
    attach(client, "/topic/log", "s1", headers)
    detach(client, "s1")
    for level in ("1", "3", "10"):
        producer.send("/topic/log", level, headers={"level": level}, receipt=True)
    attach(client, "/topic/log", "s1", headers)
    assert bodies(client.wait_messages(2)) == ["3", "10"]


def test_failed_durable_unsubscribe_leaves_no_subscription_behind(
    connect: Connect, connect_as: ConnectAs
) -> None:
    """An UNSUBSCRIBE naming an unknown durable is an ERROR; the topic keeps working for others."""
    producer = connect("1.2")
    holder = connect_as("1.2", "C")
    attach(holder, "/topic/news", "s1", {"activemq.subscriptionName": "S"})
    holder.conn.unsubscribe(id="s1", headers={"activemq.subscriptionName": "WRONG"})
    holder.error("no durable subscription named 'WRONG'")
    producer.conn.send("/topic/news", "after", headers={"receipt": "p"})
    frames = producer.frames
    frames.wait(lambda: bool(frames.receipts or frames.errors), "the SEND's RECEIPT")
    assert frames.errors == [], [e.headers for e in frames.errors]
    back = connect_as("1.2", "C")
    attach(back, "/topic/news", "s1", {"activemq.subscriptionName": "S"})
    assert bodies(back.wait_messages(1)) == ["after"]


# -- temporary destinations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("temp", "remote"), [("temp-queue", "remote-temp-queue"), ("temp-topic", "remote-temp-topic")]
)
def test_request_reply_through_a_temporary_destination(
    broker: RunningBroker, connect: Connect, temp: str, remote: str
) -> None:
    """reply-to is rewritten and answered; others cannot subscribe; it goes with its owner."""
    requester = connect("1.2")
    server = connect("1.2")
    server.subscribe("/queue/rpc")
    requester.send("/queue/rpc", "question", headers={"reply-to": f"/{temp}/answers"}, receipt=True)
    (request,) = server.wait_messages(1)
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith(f"/{remote}/")
    server.send(reply_to, "answer", headers={"correlation-id": "c-1"}, receipt=True)
    (reply,) = requester.wait_messages(1)
    assert reply.body == "answer"
    assert reply.headers["subscription"] == f"/{temp}/answers"
    assert reply.headers["correlation-id"] == "c-1"
    thief = connect("1.2")
    thief.conn.subscribe(reply_to, id="steal")
    thief.error(f"only the connection that created '{reply_to}' may consume from it")
    requester.disconnect()
    assert broker.call(lambda: len(broker.broker.temporaries)) == 0
    server.conn.send(reply_to, "too late")
    server.error(f"temporary destination '{reply_to}' does not exist (its owner has left)")
    broker.assert_idle()


def test_subscribe_to_temp_queue_then_reply(connect: Connect) -> None:
    """SUBSCRIBE /temp-queue/x creates it; a reply-to naming it uses that subscription."""
    requester = connect("1.1")
    server = connect("1.2")
    server.subscribe("/queue/rpc")
    mine = requester.subscribe("/temp-queue/x")
    requester.send("/queue/rpc", "q", headers={"reply-to": "/temp-queue/x"}, receipt=True)
    (request,) = server.wait_messages(1)
    server.send(request.headers["reply-to"], "a", receipt=True)
    (reply,) = requester.wait_messages(1)
    assert (reply.body, reply.headers["subscription"]) == ("a", mine)


# -- transactions ----------------------------------------------------------------------------


def test_commit_applies_staged_frames_in_order(broker: RunningBroker, connect: Connect) -> None:
    """COMMIT applies ACK, NACK and SEND in order: the NACKed message returns before the new."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q", ack="client-individual")
    producer.send("/queue/q", "m1", receipt=True)
    producer.send("/queue/q", "m2", receipt=True)
    m1, m2 = consumer.wait_messages(2)
    tx = consumer.begin()
    consumer.ack(m1, transaction=tx)
    consumer.nack(m2, transaction=tx)
    consumer.send("/queue/q", "m3", transaction=tx, receipt=True)
    assert len(consumer.frames.messages) == 2
    consumer.commit(tx)
    later = consumer.wait_messages(4)[2:]
    assert bodies(later) == ["m2", "m3"]
    assert later[0].headers["redelivered"] == "true"
    assert depth(broker, "q") == 0


def test_abort_drops_sends_and_redelivers_acked(broker: RunningBroker, connect: Connect) -> None:
    """ABORT: the staged SEND never arrives and the message whose ACK it drops comes back."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q", ack="client-individual")
    producer.send("/queue/q", "m1", receipt=True)
    (m1,) = consumer.wait_messages(1)
    tx = producer.begin()
    producer.send("/queue/q", "never", transaction=tx, receipt=True)
    producer.abort(tx)
    tx2 = consumer.begin()
    consumer.ack(m1, transaction=tx2)
    consumer.abort(tx2)
    again = consumer.wait_messages(2)[1]
    assert again.body == "m1"
    assert again.headers["redelivered"] == "true"
    assert again.headers["delivery-count"] == "2"
    producer.send("/queue/q", "marker", receipt=True)
    assert bodies(consumer.wait_for_body("marker")) == ["m1", "m1", "marker"]


@pytest.mark.parametrize(
    ("destination", "headers", "message"),
    [
        ("/queue/q", {"priority": "12"}, "invalid priority '12': expected an integer from 0 to 9"),
        ("/queue/a.*", {}, "cannot send to the wildcard destination '/queue/a.*'"),
        (
            "/unknown/x",
            {},
            "unsupported destination '/unknown/x': "
            "use /queue/NAME, /topic/NAME, /temp-queue/NAME or /temp-topic/NAME",
        ),
    ],
    ids=["priority", "wildcard", "unknown-prefix"],
)
def test_staged_bad_send_is_an_error_at_send_time(
    connect: Connect, destination: str, headers: dict[str, str], message: str
) -> None:
    """A staged SEND with a bad priority or destination is an ERROR at once, before COMMIT."""
    client = connect("1.2")
    tx = client.begin()
    client.conn.send(destination, "x", headers={**headers, "transaction": tx, "receipt": "r"})
    error = client.error(message)
    assert error.headers.get("receipt-id") == "r"


# -- redelivery and dead letters ---------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_nack_redelivers_with_redelivered_and_count(connect: Connect, version: str) -> None:
    """A NACKed message comes back with redelivered:true and delivery-count:2."""
    producer = connect("1.2")
    consumer = connect(version)
    consumer.subscribe("/queue/q", ack="client-individual")
    producer.send("/queue/q", "m", receipt=True)
    (first,) = consumer.wait_messages(1)
    assert "redelivered" not in first.headers
    consumer.nack(first)
    second = consumer.wait_messages(2)[1]
    assert second.body == "m"
    assert second.headers["redelivered"] == "true"
    assert second.headers["delivery-count"] == "2"


def test_poison_message_ends_in_the_dlq(broker: RunningBroker, connect: Connect) -> None:
    """NACKed every time, a message is delivered 1 + 6 times, then dead-lettered with its story."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q", ack="client-individual")
    producer.send("/queue/q", "poison", receipt=True)
    deliveries = 1 + DestinationPolicy().max_redeliveries
    for count in range(1, deliveries + 1):
        message = consumer.wait_messages(count)[-1]
        consumer.nack(message)
    (dead,) = dead_letters(connect, 1)
    assert len(consumer.frames.messages) == deliveries
    assert dead.body == "poison"
    assert dead.headers["original-destination"] == "/queue/q"
    assert dead.headers["dead-letter-reason"] == "max-redeliveries"
    assert dead.headers["original-delivery-count"] == str(deliveries)
    assert depth(broker, "q") == 0


def test_max_redeliveries_from_the_destination_policy(
    set_policies: SetPolicies, connect: Connect
) -> None:
    """With max_redeliveries=1 the second NACK sends the message to the DLQ."""
    set_policies({"/queue/q": DestinationPolicy(max_redeliveries=1)})
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q", ack="client-individual")
    producer.send("/queue/q", "m", receipt=True)
    consumer.nack(consumer.wait_messages(1)[0])
    consumer.nack(consumer.wait_messages(2)[1])
    (dead,) = dead_letters(connect, 1)
    assert dead.headers["dead-letter-reason"] == "max-redeliveries"
    assert dead.headers["original-delivery-count"] == "2"
    assert len(consumer.frames.messages) == 2


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
def test_nack_requeue_false_dead_letters_at_once(connect: Connect, destination: str) -> None:
    """RabbitMQ's NACK requeue:false moves the message to the DLQ at once, reason nack."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe(destination, ack="client-individual")
    producer.send(destination, "reject", receipt=True)
    (message,) = consumer.wait_messages(1)
    nack(consumer, message, requeue="false")
    (dead,) = dead_letters(connect, 1)
    assert dead.body == "reject"
    assert dead.headers["original-destination"] == destination
    assert dead.headers["dead-letter-reason"] == "nack"
    assert dead.headers["original-delivery-count"] == "1"
    assert dead.headers["message-id"] == message.headers["message-id"]


def test_redelivery_waits_for_the_policy_delay(set_policies: SetPolicies, connect: Connect) -> None:
    """With redelivery_delay_ms=100 a NACKed message comes back, but not at once."""
    set_policies({"/queue/q": DestinationPolicy(redelivery_delay_ms=100)})
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q", ack="client-individual")
    producer.send("/queue/q", "m", receipt=True)
    (first,) = consumer.wait_messages(1)
    nacked_at = time.monotonic()
    consumer.nack(first)
    consumer.frames.wait(lambda: len(consumer.frames.messages) >= 2, "the redelivery", 2.0)
    assert time.monotonic() - nacked_at >= 0.09
    assert consumer.frames.messages[1].headers["redelivered"] == "true"


# -- expiry --------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["expires", "ttl", "expiration"])
def test_expired_message_is_not_delivered_and_is_dead_lettered(
    connect: Connect, header: str
) -> None:
    """An expired message (expires past, ttl/expiration 1 ms) never arrives; DLQ, reason expired."""
    producer = connect("1.2")
    value = str(now_ms() - 60_000) if header == "expires" else "1"
    sent_at = time.time()
    producer.send("/queue/q", "stale", headers={header: value}, receipt=True)
    producer.send("/queue/q", "marker", receipt=True)
    poll(lambda: time.time() > sent_at + 0.005, "the time to live to pass")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q")
    assert bodies(consumer.wait_for_body("marker")) == ["marker"]
    (dead,) = dead_letters(connect, 1)
    assert dead.body == "stale"
    assert dead.headers["dead-letter-reason"] == "expired"


@pytest.mark.parametrize("header", ["expires", "ttl", "expiration"])
def test_unexpired_message_is_delivered(connect: Connect, header: str) -> None:
    """A message within its time to live (or expires:0) is delivered, with an expires header."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q")
    value = str(now_ms() + 60_000) if header == "expires" else "60000"
    producer.send("/queue/q", "fresh", headers={header: value}, receipt=True)
    producer.send("/queue/q", "forever", headers={"expires": "0"}, receipt=True)
    fresh, forever = consumer.wait_messages(2)
    assert (fresh.body, forever.body) == ("fresh", "forever")
    assert int(fresh.headers["expires"]) > now_ms()


def test_message_expired_on_arrival_never_reaches_a_topic_subscriber(connect: Connect) -> None:
    """A SEND to a topic whose expires is already past is not delivered to its subscribers."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/topic/t")
    producer.send("/topic/t", "stale", headers={"expires": str(now_ms() - 60_000)}, receipt=True)
    producer.send("/topic/t", "marker", receipt=True)
    assert bodies(consumer.wait_for_body("marker")) == ["marker"]


# -- priority --------------------------------------------------------------------------------


def test_priority_orders_a_queue(connect: Connect) -> None:
    """Higher priority first; the same priority in order of arrival."""
    producer = connect("1.2")
    for body, priority in (("a", "4"), ("b", "9"), ("c", "4"), ("d", "0"), ("e", "9")):
        producer.send("/queue/q", body, headers={"priority": priority}, receipt=True)
    consumer = connect("1.2")
    consumer.subscribe("/queue/q")
    assert bodies(consumer.wait_messages(5)) == ["b", "e", "a", "c", "d"]


def test_invalid_priority_is_an_error(connect: Connect) -> None:
    """priority:10 is refused with an ERROR naming the priority."""
    producer = connect("1.2")
    producer.conn.send("/queue/q", "x", headers={"priority": "10"})
    producer.error("invalid priority '10': expected an integer from 0 to 9")


# -- selectors ---------------------------------------------------------------------------------


def test_queue_selector_leaves_the_rest_for_another_consumer(
    broker: RunningBroker, connect: Connect
) -> None:
    """Numbers compare as numbers; a message no selector accepts waits for another consumer."""
    producer = connect("1.2")
    big = connect("1.2")
    big.subscribe("/queue/q", headers={"selector": "n > 9"})
    for n in ("10", "8", "9.5"):
        producer.send("/queue/q", n, headers={"n": n}, receipt=True)
    assert bodies(big.wait_messages(2)) == ["10", "9.5"]
    assert depth(broker, "q") == 1
    small = connect("1.1")
    small.subscribe("/queue/q", headers={"selector": "n <= 9"})
    assert bodies(small.wait_messages(1)) == ["8"]


def test_topic_selector(connect: Connect) -> None:
    """A topic subscriber with a selector gets only the matching messages."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/topic/t", headers={"selector": "region = 'eu' AND total > 100"})
    producer.send("/topic/t", "small", headers={"region": "eu", "total": "99"}, receipt=True)
    producer.send("/topic/t", "us", headers={"region": "us", "total": "500"}, receipt=True)
    producer.send("/topic/t", "big", headers={"region": "eu", "total": "500"}, receipt=True)
    producer.send("/topic/t", "end", headers={"region": "eu", "total": "1000"}, receipt=True)
    assert bodies(consumer.wait_for_body("end")) == ["big", "end"]


def test_bad_selector_is_an_error(connect: Connect) -> None:
    """A selector that does not parse is an ERROR on SUBSCRIBE."""
    consumer = connect("1.2")
    consumer.conn.subscribe("/queue/q", id="s", headers={"selector": "n >"})
    consumer.error("invalid selector")


# -- no-local ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["activemq.noLocal", "no-local"])
def test_no_local_subscriber_gets_nothing_its_connection_sends(
    connect: Connect, header: str
) -> None:
    """A topic subscriber with activemq.noLocal or no-local skips its own connection's sends."""
    producer = connect("1.2")
    consumer = connect("1.2")
    attach(consumer, "/topic/t", "s", {header: "true"})
    consumer.send("/topic/t", "own", receipt=True)
    producer.send("/topic/t", "other", receipt=True)
    producer.send("/topic/t", "end", receipt=True)
    assert bodies(consumer.wait_for_body("end")) == ["other", "end"]


def test_durable_no_local_keeps_nothing_its_connection_sends(
    connect: Connect, connect_as: ConnectAs
) -> None:
    """An ActiveMQ durable subscription with activemq.noLocal skips its connection's sends."""
    producer = connect("1.2")
    consumer = connect_as("1.2", "billing")
    headers = {"activemq.subscriptionName": "archive", "activemq.noLocal": "true"}
    attach(consumer, "/topic/t", "s", headers, ack="client-individual")
    consumer.send("/topic/t", "own", headers={"persistent": "true"}, receipt=True)
    producer.send("/topic/t", "other", headers={"persistent": "true"}, receipt=True)
    assert bodies(consumer.wait_for_body("other")) == ["other"]


def test_bad_no_local_value_is_an_error(connect: Connect) -> None:
    """no-local other than true or false is an ERROR naming the header."""
    consumer = connect("1.2")
    consumer.conn.subscribe("/topic/t", id="s", headers={"no-local": "yes"})
    consumer.error("invalid no-local")


# -- prefetch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["activemq.prefetchSize", "prefetch-count"])
def test_prefetch_bounds_messages_in_flight(
    broker: RunningBroker, connect: Connect, header: str
) -> None:
    """With prefetch 2 two messages are in flight; each ACK lets one more through."""
    producer = connect("1.2")
    consumer = connect("1.2")
    consumer.subscribe("/queue/q", ack="client-individual", headers={header: "2"})
    for n in range(5):
        producer.send("/queue/q", str(n), receipt=True)
    first = consumer.wait_messages(2)
    assert depth(broker, "q") == 3
    consumer.ack(first[0])
    assert bodies(consumer.wait_messages(3)) == ["0", "1", "2"]
    assert depth(broker, "q") == 2
    assert len(consumer.frames.messages) == 3


# -- browsing --------------------------------------------------------------------------------


def test_browser_sees_without_consuming(broker: RunningBroker, connect: Connect) -> None:
    """browser:true lists the queue, ends with browser:end, and leaves the queue as it was."""
    producer = connect("1.2")
    for body in ("a", "b", "c"):
        producer.send("/queue/q", body, receipt=True)
    browser = connect("1.2")
    browser.conn.subscribe("/queue/q", id="look", headers={"browser": "true"})
    frames = browser.wait_messages(4)
    assert bodies(frames[:3]) == ["a", "b", "c"]
    assert frames[3].headers["browser"] == "end"
    assert depth(broker, "q") == 3
    consumer = connect("1.2")
    consumer.subscribe("/queue/q")
    assert bodies(consumer.wait_messages(3)) == ["a", "b", "c"]


# -- exclusive consumers and message groups --------------------------------------------------


def test_exclusive_consumer_and_take_over(connect: Connect) -> None:
    """activemq.exclusive:true: one consumer gets everything; the next takes over when it leaves."""
    producer = connect("1.2")
    shared = connect("1.2")
    shared.subscribe("/queue/q")
    first = connect("1.2")
    first.subscribe("/queue/q", headers={"activemq.exclusive": "true"})
    second = connect("1.2")
    second.subscribe("/queue/q", headers={"activemq.exclusive": "true"})
    for n in range(3):
        producer.send("/queue/q", str(n), receipt=True)
    assert bodies(first.wait_messages(3)) == ["0", "1", "2"]
    first.disconnect()
    producer.send("/queue/q", "3", receipt=True)
    assert bodies(second.wait_messages(1)) == ["3"]
    assert shared.frames.messages == []


def test_message_group_sticks_and_moves(connect: Connect) -> None:
    """Messages of one JMSXGroupID go to one consumer; when it leaves, the group moves."""
    producer = connect("1.2")
    one = connect("1.2")
    two = connect("1.2")
    one.subscribe("/queue/q")
    two.subscribe("/queue/q")
    for n in range(4):
        producer.send("/queue/q", f"g-{n}", headers={"JMSXGroupID": "g"}, receipt=True)
    producer.send("/queue/q", "loose", receipt=True)
    received = {"one": one.frames.messages, "two": two.frames.messages}
    poll(lambda: sum(len(v) for v in received.values()) == 5, "five messages")
    owners = [k for k, v in received.items() if any(m.body.startswith("g-") for m in v)]
    assert len(owners) == 1, received
    (owner,) = owners
    in_group = [m.body for m in received[owner] if m.body.startswith("g-")]
    assert in_group == ["g-0", "g-1", "g-2", "g-3"]
    leaving, staying = (one, two) if owner == "one" else (two, one)
    leaving.disconnect()
    before = len(staying.frames.messages)
    producer.send("/queue/q", "g-4", headers={"JMSXGroupID": "g"}, receipt=True)
    assert staying.wait_messages(before + 1)[-1].body == "g-4"


# -- wildcards -----------------------------------------------------------------------------------


def test_topic_wildcards(connect: Connect) -> None:
    """* matches one part, > the rest; each MESSAGE names the topic it was sent to."""
    producer = connect("1.2")
    consumer = connect("1.2")
    star = consumer.subscribe("/topic/orders.*")
    rest = consumer.subscribe("/topic/orders.>")
    for name in ("orders.eu.new", "orders", "other.eu", "orders.eu", "orders.end"):
        producer.send(f"/topic/{name}", name, receipt=True)
    frames = consumer.frames
    frames.wait(lambda: [m.body for m in frames.messages].count("orders.end") == 2, "the ends")
    got = sorted(
        (m.headers["subscription"], m.body, m.headers["destination"]) for m in frames.messages
    )
    assert got == sorted(
        [
            (rest, "orders.eu.new", "/topic/orders.eu.new"),
            (star, "orders.eu", "/topic/orders.eu"),
            (rest, "orders.eu", "/topic/orders.eu"),
            (star, "orders.end", "/topic/orders.end"),
            (rest, "orders.end", "/topic/orders.end"),
        ]
    )


@pytest.mark.parametrize("destination", ["/topic/orders.*", "/topic/orders.>"])
def test_send_to_a_wildcard_is_an_error(connect: Connect, destination: str) -> None:
    """A SEND to a wildcard name is an ERROR."""
    producer = connect("1.2")
    producer.conn.send(destination, "x")
    producer.error(f"cannot send to the wildcard destination '{destination}'")


def test_wildcard_subscribe_on_a_queue_is_an_error(connect: Connect) -> None:
    """Wildcards are for topics only: SUBSCRIBE /queue/a.* is an ERROR."""
    consumer = connect("1.2")
    consumer.conn.subscribe("/queue/a.*", id="s")
    consumer.error("wildcards are supported on topics only, not in '/queue/a.*'")

"""The JMS model through STOMP sessions: durable subscriptions, temporary destinations,
transactions, redelivery and dead letters, expiry, priority, selectors, prefetch, browsing,
exclusive consumers, message groups and topic wildcards.

Every test drives real ``StompSession``s on in-memory transports (``tests.helpers``)
with a ``twisted.internet.task.Clock`` shared by the broker and the sessions: no
sockets, no sleeps. Header spellings are those of COMPAT.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock

from stompbroker.codec import Frame
from stompbroker.core import Broker, DestinationPolicy, PolicyMap
from stompbroker.testing import Client, connected_clients

#: A realistic "now" (seconds since the epoch) for the tests that use absolute expiry.
NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)

DURABLE_NAME = "archive"


# -- helpers ---------------------------------------------------------------------------


def start(
    count: int,
    policies: dict[str, DestinationPolicy] | None = None,
    now: float = 0.0,
) -> tuple[Broker, Clock, list[Client]]:
    """A broker with ``policies`` on a Clock at ``now``, and ``count`` connected clients."""
    clock = Clock()
    clock.advance(now)
    broker = Broker(clock=clock, policies=PolicyMap(policies or {}))
    return connected_clients(count, broker=broker, clock=clock)


def join(broker: Broker, clock: Clock, name: str, client_id: str | None = None) -> Client:
    """One more client of ``broker``, connected (with ``client-id`` when given)."""
    client = Client(broker, clock, name)
    extra = {"client_id": client_id} if client_id is not None else {}
    answer = client.connect(**extra)
    assert answer.command == "CONNECTED", answer
    return client


def receipts(client: Client) -> list[str]:
    """The receipt ids among the frames written since the last read (nothing else allowed)."""
    frames = client.frames()
    assert all(f.command == "RECEIPT" for f in frames), frames
    return [f.headers["receipt-id"] for f in frames]


def settle(client: Client, command: str, message: Frame, **headers: str) -> None:
    """ACK or NACK ``message`` by its 1.2 ``ack`` header."""
    pairs = {"id": message.headers["ack"]}
    pairs.update({k.replace("_", "-"): v for k, v in headers.items()})
    client.send(command, pairs)


def dead_letters(broker: Broker, clock: Clock, queue: str = "/queue/DLQ") -> list[Frame]:
    """What a fresh consumer of ``queue`` receives at once."""
    reader = join(broker, clock, f"dlq-reader-{len(broker.destinations.queues)}-{queue}")
    reader.subscribe(queue, "dlq")
    return reader.messages()


# -- durable subscriptions -----------------------------------------------------------------


@dataclass(frozen=True)
class Spelling:
    """One broker's way to name a durable subscription."""

    label: str
    client_id: str | None
    sub_id: str
    subscribe: dict[str, str]
    delete: dict[str, str] = field(default_factory=dict)


SPELLINGS = [
    Spelling(
        "activemq",
        "C",
        "sub-1",
        {"activemq.subscriptionName": DURABLE_NAME},
        {"activemq.subscriptionName": DURABLE_NAME},
    ),
    Spelling(
        "artemis-subscription-name",
        "C",
        "sub-1",
        {"durable-subscription-name": DURABLE_NAME},
        {"durable-subscription-name": DURABLE_NAME},
    ),
    Spelling(
        "artemis-subscriber-name",
        "C",
        "sub-1",
        {"durable-subscriber-name": DURABLE_NAME},
        {"durable-subscriber-name": DURABLE_NAME},
    ),
    Spelling(
        "rabbitmq-durable",
        None,
        DURABLE_NAME,
        {"durable": "true", "auto-delete": "false"},
        {"durable": "true"},
    ),
    Spelling(
        "rabbitmq-persistent",
        None,
        DURABLE_NAME,
        {"persistent": "true", "auto-delete": "false"},
        {"persistent": "true"},
    ),
    Spelling(
        "rabbitmq-x-queue-name",
        None,
        "sub-1",
        {"durable": "true", "auto-delete": "false", "x-queue-name": "Q"},
        {"durable": "true", "x-queue-name": "Q"},
    ),
    Spelling("apollo", None, DURABLE_NAME, {"persistent": "true"}, {"persistent": "true"}),
]

spellings = pytest.mark.parametrize("spelling", SPELLINGS, ids=[s.label for s in SPELLINGS])
#: The spellings that name a subscription one connection holds at a time (RabbitMQ's
#: x-queue-name names a shared one: tests/test_shared_subscriptions.py).
EXCLUSIVE = [s for s in SPELLINGS if "x-queue-name" not in s.subscribe]
exclusive_spellings = pytest.mark.parametrize(
    "spelling", EXCLUSIVE, ids=[s.label for s in EXCLUSIVE]
)


def in_use(spelling: Spelling) -> str:
    """The ERROR message for the durable subscription ``spelling`` names, attached elsewhere."""
    name = spelling.subscribe.get("x-queue-name", DURABLE_NAME)
    return f"durable subscription '{name}' is in use by another connection"


def gone(address: str) -> str:
    """The ERROR message for a temporary destination whose owner has left."""
    return f"temporary destination '{address}' does not exist (its owner has left)"


def not_yours(address: str) -> str:
    """The ERROR message for consuming from another connection's temporary destination."""
    return f"only the connection that created '{address}' may consume from it"


def durable_subscriber(
    broker: Broker, clock: Clock, spelling: Spelling, name: str, topic: str = "/topic/news"
) -> tuple[Client, list[bytes]]:
    """A new connection attached to the durable subscription ``spelling`` names, and the
    bodies of the kept messages delivered right after the SUBSCRIBE's RECEIPT."""
    client = join(broker, clock, name, spelling.client_id)
    client.subscribe(topic, spelling.sub_id, receipt="attached", **spelling.subscribe)
    frames = client.frames()
    assert frames and frames[0].command == "RECEIPT", frames
    assert all(f.command == "MESSAGE" for f in frames[1:]), frames
    return client, [f.body for f in frames[1:]]


def unsubscribe(client: Client, sub_id: str, **headers: str) -> None:
    """UNSUBSCRIBE ``sub_id`` (with extra headers) and expect its RECEIPT."""
    client.send("UNSUBSCRIBE", {"id": sub_id, "receipt": "gone", **headers})
    assert receipts(client) == ["gone"]


@spellings
def test_durable_keeps_messages_while_detached_and_delivers_them_in_order(
    spelling: Spelling,
) -> None:
    """After a plain UNSUBSCRIBE the durable subscription keeps what is published, in order."""
    broker, clock, (producer,) = start(1)
    first, _ = durable_subscriber(broker, clock, spelling, "first")
    producer.publish("/topic/news", b"live")
    assert first.bodies() == [b"live"]
    unsubscribe(first, spelling.sub_id)
    for body in (b"1", b"2", b"3"):
        producer.publish("/topic/news", body)
    assert first.frames() == []
    _, kept = durable_subscriber(broker, clock, spelling, "again")
    assert kept == [b"1", b"2", b"3"]


@spellings
def test_durable_keeps_messages_while_its_connection_is_gone(spelling: Spelling) -> None:
    """A dropped connection only detaches: the messages wait for the next connection."""
    broker, clock, (producer,) = start(1)
    first, _ = durable_subscriber(broker, clock, spelling, "first")
    first.lose()
    producer.publish("/topic/news", b"while away")
    _, kept = durable_subscriber(broker, clock, spelling, "again")
    assert kept == [b"while away"]


@spellings
def test_durable_form_unsubscribe_deletes_the_subscription(spelling: Spelling) -> None:
    """UNSUBSCRIBE carrying the durable header deletes it: nothing is kept after that."""
    broker, clock, (producer,) = start(1)
    first, _ = durable_subscriber(broker, clock, spelling, "first")
    unsubscribe(first, spelling.sub_id, **spelling.delete)
    assert len(broker.durables) == 0
    producer.publish("/topic/news", b"nobody keeps this")
    again, kept = durable_subscriber(broker, clock, spelling, "again")
    assert kept == []
    producer.publish("/topic/news", b"fresh")
    assert again.bodies() == [b"fresh"]


@spellings
def test_durable_delete_after_detaching(spelling: Spelling) -> None:
    """A detached durable subscription is deleted by the durable form, with what it kept."""
    broker, clock, (producer,) = start(1)
    first, _ = durable_subscriber(broker, clock, spelling, "first")
    unsubscribe(first, spelling.sub_id)
    producer.publish("/topic/news", b"kept, then deleted")
    unsubscribe(first, spelling.sub_id, **spelling.delete)
    assert len(broker.durables) == 0
    _, kept = durable_subscriber(broker, clock, spelling, "again")
    assert kept == []


@exclusive_spellings
def test_second_live_connection_cannot_attach(spelling: Spelling) -> None:
    """While one connection holds a durable subscription another SUBSCRIBE to it is an ERROR
    (x-queue-name shares it instead: tests/test_shared_subscriptions.py)."""
    broker, clock, (producer,) = start(1)
    holder, _ = durable_subscriber(broker, clock, spelling, "holder")
    intruder = join(broker, clock, "intruder", spelling.client_id)
    intruder.subscribe("/topic/news", spelling.sub_id, **spelling.subscribe)
    intruder.error(in_use(spelling))
    producer.publish("/topic/news", b"still mine")
    assert holder.bodies() == [b"still mine"]


@spellings
def test_deleting_a_durable_attached_elsewhere_is_an_error(spelling: Spelling) -> None:
    """The durable-form UNSUBSCRIBE from another connection is refused, saying it is in use."""
    broker, clock, (producer,) = start(1)
    holder, _ = durable_subscriber(broker, clock, spelling, "holder")
    other = join(broker, clock, "other", spelling.client_id)
    other.send("UNSUBSCRIBE", {"id": spelling.sub_id, **spelling.delete})
    other.error(in_use(spelling))
    assert len(broker.durables) == 1
    producer.publish("/topic/news", b"still attached")
    assert holder.bodies() == [b"still attached"]


def test_durable_unsubscribe_of_unknown_name_is_an_error() -> None:
    """Deleting a durable subscription that does not exist is an ERROR naming it."""
    broker, clock, _ = start(0)
    client = join(broker, clock, "c", "C")
    client.send("UNSUBSCRIBE", {"id": "x", "activemq.subscriptionName": "nothing"})
    client.error("no durable subscription named 'nothing'")


def test_rabbitmq_x_queue_name_durable_is_deleted_by_id_and_durable() -> None:
    """RabbitMQ: SUBSCRIBE id:S x-queue-name:Q, then UNSUBSCRIBE id:S durable:true deletes it."""
    broker, clock, _ = start(0)
    client = join(broker, clock, "c")
    client.subscribe("/topic/news", "S", durable="true", **{"x-queue-name": "Q"})
    unsubscribe(client, "S", durable="true")
    assert len(broker.durables) == 0


def test_failed_durable_unsubscribe_does_not_leave_the_subscription_attached() -> None:
    """An UNSUBSCRIBE naming an unknown durable ends the connection; its subscriptions detach."""
    broker, clock, (producer,) = start(1)
    holder = join(broker, clock, "holder", "C")
    holder.subscribe("/topic/news", "sub", **{"activemq.subscriptionName": "S"})
    holder.send("UNSUBSCRIBE", {"id": "sub", "activemq.subscriptionName": "WRONG"})
    holder.error("no durable subscription named 'WRONG'")
    holder.lose()
    producer.publish("/topic/news", b"kept for S", receipt="p")
    assert receipts(producer) == ["p"]
    back = join(broker, clock, "back", "C")
    back.subscribe("/topic/news", "sub", receipt="r", **{"activemq.subscriptionName": "S"})
    frames = back.frames()
    assert [f.command for f in frames] == ["RECEIPT", "MESSAGE"], frames
    assert frames[1].body == b"kept for S"


def test_unsubscribe_naming_another_durable_detaches_its_own_subscription() -> None:
    """UNSUBSCRIBE id:X naming durable T detaches X too: later messages never reach X's session."""
    broker, clock, (producer,) = start(1)
    keeper = join(broker, clock, "keeper", "C")
    keeper.subscribe("/topic/other", "t", **{"activemq.subscriptionName": "T"})
    unsubscribe(keeper, "t")
    holder = join(broker, clock, "holder", "C")
    holder.subscribe("/topic/news", "sub", **{"activemq.subscriptionName": "S"})
    holder.send("UNSUBSCRIBE", {"id": "sub", "activemq.subscriptionName": "T"})
    holder.frames()
    producer.publish("/topic/news", b"after", receipt="p")
    assert receipts(producer) == ["p"]
    assert holder.frames() == []


def test_resubscribing_to_another_topic_replaces_the_durable() -> None:
    """Same name, another topic: the old subscription and what it kept are replaced."""
    broker, clock, (producer,) = start(1)
    client = join(broker, clock, "c", "C")
    client.subscribe("/topic/a", "s", **{"activemq.subscriptionName": "S"})
    unsubscribe(client, "s")
    producer.publish("/topic/a", b"kept for a")
    client.subscribe("/topic/b", "s", **{"activemq.subscriptionName": "S"})
    assert client.frames() == []
    producer.publish("/topic/a", b"a again")
    producer.publish("/topic/b", b"b")
    assert client.bodies() == [b"b"]
    assert [d.pattern for d in broker.durables] == ["b"]


def test_resubscribing_with_another_selector_replaces_the_durable() -> None:
    """Same name and topic, another selector: replaced, and the new selector applies."""
    broker, clock, (producer,) = start(1)
    client = join(broker, clock, "c", "C")
    client.subscribe("/topic/a", "s", selector="kind = 'x'", **{"activemq.subscriptionName": "S"})
    unsubscribe(client, "s")
    producer.publish("/topic/a", b"old x", kind="x")
    client.subscribe("/topic/a", "s", selector="kind = 'y'", **{"activemq.subscriptionName": "S"})
    assert client.frames() == []
    producer.publish("/topic/a", b"new x", kind="x")
    producer.publish("/topic/a", b"new y", kind="y")
    assert client.bodies() == [b"new y"]


def test_durable_selector_filters_what_is_kept() -> None:
    """A durable subscription with a selector keeps only the matching messages while away."""
    broker, clock, (producer,) = start(1)
    client = join(broker, clock, "c", "C")
    client.subscribe("/topic/a", "s", selector="n > 1", **{"activemq.subscriptionName": "S"})
    unsubscribe(client, "s")
    for n in (1, 2, 3):
        producer.publish("/topic/a", b"%d" % n, n=str(n))
    back = join(broker, clock, "back", "C")
    back.subscribe("/topic/a", "s", selector="n > 1", **{"activemq.subscriptionName": "S"})
    assert back.bodies() == [b"2", b"3"]


def test_client_id_is_part_of_the_durable_identity() -> None:
    """Two client ids may each hold a durable subscription of the same name at once."""
    broker, clock, (producer,) = start(1)
    one = join(broker, clock, "one", "C1")
    two = join(broker, clock, "two", "C2")
    for client in (one, two):
        client.subscribe("/topic/a", "s", receipt="r", **{"activemq.subscriptionName": "S"})
        assert receipts(client) == ["r"]
    producer.publish("/topic/a", b"both")
    assert one.bodies() == [b"both"]
    assert two.bodies() == [b"both"]


def test_durable_gives_back_unacknowledged_messages_on_detach() -> None:
    """Unacknowledged messages of a detached durable subscriber come back, marked redelivered."""
    broker, clock, (producer,) = start(1)
    client = join(broker, clock, "c", "C")
    client.subscribe("/topic/a", "s", ack="client-individual", **{"activemq.subscriptionName": "S"})
    producer.publish("/topic/a", b"unacked")
    assert client.bodies() == [b"unacked"]
    client.lose()
    back = join(broker, clock, "back", "C")
    back.subscribe("/topic/a", "s", ack="client-individual", **{"activemq.subscriptionName": "S"})
    (again,) = back.messages()
    assert again.body == b"unacked"
    assert again.headers.get("redelivered") == "true"
    assert again.headers.get("delivery-count") == "2"


def test_apollo_dsub_attaches_to_an_existing_durable() -> None:
    """Apollo: SUBSCRIBE /dsub/S attaches to durable S and gets what it kept."""
    broker, clock, (producer,) = start(1)
    client = join(broker, clock, "c")
    client.subscribe("/topic/a", "S", persistent="true")
    unsubscribe(client, "S")
    producer.publish("/topic/a", b"kept")
    back = join(broker, clock, "back")
    back.subscribe("/dsub/S", "any-id")
    assert back.bodies() == [b"kept"]


def test_apollo_dsub_of_unknown_durable_is_an_error() -> None:
    """SUBSCRIBE /dsub/NAME when no such durable subscription exists is an ERROR."""
    broker, clock, _ = start(0)
    client = join(broker, clock, "c")
    client.subscribe("/dsub/nothing", "x")
    client.error("no durable subscription named 'nothing'")


def test_durable_on_wildcard_topic_keeps_matching_messages() -> None:
    """A durable subscription to /topic/orders.> keeps what is published under orders."""
    broker, clock, (producer,) = start(1)
    client = join(broker, clock, "c", "C")
    client.subscribe("/topic/orders.>", "s", **{"activemq.subscriptionName": "S"})
    unsubscribe(client, "s")
    producer.publish("/topic/orders.eu.new", b"eu")
    producer.publish("/topic/other", b"no")
    producer.publish("/topic/orders.us", b"us")
    back = join(broker, clock, "back", "C")
    back.subscribe("/topic/orders.>", "s", **{"activemq.subscriptionName": "S"})
    assert back.bodies() == [b"eu", b"us"]


@pytest.mark.parametrize("header", ["durable", "persistent"])
def test_rabbitmq_durable_header_on_a_queue_is_a_plain_queue_subscription(header: str) -> None:
    """RabbitMQ clients send durable:true on /queue/ SUBSCRIBEs too: it must not be an ERROR."""
    _, _, (producer, consumer) = start(2)
    consumer.subscribe("/queue/q", "s", receipt="r", **{header: "true", "auto-delete": "false"})
    assert receipts(consumer) == ["r"]
    producer.publish("/queue/q", b"x")
    assert consumer.bodies() == [b"x"]


# -- temporary destinations ---------------------------------------------------------------


def test_subscribe_to_temp_queue_creates_it_for_the_connection() -> None:
    """SUBSCRIBE /temp-queue/x creates the connection's temp queue; its own SENDs reach it."""
    broker, _, (owner,) = start(1)
    owner.subscribe("/temp-queue/x", "mine")
    (address,) = [t.address for t in broker.temporaries]
    assert address.startswith("/remote-temp-queue/")
    owner.publish("/temp-queue/x", b"to myself")
    (message,) = owner.messages()
    assert message.body == b"to myself"
    assert message.headers["destination"] == address


def test_reply_to_temp_queue_is_rewritten_and_the_reply_reaches_the_sender() -> None:
    """reply-to:/temp-queue/r becomes /remote-temp-queue/...; the reply reaches the sender."""
    broker, _, (requester, server) = start(2)
    server.subscribe("/queue/rpc", "s")
    requester.publish("/queue/rpc", b"question", **{"reply-to": "/temp-queue/r"})
    (request,) = server.messages()
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/remote-temp-queue/")
    assert broker.temporaries.get(reply_to) is not None
    server.publish(reply_to, b"answer", **{"correlation-id": "c1"})
    (reply,) = requester.messages()
    assert reply.body == b"answer"
    assert reply.headers["subscription"] == "/temp-queue/r"
    assert reply.headers["correlation-id"] == "c1"


def test_reply_to_temp_queue_uses_an_existing_subscription() -> None:
    """A sender already subscribed to its temp queue is not subscribed again: one copy arrives."""
    _, _, (requester, server) = start(2)
    requester.subscribe("/temp-queue/r", "mine")
    server.subscribe("/queue/rpc", "s")
    requester.publish("/queue/rpc", b"question", **{"reply-to": "/temp-queue/r"})
    (request,) = server.messages()
    server.publish(request.headers["reply-to"], b"answer")
    replies = requester.messages()
    assert [(m.headers["subscription"], m.body) for m in replies] == [("mine", b"answer")]


def test_others_may_not_subscribe_to_a_temp_queue() -> None:
    """Another connection SUBSCRIBEing to the rewritten name gets an ERROR; the owner keeps it."""
    _, _, (requester, server) = start(2)
    server.subscribe("/queue/rpc", "s")
    requester.publish("/queue/rpc", b"q", **{"reply-to": "/temp-queue/r"})
    reply_to = server.messages()[0].headers["reply-to"]
    server.subscribe(reply_to, "steal")
    server.error(not_yours(reply_to))


def test_others_may_not_browse_a_temp_queue() -> None:
    """Browsing another connection's temp queue is refused like subscribing to it."""
    broker, clock, (owner,) = start(1)
    owner.subscribe("/temp-queue/x", "mine")
    (address,) = [t.address for t in broker.temporaries]
    other = join(broker, clock, "other")
    other.subscribe(address, "b", browser="true")
    other.error(not_yours(address))


def test_same_temp_name_on_two_connections_is_two_queues() -> None:
    """/temp-queue/x of one connection is not /temp-queue/x of another."""
    broker, _, (one, two) = start(2)
    one.subscribe("/temp-queue/x", "a")
    two.subscribe("/temp-queue/x", "b")
    assert len(broker.temporaries) == 2
    one.publish("/temp-queue/x", b"for one")
    assert one.bodies() == [b"for one"]
    assert two.frames() == []


@pytest.mark.parametrize("ending", ["lose", "disconnect"])
def test_temp_queue_is_deleted_with_its_owner_and_later_sends_are_errors(ending: str) -> None:
    """When the owner's connection ends its temp queue goes; a SEND to it is then an ERROR."""
    broker, _, (requester, server) = start(2)
    server.subscribe("/queue/rpc", "s")
    requester.publish("/queue/rpc", b"q", **{"reply-to": "/temp-queue/r"})
    reply_to = server.messages()[0].headers["reply-to"]
    if ending == "lose":
        requester.lose()
    else:
        requester.send("DISCONNECT")
    assert len(broker.temporaries) == 0
    server.publish(reply_to, b"too late")
    server.error(gone(reply_to))


def test_reply_to_temp_topic_is_rewritten_and_replies_reach_the_sender() -> None:
    """reply-to:/temp-topic/t becomes /remote-temp-topic/...; others send to it, not subscribe."""
    broker, clock, (requester, server) = start(2)
    server.subscribe("/queue/rpc", "s")
    requester.publish("/queue/rpc", b"q", **{"reply-to": "/temp-topic/t"})
    reply_to = server.messages()[0].headers["reply-to"]
    assert reply_to.startswith("/remote-temp-topic/")
    server.publish(reply_to, b"a1")
    server.publish(reply_to, b"a2")
    assert requester.bodies() == [b"a1", b"a2"]
    thief = join(broker, clock, "thief")
    thief.subscribe(reply_to, "t")
    thief.error(not_yours(reply_to))
    requester.lose()
    assert len(broker.temporaries) == 0
    server.publish(reply_to, b"late")
    server.error(gone(reply_to))


def test_subscribe_to_temp_topic_creates_it() -> None:
    """SUBSCRIBE /temp-topic/t creates the connection's temp topic; its SENDs reach it."""
    broker, _, (owner,) = start(1)
    owner.subscribe("/temp-topic/t", "mine")
    (address,) = [t.address for t in broker.temporaries]
    assert address.startswith("/remote-temp-topic/")
    owner.publish("/temp-topic/t", b"hi")
    assert owner.bodies() == [b"hi"]


# -- transactions -----------------------------------------------------------------------


def test_commit_applies_staged_send_ack_and_nack_in_order() -> None:
    """COMMIT applies ACK, NACK, SEND as staged: the NACKed message returns before the new one."""
    _, _, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"m1")
    producer.publish("/queue/q", b"m2")
    m1, m2 = consumer.messages()
    consumer.send("BEGIN", {"transaction": "tx"})
    consumer.send("ACK", {"id": m1.headers["ack"], "transaction": "tx"})
    consumer.send("NACK", {"id": m2.headers["ack"], "transaction": "tx"})
    consumer.send("SEND", {"destination": "/queue/q", "transaction": "tx"}, b"m3")
    assert consumer.frames() == []
    consumer.send("COMMIT", {"transaction": "tx", "receipt": "c"})
    frames = consumer.frames()
    assert [(f.command, f.body) for f in frames] == [
        ("MESSAGE", b"m2"),
        ("MESSAGE", b"m3"),
        ("RECEIPT", b""),
    ]
    assert frames[0].headers.get("redelivered") == "true"
    assert m1.headers["message-id"] not in {f.headers.get("message-id") for f in frames}


def test_commit_applies_staged_nack_requeue_false_to_the_dlq() -> None:
    """A staged NACK requeue:false dead-letters the message at COMMIT, not before."""
    broker, clock, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"bad")
    (message,) = consumer.messages()
    consumer.send("BEGIN", {"transaction": "tx"})
    consumer.send("NACK", {"id": message.headers["ack"], "transaction": "tx", "requeue": "false"})
    assert broker.queue_depth("DLQ") == 0
    consumer.send("COMMIT", {"transaction": "tx"})
    (dead,) = dead_letters(broker, clock)
    assert dead.body == b"bad"
    assert dead.headers["dead-letter-reason"] == "nack"


def test_abort_drops_sends_and_redelivers_what_its_acks_covered() -> None:
    """ABORT: staged SENDs never arrive; the message whose ACK was dropped is redelivered."""
    broker, _, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"m1")
    (m1,) = consumer.messages()
    consumer.send("BEGIN", {"transaction": "tx"})
    consumer.send("ACK", {"id": m1.headers["ack"], "transaction": "tx"})
    consumer.send("SEND", {"destination": "/queue/q", "transaction": "tx"}, b"never")
    consumer.send("ABORT", {"transaction": "tx"})
    (again,) = consumer.messages()
    assert again.body == b"m1"
    assert again.headers["redelivered"] == "true"
    assert again.headers["delivery-count"] == "2"
    assert broker.queue_depth("q") == 0


#: What an ERROR about a bad integer header goes on to say.
PRIORITY_RANGE = "expected an integer from 0 to 9"
MILLISECONDS = "expected a non-negative integer (ms) of at most 15 digits"


@pytest.mark.parametrize(
    ("destination", "headers", "message"),
    [
        ("/queue/a.*", {}, "cannot send to the wildcard destination '/queue/a.*'"),
        ("/topic/a.>", {}, "cannot send to the wildcard destination '/topic/a.>'"),
        (
            "/nowhere/x",
            {},
            "unsupported destination '/nowhere/x': "
            "use /queue/NAME, /topic/NAME, /temp-queue/NAME or /temp-topic/NAME",
        ),
        ("/remote-temp-queue/nobody-x", {}, gone("/remote-temp-queue/nobody-x")),
        ("/dsub/x", {}, "cannot send to the durable subscription '/dsub/x'"),
        ("/queue/q", {"priority": "10"}, f"invalid priority '10': {PRIORITY_RANGE}"),
        ("/queue/q", {"priority": "high"}, f"invalid priority 'high': {PRIORITY_RANGE}"),
        ("/queue/q", {"expires": "soon"}, f"invalid expires 'soon': {MILLISECONDS}"),
        ("/queue/q", {"ttl": "-5"}, f"invalid ttl '-5': {MILLISECONDS}"),
        ("/queue/q", {"expiration": "1.5"}, f"invalid expiration '1.5': {MILLISECONDS}"),
    ],
)
def test_staged_send_is_checked_when_staged(
    destination: str, headers: dict[str, str], message: str
) -> None:
    """A staged SEND with a bad destination or header is an ERROR at SEND time, not at COMMIT."""
    _, _, (producer, consumer) = start(2)
    consumer.subscribe("/queue/q", "s")
    producer.send("BEGIN", {"transaction": "tx"})
    producer.send("SEND", {"destination": "/queue/q", "transaction": "tx"}, b"staged ok")
    producer.send(
        "SEND", {"destination": destination, "transaction": "tx", "receipt": "r", **headers}, b"x"
    )
    error = producer.error(message)
    assert error.headers.get("receipt-id") == "r"
    assert consumer.frames() == []


def test_failed_commit_applies_nothing() -> None:
    """A COMMIT whose staged SEND can no longer be applied is an ERROR and applies nothing."""
    _, _, (requester, server, consumer) = start(3)
    consumer.subscribe("/queue/q", "s")
    server.subscribe("/queue/rpc", "s")
    requester.publish("/queue/rpc", b"q", **{"reply-to": "/temp-queue/r"})
    reply_to = server.messages()[0].headers["reply-to"]
    server.send("BEGIN", {"transaction": "tx"})
    server.send("SEND", {"destination": "/queue/q", "transaction": "tx"}, b"first")
    server.send("SEND", {"destination": reply_to, "transaction": "tx"}, b"reply")
    requester.lose()
    server.send("COMMIT", {"transaction": "tx"})
    server.error(gone(reply_to))
    assert consumer.frames() == [], "a failed COMMIT applied part of its transaction"


# -- redelivery and dead letters ---------------------------------------------------------


def test_redelivery_carries_redelivered_and_delivery_count() -> None:
    """Each redelivery says redelivered:true and counts the deliveries; the first says nothing."""
    _, _, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"m")
    (first,) = consumer.messages()
    assert "redelivered" not in first.headers
    assert "delivery-count" not in first.headers
    settle(consumer, "NACK", first)
    (second,) = consumer.messages()
    assert (second.headers["redelivered"], second.headers["delivery-count"]) == ("true", "2")
    settle(consumer, "NACK", second)
    (third,) = consumer.messages()
    assert third.headers["delivery-count"] == "3"
    assert third.headers["message-id"] == first.headers["message-id"]


def test_unacked_messages_of_a_leaving_consumer_are_redelivered_to_another() -> None:
    """A consumer that leaves without ACK gives its messages to another, marked redelivered."""
    broker, clock, (first, producer) = start(2)
    first.subscribe("/queue/q", "s", ack="client")
    producer.publish("/queue/q", b"m")
    assert first.bodies() == [b"m"]
    second = join(broker, clock, "second")
    second.subscribe("/queue/q", "s")
    first.lose()
    (again,) = second.messages()
    assert again.body == b"m"
    assert again.headers["redelivered"] == "true"
    assert again.headers["delivery-count"] == "2"


def test_max_redeliveries_then_dead_letter_with_headers() -> None:
    """After 1 + max_redeliveries deliveries the message goes to the DLQ with its story."""
    broker, clock, (consumer, producer) = start(
        2, {"/queue/q": DestinationPolicy(max_redeliveries=1)}
    )
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"poison", kind="test")
    (first,) = consumer.messages()
    settle(consumer, "NACK", first)
    (second,) = consumer.messages()
    settle(consumer, "NACK", second)
    assert consumer.frames() == []
    (dead,) = dead_letters(broker, clock)
    assert dead.body == b"poison"
    assert dead.headers["destination"] == "/queue/DLQ"
    assert dead.headers["original-destination"] == "/queue/q"
    assert dead.headers["dead-letter-reason"] == "max-redeliveries"
    assert dead.headers["original-delivery-count"] == "2"
    assert dead.headers["message-id"] == first.headers["message-id"]
    assert dead.headers["kind"] == "test"


def test_topic_max_redeliveries_counts_deliveries_like_a_queue() -> None:
    """On a topic too, the dead letter's original-delivery-count is the number of deliveries."""
    broker, clock, (consumer, producer) = start(
        2, {"/topic/t": DestinationPolicy(max_redeliveries=1)}
    )
    consumer.subscribe("/topic/t", "s", ack="client-individual")
    producer.publish("/topic/t", b"poison")
    deliveries = 0
    for _ in range(10):
        frames = consumer.messages()
        if not frames:
            break
        deliveries += 1
        settle(consumer, "NACK", frames[0])
    assert deliveries == 2
    (dead,) = dead_letters(broker, clock)
    assert dead.headers["original-destination"] == "/topic/t"
    assert dead.headers["dead-letter-reason"] == "max-redeliveries"
    assert dead.headers["original-delivery-count"] == "2"


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
def test_nack_requeue_false_dead_letters_at_once(destination: str) -> None:
    """NACK requeue:false sends the message to the DLQ at once, reason nack, count 1."""
    broker, clock, (consumer, producer) = start(2)
    consumer.subscribe(destination, "s", ack="client-individual")
    producer.publish(destination, b"reject me")
    (message,) = consumer.messages()
    settle(consumer, "NACK", message, requeue="false")
    assert consumer.frames() == []
    (dead,) = dead_letters(broker, clock)
    assert dead.body == b"reject me"
    assert dead.headers["original-destination"] == destination
    assert dead.headers["dead-letter-reason"] == "nack"
    assert dead.headers["original-delivery-count"] == "1"


def test_dead_letters_go_to_the_destinations_own_dlq() -> None:
    """A destination policy may name its own dead-letter queue."""
    broker, clock, (consumer, producer) = start(
        2, {"/queue/q": DestinationPolicy(dead_letter_queue="/queue/q.dead")}
    )
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"m")
    settle(consumer, "NACK", consumer.messages()[0], requeue="false")
    assert broker.queue_depth("DLQ") == 0
    (dead,) = dead_letters(broker, clock, "/queue/q.dead")
    assert dead.headers["original-destination"] == "/queue/q"


def test_a_dead_letter_failing_on_the_dlq_is_dropped_not_looped() -> None:
    """NACK requeue:false on the DLQ drops the message (counted): no loop back into the DLQ."""
    broker, clock, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"m")
    settle(consumer, "NACK", consumer.messages()[0], requeue="false")
    reader = join(broker, clock, "reader")
    reader.subscribe("/queue/DLQ", "d", ack="client-individual")
    settle(reader, "NACK", reader.messages()[0], requeue="false")
    assert reader.frames() == []
    assert broker.queue_depth("DLQ") == 0
    assert broker.counters["dropped"] == 1


def test_redelivery_waits_for_the_delay_with_backoff() -> None:
    """Redeliveries wait redelivery_delay_ms, then backoff times longer, capped at the maximum."""
    policy = DestinationPolicy(
        redelivery_delay_ms=100, redelivery_backoff=2.0, max_redelivery_delay_ms=300
    )
    _, clock, (consumer, producer) = start(2, {"/queue/q": policy})
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"m")
    message = consumer.messages()[0]
    for delay_ms in (100, 200, 300, 300):
        settle(consumer, "NACK", message)
        clock.advance((delay_ms - 1) / 1000)
        assert consumer.frames() == [], f"redelivered before {delay_ms} ms"
        clock.advance(0.002)  # 1 ms past the delay: no float rounding can hide it
        (message,) = consumer.messages()
        assert message.headers["redelivered"] == "true"


def test_delayed_redelivery_lets_other_messages_pass() -> None:
    """While a NACKed message waits out its delay, the messages behind it are delivered."""
    _, clock, (consumer, producer) = start(
        2, {"/queue/q": DestinationPolicy(redelivery_delay_ms=1000)}
    )
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"first")
    first = consumer.messages()[0]
    settle(consumer, "NACK", first)
    producer.publish("/queue/q", b"second")
    assert consumer.bodies() == [b"second"]
    clock.advance(1.0)
    assert consumer.bodies() == [b"first"]


def test_poison_message_nacked_forever_ends_in_the_dlq() -> None:
    """With the default policy a message NACKed every time is delivered 7 times, then dead."""
    broker, clock, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual")
    producer.publish("/queue/q", b"poison")
    deliveries = 0
    for _ in range(50):  # a bound: a hot loop would fail here, not hang
        frames = consumer.messages()
        if not frames:
            break
        assert len(frames) == 1
        deliveries += 1
        settle(consumer, "NACK", frames[0])
    assert deliveries == 1 + DestinationPolicy().max_redeliveries
    (dead,) = dead_letters(broker, clock)
    assert dead.headers["original-delivery-count"] == str(deliveries)
    assert broker.queue_depth("q") == 0


# -- expiry ------------------------------------------------------------------------------


EXPIRY_HEADERS = [
    ("expires", str(NOW_MS + 100)),
    ("ttl", "100"),
    ("expiration", "100"),
]


@pytest.mark.parametrize(("header", "value"), EXPIRY_HEADERS)
def test_message_is_delivered_before_it_expires(header: str, value: str) -> None:
    """Until its expiry time a message is delivered, with an absolute expires header."""
    _, clock, (consumer, producer) = start(2, now=NOW)
    producer.publish("/queue/q", b"fresh", **{header: value})
    clock.advance(0.099)
    consumer.subscribe("/queue/q", "s")
    (message,) = consumer.messages()
    assert message.body == b"fresh"
    assert message.headers["expires"] == str(NOW_MS + 100)


@pytest.mark.parametrize(("header", "value"), EXPIRY_HEADERS)
def test_expired_message_is_never_delivered_and_is_dead_lettered(header: str, value: str) -> None:
    """Once expired a queued message is not delivered; it goes to the DLQ, reason expired."""
    broker, clock, (consumer, producer) = start(2, now=NOW)
    producer.publish("/queue/q", b"stale", **{header: value})
    producer.publish("/queue/q", b"marker")
    clock.advance(0.1)
    consumer.subscribe("/queue/q", "s")
    assert consumer.bodies() == [b"marker"]
    (dead,) = dead_letters(broker, clock)
    assert dead.body == b"stale"
    assert dead.headers["dead-letter-reason"] == "expired"
    assert dead.headers["original-destination"] == "/queue/q"


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
def test_message_sent_already_expired_is_never_delivered(destination: str) -> None:
    """A SEND whose absolute expires is in the past never reaches a waiting subscriber."""
    broker, clock, (consumer, producer) = start(2, now=NOW)
    consumer.subscribe(destination, "s")
    producer.publish(destination, b"dead on arrival", expires=str(NOW_MS - 1000))
    producer.publish(destination, b"marker")
    assert consumer.bodies() == [b"marker"]
    (dead,) = dead_letters(broker, clock)
    assert dead.headers["dead-letter-reason"] == "expired"


def test_expires_zero_means_never() -> None:
    """expires:0 never expires, however long the message waits."""
    _, clock, (consumer, producer) = start(2, now=NOW)
    producer.publish("/queue/q", b"forever", expires="0")
    clock.advance(10 * 365 * 24 * 3600)
    consumer.subscribe("/queue/q", "s")
    assert consumer.bodies() == [b"forever"]


def test_expired_message_waiting_for_a_topic_subscriber_is_not_delivered() -> None:
    """A topic copy that expires while its subscriber is at its prefetch limit is dead-lettered."""
    broker, clock, (consumer, producer) = start(2, now=NOW)
    consumer.subscribe("/topic/t", "s", ack="client-individual", **{"activemq.prefetchSize": "1"})
    producer.publish("/topic/t", b"first")
    producer.publish("/topic/t", b"stale", ttl="100")
    (first,) = consumer.messages()
    clock.advance(0.1)
    settle(consumer, "ACK", first)
    assert consumer.frames() == []
    (dead,) = dead_letters(broker, clock)
    assert (dead.body, dead.headers["dead-letter-reason"]) == (b"stale", "expired")


def test_destination_may_drop_expired_messages() -> None:
    """With dead_letter_expired off an expired message is dropped and counted, not dead-lettered."""
    broker, clock, (consumer, producer) = start(
        2, {"/queue/q": DestinationPolicy(dead_letter_expired=False)}, now=NOW
    )
    producer.publish("/queue/q", b"stale", ttl="10")
    clock.advance(1)
    consumer.subscribe("/queue/q", "s")
    assert consumer.frames() == []
    assert broker.queue_depth("DLQ") == 0
    assert broker.counters["expired"] == 1


def test_sweep_dead_letters_expired_messages_nobody_consumes() -> None:
    """The periodic sweep moves expired messages out of a queue that has no consumer."""
    broker, clock, (producer,) = start(1, now=NOW)
    producer.publish("/queue/q", b"stale", ttl="10")
    producer.publish("/queue/q", b"fresh")
    clock.advance(1)
    assert broker.sweep_expired() == 1
    assert broker.queue_depth("q") == 1
    assert broker.queue_depth("DLQ") == 1


def test_queue_emptied_by_the_sweep_is_forgotten() -> None:
    """A queue the sweep leaves empty and unsubscribed is forgotten, as a drained one is."""
    broker, clock, (producer,) = start(
        1, {"/queue/q": DestinationPolicy(dead_letter_expired=False)}, now=NOW
    )
    producer.publish("/queue/q", b"stale", ttl="10")
    clock.advance(1)
    broker.sweep_expired()
    assert broker.destinations.queues == {}


def test_topic_left_during_a_redelivery_delay_is_forgotten() -> None:
    """A topic whose last subscriber left while a redelivery was pending is forgotten after it."""
    broker, clock, (consumer, producer) = start(
        2, {"/topic/t": DestinationPolicy(redelivery_delay_ms=100)}
    )
    consumer.subscribe("/topic/t", "s", ack="client-individual")
    producer.publish("/topic/t", b"m")
    settle(consumer, "NACK", consumer.messages()[0])
    consumer.send("UNSUBSCRIBE", {"id": "s"})
    clock.advance(1)
    assert consumer.frames() == []
    assert broker.destinations.topics == {}


# -- priority ----------------------------------------------------------------------------


def test_higher_priority_first_fifo_within_a_priority() -> None:
    """Queued messages go out by priority (9 first), in arrival order within one priority."""
    _, _, (consumer, producer) = start(2)
    sends = [(b"a", "4"), (b"b", "9"), (b"c", "4"), (b"d", "0"), (b"e", "9"), (b"f", None)]
    for body, priority in sends:
        extra = {"priority": priority} if priority is not None else {}
        producer.publish("/queue/q", body, **extra)
    consumer.subscribe("/queue/q", "s")
    assert consumer.bodies() == [b"b", b"e", b"a", b"c", b"f", b"d"]


def test_nacked_message_returns_to_its_place() -> None:
    """A NACKed message is delivered again before the messages that came after it."""
    _, _, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual", **{"activemq.prefetchSize": "1"})
    producer.publish("/queue/q", b"x", priority="9")
    producer.publish("/queue/q", b"y", priority="4")
    producer.publish("/queue/q", b"z", priority="9")
    (x,) = consumer.messages()
    assert x.body == b"x"
    settle(consumer, "NACK", x)
    order = []
    for _ in range(3):
        (message,) = consumer.messages()
        order.append(message.body)
        settle(consumer, "ACK", message)
    assert order == [b"x", b"z", b"y"]


@pytest.mark.parametrize("priority", ["10", "-1", "high", "", "4.5"])
def test_invalid_priority_is_an_error(priority: str) -> None:
    """A priority outside 0-9 is an ERROR and the message is not accepted."""
    _, _, (producer, consumer) = start(2)
    consumer.subscribe("/queue/q", "s")
    producer.publish("/queue/q", b"x", priority=priority)
    producer.error(f"invalid priority '{priority}': {PRIORITY_RANGE}")
    assert consumer.frames() == []


# -- selectors ---------------------------------------------------------------------------


def test_queue_selector_leaves_other_messages_for_another_consumer() -> None:
    """On a queue a non-matching message stays queued and goes to a consumer that matches it."""
    broker, clock, (red, producer) = start(2)
    red.subscribe("/queue/q", "s", selector="color = 'red'")
    producer.publish("/queue/q", b"blue 1", color="blue")
    producer.publish("/queue/q", b"red 1", color="red")
    producer.publish("/queue/q", b"no color")
    assert red.bodies() == [b"red 1"]
    assert broker.queue_depth("q") == 2
    blue = join(broker, clock, "blue")
    blue.subscribe("/queue/q", "s", selector="color = 'blue'")
    assert blue.bodies() == [b"blue 1"]
    anyone = join(broker, clock, "anyone")
    anyone.subscribe("/queue/q", "s")
    assert anyone.bodies() == [b"no color"]


def test_topic_selector_delivers_matching_messages_only() -> None:
    """On a topic a subscriber with a selector gets the matches; one without gets everything."""
    _, _, (picky, everyone, producer) = start(3)
    picky.subscribe("/topic/t", "s", selector="kind IN ('a', 'b') AND NOT urgent = 'no'")
    everyone.subscribe("/topic/t", "s")
    producer.publish("/topic/t", b"1", kind="a", urgent="yes")
    producer.publish("/topic/t", b"2", kind="c", urgent="yes")
    producer.publish("/topic/t", b"3", kind="b", urgent="no")
    producer.publish("/topic/t", b"4", kind="b", urgent="yes")
    assert picky.bodies() == [b"1", b"4"]
    assert everyone.bodies() == [b"1", b"2", b"3", b"4"]


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
def test_selector_compares_numbers_as_numbers(destination: str) -> None:
    """n > 9 holds for n:10 and n:9.5, not for n:8 (as strings "10" < "9")."""
    _, _, (consumer, producer) = start(2)
    consumer.subscribe(destination, "s", selector="n > 9")
    for n in ("10", "8", "9.5", "100", "9"):
        producer.publish(destination, n.encode(), n=n)
    assert consumer.bodies() == [b"10", b"9.5", b"100"]


@pytest.mark.parametrize("selector", ["color = ", "color == 'red'", "(a = 1", "a LIKE", "x @ 2"])
def test_bad_selector_is_an_error_on_subscribe(selector: str) -> None:
    """A selector that does not parse is an ERROR on SUBSCRIBE, with its receipt id."""
    _, _, (consumer,) = start(1)
    consumer.subscribe("/queue/q", "s", selector=selector, receipt="r")
    error = consumer.error("invalid selector")
    assert error.headers.get("receipt-id") == "r"


# -- prefetch ----------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["activemq.prefetchSize", "prefetch-count"])
def test_prefetch_bounds_unacknowledged_messages(header: str) -> None:
    """At most N unacknowledged messages are in flight; each ACK lets one more through."""
    broker, _, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client-individual", **{header: "2"})
    for n in range(5):
        producer.publish("/queue/q", b"%d" % n)
    first = consumer.messages()
    assert [m.body for m in first] == [b"0", b"1"]
    assert broker.queue_depth("q") == 3
    settle(consumer, "ACK", first[1])
    assert consumer.bodies() == [b"2"]
    settle(consumer, "ACK", first[0])
    assert consumer.bodies() == [b"3"]


def test_prefetch_with_cumulative_client_ack() -> None:
    """In client mode one ACK covers earlier messages too, freeing that many slots."""
    _, _, (consumer, producer) = start(2)
    consumer.subscribe("/queue/q", "s", ack="client", **{"prefetch-count": "2"})
    for n in range(5):
        producer.publish("/queue/q", b"%d" % n)
    first = consumer.messages()
    assert len(first) == 2
    settle(consumer, "ACK", first[1])
    assert consumer.bodies() == [b"2", b"3"]


def test_prefetch_full_consumer_is_passed_over() -> None:
    """A consumer at its prefetch limit is skipped; the other consumer takes the messages."""
    broker, clock, (slow, producer) = start(2)
    slow.subscribe("/queue/q", "s", ack="client-individual", **{"activemq.prefetchSize": "1"})
    fast = join(broker, clock, "fast")
    fast.subscribe("/queue/q", "s")
    for n in range(4):
        producer.publish("/queue/q", b"%d" % n)
    assert len(slow.messages()) == 1
    assert len(fast.messages()) == 3


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_invalid_prefetch_is_an_error(value: str) -> None:
    """A prefetch that is not a positive integer is an ERROR on SUBSCRIBE."""
    _, _, (consumer,) = start(1)
    consumer.subscribe("/queue/q", "s", ack="client", **{"activemq.prefetchSize": value})
    consumer.error("invalid activemq.prefetchSize")


# -- browsing ----------------------------------------------------------------------------


def test_browser_sees_queued_messages_without_consuming_them() -> None:
    """browser:true lists the queued messages in order, then browser:end; the queue keeps them."""
    broker, clock, (browser, producer) = start(2)
    for body, priority in ((b"a", "4"), (b"b", "4"), (b"c", "9")):
        producer.publish("/queue/q", body, priority=priority)
    browser.subscribe("/queue/q", "look", browser="true")
    frames = browser.messages()
    assert [f.body for f in frames[:-1]] == [b"c", b"a", b"b"]
    end = frames[-1]
    assert end.headers["browser"] == "end"
    assert end.headers["subscription"] == "look"
    assert end.body == b""
    assert all("browser" not in f.headers for f in frames[:-1])
    assert broker.queue_depth("q") == 3
    consumer = join(broker, clock, "consumer")
    consumer.subscribe("/queue/q", "s")
    consumed = consumer.messages()
    assert [m.body for m in consumed] == [b"c", b"a", b"b"]
    assert all("redelivered" not in m.headers for m in consumed)


def test_browser_with_selector() -> None:
    """A browsing SUBSCRIBE with a selector lists the matching messages only."""
    broker, _, (browser, producer) = start(2)
    producer.publish("/queue/q", b"1", n="1")
    producer.publish("/queue/q", b"2", n="2")
    browser.subscribe("/queue/q", "look", browser="true", selector="n >= 2")
    assert [f.body for f in browser.messages()] == [b"2", b""]
    assert broker.queue_depth("q") == 2


def test_browsing_an_empty_queue_gives_only_the_end() -> None:
    """Browsing a queue with nothing in it gives the browser:end MESSAGE and creates nothing."""
    broker, _, (browser,) = start(1)
    browser.subscribe("/queue/empty", "look", browser="true")
    (end,) = browser.messages()
    assert end.headers["browser"] == "end"
    assert broker.destinations.queues == {}
    browser.send("UNSUBSCRIBE", {"id": "look", "receipt": "u"})
    assert receipts(browser) == ["u"]


def test_browsing_a_topic_is_an_error() -> None:
    """Only queues can be browsed."""
    _, _, (browser,) = start(1)
    browser.subscribe("/topic/t", "look", browser="true")
    browser.error("only queues can be browsed, not '/topic/t'")


# -- exclusive consumers -----------------------------------------------------------------


def test_exclusive_consumer_gets_everything_and_the_next_takes_over() -> None:
    """The first exclusive consumer gets every message; when it leaves the next one does."""
    _, _, (shared, first, second, producer) = start(4)
    shared.subscribe("/queue/q", "s")
    first.subscribe("/queue/q", "s", ack="client-individual", **{"activemq.exclusive": "true"})
    second.subscribe("/queue/q", "s", **{"activemq.exclusive": "true"})
    for n in range(4):
        producer.publish("/queue/q", b"%d" % n)
    held = first.messages()
    assert [m.body for m in held] == [b"0", b"1", b"2", b"3"]
    assert shared.frames() == second.frames() == []
    settle(first, "ACK", held[0])
    first.lose()
    taken = second.messages()
    assert [m.body for m in taken] == [b"1", b"2", b"3"]
    assert all(m.headers["redelivered"] == "true" for m in taken)
    producer.publish("/queue/q", b"4")
    assert second.bodies() == [b"4"]
    assert shared.frames() == []
    second.send("UNSUBSCRIBE", {"id": "s"})
    producer.publish("/queue/q", b"5")
    assert shared.bodies() == [b"5"]


# -- message groups ----------------------------------------------------------------------


def test_message_group_sticks_to_one_consumer_and_moves_when_it_leaves() -> None:
    """Messages of a JMSXGroupID all go to one consumer; when it leaves the group moves."""
    _, _, (one, two, producer) = start(3)
    clients = {"one": one, "two": two}
    for client in clients.values():
        client.subscribe("/queue/q", "s")
    for n in range(3):
        for group in ("g1", "g2"):
            producer.publish("/queue/q", f"{group}-{n}".encode(), JMSXGroupID=group)
        producer.publish("/queue/q", f"loose-{n}".encode())
    got = {name: [b.decode() for b in client.bodies()] for name, client in clients.items()}
    owner_of = {}
    for group in ("g1", "g2"):
        owners = [name for name, bodies in got.items() if any(b.startswith(group) for b in bodies)]
        assert len(owners) == 1, (group, got)
        owner_of[group] = owners[0]
        in_group = [b for b in got[owners[0]] if b.startswith(group)]
        assert in_group == [f"{group}-{n}" for n in range(3)]
    leaving = owner_of["g1"]
    staying = "two" if leaving == "one" else "one"
    clients[leaving].send("UNSUBSCRIBE", {"id": "s"})
    producer.publish("/queue/q", b"g1-3", JMSXGroupID="g1")
    assert clients[staying].bodies() == [b"g1-3"]


def test_message_group_waits_for_its_busy_owner() -> None:
    """A group's message waits for its owner (at its prefetch limit) rather than go elsewhere."""
    broker, clock, (owner, producer) = start(2)
    owner.subscribe("/queue/q", "s", ack="client-individual", **{"activemq.prefetchSize": "1"})
    producer.publish("/queue/q", b"g-0", JMSXGroupID="g")
    other = join(broker, clock, "other")
    other.subscribe("/queue/q", "s")
    producer.publish("/queue/q", b"g-1", JMSXGroupID="g")
    producer.publish("/queue/q", b"free")
    (first,) = owner.messages()
    assert other.bodies() == [b"free"]
    settle(owner, "ACK", first)
    assert owner.bodies() == [b"g-1"]


# -- wildcards ---------------------------------------------------------------------------


def test_star_matches_exactly_one_part() -> None:
    """/topic/orders.* receives orders.eu, not orders or orders.eu.new."""
    _, _, (consumer, producer) = start(2)
    consumer.subscribe("/topic/orders.*", "s")
    for name in ("orders", "orders.eu", "orders.eu.new", "orders.us", "other.eu"):
        producer.publish(f"/topic/{name}", name.encode())
    messages = consumer.messages()
    assert [m.body for m in messages] == [b"orders.eu", b"orders.us"]
    assert messages[0].headers["destination"] == "/topic/orders.eu"


def test_greater_than_matches_the_rest() -> None:
    """/topic/orders.> receives orders.eu and orders.eu.new, not orders itself."""
    _, _, (consumer, producer) = start(2)
    consumer.subscribe("/topic/orders.>", "s")
    for name in ("orders", "orders.eu", "orders.eu.new", "ordersx.eu"):
        producer.publish(f"/topic/{name}", name.encode())
    assert consumer.bodies() == [b"orders.eu", b"orders.eu.new"]


def test_wildcard_and_exact_subscribers_each_get_a_copy() -> None:
    """An exact and a wildcard subscriber of the same topic both receive its messages."""
    _, _, (exact, wild, producer) = start(3)
    exact.subscribe("/topic/a.b", "s")
    wild.subscribe("/topic/a.*", "s")
    producer.publish("/topic/a.b", b"m")
    assert exact.bodies() == [b"m"]
    assert wild.bodies() == [b"m"]


@pytest.mark.parametrize("destination", ["/topic/orders.*", "/topic/orders.>", "/queue/a.*"])
def test_send_to_a_wildcard_is_an_error(destination: str) -> None:
    """A SEND names one destination: a wildcard name is an ERROR."""
    _, _, (producer,) = start(1)
    producer.publish(destination, b"x")
    producer.error(f"cannot send to the wildcard destination '{destination}'")


@pytest.mark.parametrize("destination", ["/queue/orders.*", "/queue/orders.>"])
def test_wildcard_subscribe_on_a_queue_is_an_error(destination: str) -> None:
    """Wildcards are for topics only."""
    _, _, (consumer,) = start(1)
    consumer.subscribe(destination, "s")
    consumer.error(f"wildcards are supported on topics only, not in '{destination}'")


def test_greater_than_must_come_last() -> None:
    """/topic/a.>.b is not a valid pattern: ERROR on SUBSCRIBE."""
    _, _, (consumer,) = start(1)
    consumer.subscribe("/topic/a.>.b", "s")
    consumer.error("invalid wildcard pattern '/topic/a.>.b': '>' must come last")

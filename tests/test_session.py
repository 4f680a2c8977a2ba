"""The STOMP rules a session enforces, driven through bytes on in-memory transports."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel

from stompbroker.codec import Frame
from stompbroker.core import Broker, Message
from stompbroker.session import SessionSettings
from stompbroker.store import MemoryStore
from stompbroker.testing import QUIET, Client, connected_clients
from tests.helpers import RecordingObserver, broker_is_empty


def _unsupported(destination: str) -> str:
    """The ERROR message for a destination that names none of the kinds we serve."""
    return (
        f"unsupported destination '{destination}': "
        "use /queue/NAME, /topic/NAME, /temp-queue/NAME or /temp-topic/NAME"
    )


def _receipts(frames: list[Frame]) -> list[str]:
    return [f.headers["receipt-id"] for f in frames if f.command == "RECEIPT"]


def _raw_header_lines(data: bytes, command: bytes) -> list[list[bytes]]:
    """Header lines of each ``command`` frame in raw output (bodies must hold no LF LF)."""
    out = []
    for chunk in data.split(b"\0"):
        chunk = chunk.lstrip(b"\r\n")
        if chunk.startswith(command + b"\n"):
            head = chunk.split(b"\n\n", 1)[0]
            out.append(head.split(b"\n")[1:])
    return out


# -- CONNECT and version negotiation --------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "1.0"),
        ("1.0", "1.0"),
        ("1.1", "1.1"),
        ("1.2", "1.2"),
        ("1.0,1.1", "1.1"),
        ("1.0,1.1,1.2", "1.2"),
        ("1.2,1.0", "1.2"),
        ("1.1,1.3,2.0", "1.1"),
        ("1.0, 1.1", "1.1"),
    ],
)
def test_version_negotiation_picks_highest_common(accept: str | None, expected: str) -> None:
    """CONNECTED names the highest version both sides accept; no accept-version means 1.0."""
    client = Client(Broker(clock=Clock()))
    answer = client.connect(accept)
    assert answer.command == "CONNECTED"
    assert answer.headers["version"] == expected
    assert client.session.version == expected
    assert not client.closing


@pytest.mark.parametrize("accept", ["2.0", "0.9,1.3", "banana"])
def test_no_common_version_gets_error_listing_ours(accept: str) -> None:
    """With no common version the broker answers ERROR with version:1.0,1.1,1.2 and closes."""
    client = Client(Broker(clock=Clock()))
    answer = client.connect(accept)
    assert (answer.command, answer.headers["message"]) == ("ERROR", "unsupported protocol version")
    assert answer.headers["version"] == "1.0,1.1,1.2"
    assert client.closing
    assert not client.session.connected


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_connected_carries_version_session_server_heartbeat(version: str) -> None:
    """CONNECTED has version, session (our id), server and the heart-beat we offer."""
    settings = SessionSettings(server="stompbroker/9", heartbeat=(4000, 5000))
    clock = Clock()
    client = Client(Broker(clock=clock), clock, "sess-42", settings)
    answer = client.connect(version)
    assert answer.headers["version"] == version
    assert answer.headers["session"] == "sess-42"
    assert answer.headers["server"] == "stompbroker/9"
    assert answer.headers["heart-beat"] == "4000,5000"
    client.lose()


def test_connected_for_10_offers_no_heartbeat() -> None:
    """A 1.0 client is offered no heart-beats (heart-beat:0,0)."""
    client = Client(Broker(clock=Clock()), settings=SessionSettings())
    answer = client.connect("1.0", heart_beat="1000,1000")
    assert answer.headers["version"] == "1.0"
    assert answer.headers.get("heart-beat", "0,0") == "0,0"


def test_10_client_heartbeat_header_is_ignored() -> None:
    """A 1.0 client's heart-beat header means nothing in 1.0, so even a malformed one is ignored."""
    client = Client(Broker(clock=Clock()))
    answer = client.connect(None, heart_beat="whenever")
    assert answer.command == "CONNECTED"
    assert answer.headers["version"] == "1.0"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_stomp_command_works_like_connect(version: str) -> None:
    """STOMP instead of CONNECT opens the session the same way."""
    clock = Clock()
    broker = Broker(clock=clock)
    client = Client(broker, clock)
    answer = client.connect(version, command="STOMP")
    assert answer.command == "CONNECTED"
    assert answer.headers["version"] == version
    client.subscribe("/queue/q")
    client.publish("/queue/q", b"hi")
    assert client.bodies() == [b"hi"]


@pytest.mark.parametrize(
    "frame",
    [
        b"SEND\ndestination:/queue/q\n\nx\0",
        b"SUBSCRIBE\ndestination:/queue/q\nid:0\n\n\0",
        b"DISCONNECT\n\n\0",
    ],
)
def test_frame_before_connect_is_an_error(frame: bytes) -> None:
    """Any frame but CONNECT/STOMP first gets ERROR and the connection closes."""
    clock = Clock()
    broker = Broker(clock=clock)
    client = Client(broker, clock)
    client.send_raw(frame)
    client.error("expected CONNECT")
    assert broker_is_empty(broker)


@pytest.mark.parametrize("command", ["CONNECT", "STOMP"])
def test_second_connect_is_an_error(command: str) -> None:
    """CONNECT (or STOMP) on an established session gets ERROR and closes."""
    _, _, (client,) = connected_clients(1)
    client.send(command, {"accept-version": "1.2", "host": "x"})
    client.error("already connected")


def test_bytes_after_error_are_ignored() -> None:
    """Once the session has sent ERROR it ignores whatever else arrives."""
    _, _, (client, watcher) = connected_clients(2)
    watcher.subscribe("/queue/q")
    client.send("SEND", {})
    client.error("missing header 'destination'")
    client.publish("/queue/q", b"late")
    assert client.frames() == []
    assert watcher.frames() == []


# -- required headers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "command", "headers", "missing"),
    [
        ("1.2", "SEND", {}, "destination"),
        ("1.0", "SEND", {}, "destination"),
        ("1.2", "SUBSCRIBE", {"id": "0"}, "destination"),
        ("1.0", "SUBSCRIBE", {}, "destination"),
        ("1.1", "SUBSCRIBE", {"destination": "/queue/q"}, "id"),
        ("1.2", "SUBSCRIBE", {"destination": "/queue/q"}, "id"),
        ("1.2", "BEGIN", {}, "transaction"),
        ("1.0", "BEGIN", {}, "transaction"),
        ("1.2", "COMMIT", {}, "transaction"),
        ("1.2", "ABORT", {}, "transaction"),
        ("1.2", "UNSUBSCRIBE", {}, "id"),
    ],
)
@pytest.mark.parametrize("receipt", [None, "r-7"])
def test_missing_required_header_is_an_error(
    version: str, command: str, headers: dict[str, str], missing: str, receipt: str | None
) -> None:
    """A frame lacking a required header gets ERROR naming it, with receipt-id if asked."""
    broker, _, (client,) = connected_clients(1, version)
    if receipt is not None:
        headers = {**headers, "receipt": receipt}
    client.send(command, headers)
    error = client.error(f"missing header '{missing}'")
    assert error.headers.get("receipt-id") == receipt
    client.lose()
    assert broker_is_empty(broker)


def test_subscribe_without_id_is_fine_in_10() -> None:
    """In 1.0 SUBSCRIBE needs no id; MESSAGE then names the destination as subscription."""
    _, _, (client,) = connected_clients(1, "1.0")
    client.send("SUBSCRIBE", {"destination": "/queue/q"})
    client.publish("/queue/q", b"x")
    (message,) = client.messages()
    assert message.headers["subscription"] == "/queue/q"
    client.send("UNSUBSCRIBE", {"destination": "/queue/q", "receipt": "u"})
    assert _receipts(client.frames()) == ["u"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"destination": "/exchange/x", "id": "0"}, _unsupported("/exchange/x")),
        ({"destination": "/queue/q", "id": "0", "ack": "sometimes"}, "invalid ack mode"),
        (
            {"destination": "/queue/q", "id": "0", "activemq.prefetchSize": "-1"},
            "invalid activemq.prefetchSize",
        ),
        ({"destination": "/queue/q", "id": "0", "prefetch-count": "0"}, "invalid prefetch-count"),
    ],
)
def test_bad_subscribe_is_an_error(headers: dict[str, str], message: str) -> None:
    """SUBSCRIBE with a bad destination, ack mode or prefetch gets ERROR with its receipt-id."""
    broker, _, (client,) = connected_clients(1)
    client.send("SUBSCRIBE", {**headers, "receipt": "r"})
    error = client.error(message)
    assert error.headers["receipt-id"] == "r"
    client.lose()
    assert broker_is_empty(broker)


def test_send_to_unsupported_destination_is_an_error() -> None:
    """SEND to an unsupported destination gets ERROR (not a RECEIPT)."""
    broker, _, (client,) = connected_clients(1)
    client.send("SEND", {"destination": "/exchange/x", "receipt": "r"}, b"x")
    error = client.error(_unsupported("/exchange/x"))
    assert error.headers["receipt-id"] == "r"
    assert broker_is_empty(broker)


def test_duplicate_subscription_id_is_an_error() -> None:
    """A second SUBSCRIBE with an id already in use on the connection gets ERROR."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/queue/a", "same")
    client.subscribe("/queue/b", "same")
    client.error("duplicate subscription id")


def test_unsubscribe_unknown_id_is_an_error() -> None:
    """UNSUBSCRIBE of an id the connection does not have gets ERROR."""
    _, _, (client,) = connected_clients(1)
    client.send("UNSUBSCRIBE", {"id": "nope"})
    client.error("unknown subscription")


# -- receipts ----------------------------------------------------------------------


def test_receipt_for_every_frame_that_asks() -> None:
    """Every frame with a receipt header gets a RECEIPT, in order; DISCONNECT's then closes."""
    _, _, (client,) = connected_clients(1)
    seen: list[Frame] = []

    def step(command: str, headers: dict[str, str], body: bytes = b"") -> list[Frame]:
        client.send(command, headers, body)
        frames = client.frames()
        seen.extend(frames)
        return [f for f in frames if f.command == "MESSAGE"]

    sub = {"destination": "/queue/q", "id": "0", "ack": "client-individual"}
    step("SUBSCRIBE", {**sub, "receipt": "r1"})
    (first,) = step("SEND", {"destination": "/queue/q", "receipt": "r2"}, b"one")
    step("ACK", {"id": first.headers["ack"], "receipt": "r3"})
    (second,) = step("SEND", {"destination": "/queue/q", "receipt": "r4"}, b"two")
    step("NACK", {"id": second.headers["ack"], "receipt": "r5"})
    step("BEGIN", {"transaction": "t", "receipt": "r6"})
    step("SEND", {"destination": "/queue/q", "transaction": "t", "receipt": "r7"}, b"3")
    step("COMMIT", {"transaction": "t", "receipt": "r8"})
    step("BEGIN", {"transaction": "t2", "receipt": "r9"})
    step("ABORT", {"transaction": "t2", "receipt": "r10"})
    step("UNSUBSCRIBE", {"id": "0", "receipt": "r11"})
    assert not client.closing
    step("DISCONNECT", {"receipt": "r12"})
    assert client.closing
    assert _receipts(seen) == [f"r{i}" for i in range(1, 13)]
    assert seen[-1].command == "RECEIPT"


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t", "/topic/nobody"])
def test_send_with_receipt_gets_receipt(destination: str) -> None:
    """A plain SEND asking for a receipt gets its RECEIPT (queue, topic, topic nobody hears)."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/topic/t")
    client.send("SEND", {"destination": destination, "receipt": "s-1"}, b"x")
    assert _receipts(client.frames()) == ["s-1"]


def test_frames_without_receipt_get_none() -> None:
    """Frames that do not ask for a receipt get no RECEIPT."""
    _, _, (client,) = connected_clients(1)
    client.publish("/queue/q", b"x")
    client.send("BEGIN", {"transaction": "t"})
    client.send("ABORT", {"transaction": "t"})
    assert client.frames() == []


def test_disconnect_without_receipt_closes_quietly() -> None:
    """DISCONNECT without receipt closes the connection and writes nothing."""
    _, _, (client,) = connected_clients(1)
    client.send("DISCONNECT")
    assert client.closing
    assert client.frames() == []


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_receipt_id_round_trips_escapes(version: str) -> None:
    """A receipt id with escaped characters comes back as the same value."""
    _, _, (client,) = connected_clients(1, version)
    client.send("DISCONNECT", {"receipt": "a:b\\c\nd"})
    (receipt,) = client.frames()
    assert receipt.headers["receipt-id"] == "a:b\\c\nd"


# -- MESSAGE -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_message_headers(version: str) -> None:
    """MESSAGE has destination, message-id, subscription, content-length, the sender's headers."""
    _, _, (consumer, producer) = connected_clients(2, version)
    consumer.subscribe("/queue/q", "sub-1")
    producer.send(
        "SEND",
        {"destination": "/queue/q", "receipt": "r", "color": "blue", "correlation-id": "c1"},
        b"a\0b",
    )
    (message,) = consumer.messages()
    headers = message.headers
    assert headers["destination"] == "/queue/q"
    assert headers["subscription"] == "sub-1"
    assert headers["message-id"]
    assert headers["content-length"] == "3"
    assert message.body == b"a\0b"
    assert headers["color"] == "blue"
    assert headers["correlation-id"] == "c1"
    assert "receipt" not in headers
    assert "transaction" not in headers
    assert "redelivered" not in headers


def test_message_never_carries_senders_transaction() -> None:
    """A message sent in a transaction does not carry the transaction header."""
    _, _, (consumer, producer) = connected_clients(2)
    consumer.subscribe("/topic/t")
    producer.send("BEGIN", {"transaction": "tx"})
    producer.send("SEND", {"destination": "/topic/t", "transaction": "tx", "receipt": "r"}, b"x")
    producer.send("COMMIT", {"transaction": "tx"})
    (message,) = consumer.messages()
    assert "transaction" not in message.headers
    assert "receipt" not in message.headers


def test_message_ids_differ() -> None:
    """Each MESSAGE carries a distinct message-id."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/queue/q")
    for _ in range(3):
        client.publish("/queue/q", b"x")
    ids = {m.headers["message-id"] for m in client.messages()}
    assert len(ids) == 3


def test_topic_message_goes_to_every_session() -> None:
    """A topic message reaches every subscribed session once."""
    _, _, clients = connected_clients(3)
    for client in clients:
        client.subscribe("/topic/news")
    clients[0].publish("/topic/news", b"hello")
    for client in clients:
        assert client.bodies() == [b"hello"]


def test_queue_message_round_robin_between_sessions() -> None:
    """Queue messages alternate between the sessions subscribed to the queue."""
    _, _, (a, b, producer) = connected_clients(3)
    a.subscribe("/queue/q")
    b.subscribe("/queue/q")
    for i in range(4):
        producer.publish("/queue/q", b"%d" % i)
    assert a.bodies() == [b"0", b"2"]
    assert b.bodies() == [b"1", b"3"]


def test_queued_messages_delivered_on_subscribe() -> None:
    """Messages waiting in a queue are delivered, in order, to the session that subscribes."""
    _, _, (consumer, producer) = connected_clients(2)
    producer.publish("/queue/q", b"1")
    producer.publish("/queue/q", b"2")
    consumer.subscribe("/queue/q")
    assert consumer.bodies() == [b"1", b"2"]
    assert not consumer.closing


def test_subscribe_receipt_precedes_queued_messages() -> None:
    """SUBSCRIBE's RECEIPT is written before the queued messages the subscription starts."""
    _, _, (consumer, producer) = connected_clients(2)
    producer.publish("/queue/q", b"1")
    consumer.send("SUBSCRIBE", {"destination": "/queue/q", "id": "0", "receipt": "r"})
    assert [f.command for f in consumer.frames()] == ["RECEIPT", "MESSAGE"]


def test_sender_cannot_forge_delivery_headers() -> None:
    """The per-delivery headers (subscription, ack, redelivered) come from the broker alone."""
    _, _, (consumer, producer) = connected_clients(2)
    consumer.subscribe("/queue/q", "real")
    producer.publish("/queue/q", b"x", subscription="forged", ack="forged", redelivered="true")
    (lines,) = _raw_header_lines(consumer.written(), b"MESSAGE")
    names = [line.split(b":", 1)[0] for line in lines]
    assert names.count(b"subscription") == 1
    assert b"ack" not in names
    assert b"redelivered" not in names
    (message,) = consumer.messages()
    assert message.headers["subscription"] == "real"


# -- ACK / NACK per version ------------------------------------------------------


@pytest.mark.parametrize("ack", ["client", "client-individual"])
def test_12_client_ack_message_has_ack_header_and_ack_uses_it(ack: str) -> None:
    """In 1.2 a client-ack MESSAGE carries ``ack``; ACK with id=that settles it."""
    broker, _, (consumer, producer) = connected_clients(2, "1.2")
    consumer.subscribe("/queue/q", ack=ack)
    producer.publish("/queue/q", b"x")
    (message,) = consumer.messages()
    ack_id = message.headers["ack"]
    consumer.send("ACK", {"id": ack_id, "receipt": "r"})
    assert _receipts(consumer.frames()) == ["r"]
    consumer.send("UNSUBSCRIBE", {"id": "0"})
    assert broker_is_empty(broker)


def test_12_auto_message_has_no_ack_header() -> None:
    """In 1.2 an auto-ack MESSAGE carries no ``ack`` header."""
    _, _, (client,) = connected_clients(1, "1.2")
    client.subscribe("/queue/q")
    client.publish("/queue/q", b"x")
    (message,) = client.messages()
    assert "ack" not in message.headers


def test_12_ack_ids_are_distinct_per_subscription() -> None:
    """One topic message delivered to two client-ack subscriptions gets two ack ids."""
    _, _, (client,) = connected_clients(1, "1.2")
    client.subscribe("/topic/t", "a", ack="client")
    client.subscribe("/topic/t", "b", ack="client")
    client.publish("/topic/t", b"x")
    first, second = client.messages()
    assert first.headers["ack"] != second.headers["ack"]
    client.send("ACK", {"id": second.headers["ack"]})
    client.send("ACK", {"id": first.headers["ack"], "receipt": "r"})
    assert _receipts(client.frames()) == ["r"]


def test_12_nack_redelivers_with_redelivered_header() -> None:
    """In 1.2 NACK by ack id sends the message again with redelivered:true."""
    _, _, (consumer, producer) = connected_clients(2, "1.2")
    consumer.subscribe("/queue/q", ack="client-individual")
    producer.publish("/queue/q", b"x")
    (message,) = consumer.messages()
    consumer.send("NACK", {"id": message.headers["ack"]})
    (again,) = consumer.messages()
    assert again.body == b"x"
    assert again.headers["message-id"] == message.headers["message-id"]
    assert again.headers["redelivered"] == "true"


def test_11_ack_by_message_id_and_subscription() -> None:
    """In 1.1 ACK names message-id and subscription; NACK does too."""
    broker, _, (consumer, producer) = connected_clients(2, "1.1")
    consumer.subscribe("/queue/q", "s1", ack="client-individual")
    producer.publish("/queue/q", b"1")
    producer.publish("/queue/q", b"2")
    one, two = consumer.messages()
    assert "ack" not in one.headers
    consumer.send(
        "ACK", {"message-id": one.headers["message-id"], "subscription": "s1", "receipt": "r"}
    )
    consumer.send("NACK", {"message-id": two.headers["message-id"], "subscription": "s1"})
    frames = consumer.frames()
    assert _receipts(frames) == ["r"]
    (again,) = [f for f in frames if f.command == "MESSAGE"]
    assert again.body == b"2"
    assert again.headers["redelivered"] == "true"
    consumer.send("ACK", {"message-id": again.headers["message-id"], "subscription": "s1"})
    consumer.send("UNSUBSCRIBE", {"id": "s1"})
    assert broker_is_empty(broker)


def test_10_ack_by_message_id() -> None:
    """In 1.0 ACK names the message-id alone."""
    broker, _, (consumer, producer) = connected_clients(2, "1.0")
    consumer.send("SUBSCRIBE", {"destination": "/queue/q", "ack": "client"})
    producer.publish("/queue/q", b"1")
    (message,) = consumer.messages()
    consumer.send("ACK", {"message-id": message.headers["message-id"], "receipt": "r"})
    assert _receipts(consumer.frames()) == ["r"]
    consumer.send("UNSUBSCRIBE", {"destination": "/queue/q"})
    assert broker_is_empty(broker)


def test_client_ack_mode_is_cumulative_over_the_wire() -> None:
    """In ``client`` mode ACK of message 2 also settles message 1; only message 3 comes back."""
    _, _, (holder, other, producer) = connected_clients(3, "1.1")
    holder.subscribe("/queue/q", "h", ack="client")
    for body in (b"1", b"2", b"3"):
        producer.publish("/queue/q", body)
    second = holder.messages()[1]
    holder.send("ACK", {"message-id": second.headers["message-id"], "subscription": "h"})
    other.subscribe("/queue/q", "o")
    holder.lose()
    assert other.bodies() == [b"3"]


def test_10_has_no_nack() -> None:
    """NACK is not part of STOMP 1.0: ERROR."""
    _, _, (consumer, producer) = connected_clients(2, "1.0")
    consumer.send("SUBSCRIBE", {"destination": "/queue/q", "ack": "client"})
    producer.publish("/queue/q", b"1")
    (message,) = consumer.messages()
    consumer.send("NACK", {"message-id": message.headers["message-id"]})
    consumer.error("unknown command")


_UNKNOWN_ACKS: list[tuple[str, dict[str, str], str]] = [
    ("1.2", {"id": "no-such-ack"}, "unknown message"),
    ("1.2", {"id": "no-such@1"}, "unknown message"),
    ("1.2", {"id": "x@notanumber"}, "unknown message"),
    ("1.1", {"message-id": "no-such", "subscription": "0"}, "unknown message"),
    ("1.1", {"message-id": "no-such", "subscription": "other"}, "unknown message"),
    ("1.0", {"message-id": "no-such"}, "unknown message"),
    ("1.2", {}, "missing header 'id'"),
    ("1.1", {"subscription": "0"}, "missing header 'message-id'"),
]


@pytest.mark.parametrize(
    ("command", "version", "headers", "message"),
    [
        (command, version, headers, message)
        for command in ("ACK", "NACK")
        for version, headers, message in _UNKNOWN_ACKS
        if not (command == "NACK" and version == "1.0")
    ],
)
def test_unknown_ack_id_is_an_error(
    command: str, version: str, headers: dict[str, str], message: str
) -> None:
    """ACK/NACK naming no message awaiting acknowledgement gets ERROR with its receipt-id."""
    _, _, (client,) = connected_clients(1, version)
    client.subscribe("/queue/q", "0", ack="client")
    client.publish("/queue/q", b"x")
    client.frames()
    client.send(command, {**headers, "receipt": "r"})
    error = client.error(message)
    assert error.headers["receipt-id"] == "r"


def test_ack_twice_is_an_error() -> None:
    """Acknowledging a message already acknowledged gets ERROR."""
    _, _, (client,) = connected_clients(1)
    client.subscribe("/queue/q", ack="client-individual")
    client.publish("/queue/q", b"x")
    (message,) = client.messages()
    client.send("ACK", {"id": message.headers["ack"]})
    assert client.frames() == []
    client.send("ACK", {"id": message.headers["ack"]})
    client.error("unknown message")


def test_ack_for_auto_subscription_is_an_error() -> None:
    """ACK of a message from an auto-ack subscription gets ERROR."""
    _, _, (client,) = connected_clients(1, "1.1")
    client.subscribe("/queue/q", "0")
    client.publish("/queue/q", b"x")
    (message,) = client.messages()
    client.send("ACK", {"message-id": message.headers["message-id"], "subscription": "0"})
    client.error("unknown message")


# -- header escaping on output --------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "raw"),
    [
        ("1.2", b"k:a\\cb\\nc\\\\d\\re"),
        ("1.1", b"k:a\\cb\\nc\\\\d\re"),
        ("1.0", b"k:a:b c\\d e"),
    ],
)
def test_message_header_escaping_per_version(version: str, raw: bytes) -> None:
    """The sender's header values are escaped for the receiver's version (1.0: CR/LF to space)."""
    broker, clock, (producer,) = connected_clients(1, "1.2")
    _, _, (consumer,) = connected_clients(1, version, broker=broker, clock=clock)
    consumer.subscribe("/queue/q")
    producer.publish("/queue/q", b"x", k="a:b\nc\\d\re")
    assert b"\n" + raw + b"\n" in consumer.written()
    (message,) = consumer.messages()
    expected = {"1.2": "a:b\nc\\d\re", "1.1": "a:b\nc\\d\re", "1.0": "a:b c\\d e"}[version]
    assert message.headers["k"] == expected


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_no_raw_colon_in_header_values(version: str) -> None:
    """In 1.1/1.2 every MESSAGE header line has one colon; the ones in values are escaped."""
    _, _, (client,) = connected_clients(1, version)
    client.subscribe("/queue/q", "sub:1", ack="client-individual")
    client.publish("/queue/q", b"x", reply_to="/queue/a:b")
    (lines,) = _raw_header_lines(client.written(), b"MESSAGE")
    bad = [line for line in lines if line.count(b":") != 1]
    assert bad == []


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_error_message_escaped(version: str) -> None:
    """An ERROR's message header (which may hold a colon) is escaped for the version."""
    _, _, (client,) = connected_clients(1, version)
    client.send("SEND", {"destination": "/exchange/a:b"}, b"x")
    (lines,) = _raw_header_lines(client.written(), b"ERROR")
    assert [line for line in lines if line.count(b":") != 1] == []
    client.error(_unsupported("/exchange/a:b"))


# -- connection loss and DISCONNECT return unacked messages -----------------------


def _three_unacked(version: str = "1.2") -> tuple[Broker, Client, Client, Client]:
    """A client-individual consumer holding messages 1, 2, 3; an idle second consumer."""
    broker, _, (holder, other, producer) = connected_clients(3, version)
    holder.subscribe("/queue/q", "h", ack="client-individual")
    for body in (b"1", b"2", b"3"):
        producer.publish("/queue/q", body)
    assert holder.bodies() == [b"1", b"2", b"3"]
    other.subscribe("/queue/q", "o")
    return broker, holder, other, producer


def test_connection_loss_returns_unacked_in_order() -> None:
    """Unacked messages of a lost session go to another session, in order, redelivered:true."""
    _, holder, other, _ = _three_unacked()
    holder.lose()
    received = other.messages()
    assert [m.body for m in received] == [b"1", b"2", b"3"]
    assert all(m.headers["redelivered"] == "true" for m in received)


def test_disconnect_returns_unacked_except_acked() -> None:
    """After DISCONNECT, unacked (not acked) messages go to another session, in order."""
    broker, holder, other, _ = _three_unacked("1.1")
    holder.send("ACK", {"message-id": _mid(broker, "2"), "subscription": "h"})
    holder.send("DISCONNECT", {"receipt": "bye"})
    assert _receipts(holder.frames()) == ["bye"]
    assert holder.closing
    holder.lose()
    received = other.messages()
    assert [m.body for m in received] == [b"1", b"3"]
    assert all(m.headers["redelivered"] == "true" for m in received)


def _mid(broker: Broker, body: str) -> str:
    """The id of the unacked queue message with ``body`` (looked up in the broker)."""
    for queue in broker.destinations.queues.values():
        for subscription in queue.subscriptions:
            for message_id, message in subscription.unacked.items():
                if message.body == body.encode():
                    return message_id
    raise AssertionError(f"no unacked message {body!r}")


@pytest.mark.parametrize("ending", ["disconnect", "error"])
def test_closed_session_gets_no_more_messages(ending: str) -> None:
    """Once a session has ended (DISCONNECT or ERROR), queue messages go to other sessions."""
    _, _, (leaving, staying, producer) = connected_clients(3)
    leaving.subscribe("/queue/q", "l")
    staying.subscribe("/queue/q", "s")
    if ending == "disconnect":
        leaving.send("DISCONNECT", {"receipt": "bye"})
    else:
        leaving.send("SEND", {})
    assert leaving.closing
    leaving.frames()
    # The transport has not reported the connection lost yet.
    producer.publish("/queue/q", b"1")
    producer.publish("/queue/q", b"2")
    assert leaving.frames() == []
    assert staying.bodies() == [b"1", b"2"]


# -- nothing left behind -------------------------------------------------------------


@pytest.mark.parametrize("ending", ["unsubscribe", "disconnect", "lost", "error"])
def test_session_end_leaves_no_state_in_broker(ending: str) -> None:
    """After UNSUBSCRIBE, DISCONNECT, loss or ERROR, no subscription or destination remains."""
    broker, _, (client, producer) = connected_clients(2)
    client.subscribe("/queue/q", "1", ack="client")
    client.subscribe("/topic/t", "2", ack="client-individual")
    client.subscribe("/topic/u", "3")
    producer.publish("/queue/q", b"q")
    producer.publish("/topic/t", b"t")
    producer.publish("/topic/u", b"u")
    messages = client.messages()
    for message in messages:
        if "ack" in message.headers:
            client.send("ACK", {"id": message.headers["ack"]})
    assert broker.destinations.queues and broker.destinations.topics
    if ending == "unsubscribe":
        for sub_id in ("1", "2", "3"):
            client.send("UNSUBSCRIBE", {"id": sub_id})
    elif ending == "disconnect":
        client.send("DISCONNECT")
        client.lose()
    elif ending == "error":
        client.send("SEND", {})
        client.lose()
    else:
        client.lose()
    assert broker_is_empty(broker)


def test_lost_session_unacked_stay_queued_when_nobody_listens() -> None:
    """A lost session's unacked queue messages stay in the queue for a later consumer."""
    broker, _, (client, producer) = connected_clients(2)
    client.subscribe("/queue/q", ack="client")
    producer.publish("/queue/q", b"1")
    producer.publish("/queue/q", b"2")
    client.lose()
    assert broker.queue_depth("q") == 2
    assert not broker.destinations.topics


# -- flow control ------------------------------------------------------------------


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
def test_pause_stops_delivery_until_resume(destination: str) -> None:
    """While paused a session is written no MESSAGE; on resume the waiting ones come in order."""
    _, _, (consumer, producer) = connected_clients(2)
    consumer.subscribe(destination)
    consumer.session.pause_delivery()
    for body in (b"1", b"2", b"3"):
        producer.publish(destination, body)
    assert consumer.frames() == []
    consumer.session.resume_delivery()
    assert consumer.bodies() == [b"1", b"2", b"3"]


def test_paused_session_receipts_still_flow() -> None:
    """Pausing delivery holds MESSAGEs back but not RECEIPTs."""
    _, _, (client,) = connected_clients(1)
    client.session.pause_delivery()
    client.send("SUBSCRIBE", {"destination": "/queue/q", "id": "0", "receipt": "r"})
    client.send("SEND", {"destination": "/queue/q", "receipt": "s"}, b"x")
    assert _receipts(client.frames()) == ["r", "s"]
    client.session.resume_delivery()
    assert client.bodies() == [b"x"]


def test_subscribe_while_paused_waits_for_resume() -> None:
    """A subscription made while paused receives nothing, even from a full queue, until resume."""
    _, _, (consumer, producer) = connected_clients(2)
    producer.publish("/queue/q", b"1")
    consumer.session.pause_delivery()
    consumer.subscribe("/queue/q")
    assert consumer.frames() == []
    consumer.session.resume_delivery()
    assert consumer.bodies() == [b"1"]


def test_paused_session_queue_messages_go_elsewhere() -> None:
    """Queue messages skip a paused session and go to the ready one."""
    _, _, (paused, ready, producer) = connected_clients(3)
    paused.subscribe("/queue/q")
    ready.subscribe("/queue/q")
    paused.session.pause_delivery()
    producer.publish("/queue/q", b"1")
    producer.publish("/queue/q", b"2")
    assert paused.frames() == []
    assert ready.bodies() == [b"1", b"2"]


def test_pause_inside_delivery_stops_the_rest() -> None:
    """A session that pauses while being delivered to (buffer full) gets no more until resumed."""
    _, _, (consumer, producer) = connected_clients(2)
    consumer.subscribe("/topic/t")
    consumer.session.pause_delivery()
    for body in (b"1", b"2", b"3"):
        producer.publish("/topic/t", body)
    writes = consumer.transport.write

    def write_then_pause(data: bytes) -> None:
        writes(data)
        consumer.session.pause_delivery()

    consumer.transport.write = write_then_pause  # type: ignore[method-assign]
    consumer.session.resume_delivery()
    assert consumer.bodies() == [b"1"]
    consumer.transport.write = writes  # type: ignore[method-assign]
    consumer.session.resume_delivery()
    assert consumer.bodies() == [b"2", b"3"]


# -- bad input mid-stream ------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"BOGUS\n\n\0", "unknown command"),
        (b"SEND\nno colon here\n\n\0", "malformed header line"),
        (
            b"SEND\ndestination:/queue/q\ncontent-length:1\n\nxy\0",
            "frame not terminated by NUL after content-length octets",
        ),
        (b"SEND\ndestination:/queue/q\ncontent-length:abc\n\nx\0", "invalid content-length"),
        (b"SEND\ndestination:/queue/q\nbad:\\x\n\n\0", "undefined escape sequence in header"),
    ],
)
def test_malformed_frame_mid_stream(bad: bytes, message: str) -> None:
    """Good frames before a malformed one are processed; then ERROR and close; others unaffected."""
    _, _, (sender, receiver) = connected_clients(2)
    receiver.subscribe("/queue/q")
    good = b"SEND\ndestination:/queue/q\n\none\0\nSEND\ndestination:/queue/q\n\ntwo\0"
    after = b"SEND\ndestination:/queue/q\n\nthree\0"
    sender.send_raw(good + bad + after)
    sender.error(message)
    assert receiver.bodies() == [b"one", b"two"]
    sender.send_raw(after)
    sender.lose()
    receiver.publish("/queue/q", b"four")
    assert receiver.bodies() == [b"four"]
    assert not receiver.closing


def test_malformed_frame_split_across_reads() -> None:
    """A frame broken across reads is still parsed; a bad one found later still ends the session."""
    _, _, (sender, receiver) = connected_clients(2)
    receiver.subscribe("/queue/q")
    data = b"SEND\ndestination:/queue/q\n\nok\0BOGUS\n\n\0"
    for i in range(len(data)):
        sender.send_raw(data[i : i + 1])
    assert receiver.bodies() == [b"ok"]
    sender.error("unknown command")


def test_malformed_frame_receipt_id() -> None:
    """A malformed frame whose receipt header was readable gets ERROR with that receipt-id."""
    _, _, (client,) = connected_clients(1)
    client.send_raw(b"SEND\ndestination:/queue/q\nreceipt:r9\ncontent-length:1\n\nxy\0")
    error = client.error("frame not terminated by NUL after content-length octets")
    assert error.headers.get("receipt-id") == "r9"


def test_connect_with_frames_in_same_read() -> None:
    """CONNECT followed by more frames in one read: all are handled under the new version."""
    clock = Clock()
    broker = Broker(clock=clock)
    client = Client(broker, clock)
    client.send_raw(
        b"CONNECT\naccept-version:1.2\nhost:h\n\n\0"
        b"SUBSCRIBE\ndestination:/queue/q\nid:a\\cb\n\n\0"
        b"SEND\ndestination:/queue/q\nreceipt:r\n\nhi\0"
    )
    connected, message, receipt = client.frames()
    assert connected.command == "CONNECTED"
    assert message.headers["subscription"] == "a:b"
    assert receipt.headers["receipt-id"] == "r"


# -- our own failures ---------------------------------------------------------------


def test_internal_error_is_logged_and_hidden(
    monkeypatch: pytest.MonkeyPatch, logged_failures: list[LogEvent]
) -> None:
    """A broker exception gives ERROR "internal error" with no traceback; the failure is logged."""
    broker, _, (client, other) = connected_clients(2)

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(broker, "send", explode)
    client.send("SEND", {"destination": "/queue/q"}, b"x")
    error = client.error("internal error")
    text = error.body.decode() + repr(error.headers)
    assert "Traceback" not in text
    assert "secret" not in text
    assert "RuntimeError" not in text
    (failure,) = logged_failures
    assert failure["log_level"] == LogLevel.critical
    assert failure["log_failure"].check(RuntimeError)
    assert not other.closing


def test_quiet_settings_have_no_timers() -> None:
    """Helper sanity: with heart-beats off on our side no timer is scheduled."""
    _, clock, _ = connected_clients(2, settings=QUIET)
    assert clock.getDelayedCalls() == []


# -- the observer -------------------------------------------------------------------


def _observed(broker: Broker | None = None) -> tuple[Client, RecordingObserver]:
    """A client not yet connected, whose session has a recording observer."""
    broker = broker or Broker(clock=Clock())
    client = Client(broker, broker.clock)  # type: ignore[arg-type]
    observer = RecordingObserver()
    client.session.observer = observer
    return client, observer


def test_the_observer_hears_of_connected_once() -> None:
    """CONNECTED is told once, with the user and version; later frames tell nothing."""
    client, observer = _observed()
    assert client.connect("1.1").command == "CONNECTED"
    client.subscribe("/queue/q")
    client.publish("/queue/q", b"hi")
    assert client.bodies() == [b"hi"]
    assert observer.calls == [("connected", None, "1.1")]


def test_an_error_is_the_reason_the_session_gives_its_observer() -> None:
    """A session ending with ERROR tells its observer once: "ERROR sent: " and the message."""
    client, observer = _observed()
    client.connect()
    client.send("SEND", {})
    client.error("missing header 'destination'")
    client.lose()
    assert observer.calls == [
        ("connected", None, "1.2"),
        ("closed", "ERROR sent: missing header 'destination'"),
    ]


def test_a_refused_connect_is_told_as_closed_only() -> None:
    """A CONNECT refused (no common version) is never told as connected; its ERROR is."""
    client, observer = _observed()
    assert client.connect("2.0").headers["message"] == "unsupported protocol version"
    assert observer.calls == [("closed", "ERROR sent: unsupported protocol version")]


def test_disconnect_is_the_reason_the_session_gives_its_observer() -> None:
    """A clean DISCONNECT tells the observer "DISCONNECT", once."""
    client, observer = _observed()
    client.connect()
    client.send("DISCONNECT", {"receipt": "bye"})
    assert _receipts(client.frames()) == ["bye"]
    client.lose()
    assert observer.calls == [("connected", None, "1.2"), ("closed", "DISCONNECT")]


def test_the_observer_hears_nothing_when_the_transport_drops_first() -> None:
    """A connection lost by the transport is not the session's doing: no closed call."""
    before, told_before = _observed()
    before.lose()
    after, told_after = _observed()
    after.connect()
    after.lose()
    assert told_before.calls == []
    assert told_after.calls == [("connected", None, "1.2")]


class _HeldStore(MemoryStore):
    """A memory store whose writes complete only when the test fires them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Deferred[None]] = []

    def add(self, store_key: str, message: Message, sync: str) -> Deferred[None]:
        """Store the row; its Deferred waits in ``writes``."""
        super().add(store_key, message, sync)
        written: Deferred[None] = Deferred()
        self.writes.append(written)
        return written


def _disconnect_waiting_for_the_store() -> tuple[Client, RecordingObserver, _HeldStore]:
    """A connected client that sent a persistent message, then DISCONNECT, both with receipts."""
    store = _HeldStore()
    broker = Broker(clock=Clock(), store=store)
    broker.recover(_fired(store.open()))
    client, observer = _observed(broker)
    client.connect()
    client.publish("/queue/q", b"kept", persistent="true", receipt="sent")
    client.send("DISCONNECT", {"receipt": "bye"})
    assert client.frames() == [] and not client.closing
    return client, observer, store


def _fired(deferred: Deferred[Any]) -> Any:
    """What ``deferred`` has already fired with."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    (result,) = results
    return result


def test_a_disconnect_waiting_for_the_store_is_told_once_its_receipt_is_sent() -> None:
    """DISCONNECT after a pending durable write: "DISCONNECT" comes after both receipts."""
    client, observer, store = _disconnect_waiting_for_the_store()
    assert observer.calls == [("connected", None, "1.2")]
    (written,) = store.writes
    written.callback(None)
    assert _receipts(client.frames()) == ["sent", "bye"]
    assert client.closing
    assert observer.calls == [("connected", None, "1.2"), ("closed", "DISCONNECT")]


def test_a_disconnect_lost_before_its_receipt_is_not_told() -> None:
    """The transport drops while DISCONNECT waits for the store: the late write tells nothing."""
    client, observer, store = _disconnect_waiting_for_the_store()
    client.lose()
    (written,) = store.writes
    written.callback(None)
    assert client.frames() == []
    assert observer.calls == [("connected", None, "1.2")]

"""The broker against real stomp.py clients (and raw sockets) over TCP on 127.0.0.1.

Every test ends with ``broker.assert_idle()``: once its clients are gone the
broker must hold no queue, topic, message or subscription they left behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import VERSIONS, Client, RawClient, RunningBroker

Connect = Callable[..., Client]
Raw = Callable[[], RawClient]

VERSIONS_11_UP = ("1.1", "1.2")


def bodies(messages: list[Any]) -> list[Any]:
    """The bodies of stomp.py frames, in order."""
    return [m.body for m in messages]


# -- connecting and disconnecting ----------------------------------------------------


@pytest.mark.parametrize(
    ("version", "command"),
    [
        ("1.0", "CONNECT"),
        ("1.1", "CONNECT"),
        ("1.1", "STOMP"),
        ("1.2", "CONNECT"),
        ("1.2", "STOMP"),
    ],
)
def test_connect_negotiates_the_clients_version(
    broker: RunningBroker, connect: Connect, version: str, command: str
) -> None:
    """CONNECT (or STOMP, 1.1/1.2) gets CONNECTED with the client's version, session and server."""
    client = connect(version, command=command)
    assert client.frames.sent[0].cmd == command
    connected = client.frames.connected[0]
    assert connected.headers.get("version", "1.0") == version
    assert connected.headers.get("session")
    assert connected.headers.get("server", "").startswith("stompbroker/")
    client.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_disconnect_receipt_then_close(broker: RunningBroker, raw: Raw, version: str) -> None:
    """DISCONNECT with a receipt gets that RECEIPT, then the broker closes the connection."""
    client = raw()
    client.connect(version)
    client.send(b"DISCONNECT\nreceipt:bye-77\n\n\0")
    frames = client.read_until_closed()
    assert [(f.command, f.headers.get("receipt-id")) for f in frames] == [("RECEIPT", "bye-77")]
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_frames_pipelined_after_connect(broker: RunningBroker, raw: Raw, version: str) -> None:
    """Frames sent in the same packet as CONNECT are all handled, in order."""
    client = raw()
    client.send(
        f"CONNECT\naccept-version:{version}\nhost:localhost\n\n\0".encode()
        + b"SUBSCRIBE\nid:p\ndestination:/queue/p\nreceipt:sub\n\n\0"
        + b"SEND\ndestination:/queue/p\n\npiped\0"
        + b"DISCONNECT\nreceipt:bye\n\n\0"
    )
    frames = client.read_until_closed()
    assert [f.command for f in frames] == ["CONNECTED", "RECEIPT", "MESSAGE", "RECEIPT"]
    assert frames[2].body == b"piped"
    assert frames[3].headers["receipt-id"] == "bye"
    broker.assert_idle()


def test_unsupported_version_gets_error(broker: RunningBroker, raw: Raw) -> None:
    """A CONNECT accepting none of our versions gets an ERROR listing ours, then close."""
    client = raw()
    client.send(b"CONNECT\naccept-version:2.0\nhost:localhost\n\n\0")
    frames = client.read_until_closed()
    assert [(f.command, f.headers["message"]) for f in frames] == [
        ("ERROR", "unsupported protocol version")
    ]
    assert set(frames[0].headers["version"].split(",")) == {"1.0", "1.1", "1.2"}
    broker.assert_idle()


# -- sending and receiving ------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("destination", ["/queue/x", "/topic/x"])
def test_send_and_receive(
    broker: RunningBroker, connect: Connect, version: str, destination: str
) -> None:
    """A message reaches a subscriber with its body, the producer's headers and the broker's own."""
    consumer = connect(version)
    producer = connect(version)
    subscription = consumer.subscribe(destination)
    producer.send(destination, "hello", headers={"x-custom": "yes", "content-type": "text/plain"})
    [message] = consumer.wait_messages(1)
    assert message.body == "hello"
    headers = message.headers
    assert headers["destination"] == destination
    assert headers["subscription"] == subscription
    assert headers["message-id"]
    assert headers["x-custom"] == "yes"
    assert headers["content-type"] == "text/plain"
    assert "redelivered" not in headers
    assert "receipt" not in headers
    producer.disconnect()
    consumer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("destination", ["/queue/x", "/topic/x"])
@pytest.mark.parametrize("in_transaction", [False, True], ids=["plain", "transaction"])
def test_send_receipt(
    broker: RunningBroker, connect: Connect, version: str, destination: str, in_transaction: bool
) -> None:
    """A SEND carrying a receipt header is answered by a RECEIPT with that receipt-id."""
    producer = connect(version)
    producer.subscribe(destination)
    name = producer.begin() if in_transaction else None
    producer.send(destination, "with receipt", transaction=name, receipt=True)
    if name is not None:
        producer.commit(name)
    assert bodies(producer.wait_messages(1)) == ["with receipt"]
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_queue_round_robin(broker: RunningBroker, connect: Connect, version: str) -> None:
    """Two consumers of one queue take turns: each gets every other message, in order."""
    first, second, producer = connect(version), connect(version), connect(version)
    first.subscribe("/queue/x")
    second.subscribe("/queue/x")
    for n in range(1, 7):
        producer.send("/queue/x", f"m{n}")
    got = sorted([bodies(first.wait_messages(3)), bodies(second.wait_messages(3))])
    assert got == [["m1", "m3", "m5"], ["m2", "m4", "m6"]]
    for client in (first, second, producer):
        client.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_fan_out_and_late_subscriber(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """Every topic subscriber gets every message; a late subscriber gets only what follows it."""
    first, second, producer = connect(version), connect(version), connect(version)
    first.subscribe("/topic/x")
    second.subscribe("/topic/x")
    producer.send("/topic/x", "t1")
    producer.send("/topic/x", "t2")
    assert bodies(first.wait_messages(2)) == ["t1", "t2"]
    assert bodies(second.wait_messages(2)) == ["t1", "t2"]
    late = connect(version)
    late.subscribe("/topic/x")
    producer.send("/topic/x", "t3")
    assert bodies(late.wait_messages(1)) == ["t3"]
    assert bodies(first.wait_messages(3)) == ["t1", "t2", "t3"]
    assert bodies(second.wait_messages(3)) == ["t1", "t2", "t3"]
    for client in (first, second, late, producer):
        client.disconnect()
    broker.assert_idle()


# -- acknowledgement --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("ack", "left"),
    [("auto", []), ("client", ["m3"]), ("client-individual", ["m1", "m3"])],
)
def test_ack_modes(
    broker: RunningBroker, connect: Connect, version: str, ack: str, left: list[str]
) -> None:
    """ACKing m2 of m1..m3 (auto: no ACK) leaves only the unsettled rest, redelivered in order."""
    producer, first = connect(version), connect(version)
    first.subscribe("/queue/x", ack=ack)
    for body in ("m1", "m2", "m3"):
        producer.send("/queue/x", body)
    received = first.wait_messages(3)
    assert bodies(received) == ["m1", "m2", "m3"]
    if ack == "auto":
        assert "ack" not in received[0].headers
    else:
        if version == "1.2":
            assert all(m.headers.get("ack") for m in received)
        first.ack(received[1])
    first.disconnect()

    second = connect(version)
    second.subscribe("/queue/x", ack="client-individual")
    producer.send("/queue/x", "marker")
    redelivered = second.wait_for_body("marker")
    assert bodies(redelivered) == [*left, "marker"]
    assert [m.headers.get("redelivered") for m in redelivered] == ["true"] * len(left) + [None]
    for message in redelivered:
        second.ack(message)
    second.disconnect()
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS_11_UP)
@pytest.mark.parametrize("ack", ["client", "client-individual"])
@pytest.mark.parametrize("destination", ["/queue/x", "/topic/x"])
def test_nack_redelivers(
    broker: RunningBroker, connect: Connect, version: str, ack: str, destination: str
) -> None:
    """A NACKed message comes back to its subscriber: same id and body, marked redelivered:true."""
    consumer, producer = connect(version), connect(version)
    consumer.subscribe(destination, ack=ack)
    producer.send(destination, "again")
    [first] = consumer.wait_messages(1)
    assert "redelivered" not in first.headers
    consumer.nack(first)
    second = consumer.wait_messages(2)[1]
    assert second.body == "again"
    assert second.headers["message-id"] == first.headers["message-id"]
    assert second.headers.get("redelivered") == "true"
    consumer.ack(second)
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_prefetch_limits_messages_in_flight(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """With activemq.prefetchSize:1 a consumer gets its next message only after ACKing the last."""
    first, second, producer = connect(version), connect(version), connect(version)
    prefetch = {"activemq.prefetchSize": "1"}
    first.subscribe("/queue/x", ack="client-individual", headers=prefetch)
    second.subscribe("/queue/x", ack="client-individual", headers=prefetch)
    for n in range(1, 4):
        producer.send("/queue/x", f"m{n}")
    [held] = first.wait_messages(1)
    [taken] = second.wait_messages(1)
    assert (held.body, taken.body) == ("m1", "m2")
    second.ack(taken)
    assert second.wait_messages(2)[1].body == "m3"
    assert len(first.frames.messages) == 1
    first.ack(held)
    second.ack(second.wait_messages(2)[1])
    for client in (first, second, producer):
        client.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_dropped_connection_redelivers_unacked_in_order(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """A vanished consumer's unacknowledged messages go to another, in order, redelivered."""
    producer, first = connect(version), connect(version)
    first.subscribe("/queue/x", ack="client-individual")
    for n in range(1, 5):
        producer.send("/queue/x", f"m{n}")
    received = first.wait_messages(4)
    assert bodies(received) == ["m1", "m2", "m3", "m4"]
    second = connect(version)
    second.subscribe("/queue/x", ack="client-individual")
    first.ack(received[1])
    first.drop()

    redelivered = second.wait_messages(3)
    assert bodies(redelivered) == ["m1", "m3", "m4"]
    assert all(m.headers.get("redelivered") == "true" for m in redelivered)
    assert [m.headers["message-id"] for m in redelivered] == [
        received[i].headers["message-id"] for i in (0, 2, 3)
    ]
    producer.send("/queue/x", "m5")
    fresh = second.wait_messages(4)[3]
    assert fresh.body == "m5"
    assert "redelivered" not in fresh.headers
    for message in second.wait_messages(4):
        second.ack(message)
    second.disconnect()
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_unsubscribe_gives_back_unacked(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """UNSUBSCRIBE returns unacknowledged messages to the queue; the next subscription gets them."""
    consumer, producer = connect(version), connect(version)
    subscription = consumer.subscribe("/queue/x", ack="client-individual")
    producer.send("/queue/x", "u1")
    producer.send("/queue/x", "u2")
    assert bodies(consumer.wait_messages(2)) == ["u1", "u2"]
    consumer.unsubscribe(subscription)
    consumer.subscribe("/queue/x", ack="client-individual")
    again = consumer.wait_messages(4)[2:]
    assert bodies(again) == ["u1", "u2"]
    assert all(m.headers.get("redelivered") == "true" for m in again)
    for message in again:
        consumer.ack(message)
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


def test_stomp10_subscription_named_by_destination(broker: RunningBroker, connect: Connect) -> None:
    """In 1.0 a SUBSCRIBE without id is named by its destination, for MESSAGE and UNSUBSCRIBE."""
    consumer, producer = connect("1.0"), connect("1.0")
    consumer.subscribe("/queue/x", ack="client", with_id=False)
    producer.send("/queue/x", "no id")
    [message] = consumer.wait_messages(1)
    assert message.headers.get("subscription", "/queue/x") == "/queue/x"
    consumer.ack(message)
    consumer.unsubscribe("/queue/x", by_destination=True)
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_bad_destination_gets_error_with_receipt_id(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """A SEND to a destination we do not serve gets an ERROR naming it, with the receipt-id."""
    client = connect(version)
    client.conn.send("/nowhere/x", "lost", headers={"receipt": "doomed"})
    client.frames.wait(lambda: bool(client.frames.errors), "an ERROR")
    error = client.frames.errors[0]
    assert error.headers["message"] == (
        "unsupported destination '/nowhere/x': "
        "use /queue/NAME, /topic/NAME, /temp-queue/NAME or /temp-topic/NAME"
    )
    assert error.headers.get("receipt-id") == "doomed"
    client.frames.wait(lambda: client.frames.disconnected, "the broker to close the connection")
    broker.assert_idle()


# -- transactions -------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_transaction_commit_delivers_both(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """SENDs in a transaction are held until COMMIT, then both are delivered in order."""
    consumer, producer = connect(version), connect(version)
    consumer.subscribe("/queue/x")
    name = producer.begin()
    producer.send("/queue/x", "tx1", transaction=name)
    producer.send("/queue/x", "tx2", transaction=name)
    producer.send("/queue/x", "outside")
    assert bodies(consumer.wait_messages(1)) == ["outside"]
    producer.commit(name)
    delivered = consumer.wait_messages(3)
    assert bodies(delivered) == ["outside", "tx1", "tx2"]
    assert all("transaction" not in m.headers for m in delivered)
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_transaction_abort_delivers_none(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """SENDs in an aborted transaction are never delivered."""
    consumer, producer = connect(version), connect(version)
    consumer.subscribe("/queue/x")
    name = producer.begin()
    producer.send("/queue/x", "tx1", transaction=name)
    producer.send("/queue/x", "tx2", transaction=name)
    producer.abort(name)
    producer.send("/queue/x", "after")
    assert bodies(consumer.wait_for_body("after")) == ["after"]
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_ack_in_transaction(broker: RunningBroker, connect: Connect, version: str) -> None:
    """An ACK in an aborted transaction is undone (the message comes back); committed, it holds."""
    consumer, producer = connect(version), connect(version)
    consumer.subscribe("/queue/x", ack="client-individual")
    producer.send("/queue/x", "settle me")
    [first] = consumer.wait_messages(1)
    name = consumer.begin()
    consumer.ack(first, transaction=name)
    consumer.abort(name)
    second = consumer.wait_messages(2)[1]
    assert second.body == "settle me"
    assert second.headers.get("redelivered") == "true"
    name = consumer.begin()
    consumer.ack(second, transaction=name)
    consumer.commit(name)
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


# -- bodies and headers -----------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_binary_body_round_trips(broker: RunningBroker, connect: Connect, version: str) -> None:
    """A body with NULs and non-UTF-8 octets arrives byte for byte, with its content-length."""
    body = b"\x00start" + bytes(range(256)) + b"\x00\x00end\x00"
    consumer = connect(version, auto_decode=False)
    producer = connect(version, auto_decode=False)
    consumer.subscribe("/queue/x")
    producer.send("/queue/x", body)
    [message] = consumer.wait_messages(1)
    assert message.body == body
    assert message.headers["content-length"] == str(len(body))
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


def test_large_body_fans_out_intact(broker: RunningBroker, connect: Connect) -> None:
    """A 4 MiB body sent to a topic reaches two subscribers intact, before the next message."""
    body = b"\0head" + b"x" * (4 * 1024 * 1024) + b"tail\0"
    first = connect("1.2", auto_decode=False)
    second = connect("1.2", auto_decode=False)
    producer = connect("1.2", auto_decode=False)
    for consumer in (first, second):
        consumer.subscribe("/topic/big")
    producer.send("/topic/big", body)
    producer.send("/topic/big", b"small")
    for consumer in (first, second):
        big, small = consumer.wait_messages(2)
        assert big.body == body
        assert small.body == b"small"
    for client in (first, second, producer):
        client.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("sender", VERSIONS_11_UP)
@pytest.mark.parametrize("receiver", VERSIONS_11_UP)
def test_header_escaping_round_trips(
    broker: RunningBroker, connect: Connect, sender: str, receiver: str
) -> None:
    """Header values with ':', newlines and backslashes survive 1.1/1.2 escaping both ways."""
    headers = {
        "x-colon": "a:b:c",
        "x-newline": "line one\nline two",
        "x-backslash": "C:\\new\\table",
        "x-all": ":\n\\:",
    }
    consumer, producer = connect(receiver), connect(sender)
    consumer.subscribe("/queue/x")
    producer.send("/queue/x", "escaped", headers=headers)
    [message] = consumer.wait_messages(1)
    assert {name: message.headers.get(name) for name in headers} == headers
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


def test_carriage_return_in_header_round_trips_in_12(
    broker: RunningBroker, connect: Connect
) -> None:
    """A CR inside a header value survives STOMP 1.2's \\r escaping both ways."""
    headers = {"x-cr": "before\rafter", "x-crlf": "one\r\ntwo"}
    consumer, producer = connect("1.2"), connect("1.2")
    consumer.subscribe("/queue/x")
    producer.send("/queue/x", "cr", headers=headers)
    [message] = consumer.wait_messages(1)
    assert {name: message.headers.get(name) for name in headers} == headers
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize("version", VERSIONS)
def test_utf8_header_and_body_round_trip(
    broker: RunningBroker, connect: Connect, version: str
) -> None:
    """Non-ASCII UTF-8 in header values and text bodies arrives unchanged."""
    text = "h\u00e9llo \u2603 \u65e5\u672c \U0001f600"
    consumer, producer = connect(version), connect(version)
    consumer.subscribe("/queue/x")
    producer.send("/queue/x", text, headers={"x-text": text})
    [message] = consumer.wait_messages(1)
    assert message.body == text
    assert message.headers.get("x-text") == text
    consumer.disconnect()
    producer.disconnect()
    broker.assert_idle()


# -- peers that break the rules --------------------------------------------------------------

MALFORMED = {
    "header line without a colon": b"SEND\ndestination/queue/x\n\nbroken\0",
    "unknown command": b"FROB\ndestination:/queue/x\n\nbroken\0",
    "content-length not a number": b"SEND\ndestination:/queue/x\ncontent-length:ten\n\nbroken\0",
    "no NUL after content-length octets": (
        b"SEND\ndestination:/queue/x\ncontent-length:2\n\nbroken\0"
    ),
    "undefined escape sequence": b"SEND\ndestination:/queue/x\nx-bad:a\\tb\n\nbroken\0",
}

#: The ERROR message each kind of malformed frame gets.
MALFORMED_MESSAGES = {
    "header line without a colon": "malformed header line",
    "unknown command": "unknown command",
    "content-length not a number": "invalid content-length",
    "no NUL after content-length octets": "frame not terminated by NUL after content-length octets",
    "undefined escape sequence": "undefined escape sequence in header",
}

MALFORMED_CASES = [
    *[("header line without a colon", v) for v in VERSIONS],
    *[(kind, "1.2") for kind in MALFORMED if kind != "header line without a colon"],
    ("undefined escape sequence", "1.1"),
]


@pytest.mark.parametrize(("kind", "version"), MALFORMED_CASES)
def test_malformed_frame_gets_error_and_close(
    broker: RunningBroker, connect: Connect, raw: Raw, kind: str, version: str
) -> None:
    """A malformed frame gets an ERROR with a message header and close; other clients carry on."""
    survivor = connect(version)
    survivor.subscribe("/queue/x")
    offender = raw()
    offender.connect(version)
    offender.send(b"SUBSCRIBE\nid:raw\ndestination:/topic/raw\nreceipt:sub\n\n\0")
    receipt = offender.read_frame()
    assert receipt is not None and receipt.command == "RECEIPT"
    offender.send(MALFORMED[kind])
    frames = offender.read_until_closed()
    assert [(f.command, f.headers["message"]) for f in frames] == [
        ("ERROR", MALFORMED_MESSAGES[kind])
    ], frames

    survivor.send("/queue/x", "still here")
    assert bodies(survivor.wait_messages(1)) == ["still here"]
    survivor.disconnect()
    broker.assert_idle()


@pytest.mark.parametrize(
    "frame",
    [
        b"SEND\ndestination:/queue/x\n\nearly\0",
        b"SUBSCRIBE\nid:0\ndestination:/queue/x\n\n\0",
        b"DISCONNECT\nreceipt:r\n\n\0",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ],
    ids=["SEND", "SUBSCRIBE", "DISCONNECT", "HTTP"],
)
def test_frame_before_connect_gets_error(broker: RunningBroker, raw: Raw, frame: bytes) -> None:
    """Any first frame but CONNECT/STOMP (or non-STOMP bytes) gets an ERROR, then close."""
    client = raw()
    client.send(frame)
    frames = client.read_until_closed()
    expected = "unknown command" if frame.startswith(b"GET") else "expected CONNECT"
    assert [(f.command, f.headers["message"]) for f in frames] == [("ERROR", expected)], frames
    broker.assert_idle()

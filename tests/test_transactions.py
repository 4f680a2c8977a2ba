"""Transactions: BEGIN, staged SEND/ACK/NACK, COMMIT, ABORT, and connection loss."""

from __future__ import annotations

import pytest

from stompbroker.codec import Frame
from stompbroker.testing import Client, connected_clients
from tests.helpers import broker_is_empty


def _receipts(frames: list[Frame]) -> list[str]:
    return [f.headers["receipt-id"] for f in frames if f.command == "RECEIPT"]


def _tx_send(client: Client, tx: str, destination: str, body: bytes, **headers: str) -> None:
    client.send("SEND", {"destination": destination, "transaction": tx, **headers}, body)


def _holding(count: int = 1) -> tuple[Client, Client, Client, list[str]]:
    """(holder, other, producer, ack ids): holder has unacked queue messages 1..count;
    other is connected but not subscribed."""
    _, _, (holder, other, producer) = connected_clients(3)
    holder.subscribe("/queue/q", "h", ack="client-individual")
    for i in range(1, count + 1):
        producer.publish("/queue/q", b"%d" % i)
    acks = [m.headers["ack"] for m in holder.messages()]
    assert len(acks) == count
    return holder, other, producer, acks


# -- SEND ----------------------------------------------------------------------------


@pytest.mark.parametrize("destination", ["/queue/q", "/topic/t"])
def test_staged_sends_appear_only_at_commit_in_order(destination: str) -> None:
    """SENDs in a transaction reach subscribers only at COMMIT, all of them, in order."""
    _, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe(destination)
    producer.send("BEGIN", {"transaction": "tx"})
    for body in (b"1", b"2", b"3"):
        _tx_send(producer, "tx", destination, body)
    assert consumer.frames() == []
    producer.send("COMMIT", {"transaction": "tx", "receipt": "c"})
    assert _receipts(producer.frames()) == ["c"]
    assert consumer.bodies() == [b"1", b"2", b"3"]


def test_staged_send_receipt_comes_at_once() -> None:
    """A staged SEND's RECEIPT is not held until COMMIT."""
    _, _, (producer,) = connected_clients(1)
    producer.send("BEGIN", {"transaction": "tx", "receipt": "b"})
    _tx_send(producer, "tx", "/queue/q", b"x", receipt="s")
    assert _receipts(producer.frames()) == ["b", "s"]


def test_staged_and_plain_sends_interleave_by_commit() -> None:
    """A plain SEND after staged ones arrives first; staged ones follow at COMMIT."""
    _, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    producer.send("BEGIN", {"transaction": "tx"})
    _tx_send(producer, "tx", "/queue/q", b"staged")
    producer.publish("/queue/q", b"plain")
    producer.send("COMMIT", {"transaction": "tx"})
    assert consumer.bodies() == [b"plain", b"staged"]


def test_abort_drops_staged_sends() -> None:
    """ABORT discards the transaction's SENDs: nobody ever receives them."""
    broker, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    producer.send("BEGIN", {"transaction": "tx"})
    _tx_send(producer, "tx", "/queue/q", b"never")
    producer.send("ABORT", {"transaction": "tx", "receipt": "a"})
    assert _receipts(producer.frames()) == ["a"]
    assert consumer.frames() == []
    assert broker.queue_depth("q") == 0
    consumer.lose()
    assert broker_is_empty(broker)


def test_transactions_are_independent() -> None:
    """Two open transactions stage separately; each COMMIT or ABORT affects its own."""
    _, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    producer.send("BEGIN", {"transaction": "a"})
    producer.send("BEGIN", {"transaction": "b"})
    _tx_send(producer, "a", "/queue/q", b"a1")
    _tx_send(producer, "b", "/queue/q", b"b1")
    _tx_send(producer, "a", "/queue/q", b"a2")
    producer.send("ABORT", {"transaction": "a"})
    producer.send("COMMIT", {"transaction": "b"})
    assert consumer.bodies() == [b"b1"]


def test_committed_message_has_no_transaction_header() -> None:
    """A message committed in a transaction reaches consumers without transaction or receipt."""
    _, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    producer.send("BEGIN", {"transaction": "tx"})
    _tx_send(producer, "tx", "/queue/q", b"x", receipt="r", color="red")
    producer.send("COMMIT", {"transaction": "tx"})
    (message,) = consumer.messages()
    assert message.headers["color"] == "red"
    assert "transaction" not in message.headers
    assert "receipt" not in message.headers


def test_staged_send_to_bad_destination_is_an_error() -> None:
    """A staged SEND to an unsupported destination gets ERROR when it is sent, not at COMMIT."""
    _, _, (producer,) = connected_clients(1)
    producer.send("BEGIN", {"transaction": "tx"})
    _tx_send(producer, "tx", "/exchange/x", b"x", receipt="r")
    error = producer.error(
        "unsupported destination '/exchange/x': "
        "use /queue/NAME, /topic/NAME, /temp-queue/NAME or /temp-topic/NAME"
    )
    assert error.headers.get("receipt-id") == "r"


# -- ACK / NACK ---------------------------------------------------------------------


def test_ack_in_transaction_takes_effect_at_commit() -> None:
    """An ACK in a transaction settles the message only at COMMIT (prefetch shows it)."""
    _, _, (consumer, producer) = connected_clients(2)
    consumer.subscribe("/queue/q", ack="client-individual", prefetch_count="1")
    producer.publish("/queue/q", b"1")
    producer.publish("/queue/q", b"2")
    (first,) = consumer.messages()
    consumer.send("BEGIN", {"transaction": "tx"})
    consumer.send("ACK", {"id": first.headers["ack"], "transaction": "tx", "receipt": "a"})
    assert _receipts(consumer.frames()) == ["a"]
    consumer.send("COMMIT", {"transaction": "tx"})
    assert consumer.bodies() == [b"2"]


def test_committed_ack_is_final() -> None:
    """A message whose ACK was committed is not given back when the consumer leaves."""
    holder, other, _, acks = _holding(2)
    holder.send("BEGIN", {"transaction": "tx"})
    holder.send("ACK", {"id": acks[0], "transaction": "tx"})
    holder.send("COMMIT", {"transaction": "tx"})
    other.subscribe("/queue/q", "o")
    holder.lose()
    assert other.bodies() == [b"2"]


def test_abort_gives_back_messages_whose_ack_it_drops() -> None:
    """ABORT of a transaction holding an ACK redelivers that message, marked redelivered."""
    holder, _, _, acks = _holding(2)
    holder.send("BEGIN", {"transaction": "tx"})
    holder.send("ACK", {"id": acks[1], "transaction": "tx"})
    holder.send("ABORT", {"transaction": "tx", "receipt": "a"})
    frames = holder.frames()
    assert _receipts(frames) == ["a"]
    (again,) = [f for f in frames if f.command == "MESSAGE"]
    assert again.body == b"2"
    assert again.headers["redelivered"] == "true"


def test_nack_in_transaction_takes_effect_at_commit() -> None:
    """A NACK in a transaction redelivers only at COMMIT."""
    holder, _, _, acks = _holding(1)
    holder.send("BEGIN", {"transaction": "tx"})
    holder.send("NACK", {"id": acks[0], "transaction": "tx"})
    assert holder.frames() == []
    holder.send("COMMIT", {"transaction": "tx"})
    (again,) = holder.messages()
    assert again.body == b"1"
    assert again.headers["redelivered"] == "true"


def test_ack_in_transaction_of_unknown_message_is_an_error() -> None:
    """ACK of an unknown message is refused when sent, even inside a transaction."""
    _, _, (client,) = connected_clients(1)
    client.send("BEGIN", {"transaction": "tx"})
    client.send("ACK", {"id": "nope@1", "transaction": "tx"})
    client.error("unknown message")


# -- transaction names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "headers"),
    [
        ("COMMIT", {"transaction": "nope"}),
        ("ABORT", {"transaction": "nope"}),
        ("SEND", {"transaction": "nope", "destination": "/queue/q"}),
    ],
)
def test_unknown_transaction_is_an_error(command: str, headers: dict[str, str]) -> None:
    """COMMIT, ABORT or SEND naming a transaction never begun gets ERROR with receipt-id."""
    broker, _, (client,) = connected_clients(1)
    client.send(command, {**headers, "receipt": "r"})
    assert client.error("unknown transaction").headers["receipt-id"] == "r"
    assert broker_is_empty(broker)


def test_unknown_transaction_on_ack_is_an_error() -> None:
    """ACK naming a transaction never begun gets ERROR and settles nothing."""
    holder, other, _, acks = _holding(1)
    holder.send("ACK", {"id": acks[0], "transaction": "nope"})
    holder.error("unknown transaction")
    other.subscribe("/queue/q", "o")
    holder.lose()
    assert other.bodies() == [b"1"]


def test_begin_twice_is_an_error() -> None:
    """BEGIN of a transaction name already open gets ERROR."""
    _, _, (client,) = connected_clients(1)
    client.send("BEGIN", {"transaction": "tx"})
    client.send("BEGIN", {"transaction": "tx", "receipt": "r"})
    assert client.error("transaction already begun").headers["receipt-id"] == "r"


@pytest.mark.parametrize("ending", ["COMMIT", "ABORT"])
def test_finished_transaction_is_unknown(ending: str) -> None:
    """After COMMIT or ABORT the transaction name is unknown: using it again is an ERROR."""
    _, _, (client,) = connected_clients(1)
    client.send("BEGIN", {"transaction": "tx"})
    client.send(ending, {"transaction": "tx"})
    _tx_send(client, "tx", "/queue/q", b"x")
    client.error("unknown transaction")


def test_transactions_belong_to_their_connection() -> None:
    """One connection cannot commit another's transaction."""
    _, _, (owner, stranger, consumer) = connected_clients(3)
    consumer.subscribe("/queue/q")
    owner.send("BEGIN", {"transaction": "tx"})
    _tx_send(owner, "tx", "/queue/q", b"x")
    stranger.send("COMMIT", {"transaction": "tx"})
    stranger.error("unknown transaction")
    assert consumer.frames() == []
    owner.send("COMMIT", {"transaction": "tx"})
    assert consumer.bodies() == [b"x"]


# -- connection loss ------------------------------------------------------------------


def test_connection_loss_aborts_staged_sends() -> None:
    """Staged SENDs of a connection that is lost before COMMIT are never delivered."""
    broker, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    producer.send("BEGIN", {"transaction": "tx"})
    _tx_send(producer, "tx", "/queue/q", b"never")
    producer.lose()
    assert consumer.frames() == []
    assert broker.queue_depth("q") == 0


def test_disconnect_aborts_open_transaction() -> None:
    """DISCONNECT with a transaction open drops its staged SENDs."""
    broker, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    producer.send("BEGIN", {"transaction": "tx"})
    _tx_send(producer, "tx", "/queue/q", b"never")
    producer.send("DISCONNECT", {"receipt": "bye"})
    producer.lose()
    assert consumer.frames() == []
    assert broker.queue_depth("q") == 0


def test_connection_loss_gives_back_messages_acked_in_open_transaction() -> None:
    """A message ACKed in a transaction still open when the connection drops is redelivered."""
    holder, other, _, acks = _holding(2)
    holder.send("BEGIN", {"transaction": "tx"})
    holder.send("ACK", {"id": acks[0], "transaction": "tx"})
    holder.send("ACK", {"id": acks[1], "transaction": "tx"})
    other.subscribe("/queue/q", "o")
    holder.lose()
    received = other.messages()
    assert [m.body for m in received] == [b"1", b"2"]
    assert all(m.headers["redelivered"] == "true" for m in received)


def test_nothing_written_to_lost_connection_when_its_transaction_aborts() -> None:
    """Aborting a lost connection's transaction does not redeliver to that same connection."""
    holder, _, _, acks = _holding(1)
    holder.send("BEGIN", {"transaction": "tx"})
    holder.send("ACK", {"id": acks[0], "transaction": "tx"})
    before = holder.written()
    holder.lose()
    assert holder.written() == before


def test_connection_loss_with_open_ack_loses_no_message() -> None:
    """A message ACKed in an open transaction survives connection loss even if the same
    connection also had an auto-ack subscription to the queue."""
    broker, _, (holder, producer) = connected_clients(2)
    holder.subscribe("/queue/q", "manual", ack="client-individual")
    holder.subscribe("/queue/q", "auto")
    producer.publish("/queue/q", b"1")
    (message,) = holder.messages()
    assert message.headers["subscription"] == "manual"
    holder.send("BEGIN", {"transaction": "tx"})
    holder.send("ACK", {"id": message.headers["ack"], "transaction": "tx"})
    holder.lose()
    assert broker.queue_depth("q") == 1


def test_connection_loss_leaves_no_state_behind() -> None:
    """After loss with transactions open, the broker holds only the returned messages."""
    holder, _, _, acks = _holding(1)
    holder.send("BEGIN", {"transaction": "tx"})
    holder.send("ACK", {"id": acks[0], "transaction": "tx"})
    _tx_send(holder, "tx", "/topic/t", b"x")
    holder.lose()
    broker = holder.broker
    assert broker.queue_depth("q") == 1
    assert not broker.destinations.topics

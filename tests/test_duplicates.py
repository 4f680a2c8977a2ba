"""Duplicate detection: a SEND whose _AMQ_DUPL_ID its queue took lately is not delivered again."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from stompbroker.core import Broker, DestinationPolicy, MessageError, PolicyMap
from stompbroker.core._duplicates import DuplicateWindow
from stompbroker.store import FILENAME
from stompbroker.testing import RecordingConsumer, connected_clients
from tests.test_persistence import Node, node_on, sqlite_at

DUP = "_AMQ_DUPL_ID"


def _broker(**policy: int) -> Broker:
    policies = PolicyMap(default=DestinationPolicy(**policy)) if policy else None  # type: ignore[arg-type]
    return Broker(clock=Clock(), policies=policies)


def _consumer(broker: Broker, destination: str = "/queue/q") -> RecordingConsumer:
    consumer = RecordingConsumer()
    broker.subscribe(consumer, "s", destination)
    return consumer


# -- the window ---------------------------------------------------------------------


def test_window_pushes_out_the_oldest_id_beyond_its_size() -> None:
    """A window of two forgets the oldest id when a third arrives, and says which."""
    window = DuplicateWindow()
    assert window.add("a", 0, 2) == [] and window.add("b", 0, 2) == []
    assert window.add("c", 0, 2) == ["a"]
    assert (window.seen("a", 0), window.seen("b", 0), window.seen("c", 0)) == (False, True, True)


def test_window_forgets_an_expired_id() -> None:
    """An id whose expiry has passed is not seen, and is dropped from the window."""
    window = DuplicateWindow()
    window.add("a", 1000.0, 10)
    assert window.seen("a", 999.0)
    assert not window.seen("a", 1000.0) and "a" not in window.ids


# -- the core -----------------------------------------------------------------------


def test_resent_message_is_not_delivered_again_and_is_counted() -> None:
    """A second send with the same id to a queue is not delivered; both count once each way."""
    broker = _broker()
    consumer = _consumer(broker)
    first = broker.send("/queue/q", {DUP: "x"}, b"1")
    again = broker.send("/queue/q", {DUP: "x"}, b"2")
    assert consumer.bodies() == [b"1"]
    assert again.written is None and again.room is None and first.message is not again.message
    assert broker.destinations.queues["q"].stats.duplicates == 1
    assert broker.counters["duplicates"] == 1


def test_an_acknowledged_message_is_still_remembered() -> None:
    """Consuming a message does not forget its id: a resend after the ACK is a duplicate."""
    broker = _broker()
    consumer = _consumer(broker)
    broker.send("/queue/q", {DUP: "x"}, b"1")
    consumer.take()
    broker.send("/queue/q", {DUP: "x"}, b"2")
    assert consumer.bodies() == []


def test_other_ids_and_other_queues_are_delivered() -> None:
    """An id is remembered per queue: another id, or the same id on another queue, is new."""
    broker = _broker()
    q, r = _consumer(broker, "/queue/q"), _consumer(broker, "/queue/r")
    broker.send("/queue/q", {DUP: "x"}, b"1")
    broker.send("/queue/q", {DUP: "y"}, b"2")
    broker.send("/queue/r", {DUP: "x"}, b"3")
    assert (q.bodies(), r.bodies()) == ([b"1", b"2"], [b"3"])


def test_window_size_bounds_what_is_remembered() -> None:
    """With duplicate_window 2, the id sent three ids ago is taken again."""
    broker = _broker(duplicate_window=2)
    consumer = _consumer(broker)
    for dupl_id in ("a", "b", "c", "a", "c"):
        broker.send("/queue/q", {DUP: dupl_id}, dupl_id.encode())
    assert consumer.bodies() == [b"a", b"b", b"c", b"a"]


def test_duplicate_ttl_lets_an_id_be_taken_again_after_it() -> None:
    """With duplicate_ttl_ms, an id is remembered that long, by the broker's clock."""
    broker = _broker(duplicate_ttl_ms=1000)
    consumer = _consumer(broker)
    broker.send("/queue/q", {DUP: "x"}, b"1")
    broker.clock.advance(0.5)  # type: ignore[attr-defined]
    broker.send("/queue/q", {DUP: "x"}, b"2")
    broker.clock.advance(0.5)  # type: ignore[attr-defined]
    broker.send("/queue/q", {DUP: "x"}, b"3")
    assert consumer.bodies() == [b"1", b"3"]


def test_zero_window_turns_detection_off() -> None:
    """duplicate_window 0: every send is delivered, the header is kept."""
    broker = _broker(duplicate_window=0)
    consumer = _consumer(broker)
    broker.send("/queue/q", {DUP: "x"}, b"1")
    broker.send("/queue/q", {DUP: "x"}, b"2")
    messages = consumer.take()
    assert [m.body for m in messages] == [b"1", b"2"] and messages[0].headers[DUP] == "x"


def test_topics_do_not_check_ids() -> None:
    """A topic delivers every publish, whatever its id."""
    broker = _broker()
    consumer = _consumer(broker, "/topic/t")
    broker.send("/topic/t", {DUP: "x"}, b"1")
    broker.send("/topic/t", {DUP: "x"}, b"2")
    assert consumer.bodies() == [b"1", b"2"]


def test_composite_send_skips_only_the_queues_that_took_the_id() -> None:
    """A composite resend gives a copy to a queue that has not seen the id, none to one that has."""
    broker = _broker()
    q, r = _consumer(broker, "/queue/q"), _consumer(broker, "/queue/r")
    broker.send("/queue/q", {DUP: "x"}, b"1")
    broker.send("/queue/q,/queue/r", {DUP: "x"}, b"2")
    assert (q.bodies(), r.bodies()) == ([b"1"], [b"2"])


@pytest.mark.parametrize("value", ["", "x" * 257])
def test_bad_id_is_refused_with_a_clear_message(value: str) -> None:
    """An empty id, or one over 256 characters, is a MessageError naming the header."""
    broker = _broker()
    with pytest.raises(MessageError) as raised:
        broker.send("/queue/q", {DUP: value}, b"1")
    assert str(raised.value) == f"invalid _AMQ_DUPL_ID {value[:40]!r}: expected 1 to 256 characters"


def test_transaction_applies_the_rule_at_commit() -> None:
    """An id taken between staging and COMMIT, or used twice in one COMMIT, is delivered once."""
    broker = _broker()
    consumer = _consumer(broker)
    transaction = broker.transaction("a")
    transaction.send("/queue/q", {DUP: "x"}, b"staged")
    transaction.send("/queue/q", {DUP: "y"}, b"y1")
    transaction.send("/queue/q", {DUP: "y"}, b"y2")
    broker.send("/queue/q", {DUP: "x"}, b"direct")
    transaction.commit()
    assert consumer.bodies() == [b"direct", b"y1"]
    assert broker.destinations.queues["q"].stats.duplicates == 2


def test_transaction_refuses_a_bad_id_when_staged() -> None:
    """A staged SEND with an empty id is refused at once."""
    broker = _broker()
    with pytest.raises(MessageError):
        broker.transaction("a").send("/queue/q", {DUP: ""}, b"1")


# -- the session --------------------------------------------------------------------


def test_session_duplicate_gets_its_receipt_and_is_not_delivered() -> None:
    """Over STOMP, a resent SEND gets its RECEIPT; the consumer sees one MESSAGE."""
    _, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    for receipt in ("r1", "r2"):
        producer.send("SEND", {"destination": "/queue/q", DUP: "x", "receipt": receipt}, b"m")
    assert [f.headers.get("receipt-id") for f in producer.frames()] == ["r1", "r2"]
    assert consumer.bodies() == [b"m"]


def test_session_empty_id_is_an_error() -> None:
    """An empty _AMQ_DUPL_ID is an ERROR with the exact message."""
    _, _, (producer,) = connected_clients(1)
    producer.send("SEND", {"destination": "/queue/q", DUP: ""}, b"m")
    producer.error("invalid _AMQ_DUPL_ID '': expected 1 to 256 characters")


# -- persistence --------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Node:
    return node_on(request.param, tmp_path)


def test_remembered_id_survives_a_restart_after_its_message_was_consumed(node: Node) -> None:
    """A persistent message consumed before a restart: its resend after it is a duplicate."""
    consumer, _ = node.subscribe("/queue/q")
    node.wait(node.send("/queue/q", b"1", _AMQ_DUPL_ID="x"))
    assert consumer.bodies() == [b"1"]
    node.restart()
    consumer, _ = node.subscribe("/queue/q")
    assert node.send("/queue/q", b"again", _AMQ_DUPL_ID="x") is None
    assert consumer.bodies() == []


def test_crash_after_the_write_keeps_message_and_id(node: Node) -> None:
    """Killed after the batch, before the RECEIPT: the message is there once, the resend is not."""
    node.wait(node.send("/queue/q", b"1", _AMQ_DUPL_ID="x"))
    node.crash()
    node.send("/queue/q", b"resent", _AMQ_DUPL_ID="x")
    consumer, _ = node.subscribe("/queue/q")
    assert consumer.bodies() == [b"1"]


def test_non_persistent_ids_are_not_stored(node: Node) -> None:
    """The id of a non-persistent message is forgotten at a restart."""
    node.wait(node.send("/queue/q", b"1", _AMQ_DUPL_ID="x", persistent="false"))
    node.restart()
    consumer, _ = node.subscribe("/queue/q")
    node.send("/queue/q", b"2", _AMQ_DUPL_ID="x", persistent="false")
    assert consumer.bodies() == [b"2"]


def test_ids_pushed_out_of_the_window_leave_the_store(node: Node) -> None:
    """With duplicate_window 1, the older id is forgotten on disk too."""
    node.policies = PolicyMap(default=DestinationPolicy(duplicate_window=1))
    node.broker = node.crash()
    node.wait(node.send("/queue/q", b"a", _AMQ_DUPL_ID="a"))
    node.wait(node.send("/queue/q", b"b", _AMQ_DUPL_ID="b"))
    node.restart()
    assert list(node.broker.router.duplicates.windows["/queue/q"].ids) == ["b"]


def test_sqlite_crash_before_the_batch_loses_message_and_id_together(tmp_path: Path) -> None:
    """Killed before the batch holding a message and its id left: the resend is delivered."""
    path = str(tmp_path / FILENAME)
    first = Node(sqlite_at(path))
    first.broker.send("/queue/q", {DUP: "x"}, b"lost", True)  # its batch never runs
    again = Node(sqlite_at(path))
    written = again.broker.send("/queue/q", {DUP: "x"}, b"resent", True).written
    assert written is not None
    again.wait(written)
    consumer, _ = again.subscribe("/queue/q")
    assert consumer.bodies() == [b"resent"]


def test_sqlite_writes_the_id_in_the_batch_of_its_message(tmp_path: Path) -> None:
    """A persistent send with an id costs one batch: the row and the id commit together."""
    node = Node(sqlite_at(str(tmp_path / FILENAME)))
    before = node.store.commits.batches
    node.wait(node.send("/queue/q", b"1", _AMQ_DUPL_ID="x"))
    assert node.store.commits.batches == before + 1


def test_expired_ids_leave_the_store(node: Node) -> None:
    """An id past its duplicate_ttl_ms is forgotten on disk when met, or at the next start."""
    node.policies = PolicyMap(default=DestinationPolicy(duplicate_ttl_ms=1000))
    node.broker = node.crash()
    node.wait(node.send("/queue/q", b"a", _AMQ_DUPL_ID="a", persistent="true"))
    node.wait(node.send("/queue/q", b"b", _AMQ_DUPL_ID="b", persistent="true"))
    node.clock.advance(2)
    node.broker.router.duplicates.seen("/queue/q", "a")
    node.restart()
    assert "/queue/q" not in node.broker.router.duplicates.windows
    node.wait(node.store.close())
    fresh = node.make_store(node.clock)
    recovery = node.wait(fresh.open())
    node.wait(fresh.close())
    assert recovery.duplicate_ids == ()


def test_session_commit_delivers_a_staged_duplicate_once() -> None:
    """Over STOMP, two staged SENDs with one id and a COMMIT: one MESSAGE, every RECEIPT."""
    _, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/q")
    producer.send("BEGIN", {"transaction": "t"})
    for n in ("1", "2"):
        headers = {"destination": "/queue/q", DUP: "x", "transaction": "t", "receipt": n}
        producer.send("SEND", headers, n.encode())
    producer.send("COMMIT", {"transaction": "t", "receipt": "c"})
    assert [f.headers.get("receipt-id") for f in producer.frames()] == ["1", "2", "c"]
    assert consumer.bodies() == [b"1"]

"""Composite destinations (``/queue/a,/topic/b``), configured forwards (``forward_to``) and
the sender's login stamped as ``JMSXUserID``: in the core, through sessions, and across a
restart. No sockets, no sleeps."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from stompbroker.codec import Frame, encode_frame
from stompbroker.core import (
    AccessControl,
    Broker,
    DestinationError,
    DestinationPolicy,
    PolicyMap,
    User,
)
from stompbroker.store import FILENAME, MemoryStore, SqliteStore
from stompbroker.testing import QUIET, Client, RecordingConsumer, connected_clients
from tests.test_access import cheap_hash, rule
from tests.test_persistence import Node, run_now
from tests.test_session import _fired, _HeldStore

USERS = [User("alice", cheap_hash("a-pass")), User("bob", cheap_hash("b-pass"))]


def _broker(policies: dict[str, DestinationPolicy] | None = None) -> Broker:
    return Broker(clock=Clock(), policies=PolicyMap(policies or {}))


def _consume(broker: Broker, destination: str, name: str = "s") -> RecordingConsumer:
    consumer = RecordingConsumer()
    broker.subscribe(consumer, name, destination, "auto", 1000)
    return consumer


def _bodies(consumer: RecordingConsumer) -> list[bytes]:
    return consumer.bodies()


# -- the core: composite sends -----------------------------------------------------------


def test_a_composite_send_gives_each_destination_a_copy() -> None:
    """SEND to /queue/a,/topic/b: the queue and the topic each get the message."""
    broker = _broker()
    queue, topic = _consume(broker, "/queue/a", "q"), _consume(broker, "/topic/b", "t")
    broker.send("/queue/a,/topic/b", {"k": "v"}, b"hello")
    assert _bodies(queue) == [b"hello"] and _bodies(topic) == [b"hello"]
    (copy_a,), (copy_b,) = queue.take(), topic.take()
    assert copy_a.destination == "/queue/a"
    assert copy_b.destination == "/topic/b"
    assert copy_a.headers["k"] == copy_b.headers["k"] == "v"


def test_each_copy_has_its_own_message_id() -> None:
    """Copies are separate messages: each has its own message id."""
    broker = _broker()
    first, second = _consume(broker, "/queue/a", "1"), _consume(broker, "/queue/b", "2")
    broker.send("/queue/a,/queue/b", {}, b"x")
    assert first.take()[0].message_id != second.take()[0].message_id


def test_a_destination_named_twice_gets_one_copy() -> None:
    """/queue/a,/queue/a delivers one copy to /queue/a."""
    broker = _broker()
    broker.send("/queue/a,/queue/a", {}, b"x")
    assert broker.queue_depth("a") == 1


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("/queue/a,", "composite destination '/queue/a,' has an empty member"),
        (",/queue/a", "composite destination ',/queue/a' has an empty member"),
        ("/queue/a,/topic/b.*", "cannot send to the wildcard destination '/topic/b.*'"),
        (
            "/queue/a,/exchange/b",
            "unsupported destination '/exchange/b': use /queue/NAME, /topic/NAME,"
            " /temp-queue/NAME or /temp-topic/NAME",
        ),
        ("/queue/a,/topic/", "destination '/topic/' has no name"),
    ],
)
def test_a_bad_member_refuses_the_whole_send(destination: str, message: str) -> None:
    """One bad member: DestinationError naming it, and no destination gets a copy."""
    broker = _broker()
    with pytest.raises(DestinationError) as raised:
        broker.send(destination, {}, b"x")
    assert str(raised.value) == message
    assert broker.queue_depth("a") == 0


def test_a_composite_receipt_waits_for_every_copys_write() -> None:
    """One RECEIPT for a composite SEND, only once the write of every persistent copy is done."""
    store = _HeldStore()
    broker = Broker(clock=Clock(), store=store)
    broker.recover(_fired(store.open()))
    _, _, (producer,) = connected_clients(1, broker=broker)
    producer.publish("/queue/a,/queue/b", b"x", receipt="r")
    first, second = store.writes
    first.callback(None)
    assert producer.frames() == []
    second.callback(None)
    assert [f.headers["receipt-id"] for f in producer.frames()] == ["r"]


def test_a_full_reject_member_refuses_before_any_copy() -> None:
    """A full queue with on_full: reject refuses the composite send; the other gets nothing."""
    broker = _broker({"/queue/full": DestinationPolicy(max_messages=1, on_full="reject")})
    broker.send("/queue/full", {}, b"first")
    with pytest.raises(DestinationError):
        broker.send("/queue/a,/queue/full", {}, b"x")
    assert broker.queue_depth("a") == 0 and broker.queue_depth("full") == 1


def test_a_full_reject_durable_member_refuses_before_any_copy() -> None:
    """A topic member whose durable subscription is full (reject) refuses the composite send
    before the queue member gets its copy."""
    broker = _broker({"/topic/news": DestinationPolicy(max_messages=1, on_full="reject")})
    broker.declare_durable("c", "keep", "news", None)
    broker.send("/topic/news", {}, b"first")
    with pytest.raises(DestinationError):
        broker.send("/queue/a,/topic/news", {}, b"x")
    assert broker.queue_depth("a") == 0


# -- the core: forwards --------------------------------------------------------------------


def test_forward_to_sends_a_copy_to_each_target() -> None:
    """A message to a destination with forward_to also goes to every target."""
    broker = _broker({"/queue/orders": DestinationPolicy(forward_to=("/queue/audit", "/topic/o"))})
    topic = _consume(broker, "/topic/o")
    broker.send("/queue/orders", {}, b"x")
    assert broker.queue_depth("orders") == 1 and broker.queue_depth("audit") == 1
    assert _bodies(topic) == [b"x"]


def test_a_forwarded_copy_is_not_forwarded_again() -> None:
    """a forwards to b and b to a: one send gives each one copy (no loop)."""
    broker = _broker(
        {
            "/queue/a": DestinationPolicy(forward_to=("/queue/b",)),
            "/queue/b": DestinationPolicy(forward_to=("/queue/a", "/queue/c")),
        }
    )
    broker.send("/queue/a", {}, b"x")
    assert [broker.queue_depth(n) for n in "abc"] == [1, 1, 0]


def test_forward_targets_count_as_declared() -> None:
    """Without auto_create, a forward target is declared by the policy naming it."""
    broker = _broker({"/queue/a": DestinationPolicy(forward_to=("/queue/b",))})
    broker.auto_create = False
    broker.send("/queue/a", {}, b"x")
    assert broker.queue_depth("b") == 1


def test_a_staged_composite_send_is_one_step_applied_at_commit() -> None:
    """In a transaction a composite send is one step; COMMIT delivers every copy."""
    broker = _broker({"/queue/b": DestinationPolicy(forward_to=("/queue/c",))})
    transaction = broker.transaction("owner")
    transaction.send("/queue/a,/queue/b", {}, b"x", user="alice")
    assert len(transaction) == 1 and broker.queue_depth("a") == 0
    transaction.commit()
    assert [broker.queue_depth(n) for n in "abc"] == [1, 1, 1]


def test_a_staged_composite_send_with_a_bad_member_is_refused_when_staged() -> None:
    """A bad member is refused when the send is staged, not at COMMIT."""
    transaction = _broker().transaction("owner")
    with pytest.raises(DestinationError):
        transaction.send("/queue/a,", {}, b"x")
    assert len(transaction) == 0


# -- the core: JMSXUserID ------------------------------------------------------------------


def test_the_senders_login_is_stamped() -> None:
    """A send from user alice carries JMSXUserID:alice, over a forged value."""
    broker = _broker()
    consumer = _consume(broker, "/queue/a")
    broker.send("/queue/a", {"JMSXUserID": "mallory"}, b"x", user="alice")
    assert consumer.take()[0].headers["JMSXUserID"] == "alice"


def test_an_anonymous_sender_cannot_forge_the_login() -> None:
    """Without a user the JMSXUserID a producer sent is dropped."""
    broker = _broker()
    consumer = _consume(broker, "/queue/a")
    broker.send("/queue/a", {"JMSXUserID": "alice", "k": "v"}, b"x")
    assert consumer.take()[0].headers == {"k": "v"}


def test_stamp_user_false_stamps_nothing() -> None:
    """With stamp_user: false no login is stamped, and a forged one is still dropped."""
    broker = _broker({"/queue/a": DestinationPolicy(stamp_user=False)})
    consumer = _consume(broker, "/queue/a")
    broker.send("/queue/a", {"JMSXUserID": "mallory"}, b"x", user="alice")
    assert "JMSXUserID" not in consumer.take()[0].headers


def test_every_copy_of_a_composite_send_is_stamped() -> None:
    """Each copy of a composite send carries the sender's login."""
    broker = _broker()
    topic = _consume(broker, "/topic/b")
    broker.send("/queue/a,/topic/b", {}, b"x", user="bob")
    assert topic.take()[0].headers["JMSXUserID"] == "bob"


# -- across a restart ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_composite_forwarded_and_stamped_copies_survive_a_restart(
    kind: str, tmp_path: Path
) -> None:
    """Persistent copies of a composite send and of a forward, with their JMSXUserID, come
    back after a restart."""
    memory = MemoryStore()
    make = (
        (lambda clock: memory)
        if kind == "memory"
        else (lambda clock: SqliteStore(str(tmp_path / FILENAME), clock, run_now))
    )
    node = Node(make, PolicyMap({"/queue/b": DestinationPolicy(forward_to=("/queue/c",))}))
    written = node.broker.send("/queue/a,/queue/b", {}, b"x", user="alice").written
    node.wait(written)
    node.restart()
    for name in "abc":
        consumer, _ = node.subscribe(f"/queue/{name}")
        (message,) = consumer.take()
        assert message.body == b"x"
        assert message.headers["JMSXUserID"] == "alice"


# -- through sessions ----------------------------------------------------------------------


def _login(broker: Broker, clock: Clock, login: str | None, session_id: str) -> Client:
    access = AccessControl(USERS, [rule("*", "/queue/>", "read", "write", "create")], True)
    client = Client(broker, clock, session_id, replace(QUIET, access=access))
    pairs = {"accept-version": "1.2", "host": "h"}
    if login is not None:
        pairs.update(login=login, passcode=login[0] + "-pass")
    client.send_raw(encode_frame("CONNECT", pairs))
    (answer,) = client.frames()
    assert answer.command == "CONNECTED", answer
    return client


def _error(client: Client) -> Frame:
    (error,) = client.frames()
    assert error.command == "ERROR", error
    return error


def test_a_session_composite_send_gets_one_receipt() -> None:
    """SEND to /queue/a,/topic/b with a receipt: one RECEIPT, a MESSAGE on each."""
    _, _, (producer, on_queue, on_topic) = connected_clients(3)
    on_queue.subscribe("/queue/a")
    on_topic.subscribe("/topic/b")
    producer.publish("/queue/a,/topic/b", b"hi", receipt="r1")
    assert [f.headers.get("receipt-id") for f in producer.frames()] == ["r1"]
    (on_a,), (on_b,) = on_queue.messages(), on_topic.messages()
    assert on_a.headers["destination"] == "/queue/a" and on_b.headers["destination"] == "/topic/b"
    assert on_a.headers["message-id"] != on_b.headers["message-id"]


def test_a_session_composite_send_with_a_bad_member_is_an_error() -> None:
    """A bad member: ERROR naming it, and nobody gets a copy."""
    _, _, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/a")
    producer.publish("/queue/a,", b"hi")
    assert _error(producer).headers["message"] == (
        "composite destination '/queue/a,' has an empty member"
    )
    assert consumer.frames() == []


def test_each_member_is_checked_against_the_access_rules() -> None:
    """A member the user may not write to refuses the SEND with the access ERROR."""
    clock = Clock()
    broker = Broker(clock=clock)
    client = _login(broker, clock, "alice", "s1")
    client.publish("/queue/a,/topic/secret", b"hi")
    error = _error(client)
    assert error.headers["message"] == "access denied to /topic/secret"
    assert broker.queue_depth("a") == 0


def test_a_logged_in_senders_messages_carry_its_login() -> None:
    """alice's MESSAGE says JMSXUserID:alice even when she forged another."""
    clock = Clock()
    broker = Broker(clock=clock)
    alice, bob = _login(broker, clock, "alice", "s1"), _login(broker, clock, "bob", "s2")
    bob.subscribe("/queue/a")
    alice.publish("/queue/a", b"hi", JMSXUserID="bob")
    (message,) = bob.messages()
    assert message.headers["JMSXUserID"] == "alice"


def test_an_anonymous_senders_forged_login_is_removed() -> None:
    """An anonymous sender's JMSXUserID does not reach the MESSAGE."""
    clock = Clock()
    broker = Broker(clock=clock)
    anonymous, bob = _login(broker, clock, None, "s1"), _login(broker, clock, "bob", "s2")
    bob.subscribe("/queue/a")
    anonymous.publish("/queue/a", b"hi", JMSXUserID="bob")
    (message,) = bob.messages()
    assert "JMSXUserID" not in message.headers


def test_a_staged_session_composite_send_is_stamped_at_commit() -> None:
    """A transactional composite SEND from alice: both copies at COMMIT, stamped."""
    clock = Clock()
    broker = Broker(clock=clock)
    alice, bob = _login(broker, clock, "alice", "s1"), _login(broker, clock, "bob", "s2")
    bob.subscribe("/queue/a")
    bob.subscribe("/queue/b", "1")
    alice.send("BEGIN", {"transaction": "t"})
    alice.publish("/queue/a,/queue/b", b"hi", transaction="t")
    assert bob.frames() == []
    alice.send("COMMIT", {"transaction": "t"})
    messages = bob.messages()
    assert sorted(m.headers["destination"] for m in messages) == ["/queue/a", "/queue/b"]
    assert {m.headers["JMSXUserID"] for m in messages} == {"alice"}

"""The broker's parts on their own: transactions as units of work, settlement and stored rows,
the registry's deletes, what a send gives back, and the headers the core is handed."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from stompbroker.core import (
    Broker,
    DestinationError,
    DestinationFull,
    DestinationPolicy,
    MemoryBacklog,
    PagedBacklog,
    PolicyMap,
    Queue,
    Subscription,
)
from stompbroker.store import MemoryStore
from stompbroker.testing import RecordingConsumer

from .helpers import fired


def _stored_broker(**policy: object) -> tuple[Broker, MemoryStore]:
    store = MemoryStore()
    policies = PolicyMap({"/queue/>": DestinationPolicy(**policy)})  # type: ignore[arg-type]
    return Broker(Clock(), policies=policies, store=store), store


def _consume(
    broker: Broker, destination: str, ack: str = "client-individual"
) -> tuple[RecordingConsumer, Subscription]:
    consumer = RecordingConsumer()
    return consumer, broker.subscribe(consumer, "s", destination, ack)


def test_the_broker_requires_its_clock() -> None:
    """There is no default time: a broker made without a clock is refused."""
    with pytest.raises(TypeError):
        Broker()  # type: ignore[call-arg]


# -- transactions -------------------------------------------------------------------


def test_a_transaction_applies_its_sends_and_settlements_only_at_commit() -> None:
    """Staged sends reach nobody and staged ACKs remove nothing until COMMIT applies all."""
    broker, store = _stored_broker()
    consumer, subscription = _consume(broker, "/queue/in")
    broker.send("/queue/in", {}, b"work")
    (work,) = consumer.take()
    transaction = broker.transaction("session-1")
    transaction.send("/queue/out", {"k": "v"}, b"result")
    transaction.acknowledge(subscription, work.message_id)
    assert broker.queue_depth("out") == 0 and work.message_id in subscription.unacked
    assert broker.transaction("session-1").commit() is None  # an empty one waits for nothing
    assert transaction.commit() is not None
    assert broker.queue_depth("out") == 1 and subscription.unacked == {}
    assert store.count() == 1  # the result's row; the work's row went with its ACK


def test_a_staged_send_is_checked_when_staged() -> None:
    """A staged send to a destination that cannot take it is refused at once."""
    broker = Broker(Clock())
    transaction = broker.transaction("session-1")
    with pytest.raises(DestinationError, match="cannot send to the durable subscription"):
        transaction.send("/dsub/x", {}, b"")
    assert len(transaction) == 0


def test_a_commit_whose_send_became_impossible_applies_nothing() -> None:
    """Every staged send is checked again at COMMIT, before any step is applied."""
    broker = Broker(Clock())
    reply = broker.temporary("temp-queue", "r", "owner").address
    transaction = broker.transaction("session-1")
    transaction.send("/queue/first", {}, b"1")
    transaction.send(reply, {}, b"2")
    broker.delete_temporaries("owner")
    with pytest.raises(DestinationError, match="does not exist"):
        transaction.commit()
    assert broker.queue_depth("first") == 0


def test_abort_gives_back_what_it_would_have_settled() -> None:
    """ABORT drops staged sends and redelivers the messages whose ACK it drops."""
    broker = Broker(Clock())
    consumer, subscription = _consume(broker, "/queue/in")
    broker.send("/queue/in", {}, b"work")
    (work,) = consumer.take()
    transaction = broker.transaction("session-1")
    transaction.send("/queue/out", {}, b"never")
    transaction.acknowledge(subscription, work.message_id)
    transaction.abort()
    assert broker.queue_depth("out") == 0
    (again,) = consumer.take()
    assert again.message_id == work.message_id and again.redelivered


# -- settlement and rows ----------------------------------------------------------------


def test_a_nack_without_requeue_dead_letters_and_removes_the_row() -> None:
    """NACK requeue:false moves the message to the DLQ: its own row goes, the DLQ gets one."""
    broker, store = _stored_broker()
    consumer, subscription = _consume(broker, "/queue/in")
    broker.send("/queue/in", {}, b"bad")
    (bad,) = consumer.take()
    assert broker.nack(subscription, bad.message_id, requeue=False)
    assert bad.store_key is None
    assert broker.queue_depth("DLQ") == 1 and store.count() == 1
    (dead,) = fired(broker.browse("/queue/DLQ"))
    assert dead.headers["dead-letter-reason"] == "nack"
    assert dead.store_key == "/queue/DLQ"


def test_queues_of_a_broker_without_a_store_keep_no_rows() -> None:
    """Without a store a queue's backlog is memory only, and so is a temporary queue's on a
    broker with a store; other queues there have a paged backlog."""
    assert isinstance(Broker(Clock()).destinations.queue("q").backlog, MemoryBacklog)
    broker, _ = _stored_broker()
    assert isinstance(broker.destinations.queue("q").backlog, PagedBacklog)
    temporary = broker.temporary("temp-queue", "t", "owner")
    assert isinstance(temporary, Queue) and isinstance(temporary.backlog, MemoryBacklog)


# -- the registry -----------------------------------------------------------------------


def test_deleting_a_queue_removes_its_rows_and_statistics() -> None:
    """A deleted queue takes its stored rows and its statistics with it."""
    broker, store = _stored_broker(memory_window=2)
    for body in (b"1", b"2", b"3", b"4"):
        broker.send("/queue/q", {}, body)
    queue = broker.destinations.queues["q"]
    assert queue.backlog.total == 2 and store.count() == 4
    assert broker.destinations.delete(queue) == 4
    assert store.count() == 0 and "q" not in broker.destinations.queues
    assert ("queue", "q") not in broker.statistics.retired


def test_the_registry_refuses_to_delete_what_it_does_not_hold() -> None:
    """A temporary destination is not the registry's to delete."""
    broker = Broker(Clock())
    temporary = broker.temporary("temp-queue", "t", "owner")
    with pytest.raises(ValueError, match="is not in the registry"):
        broker.destinations.delete(temporary)


# -- what a send gives back, what it is handed -------------------------------------------


def test_a_send_gives_back_the_message_its_write_and_the_wait_for_room() -> None:
    """A send answers with the message it made, the Deferred of its write and, under
    on_full: block, the wait until the full queue has room."""
    broker, _ = _stored_broker(max_messages=1, on_full="block")
    first = broker.send("/queue/q", {"k": "v"}, b"1")
    assert first.message.headers == {"k": "v"} and first.written is not None
    assert first.room is not None and not first.room.called
    _consume(broker, "/queue/q", "auto")
    assert first.room.called
    assert broker.send("/topic/t", {}, b"x").written is None


def test_a_full_reject_queue_refuses_the_send() -> None:
    """Under on_full: reject the send beyond the limit raises, and nothing is queued."""
    broker, _ = _stored_broker(max_messages=1, on_full="reject")
    broker.send("/queue/q", {}, b"1")
    with pytest.raises(DestinationFull, match="is full"):
        broker.send("/queue/q", {}, b"2")
    assert broker.queue_depth("q") == 1


def test_the_core_never_changes_the_headers_it_is_handed() -> None:
    """A time to live gives the message an expires header in a mapping of its own."""
    broker = Broker(Clock(), policies=PolicyMap({"/queue/>": DestinationPolicy(message_ttl_ms=5)}))
    given = {"k": "v"}
    sent = broker.send("/queue/q", given, b"")
    assert given == {"k": "v"}
    assert sent.message.headers == {"k": "v", "expires": "5"}
    assert sent.message.expires == 5


def test_a_route_follows_new_policies_and_auto_create() -> None:
    """A send after a reload goes by the new policies, and once auto_create is off an
    undeclared destination used before is refused (no route is kept past either)."""
    broker = Broker(Clock())
    broker.send("/queue/q", {}, b"1")
    broker.set_policies(
        PolicyMap({"/queue/q": DestinationPolicy(max_messages=1, on_full="reject")})
    )
    with pytest.raises(DestinationFull, match="is full"):
        broker.send("/queue/q", {}, b"2")
    broker.send("/topic/t", {}, b"x")  # routed while auto_create is on
    broker.auto_create = False
    with pytest.raises(DestinationError, match=r"broker\.auto_create is false"):
        broker.send("/topic/t", {}, b"y")

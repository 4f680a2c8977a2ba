"""Scheduled delivery: a SEND with a delivery delay is held, invisible, until due."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import fail
from twisted.internet.task import Clock

from stompbroker.core import (
    Broker,
    DestinationPolicy,
    MessageError,
    PolicyMap,
    describe_one,
    totals,
)
from stompbroker.core._scheduled import ScheduledDeliveries
from stompbroker.store import FILENAME, MemoryStore
from stompbroker.testing import RecordingConsumer
from tests.helpers import fired
from tests.test_persistence import Node, node_on, sqlite_at

DELAY = "AMQ_SCHEDULED_DELAY"
#: The tests' clock starts here (epoch seconds), so that epoch-ms times are realistic.
START = 1_700_000_000


def _broker(**policy: Any) -> Broker:
    clock = Clock()
    clock.advance(START)
    policies = PolicyMap(default=DestinationPolicy(**policy)) if policy else None
    return Broker(clock=clock, policies=policies, store=MemoryStore())


def _consumer(broker: Broker, destination: str = "/queue/q", name: str = "s") -> RecordingConsumer:
    consumer = RecordingConsumer()
    broker.subscribe(consumer, name, destination)
    return consumer


def _advance(broker: Broker, seconds: float) -> None:
    clock = broker.clock
    assert isinstance(clock, Clock)
    clock.advance(seconds)


# -- the headers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "due_s"),
    [
        ({DELAY: "2000"}, 2.0),
        ({"x-delay": "1500"}, 1.5),
        ({"AMQ_SCHEDULED_TIME": str((START + 3) * 1000)}, 3.0),
    ],
)
def test_each_spelling_holds_the_message_until_due(headers: dict[str, str], due_s: float) -> None:
    """ActiveMQ's delay, RabbitMQ's x-delay and Artemis' absolute time each hold a message
    exactly until its time."""
    broker = _broker()
    consumer = _consumer(broker)
    broker.send("/queue/q", headers, b"later")
    _advance(broker, due_s - 0.001)
    assert consumer.bodies() == []
    _advance(broker, 0.001)
    assert consumer.bodies() == [b"later"]


def test_a_time_in_the_past_and_a_zero_delay_deliver_at_once() -> None:
    """AMQ_SCHEDULED_TIME already passed, or a delay of 0, is an ordinary send."""
    broker = _broker()
    consumer = _consumer(broker)
    broker.send("/queue/q", {"AMQ_SCHEDULED_TIME": "1000"}, b"past")
    broker.send("/queue/q", {DELAY: "0"}, b"now")
    assert consumer.bodies() == [b"past", b"now"]
    assert len(broker.router.scheduled) == 0


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        (
            {DELAY: "-5"},
            "invalid AMQ_SCHEDULED_DELAY '-5': expected a non-negative integer (ms) of at most"
            " 15 digits",
        ),
        (
            {"x-delay": "soon"},
            "invalid x-delay 'soon': expected a non-negative integer (ms) of at most 15 digits",
        ),
        (
            {DELAY: "10", "x-delay": "10"},
            "AMQ_SCHEDULED_DELAY and x-delay are both set: give one delivery time",
        ),
        (
            {DELAY: "10", "AMQ_SCHEDULED_REPEAT": "3"},
            "AMQ_SCHEDULED_REPEAT needs an AMQ_SCHEDULED_PERIOD of at least 1 ms",
        ),
        (
            {"AMQ_SCHEDULED_REPEAT": "x", "AMQ_SCHEDULED_PERIOD": "10"},
            "invalid AMQ_SCHEDULED_REPEAT 'x': expected a non-negative integer (ms) of at most"
            " 15 digits",
        ),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_header(headers: dict[str, str], error: str) -> None:
    """A malformed, negative or contradictory schedule is a MessageError naming the header."""
    broker = _broker()
    with pytest.raises(MessageError) as refused:
        broker.send("/queue/q", headers, b"x")
    assert str(refused.value) == error
    assert broker.queue_depth("q") == 0 and len(broker.router.scheduled) == 0


def test_the_policy_caps_the_delay_and_the_period() -> None:
    """max_delivery_delay_ms refuses a longer delay, a time further ahead, or a longer period."""
    broker = _broker(max_delivery_delay_ms=60_000)
    broker.send("/queue/q", {DELAY: "60000"}, b"at the limit")
    with pytest.raises(MessageError) as refused:
        broker.send("/queue/q", {DELAY: "60001"}, b"x")
    assert str(refused.value) == (
        "AMQ_SCHEDULED_DELAY asks a delay of 60001 ms, beyond the max_delivery_delay_ms of"
        " /queue/q (60000 ms)"
    )
    with pytest.raises(MessageError) as refused:
        broker.send("/queue/q", {"AMQ_SCHEDULED_TIME": str((START + 61) * 1000)}, b"x")
    assert "AMQ_SCHEDULED_TIME asks a delay of 61000 ms" in str(refused.value)
    with pytest.raises(MessageError) as refused:
        broker.send(
            "/queue/q", {"AMQ_SCHEDULED_PERIOD": "70000", "AMQ_SCHEDULED_REPEAT": "1"}, b"x"
        )
    assert str(refused.value) == (
        "AMQ_SCHEDULED_PERIOD 70000 ms is beyond the max_delivery_delay_ms of /queue/q (60000 ms)"
    )
    assert len(broker.router.scheduled) == 1


def test_temporary_destinations_refuse_a_schedule() -> None:
    """A delay on a SEND to a temporary queue is an ERROR, not silently ignored."""
    broker = _broker()
    broker.temporary("temp-queue", "t", "session-1")
    with pytest.raises(MessageError) as refused:
        broker.send("/temp-queue/t", {DELAY: "10"}, b"x", owner="session-1")
    assert "scheduled delivery to" in str(refused.value)
    assert "is not supported (only to /queue/ and /topic/ destinations)" in str(refused.value)


# -- queues --------------------------------------------------------------------------


def test_a_scheduled_message_is_invisible_to_browsers_and_counted() -> None:
    """Until due, a scheduled message is in no queue (browse, depth) but in ``scheduled``."""
    broker = _broker()
    broker.send("/queue/q", {DELAY: "1000"}, b"later")
    assert fired(broker.browse("/queue/q")) == [] and broker.queue_depth("q") == 0
    described = describe_one(broker, "queue", "q")
    assert described is not None and described["scheduled"] == 1
    assert totals(broker)["scheduled"] == 1
    _advance(broker, 1)
    assert [m.body for m in fired(broker.browse("/queue/q"))] == [b"later"]
    described = describe_one(broker, "queue", "q")
    assert described is not None and described["scheduled"] == 0


def test_a_due_message_queues_behind_waiting_ones_by_priority() -> None:
    """Released, a message takes its place by priority, behind those already waiting."""
    broker = _broker()
    broker.send("/queue/q", {DELAY: "1000", "priority": "9"}, b"urgent-late")
    broker.send("/queue/q", {DELAY: "1000"}, b"plain-late")
    broker.send("/queue/q", {}, b"first")
    _advance(broker, 1)
    broker.send("/queue/q", {}, b"after")
    consumer = _consumer(broker)
    assert consumer.bodies() == [b"urgent-late", b"first", b"plain-late", b"after"]


def test_messages_are_released_in_due_order_whatever_the_send_order() -> None:
    """Three delays sent longest first arrive shortest first."""
    broker = _broker()
    consumer = _consumer(broker)
    for delay in (3000, 1000, 2000):
        broker.send("/queue/q", {DELAY: str(delay)}, str(delay).encode())
    _advance(broker, 3)
    assert consumer.bodies() == [b"1000", b"2000", b"3000"]


def test_a_repeating_message_is_delivered_repeat_plus_one_times() -> None:
    """ActiveMQ's PERIOD and REPEAT: the first delivery after the delay, then REPEAT more."""
    broker = _broker()
    consumer = _consumer(broker)
    broker.send(
        "/queue/q",
        {DELAY: "1000", "AMQ_SCHEDULED_PERIOD": "500", "AMQ_SCHEDULED_REPEAT": "2"},
        b"tick",
    )
    _advance(broker, 1)
    assert consumer.bodies() == [b"tick"]
    _advance(broker, 0.5)
    assert len(consumer.bodies()) == 2
    assert len(broker.router.scheduled) == 1
    _advance(broker, 0.5)
    _advance(broker, 10)
    assert len(consumer.bodies()) == 3
    ids = {m.message_id for _, m in consumer.deliveries}
    assert len(ids) == 3
    assert len(broker.router.scheduled) == 0


def test_a_message_expiring_before_it_is_due_is_dead_lettered() -> None:
    """Its time to live runs from the send: due after expiry, it goes to the DLQ."""
    broker = _broker()
    consumer = _consumer(broker)
    broker.send("/queue/q", {DELAY: "2000", "ttl": "1000"}, b"stale")
    _advance(broker, 2)
    assert consumer.bodies() == []
    assert [m.body for m in fired(broker.browse("/queue/DLQ"))] == [b"stale"]


def test_a_scheduled_send_in_a_transaction_is_held_from_commit() -> None:
    """Staged, the schedule is checked at SEND and counted from COMMIT."""
    broker = _broker()
    consumer = _consumer(broker)
    transaction = broker.transaction("session-1")
    with pytest.raises(MessageError):
        transaction.send("/queue/q", {DELAY: "-1"}, b"x")
    transaction.send("/queue/q", {DELAY: "1000"}, b"held")
    _advance(broker, 5)
    transaction.commit()
    assert consumer.bodies() == [] and len(broker.router.scheduled) == 1
    _advance(broker, 1)
    assert consumer.bodies() == [b"held"]


def test_a_composite_scheduled_send_holds_a_copy_for_each() -> None:
    """A comma list with a delay: each member gets its copy when due."""
    broker = _broker()
    a, b = _consumer(broker, "/queue/a", "sa"), _consumer(broker, "/queue/b", "sb")
    broker.send("/queue/a,/queue/b", {DELAY: "1000"}, b"both")
    assert len(broker.router.scheduled) == 2
    _advance(broker, 1)
    assert a.bodies() == [b"both"] and b.bodies() == [b"both"]


# -- topics --------------------------------------------------------------------------


def test_a_topic_message_goes_to_the_subscribers_present_when_due() -> None:
    """A subscriber that left misses it; one that came meanwhile gets it."""
    broker = _broker()
    early = RecordingConsumer()
    subscription = broker.subscribe(early, "early", "/topic/t")
    broker.send("/topic/t", {DELAY: "1000"}, b"news")
    broker.unsubscribe(subscription)
    late = _consumer(broker, "/topic/t", "late")
    _advance(broker, 1)
    assert early.bodies() == [] and late.bodies() == [b"news"]


def test_a_topic_message_goes_to_the_durables_that_existed_when_sent() -> None:
    """A durable subscription declared before the send keeps a copy; one declared after,
    none (Artemis' rule), even when it is due."""
    broker = _broker()
    broker.declare_durable("c", "before", "t", None)
    broker.send("/topic/t", {DELAY: "1000"}, b"news", persistent=True)
    broker.declare_durable("c", "after", "t", None)
    _advance(broker, 1)
    before = describe_one(broker, "durable", "c:before")
    after = describe_one(broker, "durable", "c:after")
    assert before is not None and after is not None
    assert (before["depth"], after["depth"]) == (1, 0)


# -- the store -----------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Node:
    made = node_on(request.param, tmp_path)
    made.clock.advance(START)
    return made


def _crash(node: Node) -> Broker:
    """Lose the broker's memory (its timers stop with it) and start again on the same data."""
    node.broker.router.scheduled.stop()
    return node.crash()


def test_a_persistent_scheduled_message_survives_a_crash(node: Node) -> None:
    """Written before its RECEIPT, a scheduled message comes back after a crash, still held
    until its time, then delivered once."""
    sent = node.broker.send("/queue/q", {DELAY: "10000"}, b"later")
    assert node.wait(sent.written) is None  # (waiting and starting again take 2 s)
    broker = _crash(node)
    assert broker.queue_depth("q") == 0
    assert describe_one(broker, "queue", "q")["scheduled"] == 1  # type: ignore[index]
    consumer = _consumer(broker)
    node.clock.advance(7)
    assert consumer.bodies() == []
    node.clock.advance(1)
    assert consumer.bodies() == [b"later"]
    node.settle()
    broker = _crash(node)
    assert broker.queue_depth("q") == 0 and len(broker.router.scheduled) == 0


def test_a_message_due_while_down_is_delivered_at_start(node: Node) -> None:
    """A message whose time passed while the broker was down is delivered once it starts."""
    node.wait(node.broker.send("/queue/q", {DELAY: "1000"}, b"overdue").written)
    node.broker.router.scheduled.stop()
    node.clock.advance(60)
    broker = node.crash()
    assert [m.body for m in fired(broker.browse("/queue/q"))] == [b"overdue"]


def test_a_released_message_is_in_its_queue_not_scheduled_after_a_crash(node: Node) -> None:
    """Once released (and its batch written), a crash finds it queued, not scheduled again."""
    node.broker.send("/queue/q", {DELAY: "1000"}, b"once")
    node.clock.advance(1)
    node.settle()
    broker = _crash(node)
    assert [m.body for m in fired(broker.browse("/queue/q"))] == [b"once"]
    assert len(broker.router.scheduled) == 0


def test_non_persistent_scheduled_messages_do_not_survive_a_restart(node: Node) -> None:
    """As other non-persistent messages, a non-persistent scheduled one is gone after a restart."""
    node.broker.send("/topic/t", {DELAY: "1000"}, b"gone")
    node.settle()
    broker = _crash(node)
    assert len(broker.router.scheduled) == 0


def test_a_repeating_message_keeps_its_remaining_repeats_across_a_crash(node: Node) -> None:
    """After two of three deliveries, a crash leaves one to come."""
    headers = {DELAY: "1000", "AMQ_SCHEDULED_PERIOD": "5000", "AMQ_SCHEDULED_REPEAT": "2"}
    node.broker.send("/queue/q", headers, b"tick")
    node.clock.advance(1)
    node.clock.advance(5)
    node.settle()  # (settling and starting again take 2 s)
    broker = _crash(node)
    assert broker.queue_depth("q") == 2
    node.clock.advance(3)
    assert broker.queue_depth("q") == 3
    node.clock.advance(10)
    assert broker.queue_depth("q") == 3


def test_a_durable_copy_survives_a_crash(node: Node) -> None:
    """The copy held for a durable subscription comes back to it after a crash."""
    node.broker.declare_durable("c", "d", "t", None)
    node.settle()
    node.wait(node.broker.send("/topic/t", {DELAY: "1000"}, b"kept", persistent=True).written)
    broker = _crash(node)
    node.clock.advance(1)
    durable = describe_one(broker, "durable", "c:d")
    assert durable is not None and durable["depth"] == 1


def test_many_scheduled_messages_keep_only_a_window_in_memory(tmp_path: Path) -> None:
    """Beyond its window, the scheduler leaves records in the store and reads them back in
    due order when the window runs dry: all are delivered, in due order."""
    node = Node(sqlite_at(str(tmp_path / FILENAME)))
    node.clock.advance(START)
    broker = node.broker
    window = ScheduledDeliveries(broker.clock, broker.now_ms, broker.router.release, window=10)
    window.store = broker.store
    broker.router.scheduled = window
    consumer = _consumer(broker)
    delays = [(i * 7919) % 50 + 1 for i in range(50)]  # 50 delays, 1..50 s, shuffled
    for i, delay in enumerate(delays):
        broker.send("/queue/q", {DELAY: str(delay * 1000)}, b"%d" % i)
    assert len(window._held) <= 10
    node.settle()
    for _ in range(60):
        node.clock.advance(1)
        assert len(window._held) <= 10
    got = [int(body) for body in consumer.bodies()]
    assert sorted(got) == list(range(50))
    assert [delays[i] for i in got] == sorted(delays)


class _FailingOnce:
    """A store's scheduled reads, the first of which fails (a store that lost its disk)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def load_scheduled(self, after: tuple[int, int], limit: int) -> Any:
        if not self.failed:
            self.failed += 1
            return fail(OSError("disk gone"))
        return self.store.load_scheduled(after, limit)


def test_a_failed_read_of_the_store_is_tried_again(logged_failures: list[Any]) -> None:
    """If reading the next scheduled messages fails, the failure is logged, the scheduler
    reads again a second later, and the message is still delivered."""
    store = MemoryStore()
    first = _broker_on(store)
    first.send("/queue/q", {DELAY: "1000"}, b"later", persistent=True)
    first.router.scheduled.stop()
    failing = _FailingOnce(store)
    broker = _broker_on(failing)
    consumer = _consumer(broker)
    _advance(broker, 0.5)
    assert consumer.bodies() == [] and failing.failed == 1 and len(logged_failures) == 1
    _advance(broker, 1)
    assert consumer.bodies() == [b"later"]


def _broker_on(store: Any) -> Broker:
    """A broker started on ``store`` (what it holds recovered), its clock at START."""
    clock = Clock()
    clock.advance(START)
    broker = Broker(clock=clock, store=store)
    recovered: list[Any] = []
    store.open().addCallback(recovered.append)
    broker.recover(recovered[0])
    return broker

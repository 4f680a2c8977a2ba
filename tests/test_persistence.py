"""The broker on a store: what survives a restart, receipts after durable writes, paging."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from stompbroker.core import Broker, DestinationPolicy, PolicyMap, Subscription
from stompbroker.core._durables import durable_store_key
from stompbroker.store import FILENAME, MemoryStore, SqliteStore
from stompbroker.testing import Client, RecordingConsumer


def run_now(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """The store's worker, run at once."""
    return maybeDeferred(function, *args)


def sqlite_at(path: str) -> Callable[[Clock], Any]:
    """A maker of SqliteStores on ``path`` (for ``Node``), their worker run at once."""
    return lambda clock: SqliteStore(path, clock, run_now)


def node_on(kind: str, tmp_path: Path) -> Node:
    """A Node on a MemoryStore (``memory``) or on a SQLite file in ``tmp_path`` (``sqlite``)."""
    if kind == "memory":
        store = MemoryStore()
        return Node(lambda clock: store)
    return Node(sqlite_at(str(tmp_path / FILENAME)))


class Node:
    """A broker on a store, restartable on the same data (as after a crash, or cleanly)."""

    def __init__(self, make_store: Callable[[Clock], Any], policies: PolicyMap | None = None):
        self.clock = Clock()
        self.make_store = make_store
        self.policies = policies
        self.broker = self._start()

    def _start(self) -> Broker:
        self.store = self.make_store(self.clock)
        broker = Broker(clock=self.clock, policies=self.policies, store=self.store)
        recovery = self.wait(self.store.open())
        broker.recover(recovery)
        self.settle()
        return broker

    def settle(self) -> None:
        """Let the store's batches run."""
        for _ in range(10):
            self.clock.advance(0.1)

    def wait(self, deferred: Deferred[Any] | None) -> Any:
        """The result of ``deferred`` once the batches ran."""
        self.settle()
        box: list[Any] = []
        if deferred is not None:
            deferred.addBoth(box.append)
            assert box, "never answered"
            return box[0]
        return None

    def crash(self) -> Broker:
        """Lose everything in memory (and any batch not yet written); start again."""
        self.broker = self._start()
        return self.broker

    def restart(self) -> Broker:
        """Stop cleanly (flush) and start again."""
        self.wait(self.store.close())
        return self.crash()

    def send(self, destination: str, body: bytes, **headers: str) -> Deferred[None] | None:
        """SEND as a session would (the ``persistent`` header becomes the flag)."""
        flag = headers.pop("persistent", None)
        persistent = None if flag is None else flag == "true"
        return self.broker.send(destination, dict(headers), body, persistent).written

    def subscribe(
        self, destination: str, ack: str = "auto", prefetch: int = 1000
    ) -> tuple[RecordingConsumer, Subscription]:
        consumer = RecordingConsumer()
        subscription = self.broker.subscribe(consumer, "s", destination, ack, prefetch)
        self.settle()
        return consumer, subscription


def _sqlite(tmp_path: Path) -> Callable[[Clock], Any]:
    return lambda clock: SqliteStore(str(tmp_path / FILENAME), clock, run_now)


def _memory(tmp_path: Path) -> Callable[[Clock], Any]:
    store = MemoryStore()
    return lambda clock: store


@pytest.fixture(params=[_memory, _sqlite], ids=["memory", "sqlite"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    yield Node(request.param(tmp_path))


def _small_window(window: int = 10) -> PolicyMap:
    return PolicyMap({"/queue/>": DestinationPolicy(memory_window=window)})


# -- what survives --------------------------------------------------------------------


def test_queued_persistent_messages_survive_a_restart_in_order(node: Node) -> None:
    """Persistent messages waiting in a queue come back after a restart, in order."""
    for i in range(5):
        node.wait(node.send("/queue/q", b"%d" % i))
    node.crash()
    consumer, _ = node.subscribe("/queue/q")
    assert consumer.bodies() == [b"0", b"1", b"2", b"3", b"4"]


def test_priorities_are_respected_after_a_restart(node: Node) -> None:
    """Recovered messages come out highest priority first, then oldest first."""
    for i, priority in enumerate([1, 9, 4, 9, 1]):
        node.send("/queue/q", b"%d" % i, priority=str(priority))
    node.restart()
    consumer, _ = node.subscribe("/queue/q")
    assert consumer.bodies() == [b"1", b"3", b"2", b"0", b"4"]


def test_non_persistent_messages_do_not_survive(node: Node) -> None:
    """A message sent with persistent:false is gone after a restart."""
    node.send("/queue/q", b"gone", persistent="false")
    node.send("/queue/q", b"kept")
    node.restart()
    consumer, _ = node.subscribe("/queue/q")
    assert consumer.bodies() == [b"kept"]


def test_acknowledged_messages_are_not_delivered_again(node: Node) -> None:
    """A consumed (auto) or ACKed message does not come back after a restart."""
    node.send("/queue/auto", b"a")
    node.send("/queue/client", b"c1")
    node.send("/queue/client", b"c2")
    node.subscribe("/queue/auto")
    consumer, subscription = node.subscribe("/queue/client", ack="client-individual")
    node.broker.ack(subscription, consumer.take()[0].message_id)
    node.restart()
    assert node.subscribe("/queue/auto")[0].bodies() == []
    assert node.subscribe("/queue/client")[0].bodies() == [b"c2"]


def test_delivered_but_unacknowledged_messages_come_back_redelivered(node: Node) -> None:
    """A message in flight at the crash is delivered again, marked redelivered."""
    node.send("/queue/q", b"x")
    node.send("/queue/q", b"y")
    consumer, _ = node.subscribe("/queue/q", ack="client")
    assert consumer.bodies() == [b"x", b"y"]
    node.wait(node.send("/queue/other", b"sync"))  # the delivery counts go with this batch
    node.crash()
    again, _ = node.subscribe("/queue/q", ack="client")
    assert [(m.body, m.redelivered) for m in again.take()] == [(b"x", True), (b"y", True)]


def test_durable_subscription_and_its_backlog_survive(node: Node) -> None:
    """A durable subscription comes back with the persistent messages it kept."""
    consumer = RecordingConsumer()
    subscription = node.broker.durables.subscribe(consumer, "s", "/topic/news", "c1", "keep")[0]
    node.broker.unsubscribe(subscription)
    node.send("/topic/news", b"one", persistent="true")
    node.send("/topic/news", b"lost", persistent="false")
    node.send("/topic/news", b"two", persistent="true")
    node.restart()
    assert node.broker.durables.get("c1", "keep") is not None
    again = RecordingConsumer()
    node.broker.durables.subscribe(again, "s", "/topic/news", "c1", "keep")
    node.settle()
    assert again.bodies() == [b"one", b"two"]


def test_durable_no_local_subscription_keeps_its_flag_across_a_restart(node: Node) -> None:
    """A no-local durable subscription comes back no-local: its connection's sends skip it."""
    first = RecordingConsumer()
    subscription = node.broker.durables.subscribe(
        first, "s", "/topic/news", "c1", "mine", no_local=True, owner="a"
    )[0]
    node.broker.unsubscribe(subscription)
    node.broker.send("/topic/news", {}, b"kept", True, owner="a")
    node.restart()
    durable = node.broker.durables.get("c1", "mine")
    assert durable is not None and durable.no_local
    again = RecordingConsumer()
    node.broker.durables.subscribe(
        again, "s", "/topic/news", "c1", "mine", no_local=True, owner="b"
    )
    node.broker.send("/topic/news", {}, b"own", True, owner="b")
    node.broker.send("/topic/news", {}, b"other", True, owner="a")
    node.settle()
    assert again.bodies() == [b"kept", b"other"]


def test_deleted_durable_subscription_stays_deleted(node: Node) -> None:
    """A durable subscription removed before the restart, and its messages, are gone."""
    node.broker.declare_durable("c1", "gone", "news", None)
    node.send("/topic/news", b"one", persistent="true")
    node.broker.delete_durable("c1", "gone")
    node.restart()
    assert len(node.broker.durables) == 0
    assert node.wait(node.store.load(durable_store_key("c1", "gone"), 4, 0, 10)) == []


def test_dead_lettered_message_moves_to_the_persistent_dlq(node: Node) -> None:
    """A NACKed-for-good message leaves its queue's store and survives in the DLQ."""
    node.send("/queue/q", b"bad")
    consumer, subscription = node.subscribe("/queue/q", ack="client-individual")
    node.broker.nack(subscription, consumer.take()[0].message_id, requeue=False)
    node.restart()
    assert node.subscribe("/queue/q")[0].bodies() == []
    dead = node.subscribe("/queue/DLQ")[0].take()
    assert [m.body for m in dead] == [b"bad"]
    assert dead[0].headers["original-destination"] == "/queue/q"


def test_new_messages_after_a_restart_come_after_recovered_ones(node: Node) -> None:
    """Seq numbers continue after the stored ones: new messages queue behind old."""
    node.send("/queue/q", b"old")
    node.restart()
    node.send("/queue/q", b"new")
    assert node.subscribe("/queue/q")[0].bodies() == [b"old", b"new"]


# -- receipts wait for the disk -------------------------------------------------------


def test_send_of_a_persistent_message_waits_for_the_store(tmp_path: Path) -> None:
    """broker.send returns a Deferred that fires only once the row is written."""
    node = Node(_sqlite(tmp_path))
    written = node.send("/queue/q", b"x")
    assert written is not None and not written.called
    node.clock.advance(0)
    assert written.called


def test_send_of_a_non_persistent_message_needs_no_wait(tmp_path: Path) -> None:
    """Non-persistent messages (and topics without durables) are answered at once."""
    node = Node(_sqlite(tmp_path))
    assert node.send("/queue/q", b"x", persistent="false") is None
    assert node.send("/topic/t", b"x") is None


def test_receipt_for_a_persistent_send_follows_the_fsync(tmp_path: Path) -> None:
    """The RECEIPT of a persistent SEND goes out only after the batch is on disk."""
    node = Node(_sqlite(tmp_path))
    client = Client(node.broker, node.clock)
    client.connect()
    client.publish("/queue/q", b"x", receipt="r1")
    assert client.frames() == []
    node.clock.advance(0)
    (receipt,) = client.frames()
    assert receipt.command == "RECEIPT" and receipt.headers["receipt-id"] == "r1"
    assert node.store.fsyncs == 1


def test_receipt_of_a_durable_subscribe_waits_for_its_definition(tmp_path: Path) -> None:
    """A durable SUBSCRIBE's RECEIPT goes out only once the new definition is written, so a
    crash after the RECEIPT cannot forget the subscription; attaching again writes nothing."""
    node = Node(_sqlite(tmp_path))
    client = Client(node.broker, node.clock)
    client.connect(client_id="c1")
    client.subscribe("/topic/news", "s", receipt="r1", **{"activemq.subscriptionName": "keep"})
    assert client.frames() == []
    node.clock.advance(0)
    assert [(f.command, f.headers["receipt-id"]) for f in client.frames()] == [("RECEIPT", "r1")]
    node.crash()
    again = Client(node.broker, node.clock, "session-2")
    again.connect(client_id="c1")
    again.subscribe("/topic/news", "s", receipt="r2", **{"activemq.subscriptionName": "keep"})
    assert [(f.command, f.headers["receipt-id"]) for f in again.frames()] == [("RECEIPT", "r2")]


def test_receipt_of_a_commit_waits_for_its_persistent_sends(tmp_path: Path) -> None:
    """COMMIT's RECEIPT waits until every persistent SEND it applied is durable."""
    node = Node(_sqlite(tmp_path))
    client = Client(node.broker, node.clock)
    client.connect()
    client.send("BEGIN", {"transaction": "t"})
    client.publish("/queue/q", b"1", transaction="t")
    client.publish("/queue/q", b"2", transaction="t")
    client.send("COMMIT", {"transaction": "t", "receipt": "c"})
    assert client.frames() == []
    node.clock.advance(0)
    (receipt,) = client.frames()
    assert receipt.headers["receipt-id"] == "c"
    node.crash()
    assert node.subscribe("/queue/q")[0].bodies() == [b"1", b"2"]


def test_fsync_never_policy_answers_without_fsync(tmp_path: Path) -> None:
    """With fsync: never, the receipt waits for the write, not for an fsync."""
    policies = PolicyMap({"/queue/fast.>": DestinationPolicy(fsync="never")})
    node = Node(_sqlite(tmp_path), policies)
    written = node.send("/queue/fast.a", b"x")
    node.clock.advance(0)
    assert written is not None and written.called
    assert node.store.fsyncs == 0


# -- paging -----------------------------------------------------------------------------


def test_a_long_queue_keeps_only_its_window_in_memory(node: Node) -> None:
    """Beyond memory_window messages, the rest wait on disk; the depth counts them all."""
    node.policies = _small_window(10)
    node.restart()
    for i in range(100):
        node.send("/queue/q", b"%d" % i)
    node.settle()
    queue = node.broker.destinations.queues["q"]
    assert len(queue.buffer) <= 10
    assert node.broker.queue_depth("q") == 100


def test_a_reloaded_memory_window_applies_to_the_next_messages(node: Node) -> None:
    """A smaller memory_window from a reload pages the next arrivals, same size or not."""
    node.policies = _small_window(10)
    node.restart()
    for i in range(5):
        node.send("/queue/q", b"%d" % i)
    node.broker.set_policies(_small_window(3))
    for i in range(5, 15):
        node.send("/queue/q", b"%d" % i)
    node.settle()
    queue = node.broker.destinations.queues["q"]
    assert len(queue.buffer) == 5
    assert node.broker.queue_depth("q") == 15


def test_paged_messages_drain_in_order(node: Node) -> None:
    """A consumer gets every paged message, oldest first, persistent or not."""
    node.policies = _small_window(10)
    node.restart()
    for i in range(60):
        node.send("/queue/q", b"%d" % i, persistent="true" if i % 3 else "false")
    consumer, _ = node.subscribe("/queue/q")
    assert consumer.bodies() == [b"%d" % i for i in range(60)]
    assert node.broker.queue_depth("q") == 0


def test_paging_keeps_priorities_across_pages(node: Node) -> None:
    """High-priority messages paged out come before lower ones still on disk."""
    node.policies = _small_window(4)
    node.restart()
    for i in range(20):
        node.send("/queue/q", b"%d" % i, priority="9" if i >= 15 else "4")
    consumer, _ = node.subscribe("/queue/q", ack="client-individual", prefetch=100)
    bodies = consumer.bodies()
    # The first window (4 messages) was in memory before the urgent ones arrived.
    assert bodies[:4] == [b"0", b"1", b"2", b"3"]
    assert bodies[4:9] == [b"15", b"16", b"17", b"18", b"19"]
    assert bodies[9:] == [b"%d" % i for i in range(4, 15)]


def test_a_paged_queue_survives_a_restart(node: Node) -> None:
    """Messages paged out, and those in memory, all come back in order after a crash."""
    node.policies = _small_window(10)
    node.restart()
    for i in range(50):
        node.send("/queue/q", b"%d" % i)
    node.settle()
    node.crash()
    consumer, _ = node.subscribe("/queue/q")
    assert consumer.bodies() == [b"%d" % i for i in range(50)]


def test_slow_consumer_gets_paged_messages_as_it_acks(node: Node) -> None:
    """A client-ack consumer working through a paged queue receives everything, once."""
    node.policies = _small_window(8)
    node.restart()
    for i in range(40):
        node.send("/queue/q", b"%d" % i)
    consumer, subscription = node.subscribe("/queue/q", ack="client-individual", prefetch=3)
    seen: list[bytes] = []
    for _ in range(100):
        taken = consumer.take()
        if not taken:
            break
        for message in taken:
            seen.append(message.body)
            node.broker.ack(subscription, message.message_id)
        node.settle()
    assert seen == [b"%d" % i for i in range(40)]
    node.restart()
    assert node.subscribe("/queue/q")[0].bodies() == []


# -- back-pressure ------------------------------------------------------------------------


def test_producer_outrunning_the_disk_is_not_read_until_it_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection with too many messages not yet written stops being read, then resumes."""
    from stompbroker.session import _receipts

    monkeypatch.setattr(_receipts, "MAX_UNWRITTEN", 10)
    node = Node(_sqlite(tmp_path))
    client = Client(node.broker, node.clock)
    client.connect()
    for i in range(9):
        client.publish("/queue/q", b"%d" % i)
    assert client.transport.producerState == "producing"
    client.publish("/queue/q", b"9")
    assert client.transport.producerState == "paused"
    node.clock.advance(0)
    assert client.transport.producerState == "producing"
    node.crash()
    assert len(node.subscribe("/queue/q")[0].bodies()) == 10

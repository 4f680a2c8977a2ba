"""Statistics: counters per destination, rates over an interval, sampled latency histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from stompbroker.core import (
    BOUNDS,
    SAMPLE_EVERY,
    Broker,
    DestinationPolicy,
    Histogram,
    PolicyMap,
    describe_all,
    describe_one,
    totals,
)
from stompbroker.core._inspect import tick
from stompbroker.core._stats import MAX_RETIRED, RETAIN_SECONDS
from stompbroker.store import FILENAME, MemoryStore, SqliteStore
from stompbroker.testing import RecordingConsumer


def _broker(**kwargs: Any) -> tuple[Broker, Clock]:
    clock = Clock()
    clock.advance(1_000_000)
    return Broker(clock=clock, **kwargs), clock


def _send(broker: Broker, count: int, destination: str = "/queue/q", owner: str = "s1") -> None:
    for i in range(count):
        broker.send(destination, {}, b"%d" % i, owner=owner)


# -- histograms -----------------------------------------------------------------------


def test_histogram_buckets_are_log_scale_and_inclusive_above() -> None:
    """A duration lands in the first bucket whose bound is at least it; beyond all, the last."""
    histogram = Histogram()
    for seconds in (0.0, 0.0001, 0.00011, 0.3, 5000.0):
        histogram.observe(seconds)
    assert BOUNDS[:4] == (0.0001, 0.00025, 0.0005, 0.001) and BOUNDS[-1] == 1000.0
    assert histogram.counts[0] == 2
    assert histogram.counts[1] == 1
    assert histogram.counts[BOUNDS.index(0.5)] == 1
    assert histogram.counts[-1] == 1
    assert histogram.count == 5 and histogram.max == 5000.0
    assert histogram.sum == pytest.approx(5000.30021)


def test_histogram_quantiles_are_bucket_bounds_capped_by_the_max() -> None:
    """p50/p99 are the upper bound of their bucket, never above the largest value seen."""
    histogram = Histogram()
    assert histogram.quantile(0.5) is None
    for _ in range(99):
        histogram.observe(0.002)
    histogram.observe(42.0)
    assert histogram.quantile(0.5) == 0.0025
    assert histogram.quantile(0.99) == 0.0025
    assert histogram.quantile(1.0) == 42.0
    shown = histogram.as_dict()
    assert shown["p50_s"] == 0.0025 and shown["count"] == 100
    assert len(shown["counts"]) == len(BOUNDS) + 1


def test_a_negative_duration_counts_as_zero() -> None:
    """A clock set back never makes a negative latency."""
    histogram = Histogram()
    histogram.observe(-1.0)
    assert histogram.counts[0] == 1 and histogram.sum == 0.0


# -- counters ---------------------------------------------------------------------------


def test_queue_counts_enqueued_delivered_and_acknowledged() -> None:
    """A queue counts messages in, deliveries, and ACKs; in flight is what awaits an ACK."""
    broker, _ = _broker()
    _send(broker, 5)
    consumer = RecordingConsumer()
    subscription = broker.subscribe(consumer, "1", "/queue/q", "client-individual")
    first, second = consumer.take()[:2]
    broker.ack(subscription, first.message_id)
    broker.nack(subscription, second.message_id)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None
    assert (shown["enqueued"], shown["delivered"], shown["acknowledged"]) == (5, 6, 1)
    assert shown["in_flight"] == 4 and shown["depth"] == 0 and shown["consumers"] == 1


def test_auto_ack_counts_each_delivery_as_acknowledged() -> None:
    """In ack mode auto a message is acknowledged as it is delivered."""
    broker, _ = _broker()
    broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    _send(broker, 3)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None and shown["acknowledged"] == 3 and shown["in_flight"] == 0


def test_topic_counts_published_messages_and_each_copy_delivered() -> None:
    """A topic counts a publication once as enqueued, and once per subscriber delivered."""
    broker, _ = _broker()
    for i in range(3):
        broker.subscribe(RecordingConsumer(), str(i), "/topic/t")
    _send(broker, 2, "/topic/t")
    shown = describe_one(broker, "topic", "t")
    assert shown is not None and (shown["enqueued"], shown["delivered"]) == (2, 6)


def test_dead_letters_and_expiry_are_counted_where_they_happen() -> None:
    """Expired and dead-lettered messages count on their queue; the DLQ counts them in."""
    broker, clock = _broker()
    broker.send("/queue/q", {"ttl": "1000"}, b"old")
    broker.send("/queue/q", {}, b"refused")
    clock.advance(2)
    consumer = RecordingConsumer()
    subscription = broker.subscribe(consumer, "1", "/queue/q", "client")
    (refused,) = consumer.take()
    broker.nack(subscription, refused.message_id, requeue=False)
    shown = describe_one(broker, "queue", "q")
    dlq = describe_one(broker, "queue", "DLQ")
    assert shown is not None and dlq is not None
    assert (shown["expired"], shown["dead_lettered"], shown["dropped"]) == (1, 2, 0)
    assert dlq["enqueued"] == 2 and dlq["depth"] == 2


def test_rates_are_per_second_over_the_last_interval() -> None:
    """tick turns the counters' change since the previous tick into per-second rates."""
    broker, clock = _broker()
    broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    tick(broker)
    _send(broker, 50)
    clock.advance(5)
    tick(broker)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None and shown["rates"] == {
        "enqueued": 10.0,
        "delivered": 10.0,
        "acknowledged": 10.0,
    }
    clock.advance(5)
    tick(broker)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None and shown["rates"]["enqueued"] == 0.0
    assert totals(broker)["enqueued"] == 50


def test_producers_are_the_connections_that_sent_during_the_last_interval() -> None:
    """Producers counts distinct senders over the last full interval, then forgets them."""
    broker, clock = _broker()
    broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    for owner in ("a", "b", "a"):
        _send(broker, 2, owner=owner)
    tick(broker)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None and shown["producers"] == 2
    clock.advance(5)
    tick(broker)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None and shown["producers"] == 0


# -- latency ------------------------------------------------------------------------------


def test_one_message_in_sample_every_is_timed_from_arrival_to_delivery() -> None:
    """Waiting messages are timed (one in SAMPLE_EVERY) from enqueue to first delivery."""
    broker, clock = _broker()
    _send(broker, SAMPLE_EVERY * 3)
    clock.advance(0.3)
    broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    shown = describe_one(broker, "queue", "q")
    assert shown is not None
    waited = shown["latency"]["enqueue_to_delivery"]
    assert waited["count"] == 3 and waited["sum_s"] == pytest.approx(0.9)
    assert shown["latency"]["delivery_to_ack"] is None  # auto: no ACK to time


def test_delivery_to_ack_is_timed_in_client_ack_modes() -> None:
    """A timed message's ACK records how long the consumer held it; a NACK records nothing."""
    broker, clock = _broker()
    consumer = RecordingConsumer()
    subscription = broker.subscribe(consumer, "1", "/queue/q", "client-individual")
    _send(broker, SAMPLE_EVERY * 2)
    clock.advance(2.0)
    messages = consumer.take()
    timed = [m for m in messages if m.born]
    assert len(timed) == 2
    broker.ack(subscription, timed[0].message_id)
    broker.nack(subscription, timed[1].message_id, requeue=False)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None
    held = shown["latency"]["delivery_to_ack"]
    assert held["count"] == 1 and held["max_s"] == 2.0
    assert subscription.handed == {}


def test_a_redelivery_is_not_timed_as_a_wait_again() -> None:
    """Only the first delivery of a timed message counts as its enqueue-to-delivery wait."""
    broker, clock = _broker()
    _send(broker, SAMPLE_EVERY)
    consumer = RecordingConsumer()
    subscription = broker.subscribe(consumer, "1", "/queue/q", "client-individual")
    timed = next(m for m in consumer.take() if m.born)
    clock.advance(1)
    broker.nack(subscription, timed.message_id)
    shown = describe_one(broker, "queue", "q")
    assert shown is not None and shown["latency"]["enqueue_to_delivery"]["count"] == 1


def test_paged_out_messages_keep_their_arrival_time() -> None:
    """A timed message that waited on disk is timed from its arrival, not its loading."""
    policies = PolicyMap({"/queue/>": DestinationPolicy(memory_window=4)})
    broker, clock = _broker(policies=policies, store=MemoryStore())
    _send(broker, SAMPLE_EVERY * 2)
    assert broker.destinations.queues["q"].backlog.total > 0
    clock.advance(7.0)
    consumer = RecordingConsumer()
    broker.subscribe(consumer, "1", "/queue/q")
    assert len(consumer.take()) == SAMPLE_EVERY * 2
    shown = describe_one(broker, "queue", "q")
    assert shown is not None
    waited = shown["latency"]["enqueue_to_delivery"]
    assert waited["count"] == 2 and waited["sum_s"] == pytest.approx(14.0)


# -- the statistics of destinations that come and go -------------------------------------------


def test_a_forgotten_queue_keeps_its_counters_when_used_again() -> None:
    """An emptied queue nobody consumes from is forgotten, but its counters carry on."""
    broker, _ = _broker()
    subscription = broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    _send(broker, 3)
    broker.unsubscribe(subscription)
    assert "q" not in broker.destinations.queues
    (shown,) = describe_all(broker)
    assert shown["active"] is False and shown["enqueued"] == 3
    _send(broker, 2)
    again = describe_one(broker, "queue", "q")
    assert again is not None and again["active"] is True and again["enqueued"] == 5


def test_forgotten_statistics_go_after_a_while_and_totals_stay() -> None:
    """Statistics of a forgotten destination go after RETAIN_SECONDS; totals keep counting them."""
    broker, clock = _broker()
    subscription = broker.subscribe(RecordingConsumer(), "1", "/queue/q")
    _send(broker, 4)
    broker.unsubscribe(subscription)
    clock.advance(RETAIN_SECONDS + 1)
    tick(broker)
    assert describe_all(broker) == []
    assert totals(broker)["enqueued"] == 4


def test_at_most_max_retired_forgotten_destinations_are_kept() -> None:
    """The oldest forgotten statistics go first when too many are kept."""
    broker, _ = _broker()
    for i in range(MAX_RETIRED + 5):
        subscription = broker.subscribe(RecordingConsumer(), "1", f"/topic/t{i}")
        broker.unsubscribe(subscription)
    assert len(broker.statistics.retired) == MAX_RETIRED
    assert ("topic", "t0") not in broker.statistics.retired


def test_temporary_destinations_leave_no_statistics_behind() -> None:
    """A temporary queue's statistics go with its owner; only the totals remember it."""
    broker, _ = _broker()
    broker.subscribe(RecordingConsumer(), "1", "/temp-queue/replies", owner="s9")
    broker.send("/temp-queue/replies", {}, b"x", owner="s9")
    (shown,) = describe_all(broker)
    assert (shown["kind"], shown["name"]) == ("temp-queue", "s9-replies")
    assert shown["address"] == "/remote-temp-queue/s9-replies"
    broker.delete_temporaries("s9")
    assert describe_all(broker) == []
    assert totals(broker)["enqueued"] == 1


# -- the store's commits ---------------------------------------------------------------------


def test_sqlite_store_times_its_fsyncing_commits(tmp_path: Path) -> None:
    """Each batch is counted; those that fsync are timed with the injected timer."""
    clock = Clock()
    ticks = iter([10.0, 10.004, 20.0, 20.5])

    def run_now(function: Any, *args: Any) -> Deferred[Any]:
        return maybeDeferred(function, *args)

    store = SqliteStore(str(tmp_path / FILENAME), clock, run_now, timer=lambda: next(ticks))
    store.open()
    broker = Broker(clock=clock, store=store)
    broker.send("/queue/q", {}, b"durable")  # fsync: always
    clock.advance(1)
    broker.send("/queue/q", {"persistent": "true"}, b"again")
    clock.advance(1)
    assert store.commits.batches == 2
    fsync = store.commits.fsync
    assert fsync.count == 2 and fsync.max == pytest.approx(0.5)
    assert fsync.counts[BOUNDS.index(0.005)] == 1
    store.close()
    clock.advance(1)

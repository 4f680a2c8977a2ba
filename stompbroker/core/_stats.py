"""Statistics: counters per destination, latency histograms, and rates over an interval.

What the hot path pays, per message: one attribute increment where a message is enqueued
(or published), one where it is delivered, one where it is acknowledged, and a set insertion
per SEND (who produces). Latencies are measured for one message in ``SAMPLE_EVERY`` per
destination only: such a message carries the time it arrived (``Message.born``); its first
delivery records enqueue-to-delivery, and in client ack modes the subscription remembers
the delivery time until the ACK records delivery-to-ACK.

Rates are computed by ``tick``, from the counters' change since the previous tick, with
the broker's clock: they are per-second averages over the last snapshot interval.

A destination the broker forgets (an empty queue nobody consumes from, a topic whose last
subscriber left) keeps its statistics for ``RETAIN_SECONDS`` (at most ``MAX_RETIRED`` of
them), so that counters do not restart at zero when it is used again a moment later.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from ._clock import Clock

if TYPE_CHECKING:
    from ._message import Message
    from ._subscription import Subscription

#: Upper bounds (seconds) of the latency buckets: 1, 2.5, 5 per decade, 100 µs to 1000 s.
#: A last bucket holds everything slower.
BOUNDS: tuple[float, ...] = (
    *(round(m * 10.0**exponent, 6) for exponent in range(-4, 3) for m in (1, 2.5, 5)),
    1000.0,
)

#: Latencies are measured for one message in this many per destination (a power of two).
SAMPLE_EVERY = 16
SAMPLE_MASK = SAMPLE_EVERY - 1

#: Counters every destination keeps, in the order snapshots list them.
COUNTERS = (
    "enqueued",
    "delivered",
    "acknowledged",
    "expired",
    "dead_lettered",
    "dropped",
    "duplicates",
)
#: The counters whose per-second rate snapshots show.
RATED = ("enqueued", "delivered", "acknowledged")

#: How long a forgotten destination's statistics are kept, and how many at most.
RETAIN_SECONDS = 300.0
MAX_RETIRED = 1000


class Histogram:
    """Counts of observed durations in the fixed ``BOUNDS`` buckets, with their sum and max."""

    __slots__ = ("count", "counts", "max", "sum")

    def __init__(self) -> None:
        #: Non-cumulative: ``counts[i]`` holds values in (BOUNDS[i-1], BOUNDS[i]]; the last
        #: one those above every bound.
        self.counts = [0] * (len(BOUNDS) + 1)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration (a negative one, from a clock set back, counts as 0)."""
        if seconds < 0.0:
            seconds = 0.0
        self.counts[bisect_left(BOUNDS, seconds)] += 1
        self.count += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float | None:
        """An upper estimate of the ``q`` quantile: its bucket's bound (the max if above all)."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return min(BOUNDS[index], self.max) if index < len(BOUNDS) else self.max
        return self.max

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations to these."""
        for index, count in enumerate(other.counts):
            self.counts[index] += count
        self.count += other.count
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: count, sum_s, max_s, p50_s, p90_s, p99_s, counts."""
        return {
            "count": self.count,
            "sum_s": self.sum,
            "max_s": self.max,
            "p50_s": self.quantile(0.5),
            "p90_s": self.quantile(0.9),
            "p99_s": self.quantile(0.99),
            "counts": list(self.counts),
        }


class DestinationStats:
    """The counters of one destination (a queue, topic, durable subscription, temporary)."""

    __slots__ = (
        "_previous",
        "_since",
        "acknowledged",
        "clock",
        "dead_lettered",
        "delivered",
        "delivery_to_ack",
        "dropped",
        "duplicates",
        "enqueue_to_delivery",
        "enqueued",
        "expired",
        "producers",
        "rates",
        "senders",
    )

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.enqueued = 0
        self.delivered = 0
        self.acknowledged = 0
        self.expired = 0
        self.dead_lettered = 0
        self.dropped = 0
        #: Sends refused as duplicates (``_AMQ_DUPL_ID`` seen within the window).
        self.duplicates = 0
        #: Connections (session ids) that sent to it since the last tick.
        self.senders: set[str | None] = set()
        #: How many connections sent to it during the last full interval.
        self.producers = 0
        self.enqueue_to_delivery: Histogram | None = None
        self.delivery_to_ack: Histogram | None = None
        #: Per-second rates of the RATED counters over the last interval.
        self.rates: dict[str, float] = dict.fromkeys(RATED, 0.0)
        self._previous = (0, 0, 0)
        self._since = clock.seconds()

    def sampled(self, subscription: Subscription, message: Message) -> None:
        """A timed message is handed over: record its wait, and remember when for its ACK."""
        now = self.clock.seconds()
        if message.delivery_count <= 1:
            histogram = self.enqueue_to_delivery
            if histogram is None:
                histogram = self.enqueue_to_delivery = Histogram()
            histogram.observe(now - message.born)
        if not subscription.auto:
            handed = subscription.handed
            if handed is None:
                handed = subscription.handed = {}
            handed[message.message_id] = now

    def add_deliveries(self, subscription: Subscription) -> None:
        """Take over the deliveries ``subscription`` counted (acknowledged at once in ``auto``)."""
        count = subscription.delivered
        if count:
            subscription.delivered = 0
            self.delivered += count
            if subscription.auto:
                self.acknowledged += count

    def settled(self, subscription: Subscription, messages: list[Message], ack: bool) -> None:
        """Timed messages among those ACKed (or NACKed) on ``subscription``: record how long
        the consumer held them (the caller counts the ACKs)."""
        handed = subscription.handed
        if not handed:
            return
        now = self.clock.seconds()
        for message in messages:
            when = handed.pop(message.message_id, None)
            if when is not None and ack:
                histogram = self.delivery_to_ack
                if histogram is None:
                    histogram = self.delivery_to_ack = Histogram()
                histogram.observe(now - when)

    def tick(self, now: float) -> None:
        """Close an interval: rates from the counters' change, producers from the senders."""
        current = (self.enqueued, self.delivered, self.acknowledged)
        elapsed = now - self._since
        if elapsed > 0:
            self.rates = {
                name: (value - before) / elapsed
                for name, value, before in zip(RATED, current, self._previous, strict=True)
            }
        self._previous = current
        self._since = now
        self.producers = len(self.senders)
        self.senders.clear()

    def restart(self, now: float) -> None:
        """Start a new interval at ``now`` (the destination is back after a pause)."""
        self._previous = (self.enqueued, self.delivered, self.acknowledged)
        self._since = now

    def idle(self) -> None:
        """The destination is forgotten: nothing flows through it any more."""
        self.rates = dict.fromkeys(RATED, 0.0)
        self.producers = 0
        self.senders.clear()

    def counters(self) -> dict[str, int]:
        """The COUNTERS by name."""
        return {name: getattr(self, name) for name in COUNTERS}

    def add_to(self, totals: dict[str, int]) -> None:
        """Add the counters into ``totals``."""
        for name in COUNTERS:
            totals[name] = totals.get(name, 0) + getattr(self, name)


#: What the statistics of a destination are filed under: (kind, name).
StatsKey = tuple[str, str]


class Statistics:
    """Every destination's statistics the broker keeps beyond the destination's own life."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        #: Forgotten destinations' statistics, oldest first, with when they were forgotten.
        self.retired: dict[StatsKey, tuple[DestinationStats, float]] = {}
        #: The counters of statistics dropped for good (so that totals never go back).
        self.gone: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.started = clock.seconds()

    def revive(self, key: StatsKey, fresh: DestinationStats) -> DestinationStats:
        """The statistics for a destination (re)created under ``key``: kept ones, or ``fresh``."""
        kept = self.retired.pop(key, None)
        if kept is None:
            return fresh
        kept[0].restart(self.clock.seconds())
        return kept[0]

    def retire(self, key: StatsKey, stats: DestinationStats) -> None:
        """A destination is forgotten: keep its statistics for a while."""
        stats.idle()
        self.retired.pop(key, None)
        self.retired[key] = (stats, self.clock.seconds())
        while len(self.retired) > MAX_RETIRED:
            oldest = next(iter(self.retired))
            self.drop(self.retired.pop(oldest)[0])

    def drop(self, stats: DestinationStats) -> None:
        """A destination is deleted for good: only its counters stay, in the totals."""
        stats.add_to(self.gone)

    def tick(self, live: list[DestinationStats]) -> None:
        """Close an interval for every live destination; let old retired statistics go."""
        now = self.clock.seconds()
        for stats in live:
            stats.tick(now)
        horizon = now - RETAIN_SECONDS
        while self.retired:
            key, (stats, since) = next(iter(self.retired.items()))
            if since > horizon:
                break
            del self.retired[key]
            self.drop(stats)

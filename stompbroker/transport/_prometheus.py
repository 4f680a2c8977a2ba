"""``/metrics`` through ``prometheus_client``: a collector reads the management data when
scraped (nothing is counted on the message path), in a registry per ``Management`` beside
the library's process, platform and garbage-collector collectors.

Per-destination series carry ``kind`` (queue, topic, durable, temp-queue, temp-topic) and
``destination`` (the address clients use; for a durable subscription, the topic it is fed
from, with ``subscription="CLIENT_ID:NAME"`` too). Latency histograms are sampled (one
message in ``SAMPLE_EVERY`` per destination) and appear once a destination has a sample.
Counter families are named without ``_total``: the library adds it to the sample names.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from stompbroker.core import BOUNDS

from ._management import Management

_PREFIX = "stompbroker_"

#: Per-destination gauges and counters: (metric, field, type, help); counters without _total.
_DESTINATION_SERIES = (
    ("destination_depth", "depth", "gauge", "Messages waiting, paged out included."),
    ("destination_paged", "paged", "gauge", "Messages waiting on disk only."),
    ("destination_in_flight", "in_flight", "gauge", "Messages delivered, not yet acknowledged."),
    ("destination_consumers", "consumers", "gauge", "Subscriptions attached."),
    (
        "destination_producers",
        "producers",
        "gauge",
        "Connections that sent to it during the last statistics interval.",
    ),
    (
        "destination_scheduled_messages",
        "scheduled",
        "gauge",
        "Messages scheduled for later delivery.",
    ),
    ("destination_enqueued", "enqueued", "counter", "Messages sent (published) to it."),
    ("destination_delivered", "delivered", "counter", "Deliveries, redeliveries included."),
    (
        "destination_acknowledged",
        "acknowledged",
        "counter",
        "Messages acknowledged (at delivery in ack mode auto).",
    ),
    ("destination_expired", "expired", "counter", "Messages that expired in it."),
    ("destination_dead_lettered", "dead_lettered", "counter", "Messages dead-lettered."),
    ("destination_dropped", "dropped", "counter", "Messages dropped (no dead-letter queue)."),
    (
        "destination_duplicates",
        "duplicates",
        "counter",
        "Sends not delivered: their _AMQ_DUPL_ID was seen within the window.",
    ),
)

_LATENCIES = (
    (
        "destination_enqueue_to_delivery_seconds",
        "enqueue_to_delivery",
        "Time from arrival to first delivery (sampled).",
    ),
    (
        "destination_delivery_to_ack_seconds",
        "delivery_to_ack",
        "Time from delivery to acknowledgement, client ack modes (sampled).",
    ),
)

#: Label names of per-destination series; ``subscription`` is given for durables only.
_LABELS = ("kind", "destination", "subscription")


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def _buckets(histogram: dict[str, Any]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs from the broker's per-bucket counts (seconds)."""
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip((*BOUNDS, float("inf")), histogram["counts"], strict=True):
        cumulative += count
        buckets.append((_bound(float(bound)), cumulative))
    return buckets


def _family(
    name: str, kind: str, help_text: str, labels: Iterable[str]
) -> CounterMetricFamily | GaugeMetricFamily:
    if kind == "counter":
        return CounterMetricFamily(_PREFIX + name, help_text, labels=list(labels))
    return GaugeMetricFamily(_PREFIX + name, help_text, labels=list(labels))


class BrokerCollector(Collector):
    """The broker's statistics, read from ``management`` at each scrape."""

    def __init__(self, management: Management) -> None:
        self.management = management

    def collect(self) -> Iterator[Metric]:
        yield from _broker_series(self.management.broker_info())
        yield from _destination_series(self.management.destinations())


def _label_values(destination: dict[str, Any]) -> list[str]:
    values = [destination["kind"], destination["address"]]
    if destination["kind"] == "durable":
        values.append(destination["name"])
    return values


def _destination_series(destinations: list[dict[str, Any]]) -> Iterator[Metric]:
    labelled = [(d, _label_values(d)) for d in destinations]
    for metric, field, kind, help_text in _DESTINATION_SERIES:
        present = [(d[field], values) for d, values in labelled if field in d]
        if field == "scheduled" and not present:
            continue
        # Only a durable's series has a value for the third label, subscription.
        family = _family(metric, kind, help_text, _LABELS)
        for value, values in present:
            family.add_metric(values, value)
        yield family
    for metric, field, help_text in _LATENCIES:
        sampled = [(d["latency"][field], v) for d, v in labelled if d["latency"][field]]
        if not sampled:
            continue
        histograms = HistogramMetricFamily(_PREFIX + metric, help_text, labels=list(_LABELS))
        for histogram, values in sampled:
            histograms.add_metric(values, _buckets(histogram), float(histogram["sum_s"]))
        yield histograms


def _broker_series(broker: dict[str, Any]) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        _PREFIX + "info", "The broker's name and version (always 1).", labels=["name", "version"]
    )
    info.add_metric([broker["name"], broker["version"]], 1)
    yield info
    connections = broker["connections"]
    yield GaugeMetricFamily(
        _PREFIX + "connections", "Open STOMP connections, every listener.", connections["open"]
    )
    yield CounterMetricFamily(
        _PREFIX + "connections_opened",
        "STOMP connections opened since start.",
        connections["opened"],
    )
    yield CounterMetricFamily(
        _PREFIX + "connections_revoked",
        "STOMP connections a reload closed: credentials or read permission revoked.",
        connections["revoked"],
    )
    yield CounterMetricFamily(
        _PREFIX + "received_bytes", "STOMP bytes received from clients.", connections["bytes_in"]
    )
    yield CounterMetricFamily(
        _PREFIX + "sent_bytes", "STOMP bytes sent to clients.", connections["bytes_out"]
    )
    held = GaugeMetricFamily(
        _PREFIX + "destinations", "Destinations held, by kind.", labels=["kind"]
    )
    for kind, count in broker["destinations"].items():
        held.add_metric([kind], count)
    yield held
    messages = broker["messages"]
    for field in ("expired", "dead_lettered", "dropped", "purged", "duplicates"):
        yield CounterMetricFamily(
            f"{_PREFIX}messages_{field}",
            f"Messages {field.replace('_', '-')}, every destination.",
            messages[field],
        )
    store = broker["store"]
    yield GaugeMetricFamily(
        _PREFIX + "store_size_bytes", "Bytes the message store uses on disk.", store["size_bytes"]
    )
    yield CounterMetricFamily(
        _PREFIX + "store_batches", "Batches the message store committed.", store["batches"]
    )
    if store["fsync"] is not None:
        yield HistogramMetricFamily(
            _PREFIX + "store_fsync_seconds",
            "Duration of committing batches that fsync.",
            buckets=_buckets(store["fsync"]),
            sum_value=float(store["fsync"]["sum_s"]),
        )
    cluster = broker["cluster"]
    if cluster is not None:
        yield GaugeMetricFamily(
            _PREFIX + "cluster_nodes",
            "Live nodes of the cluster (this one among them), as last polled.",
            len(cluster["nodes"]),
        )


def registry(management: Management) -> CollectorRegistry:
    """A registry of its own: the broker's collector and the library's process, platform
    and GC ones (several brokers in one process do not clash)."""
    made = CollectorRegistry(auto_describe=False)
    made.register(BrokerCollector(management))
    ProcessCollector(registry=made)
    PlatformCollector(registry=made)
    GCCollector(registry=made)
    return made


_REGISTRIES: weakref.WeakKeyDictionary[Management, CollectorRegistry] = weakref.WeakKeyDictionary()


def exposition(management: Management, accept: str | None) -> tuple[bytes, str]:
    """The body and Content-Type of a scrape: OpenMetrics when ``accept`` asks for it,
    the text format otherwise. The registry is made on the first scrape and kept."""
    held = _REGISTRIES.get(management)
    if held is None:
        held = _REGISTRIES[management] = registry(management)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(held), content_type

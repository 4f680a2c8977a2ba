"""The Prometheus text exposition format (version 0.0.4) of the management data.

Per-destination series carry ``kind`` (queue, topic, durable, temp-queue, temp-topic) and
``destination`` (the address clients use; for a durable subscription, the topic it is fed
from, with ``subscription="CLIENT_ID:NAME"`` too). Latency histograms are sampled (one
message in ``SAMPLE_EVERY`` per destination) and appear once a destination has a sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stompbroker.core import BOUNDS

#: The Content-Type of the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PREFIX = "stompbroker_"

#: Per-destination gauges and counters: (metric, field, type, help).
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
    ("destination_enqueued_total", "enqueued", "counter", "Messages sent (published) to it."),
    ("destination_delivered_total", "delivered", "counter", "Deliveries, redeliveries included."),
    (
        "destination_acknowledged_total",
        "acknowledged",
        "counter",
        "Messages acknowledged (at delivery in ack mode auto).",
    ),
    ("destination_expired_total", "expired", "counter", "Messages that expired in it."),
    ("destination_dead_lettered_total", "dead_lettered", "counter", "Messages dead-lettered."),
    ("destination_dropped_total", "dropped", "counter", "Messages dropped (no dead-letter queue)."),
    (
        "destination_duplicates_total",
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


def escape(value: str) -> str:
    """A label value as the text format wants it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value: integers as they are, floats in Go's notation (``+Inf``)."""
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inside = ",".join(f'{name}="{escape(value)}"' for name, value in pairs)
    return "{" + inside + "}" if inside else ""


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {_PREFIX}{name} {help_text}")
        self.lines.append(f"# TYPE {_PREFIX}{name} {kind}")

    def sample(self, name: str, value: float, labels: Iterable[tuple[str, str]] = ()) -> None:
        self.lines.append(f"{_PREFIX}{name}{_labels(labels)} {number(value)}")

    def histogram(
        self, name: str, histogram: dict[str, Any], labels: tuple[tuple[str, str], ...] = ()
    ) -> None:
        cumulative = 0
        for bound, count in zip((*BOUNDS, float("inf")), histogram["counts"], strict=True):
            cumulative += count
            self.sample(f"{name}_bucket", cumulative, (*labels, ("le", number(float(bound)))))
        self.sample(f"{name}_sum", float(histogram["sum_s"]), labels)
        self.sample(f"{name}_count", histogram["count"], labels)


def render(broker: dict[str, Any], destinations: list[dict[str, Any]]) -> str:
    """The whole exposition: broker-wide series, then per-destination ones."""
    out = _Writer()
    _broker_series(out, broker)
    labelled = [(d, _destination_labels(d)) for d in destinations]
    for metric, field, kind, help_text in _DESTINATION_SERIES:
        out.family(metric, kind, help_text)
        for destination, labels in labelled:
            out.sample(metric, destination[field], labels)
    for metric, field, help_text in _LATENCIES:
        sampled = [(d["latency"][field], labels) for d, labels in labelled if d["latency"][field]]
        if sampled:
            out.family(metric, "histogram", help_text)
            for histogram, labels in sampled:
                out.histogram(metric, histogram, labels)
    return "\n".join(out.lines) + "\n"


def _destination_labels(destination: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    labels: tuple[tuple[str, str], ...] = (
        ("kind", destination["kind"]),
        ("destination", destination["address"]),
    )
    if destination["kind"] == "durable":
        labels += (("subscription", destination["name"]),)
    return labels


def _broker_series(out: _Writer, broker: dict[str, Any]) -> None:
    out.family("info", "gauge", "The broker's name and version (always 1).")
    out.sample("info", 1, (("name", broker["name"]), ("version", broker["version"])))
    out.lines.append("# HELP process_start_time_seconds Start time of the process (epoch s).")
    out.lines.append("# TYPE process_start_time_seconds gauge")
    out.lines.append(f"process_start_time_seconds {number(float(broker['started']))}")
    rss = broker["memory"]["rss_bytes"]
    if rss is not None:
        out.lines.append("# HELP process_resident_memory_bytes Resident memory (VmRSS).")
        out.lines.append("# TYPE process_resident_memory_bytes gauge")
        out.lines.append(f"process_resident_memory_bytes {rss}")
    connections = broker["connections"]
    out.family("connections", "gauge", "Open STOMP connections, every listener.")
    out.sample("connections", connections["open"])
    out.family("connections_opened_total", "counter", "STOMP connections opened since start.")
    out.sample("connections_opened_total", connections["opened"])
    out.family(
        "connections_revoked_total",
        "counter",
        "STOMP connections a reload closed: credentials or read permission revoked.",
    )
    out.sample("connections_revoked_total", connections["revoked"])
    out.family("received_bytes_total", "counter", "STOMP bytes received from clients.")
    out.sample("received_bytes_total", connections["bytes_in"])
    out.family("sent_bytes_total", "counter", "STOMP bytes sent to clients.")
    out.sample("sent_bytes_total", connections["bytes_out"])
    out.family("destinations", "gauge", "Destinations held, by kind.")
    for kind, count in broker["destinations"].items():
        out.sample("destinations", count, (("kind", kind),))
    messages = broker["messages"]
    for field in ("expired", "dead_lettered", "dropped", "purged", "duplicates"):
        name = f"messages_{field}_total"
        out.family(name, "counter", f"Messages {field.replace('_', '-')}, every destination.")
        out.sample(name, messages[field])
    store = broker["store"]
    out.family("store_size_bytes", "gauge", "Bytes the message store uses on disk.")
    out.sample("store_size_bytes", store["size_bytes"])
    out.family("store_batches_total", "counter", "Batches the message store committed.")
    out.sample("store_batches_total", store["batches"])
    if store["fsync"] is not None:
        out.family("store_fsync_seconds", "histogram", "Duration of committing batches that fsync.")
        out.histogram("store_fsync_seconds", store["fsync"])

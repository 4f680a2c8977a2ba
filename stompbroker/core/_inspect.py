"""Looking inside a broker: its destinations as JSON-ready descriptions, found by kind and name.

Destinations are named in descriptions (and in the management API's URLs) by a kind and a
name:

=============  ==========================================  ===========================
kind           name                                        address
=============  ==========================================  ===========================
``queue``      ``orders``                                  ``/queue/orders``
``topic``      ``prices.eur`` or a pattern ``prices.>``    ``/topic/prices.eur``
``durable``    ``CLIENT_ID:SUBSCRIPTION_NAME``             the topic it is fed from
``temp-queue`` the global id ``SESSION-NAME``              ``/remote-temp-queue/ID``
``temp-topic`` the global id                               ``/remote-temp-topic/ID``
=============  ==========================================  ===========================

A forgotten destination whose statistics are still kept is described with ``"active":
false``, nothing waiting and nobody attached; so is one that is gone but has scheduled
messages to come (``scheduled``: how many wait for their delivery time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._destination import Destination
from ._durable import DurableSubscription
from ._names import GLOBAL_TEMP_PREFIX
from ._queue import Queue
from ._registry import kind_and_name
from ._stats import COUNTERS, RATED, DestinationStats

if TYPE_CHECKING:
    from ._broker import Broker

#: The kinds of destination descriptions, in the order listings show them.
KINDS = ("queue", "topic", "durable", "temp-queue", "temp-topic")


def find(broker: Broker, kind: str, name: str) -> Destination | None:
    """The live destination of ``kind`` named ``name``, or None."""
    destinations = broker.destinations
    if kind == "queue":
        return destinations.queues.get(name)
    if kind == "topic":
        return destinations.topics.get(name) or destinations.wildcards.get(name)
    if kind == "durable":
        return next((d for d in broker.durables if d.name == name), None)
    if kind in GLOBAL_TEMP_PREFIX:
        return broker.temporaries.get(GLOBAL_TEMP_PREFIX[kind] + name)
    return None


def tick(broker: Broker) -> None:
    """Close a statistics interval: rates and producers of every destination."""
    broker.statistics.tick([d.counted() for d in broker])


def describe(destination: Destination) -> dict[str, Any]:
    """One live destination as JSON-ready data (see docs/operations.md for the shape)."""
    kind, name = kind_and_name(destination)
    subscriptions = destination.subscriptions
    if isinstance(destination, Queue):
        depth = destination.depth()
        paged = destination.backlog.total
    else:
        depth = sum(len(s.pending) for s in subscriptions if s.pending is not None)
        paged = 0
    out = _describe(kind, name, destination.address, True, destination.counted())
    out.update(
        depth=depth,
        paged=paged,
        in_flight=sum(len(s.unacked) for s in subscriptions),
        consumers=len(subscriptions),
    )
    if isinstance(destination, DurableSubscription):
        out["durable"] = {
            "client_id": destination.client_id,
            "subscription_name": destination.subscription_name,
            "topic": destination.pattern,
            "attached": destination.attached,
            "no_local": destination.no_local,
            "shared": destination.shared,
            "transient": destination.transient,
        }
    return out


def _describe(
    kind: str, name: str, address: str, active: bool, stats: DestinationStats
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "address": address,
        "active": active,
        "depth": 0,
        "paged": 0,
        "in_flight": 0,
        "consumers": 0,
        "producers": stats.producers,
    }
    out.update(stats.counters())
    out["rates"] = dict(stats.rates)
    out["latency"] = {
        "enqueue_to_delivery": _histogram(stats.enqueue_to_delivery),
        "delivery_to_ack": _histogram(stats.delivery_to_ack),
    }
    return out


def _histogram(histogram: Any) -> dict[str, Any] | None:
    return None if histogram is None else histogram.as_dict()


def describe_all(broker: Broker) -> list[dict[str, Any]]:
    """Every destination, live ones and forgotten ones with statistics kept (or scheduled
    messages to come), by kind and name."""
    described = [describe(d) for d in broker]
    for (kind, name), (stats, _) in broker.statistics.retired.items():
        described.append(_describe_gone(broker, kind, name, stats))
    scheduled = broker.router.scheduled.counts
    for entry in described:
        entry["scheduled"] = scheduled.get((entry["kind"], entry["name"]), 0)
    if scheduled:
        named = {(d["kind"], d["name"]) for d in described}
        for (kind, name), count in scheduled.items():
            if (kind, name) not in named:
                entry = _describe_gone(broker, kind, name, None)
                entry["scheduled"] = count
                described.append(entry)
    order = {kind: index for index, kind in enumerate(KINDS)}
    described.sort(key=lambda d: (order.get(d["kind"], len(KINDS)), d["name"]))
    return described


def _describe_gone(
    broker: Broker, kind: str, name: str, stats: DestinationStats | None
) -> dict[str, Any]:
    """A destination no longer live: its kept statistics (None: none, only scheduled ones)."""
    kept = stats if stats is not None else DestinationStats(broker.clock)
    return _describe(kind, name, f"/{kind}/{name}", False, kept)


def describe_one(broker: Broker, kind: str, name: str) -> dict[str, Any] | None:
    """The destination of ``kind`` named ``name`` (live, or forgotten with statistics), or None."""
    scheduled = broker.router.scheduled.counts.get((kind, name), 0)
    destination = find(broker, kind, name)
    if destination is not None:
        out = describe(destination)
    else:
        kept = broker.statistics.retired.get((kind, name))
        if kept is None and not scheduled:
            return None
        out = _describe_gone(broker, kind, name, kept[0] if kept is not None else None)
    out["scheduled"] = scheduled
    return out


def totals(broker: Broker) -> dict[str, Any]:
    """Broker-wide message counters (sums over destinations, the forgotten ones included)
    and rates (sums over live destinations)."""
    sums: dict[str, int] = dict(broker.statistics.gone)
    rates = dict.fromkeys(RATED, 0.0)
    for destination in broker:
        stats = destination.counted()
        stats.add_to(sums)
        for name, rate in stats.rates.items():
            rates[name] += rate
    for stats, _ in broker.statistics.retired.values():
        stats.add_to(sums)
    counters = broker.counters
    out: dict[str, Any] = {name: sums[name] for name in COUNTERS[:3]}
    out["expired"] = counters["expired"]
    out["dead_lettered"] = counters["dead-lettered"]
    out["dropped"] = counters["dropped"]
    out["purged"] = counters["purged"]
    out["duplicates"] = counters["duplicates"]
    out["scheduled"] = len(broker.router.scheduled)
    out["rates"] = rates
    return out


def counts(broker: Broker) -> dict[str, int]:
    """How many destinations of each kind the broker holds."""
    out = dict.fromkeys(KINDS, 0)
    for destination in broker:
        out[kind_and_name(destination)[0]] += 1
    return out

"""What the management API, ``/metrics`` and the statistics topic show, and what they may do.

Every description is JSON-ready data; docs/operations.md documents the shapes, which the
web console and scripts rely on: fields may be added, none renamed or removed, without
raising ``SCHEMA``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stompbroker.core import (
    BOUNDS,
    Broker,
    IMessageStore,
    ISharedQueues,
    counts,
    delete_destination,
    describe_all,
    describe_one,
    purge_destination,
    replay_dead_letters,
    totals,
)

from ._connections import Connection, Connections

#: The version of the snapshot's shape.
SCHEMA = 1

#: A snapshot (the statistics topic's message) lists at most this many destinations (the
#: deepest) and connections (the oldest); ``truncated`` says when it left some out.
MAX_LISTED = 1000


class Management:
    """The broker, its connections and its store, seen from outside; admin actions on them.

    ``memory`` returns the process's resident memory in bytes (None when unknown);
    ``interval`` is the statistics interval in seconds (rates are averages over it).
    """

    def __init__(
        self,
        broker: Broker,
        connections: Connections,
        store: IMessageStore | None = None,
        memory: Callable[[], int | None] = lambda: None,
        name: str = "stompbroker",
        version: str = "",
        interval: float = 5.0,
    ) -> None:
        self.broker = broker
        self.connections = connections
        self.store = store
        self.memory = memory
        self.name = name
        self.version = version
        self.interval = interval
        self.started = broker.clock.seconds()

    # -- what there is ------------------------------------------------------------------

    def broker_info(self) -> dict[str, Any]:
        """The broker as a whole: connections, destinations, messages, memory, store."""
        now = self.broker.clock.seconds()
        registry = self.connections
        open_ = registry.open.values()
        return {
            "name": self.name,
            "version": self.version,
            "time": now,
            "started": self.started,
            "uptime_s": now - self.started,
            "stats_interval_s": self.interval,
            "connections": {
                "open": len(registry.open),
                "opened": registry.opened,
                "revoked": registry.revoked,
                "bytes_in": registry.bytes_in_closed + sum(c.bytes_in for c in open_),
                "bytes_out": registry.bytes_out_closed + sum(c.bytes_out for c in open_),
            },
            "destinations": counts(self.broker),
            "messages": totals(self.broker),
            "memory": {"rss_bytes": self.memory()},
            "store": self._store(),
            "cluster": self._cluster(),
        }

    def _cluster(self) -> dict[str, Any] | None:
        """This node and the live nodes of its cluster (None: the store shares nothing)."""
        store = self.store
        if store is None or not ISharedQueues.providedBy(store):
            return None
        members = store.members()
        return {
            "node": store.node,
            "incarnation": store.incarnation,
            "nodes": [
                {
                    "name": m.name,
                    "incarnation": m.incarnation,
                    "joined": m.joined,
                    "address": m.address,
                }
                for m in members
            ],
        }

    def _store(self) -> dict[str, Any]:
        store = self.store
        if store is None:
            return {"kind": "none", "size_bytes": 0, "batches": 0, "fsync": None}
        out: dict[str, Any] = {"kind": store.name, "size_bytes": store.size()}
        out.update(store.commits.as_dict())
        return out

    def destinations(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every destination (of ``kind``, if given)."""
        described = describe_all(self.broker)
        listed = described if kind is None else [d for d in described if d["kind"] == kind]
        return [self._marked(d) for d in listed]

    def destination(self, kind: str, name: str) -> dict[str, Any] | None:
        """One destination, or None."""
        found = describe_one(self.broker, kind, name)
        return None if found is None else self._marked(found)

    def _marked(self, destination: dict[str, Any]) -> dict[str, Any]:
        """``destination`` with ``dead_letter_queue``: whether a policy sends dead letters
        to it (the web console offers to replay those queues only)."""
        queues = self.broker.policies.dead_letter_queues
        is_dlq = destination["kind"] == "queue" and destination["address"] in queues
        destination["dead_letter_queue"] = is_dlq
        return destination

    def connection_list(self) -> list[dict[str, Any]]:
        """Every open connection, oldest first."""
        listed = sorted(self.connections.open.values(), key=lambda c: c.opened)
        return [self._connection(c) for c in listed]

    def connection(self, connection_id: str) -> dict[str, Any] | None:
        """One open connection, or None."""
        found = self.connections.open.get(connection_id)
        return None if found is None else self._connection(found)

    def _connection(self, connection: Connection) -> dict[str, Any]:
        session = connection.session
        subscriptions = [
            {
                "id": s.id,
                "destination": s.destination,
                "ack": s.ack_mode,
                "in_flight": len(s.unacked),
            }
            for s in session.subscriptions
        ]
        return {
            "id": connection.id,
            "peer": connection.peer,
            "transport": connection.transport,
            "user": connection.user,
            "version": session.version,
            "client_id": session.client_id,
            "connected_at": connection.opened,
            "connected_for_s": self.broker.clock.seconds() - connection.opened,
            "bytes_in": connection.bytes_in,
            "bytes_out": connection.bytes_out,
            "subscriptions": subscriptions,
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything at once: what the statistics topic publishes, and GET /api/snapshot."""
        destinations = self.destinations()
        connections = self.connection_list()
        truncated = {
            "destinations": len(destinations) > MAX_LISTED,
            "connections": len(connections) > MAX_LISTED,
        }
        if truncated["destinations"]:
            deepest = sorted(destinations, key=lambda d: -(d["depth"] + d["in_flight"]))
            kept = {id(d) for d in deepest[:MAX_LISTED]}
            destinations = [d for d in destinations if id(d) in kept]
        return {
            "schema": SCHEMA,
            "time": self.broker.clock.seconds(),
            "broker": self.broker_info(),
            "destinations": destinations,
            "connections": connections[:MAX_LISTED],
            "truncated": truncated,
            "latency_bounds_s": list(BOUNDS),
        }

    # -- what an administrator may do -----------------------------------------------------

    def purge(self, kind: str, name: str) -> dict[str, Any]:
        """Drop a queue's waiting messages (AdminError if it cannot be done)."""
        return {"purged": purge_destination(self.broker, kind, name)}

    def delete(self, kind: str, name: str) -> dict[str, Any]:
        """Delete a destination nobody consumes from (AdminError if it cannot be done)."""
        return {"deleted": True, "messages": delete_destination(self.broker, kind, name)}

    def replay(self, kind: str, name: str, limit: int = 0) -> dict[str, Any]:
        """Send a dead-letter queue's messages back where they came from."""
        return dict(replay_dead_letters(self.broker, kind, name, limit))

    def close(self, connection_id: str) -> bool:
        """Close a connection with an ERROR; False if there is no such connection."""
        return self.connections.close(connection_id)

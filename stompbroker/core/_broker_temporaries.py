"""The broker's temporary destinations: owned by one connection, deleted when it leaves."""

from __future__ import annotations

from dataclasses import replace

from ._broker_parts import BrokerParts
from ._destination import Destination, Queue
from ._names import GLOBAL_TEMP_PREFIX, DestinationError
from ._topic import Topic


class TemporaryDestinations(BrokerParts):
    """Broker mixin: the lifecycle of temporary destinations (``broker.temporaries``)."""

    def temporary(self, kind: str, name: str, owner: str) -> Destination:
        """The owner's temporary destination ``/temp-queue/NAME`` (or topic), created if needed."""
        address = f"{GLOBAL_TEMP_PREFIX[kind]}{owner}-{name}"
        target = self.temporaries.get(address)
        if target is None:
            policy = replace(self.policies.default, persistent=False)
            if kind == "temp-queue":
                target = Queue(address, address, self, policy)
            else:
                target = Topic(address, address, self, policy)
            target.owner = owner
            self.temporaries[address] = target
        return target

    def _temporary_for_send(
        self, kind: str, name: str, destination: str, owner: str | None
    ) -> Destination:
        if kind in GLOBAL_TEMP_PREFIX:
            if owner is None:
                raise DestinationError(f"{destination!r} needs a connection to own it")
            return self.temporary(kind, name, owner)
        if kind == "dsub":
            raise DestinationError(f"cannot send to the durable subscription {destination!r}")
        target = self.temporaries.get(destination)
        if target is None:
            raise DestinationError(
                f"temporary destination {destination!r} does not exist (its owner has left)"
            )
        return target

    def _temporary_for_subscribe(
        self, kind: str, name: str, destination: str, owner: str | None
    ) -> Destination:
        target = self._temporary_for_send(kind, name, destination, owner)
        if target.owner != owner:
            raise DestinationError(
                f"only the connection that created {destination!r} may consume from it"
            )
        return target

    def delete_temporaries(self, owner: str) -> None:
        """The owner left: delete its temporary destinations and what they held."""
        for address in [a for a, d in self.temporaries.items() if d.owner == owner]:
            target = self.temporaries.pop(address)
            for subscription in list(target.subscriptions):
                self.unsubscribe(subscription)
            dropped = target.close()
            if dropped:
                self.counters["dropped"] += len(dropped)
            self.statistics.drop(target.counted())

"""The broker's temporary destinations: owned by one connection, deleted when it leaves.

A client names one ``/temp-queue/NAME`` (or ``/temp-topic/NAME``); the broker keeps it under
a global address, ``/remote-temp-queue/OWNER-NAME``, which other connections can send to
(a ``reply-to``). Only the owner may consume from it. Temporaries are never stored.

In a cluster (``destinations.shared``), a temporary queue's messages are shared as any
queue's, under its global address: its node declares it to the store, and a SEND through
another node to an address it does not hold goes to the cluster (through a *proxy*: a queue
of that address, known nowhere, holding the message back for the owner's node to claim). A
message sent to a temporary queue that is not there (its owner left) is then accepted and
dropped by the next sweep, since no node can tell at once. A temporary topic stays on its
node; a SEND through another node to one it does not hold goes to a proxy topic (known
nowhere, subscribed to by none) that the router hands the topic bus, as any topic's publish,
and the owner's node delivers it to its subscribers (``Broker.published_elsewhere``): at most
once, accepted and dropped when its owner left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from ._destination import Destination
from ._names import GLOBAL_TEMP_PREFIX, DestinationError
from ._queue import Queue
from ._registry import Destinations, end
from ._subscription import Subscription
from ._topic import Topic


class TemporaryDestinations:
    """Every temporary destination, by global address.

    ``destinations`` gives them the default policy (never persistent) and statistics;
    ``detach`` is the broker's UNSUBSCRIBE.
    """

    def __init__(self, destinations: Destinations, detach: Callable[[Subscription], None]) -> None:
        self._destinations = destinations
        self._detach = detach
        self._by_address: dict[str, Destination] = {}

    def __iter__(self) -> Iterator[Destination]:
        return iter(list(self._by_address.values()))

    def __len__(self) -> int:
        return len(self._by_address)

    def get(self, address: str) -> Destination | None:
        """The temporary destination at global ``address``, or None."""
        return self._by_address.get(address)

    def create(self, kind: str, name: str, owner: str) -> Destination:
        """The owner's temporary destination ``/temp-queue/NAME`` (or topic), made if needed."""
        address = f"{GLOBAL_TEMP_PREFIX[kind]}{owner}-{name}"
        target = self._by_address.get(address)
        if target is None:
            hooks = self._destinations.hooks
            policy = replace(self._destinations.policies.default, persistent=False)
            if kind == "temp-queue":
                target = Queue(address, address, hooks, policy)
                shared = self._destinations.shared
                if shared is not None:
                    target.backlog = shared.backlog(target)
                    shared.store.declare_temporary(address, True)
            else:
                target = Topic(address, address, hooks, policy)
            target.owner = owner
            self._by_address[address] = target
        return target

    def for_send(self, kind: str, name: str, destination: str, owner: str | None) -> Destination:
        """The temporary destination a SEND to ``destination`` goes to; DestinationError if
        there is none (its owner left) or it cannot be sent to."""
        if kind in GLOBAL_TEMP_PREFIX:
            if owner is None:
                raise DestinationError(f"{destination!r} needs a connection to own it")
            return self.create(kind, name, owner)
        if kind == "dsub":
            raise DestinationError(f"cannot send to the durable subscription {destination!r}")
        target = self._by_address.get(destination)
        if target is None and kind == "remote-temp-queue":
            target = self._proxy(destination)
        elif target is None and kind == "remote-temp-topic":
            target = self._proxy_topic(destination)
        if target is None:
            raise DestinationError(
                f"temporary destination {destination!r} does not exist (its owner has left)"
            )
        return target

    def _proxy(self, address: str) -> Queue | None:
        """In a cluster: a queue for sending to another node's temporary queue ``address``
        (known nowhere: its messages wait in the cluster for the owner's node)."""
        shared = self._destinations.shared
        if shared is None:
            return None
        hooks = self._destinations.hooks
        policy = replace(self._destinations.policies.default, persistent=False)
        proxy = Queue(address, address, hooks, policy)
        proxy.backlog = shared.backlog(proxy, watched=False)
        return proxy

    def _proxy_topic(self, address: str) -> Topic | None:
        """In a cluster: a topic for sending to another node's temporary topic ``address``
        (known nowhere, subscribed to by none: the bus carries its messages)."""
        if self._destinations.shared is None:
            return None
        policy = replace(self._destinations.policies.default, persistent=False)
        return Topic(address, address, self._destinations.hooks, policy)

    def elsewhere(self, target: Destination) -> bool:
        """Whether ``target`` stands for another node's temporary destination (a proxy)."""
        return self._by_address.get(target.address) is not target

    def for_subscribe(
        self, kind: str, name: str, destination: str, owner: str | None
    ) -> Destination:
        """The temporary destination ``owner`` may consume from; DestinationError otherwise."""
        target = self.for_send(kind, name, destination, owner)
        if target.owner != owner:
            raise DestinationError(
                f"only the connection that created {destination!r} may consume from it"
            )
        return target

    def delete_owned(self, owner: str) -> None:
        """The owner left: delete its temporary destinations and what they held."""
        for address in [a for a, d in self._by_address.items() if d.owner == owner]:
            target = self._by_address.pop(address)
            shared = self._destinations.shared
            if shared is not None and isinstance(target, Queue):
                shared.store.declare_temporary(address, False)
            for subscription in list(target.subscriptions):
                self._detach(subscription)
            dropped = end(target, self._destinations.statistics)
            if dropped:
                self._destinations.hooks.counters["dropped"] += len(dropped)

"""The broker's durable subscriptions, by (client id, name): declared, attached to, deleted.

A definition is stored when declared (the Deferred of the write is handed back, so that the
SUBSCRIBE's RECEIPT waits for it) and forgotten with its rows when deleted. The subscription
itself is ``_durable.DurableSubscription``: the queue a topic feeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from twisted.internet.defer import Deferred

from ._backlog import MEMORY
from ._durable import DurableSubscription
from ._message import Message
from ._names import DestinationError, check_subscribe_name, parse_destination
from ._registry import Destinations, end
from ._selector import compile_selector
from ._store import DurableRecord, IMessageStore
from ._subscription import Consumer, Selector, Subscription, attach


class DurableSubscriptions:
    """Every durable subscription of the broker.

    ``destinations`` gives them their policies and statistics; ``detach`` is the broker's
    UNSUBSCRIBE (a subscription attached to a durable being deleted is detached first).
    """

    def __init__(
        self,
        destinations: Destinations,
        store: IMessageStore | None,
        detach: Callable[[Subscription], None],
    ) -> None:
        self._destinations = destinations
        self._store = store
        self._detach = detach
        self._by_key: dict[tuple[str, str], DurableSubscription] = {}
        #: Bumped whenever one is made or deleted (``Fanout`` then forgets what it cached).
        self.version = 0
        if destinations.shared is not None:
            destinations.shared.store.follow_durables(self.follow)

    def __iter__(self) -> Iterator[DurableSubscription]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, client_id: str, subscription_name: str) -> DurableSubscription | None:
        """The durable subscription (client id, name), or None."""
        return self._by_key.get((client_id, subscription_name))

    def subscribe(
        self,
        consumer: Consumer,
        subscription_id: str,
        destination: str,
        client_id: str,
        subscription_name: str,
        ack_mode: str = "auto",
        prefetch: int | None = None,
        key: int = 0,
        start: bool = True,
        selector: Selector | None = None,
        *,
        no_local: bool = False,
        owner: str | None = None,
        shared: bool = False,
        transient: bool = False,
    ) -> tuple[Subscription, Deferred[None] | None]:
        """Attach to (creating if needed) the durable subscription (client_id, name); also
        return the Deferred of its definition's write, if it was made now.

        ``/dsub/NAME`` attaches to an existing one (``no_local`` is then its own). Re-subscribing
        with another topic, selector or ``no_local`` replaces the subscription (its kept
        messages are dropped). ``owner`` is the subscriber's connection. ``shared``: several
        subscribers may attach and compete; ``transient`` (shared, not durable): stored
        nowhere, it goes with its last subscriber (``Broker.unsubscribe``).
        """
        existing = self.get(client_id, subscription_name)
        if existing is not None and existing.transient != transient and shared:
            kind = "a non-durable" if existing.transient else "a durable"
            raise DestinationError(
                f"shared subscription {subscription_name!r} is {kind} one: subscribe to it"
                + (" without durable:true" if existing.transient else " with durable:true")
            )
        durable, written = self._for_subscribe(
            destination, client_id, subscription_name, selector, no_local, transient
        )
        if shared:
            durable.shared = True
        if durable.attached and not durable.shared:
            raise DestinationError(in_use(durable.subscription_name))
        subscription = attach(
            durable,
            consumer,
            subscription_id,
            ack_mode,
            prefetch,
            key,
            start,
            None,
            False,
            owner=owner,
        )
        if durable.cluster_wide and not durable.shared:
            written = self._held(durable, written)
        return subscription, written

    def _held(
        self, durable: DurableSubscription, written: Deferred[None] | None
    ) -> Deferred[None] | None:
        """What a SUBSCRIBE to ``durable`` (cluster-wide, not shared) waits for: its node
        holding it for the cluster, once ``written`` (its definition, if new) is; fails with
        "in use" when another node's subscriber holds it."""
        shared = self._destinations.shared
        assert shared is not None
        key, name = durable.store_key, durable.subscription_name

        def granted(held: bool) -> None:
            if not held:
                raise DestinationError(in_use(name))

        def hold(_: object) -> Deferred[None] | None:
            if not durable.subscriptions:  # gone already: its give-up went before
                return None
            return shared.store.hold(key).addCallback(granted)

        if written is None:
            return hold(None)
        return written.addCallback(hold)

    def _for_subscribe(
        self,
        destination: str,
        client_id: str,
        subscription_name: str,
        selector: Selector | None,
        no_local: bool = False,
        transient: bool = False,
    ) -> tuple[DurableSubscription, Deferred[None] | None]:
        """The durable subscription a SUBSCRIBE to ``destination`` attaches to (made, or
        made anew, if needed), and the Deferred of its definition's write."""
        kind, name = parse_destination(destination)
        check_subscribe_name(kind, name, destination)
        if kind == "dsub":
            durable = self.get(client_id, name)
            if durable is None:
                raise DestinationError(f"no durable subscription named {name!r}")
            return durable, None
        if kind != "topic":
            raise DestinationError(
                f"durable subscriptions are for topics; {destination!r} is not a topic"
            )
        durable = self.get(client_id, subscription_name)
        if durable is not None and not durable.same_definition(name, selector, no_local):
            self.delete(client_id, subscription_name)  # refused while one is attached
        if transient and self.get(client_id, subscription_name) is None:
            durable = self._make(client_id, subscription_name, name, selector, no_local, True)
            return durable, None
        return self.declare(client_id, subscription_name, name, selector, no_local)

    def declare(
        self,
        client_id: str,
        subscription_name: str,
        pattern: str,
        selector: Selector | None,
        no_local: bool = False,
    ) -> tuple[DurableSubscription, Deferred[None] | None]:
        """Create a durable subscription to topic ``pattern`` if it does not exist; also return
        the Deferred of its definition's write (None: nothing written)."""
        durable = self.get(client_id, subscription_name)
        if durable is not None:
            return durable, None
        durable = self._make(client_id, subscription_name, pattern, selector, no_local)
        if self._store is None:
            return durable, None
        return durable, self._store.add_durable(_record(durable))

    def _make(
        self,
        client_id: str,
        subscription_name: str,
        pattern: str,
        selector: Selector | None,
        no_local: bool = False,
        transient: bool = False,
    ) -> DurableSubscription:
        destinations = self._destinations
        durable = DurableSubscription(
            client_id,
            subscription_name,
            pattern,
            selector,
            destinations.hooks,
            destinations.policies.for_destination(f"/topic/{pattern}"),
            no_local,
        )
        key = durable_store_key(client_id, subscription_name)
        shared = destinations.shared
        if transient:
            durable.shared = durable.transient = True
        elif shared is not None:
            durable.store_key = key
            durable.backlog = shared.backlog(durable)
            durable.cluster_wide = True
        elif self._store is not None:
            durable.attach_store(self._store, key)
        destinations.revive(durable)
        self._by_key[durable.key] = durable
        self.version += 1
        return durable

    def delete(
        self, client_id: str, subscription_name: str, holder: Subscription | None = None
    ) -> None:
        """Delete a durable subscription and what it kept.

        Raises DestinationError when there is none, or when a subscription other
        than ``holder`` is attached to it (in a cluster: on another node too, as this
        node's store last polled).
        """
        durable = self.get(client_id, subscription_name)
        if durable is None:
            raise DestinationError(f"no durable subscription named {subscription_name!r}")
        shared = self._destinations.shared
        if any(attached is not holder for attached in durable.subscriptions) or (
            durable.cluster_wide
            and shared is not None
            and shared.store.held_elsewhere(durable.store_key)
        ):
            raise DestinationError(in_use(subscription_name))
        dropped = self._remove(durable)
        if dropped:
            self._destinations.hooks.counters["dropped"] += len(dropped)
        if self._store is not None and not durable.transient:
            self._store.remove_durable(client_id, subscription_name)

    def _remove(self, durable: DurableSubscription, elsewhere: bool = False) -> list[Message]:
        """``durable`` goes, with its subscribers; what it held (ended). ``elsewhere``: it
        was deleted by another node, whose delete took its rows (its subscribers here gave
        back what they held first)."""
        for attached in list(durable.subscriptions):
            self._detach(attached)
        if elsewhere:
            durable.backlog = MEMORY
        del self._by_key[durable.key]
        self.version += 1
        return end(durable, self._destinations.statistics)

    def recover(self, records: tuple[DurableRecord, ...]) -> None:
        """At start: the stored definitions come back."""
        for record in records:
            if self.get(record.client_id, record.name) is None:
                self._recovered(record)

    def _recovered(self, record: DurableRecord) -> DurableSubscription:
        selector = compile_selector(record.selector) if record.selector else None
        return self._make(record.client_id, record.name, record.pattern, selector, record.no_local)

    def follow(self, records: tuple[DurableRecord, ...]) -> None:
        """The cluster's definitions now (another node made, changed or deleted one): those
        made elsewhere are made here, those gone (or changed) elsewhere are forgotten here
        (their rows went with the deleting node's ``delete``). One deleted elsewhere that a
        subscriber here attached to since (before this node heard of the deletion) is defined
        again, for the cluster; one changed elsewhere detaches its subscribers here."""
        defined = {(record.client_id, record.name): record for record in records}
        for key, durable in list(self._by_key.items()):
            record = defined.get(key)
            if not durable.cluster_wide or (record is not None and _same(durable, record)):
                continue
            if record is None and durable.subscriptions and self._store is not None:
                self._store.add_durable(_record(durable))
                continue
            self._forget(durable)
        for key, record in defined.items():
            if key not in self._by_key:
                self._recovered(record)

    def _forget(self, durable: DurableSubscription) -> None:
        """``durable`` was deleted by another node: it goes here, and its subscribers."""
        self._remove(durable, elsewhere=True)

    def set_policies(self) -> None:
        """The destinations' policies changed: take ours from them."""
        policies = self._destinations.policies
        for durable in self._by_key.values():
            durable.policy = policies.for_destination(durable.address)


def in_use(name: str) -> str:
    """The refusal of a second subscriber of durable subscription ``name``."""
    return f"durable subscription {name!r} is in use by another connection"


def _record(durable: DurableSubscription) -> DurableRecord:
    """``durable``'s definition, as stored."""
    selector = durable.filter.text if durable.filter is not None else None
    client_id, name = durable.key
    return DurableRecord(client_id, name, durable.pattern, selector, durable.no_local)


def _same(durable: DurableSubscription, record: DurableRecord) -> bool:
    """Whether ``record`` defines ``durable`` as it is."""
    return _record(durable) == record


def durable_store_key(client_id: str, subscription_name: str) -> str:
    """The store's name for a durable subscription's queue."""
    return "durable:" + json.dumps([client_id, subscription_name], ensure_ascii=False)

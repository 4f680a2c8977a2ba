"""The broker's durable subscriptions: declared, attached to, deleted (``broker.durables``)."""

from __future__ import annotations

import json

from ._broker_parts import BrokerParts
from ._durable import DurableSubscription
from ._names import DestinationError, check_subscribe_name, parse_destination
from ._store import DurableRecord
from ._subscription import Consumer, Selector, Subscription, attach


class DurableSubscriptions(BrokerParts):
    """Broker mixin: the lifecycle of durable subscriptions."""

    def subscribe_durable(
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
    ) -> Subscription:
        """Attach to (creating if needed) the durable subscription (client_id, name).

        ``/dsub/NAME`` attaches to an existing one. Re-subscribing with another
        topic or selector replaces the subscription (its kept messages are dropped).
        """
        kind, name = parse_destination(destination)
        check_subscribe_name(kind, name, destination)
        durable_key = (client_id, subscription_name)
        durable = self.durables.get(durable_key)
        if kind == "dsub":
            durable = self.durables.get((client_id, name))
            if durable is None:
                raise DestinationError(f"no durable subscription named {name!r}")
        elif kind != "topic":
            raise DestinationError(
                f"durable subscriptions are for topics; {destination!r} is not a topic"
            )
        elif durable is not None and not durable.same_definition(name, selector):
            self.delete_durable(client_id, subscription_name)  # refused while one is attached
            durable = None
        if durable is None:
            durable = self.declare_durable(client_id, subscription_name, name, selector)
        if durable.attached:
            raise DestinationError(
                f"durable subscription {durable.subscription_name!r} is in use by another"
                " connection"
            )
        return attach(
            durable, consumer, subscription_id, ack_mode, prefetch, key, start, None, False
        )

    def declare_durable(
        self, client_id: str, subscription_name: str, pattern: str, selector: Selector | None
    ) -> DurableSubscription:
        """Create a durable subscription to topic ``pattern`` if it does not exist."""
        durable = self.durables.get((client_id, subscription_name))
        if durable is None:
            durable = self._durable(client_id, subscription_name, pattern, selector)
            if self.store is not None:
                text = selector.text if selector is not None else None
                record = DurableRecord(client_id, subscription_name, pattern, text)
                self.store.add_durable(record)
        return durable

    def _durable(
        self, client_id: str, subscription_name: str, pattern: str, selector: Selector | None
    ) -> DurableSubscription:
        address = f"/topic/{pattern}"
        durable = DurableSubscription(
            client_id,
            subscription_name,
            pattern,
            selector,
            self,
            self.policies.for_destination(address),
        )
        if self.store is not None:
            durable.attach_store(self.store, durable_store_key(client_id, subscription_name))
        self._revive(durable)
        self.durables[durable.key] = durable
        self._fanout.clear()
        return durable

    def delete_durable(
        self, client_id: str, subscription_name: str, holder: Subscription | None = None
    ) -> None:
        """Delete a durable subscription and what it kept.

        Raises DestinationError when there is none, or when a subscription other
        than ``holder`` is attached to it.
        """
        durable = self.durables.get((client_id, subscription_name))
        if durable is None:
            raise DestinationError(f"no durable subscription named {subscription_name!r}")
        for attached in list(durable.subscriptions):
            if attached is not holder:
                raise DestinationError(
                    f"durable subscription {subscription_name!r} is in use by another connection"
                )
            self.unsubscribe(attached)
        dropped = durable.close()
        if dropped:
            self.counters["dropped"] += len(dropped)
        del self.durables[durable.key]
        self.statistics.drop(durable.counted())
        self._fanout.clear()
        if self.store is not None:
            self.store.drop(durable.store_key)
            self.store.remove_durable(client_id, subscription_name)


def durable_store_key(client_id: str, subscription_name: str) -> str:
    """The store's name for a durable subscription's queue."""
    return "durable:" + json.dumps([client_id, subscription_name], ensure_ascii=False)

"""Subscriptions: one consumer's attachment to one destination.

A subscription in ``auto`` ack mode considers a message done once handed to its
consumer. In ``client`` and ``client-individual`` modes each handed message is
*unacknowledged* (kept in ``unacked``, in delivery order) until ACK or NACK;
at most ``prefetch`` may be unacknowledged at once. A subscription whose consumer
cannot take more (its connection's send buffer is full) is ``paused``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from twisted.internet.task import Clock as FakeClock

from ._message import Message, MessageBuffer
from ._stats import DestinationStats

if TYPE_CHECKING:
    from ._destination import Destination

ACK_MODES = ("auto", "client", "client-individual")

#: Unacknowledged messages allowed in flight per client-ack subscription, by default.
DEFAULT_PREFETCH = 1000


class Selector(Protocol):
    """A compiled message selector."""

    text: str

    def matches(self, headers: Mapping[str, str]) -> bool: ...


def selector_view(message: Message) -> dict[str, str]:
    """The headers a selector sees: the producer's, and the broker's own."""
    view = dict(message.headers)
    view["message-id"] = message.message_id
    view["destination"] = message.destination
    view["persistent"] = "true" if message.persistent else "false"
    view.setdefault("priority", str(message.priority))
    return view


class Consumer(Protocol):
    """What the broker hands messages to (a STOMP session implements it)."""

    def deliver(self, subscription: Subscription, message: Message) -> None:
        """Send one message to the client for ``subscription``."""

    def abandon(self, subscription: Subscription, reason: str) -> None:
        """The broker gives up on this consumer (it reads too slowly): end it, saying why."""


class Subscription:
    """One consumer attached to one destination."""

    __slots__ = (
        "ack_mode",
        "auto",
        "closed",
        "consumer",
        "cumulative",
        "delivered",
        "destination",
        "exclusive",
        "handed",
        "id",
        "key",
        "no_local",
        "owner",
        "paused",
        "pending",
        "prefetch",
        "selector",
        "stats",
        "target",
        "unacked",
    )

    def __init__(
        self,
        consumer: Consumer,
        subscription_id: str,
        destination: str,
        ack_mode: str = "auto",
        prefetch: int = DEFAULT_PREFETCH,
        key: int = 0,
        selector: Selector | None = None,
        exclusive: bool = False,
        *,
        no_local: bool = False,
        owner: str | None = None,
    ) -> None:
        if ack_mode not in ACK_MODES:
            raise ValueError(f"unknown ack mode {ack_mode!r}")
        self.consumer = consumer
        self.id = subscription_id
        #: A small number unique within the consumer, for the consumer's use.
        self.key = key
        self.destination = destination
        self.target: Destination | None = None
        self.ack_mode = ack_mode
        self.auto = ack_mode == "auto"
        self.cumulative = ack_mode == "client"
        self.prefetch = prefetch
        self.unacked: dict[str, Message] = {}
        self.paused = False
        #: Messages waiting for this subscription alone (topic subscriptions).
        self.pending: MessageBuffer | None = None
        self.closed = False
        self.selector = selector
        self.exclusive = exclusive
        #: No-local: never given a message sent by ``owner``, its consumer's connection.
        self.no_local = no_local
        self.owner = owner
        #: The statistics of the destination it is attached to (set by ``Destination.add``),
        #: and the deliveries not yet added to them.
        self.stats = _UNATTACHED
        self.delivered = 0
        #: When each timed message awaiting acknowledgement was handed over (see ``_stats``).
        self.handed: dict[str, float] | None = None

    def accepts(self, message: Message) -> bool:
        """Whether the subscription's selector (if any) lets ``message`` through."""
        selector = self.selector
        return selector is None or selector.matches(selector_view(message))

    def ready(self) -> bool:
        """Whether the consumer can take one more message now."""
        return not self.paused and (self.auto or len(self.unacked) < self.prefetch)

    def send(self, message: Message) -> None:
        """Hand ``message`` to the consumer, remembering it until acknowledged."""
        self.delivered += 1
        if message.born:
            self.stats.sampled(self, message)
        if not self.auto:
            self.unacked[message.message_id] = message
        self.consumer.deliver(self, message)

    def settle(self, message_id: str) -> list[Message] | None:
        """Remove what an ACK or NACK of ``message_id`` covers; None if not unacknowledged.

        In ``client`` mode that is every message delivered up to and including it
        (cumulative); otherwise that message alone.
        """
        unacked = self.unacked
        if message_id not in unacked:
            return None
        if not self.cumulative:
            return [unacked.pop(message_id)]
        settled = []
        for key in list(unacked):
            settled.append(unacked.pop(key))
            if key == message_id:
                break
        return settled

    def take_unacked(self) -> list[Message]:
        """Remove and return every unacknowledged message, in delivery order."""
        messages = list(self.unacked.values())
        self.unacked.clear()
        self.handed = None
        return messages

    def __repr__(self) -> str:
        return f"<Subscription {self.id!r} to {self.destination} ({self.ack_mode})>"


def attach(
    target: Destination,
    consumer: Consumer,
    subscription_id: str,
    ack_mode: str,
    prefetch: int | None,
    key: int,
    start: bool,
    selector: Selector | None,
    exclusive: bool,
    *,
    no_local: bool = False,
    owner: str | None = None,
) -> Subscription:
    """A new subscription of ``consumer`` to ``target`` (``prefetch`` None: the target's
    policy's), attached; with ``start``, waiting messages start flowing at once.

    ``owner`` is the consumer's connection; with ``no_local`` the subscription gets no
    message that connection sends (topics and durable subscriptions only)."""
    subscription = Subscription(
        consumer,
        subscription_id,
        target.address,
        ack_mode,
        prefetch if prefetch is not None else target.policy.prefetch,
        key,
        selector,
        exclusive,
        no_local=no_local,
        owner=owner,
    )
    target.add(subscription)
    if start:
        target.wake(subscription)
    return subscription


#: The statistics of a subscription not attached to a destination yet.
_UNATTACHED = DestinationStats(FakeClock())

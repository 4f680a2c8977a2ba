"""A connection's subscriptions: SUBSCRIBE and UNSUBSCRIBE in every broker's spelling.

Durable topic subscriptions are named by any of (COMPAT.md)::

    activemq.subscriptionName:S            ActiveMQ Classic (with CONNECT client-id)
    durable-subscription-name:S            ActiveMQ Artemis (also durable-subscriber-name)
    durable:true | persistent:true, id:S   RabbitMQ (x-queue-name overrides S), Apollo
    destination:/dsub/S                    Apollo: attach to an existing one

and identified by (CONNECT client-id or "", S). On UNSUBSCRIBE the same headers
delete the durable subscription; without them UNSUBSCRIBE only detaches.

No-local (a topic subscriber gets nothing its own connection sends) is spelled::

    activemq.noLocal:true                  ActiveMQ Classic
    no-local:true                          ActiveMQ Artemis, Apollo

``true`` or ``false`` (any case); anything else is an ERROR naming the header. On a
queue it is ignored, as ActiveMQ does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from stompbroker.core import (
    ACK_MODES,
    Broker,
    DestinationError,
    DurableSubscription,
    Message,
    Selector,
    Subscription,
    compile_selector,
)
from stompbroker.core import SelectorError as _SelectorError

from . import _wire
from ._errors import ClientError, required

log = Logger(namespace="stompbroker.session")

if TYPE_CHECKING:
    from ._session import StompSession

#: Headers that carry a subscription's prefetch, by broker dialect.
PREFETCH_HEADERS = ("activemq.prefetchSize", "prefetch-count")
#: Headers that ask for no-local, by broker dialect.
NO_LOCAL_HEADERS = ("activemq.noLocal", "no-local")
#: Headers that name a durable subscription outright.
DURABLE_NAME_HEADERS = (
    "activemq.subscriptionName",
    "durable-subscription-name",
    "durable-subscriber-name",
)


def flag(value: str | None) -> bool:
    """A header that means yes when it says ``true`` (any case)."""
    return value is not None and value.strip().lower() == "true"


def no_local(headers: dict[str, str]) -> bool:
    """Whether a SUBSCRIBE asks for no-local; ClientError for a value not true or false."""
    wanted = False
    for name in NO_LOCAL_HEADERS:
        raw = headers.get(name)
        if raw is None:
            continue
        value = raw.strip().lower()
        if value not in ("true", "false"):
            raise ClientError(f"invalid {name}", f"expected true or false, got {raw[:40]!r}")
        wanted = wanted or value == "true"
    return wanted


def explicit_durable_name(headers: dict[str, str]) -> str | None:
    """The durable subscription named outright (ActiveMQ, Artemis spellings), if any."""
    for name in DURABLE_NAME_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def durable_flag(headers: dict[str, str]) -> bool:
    """RabbitMQ's and Apollo's ``durable:true`` / ``persistent:true``."""
    return flag(headers.get("durable")) or flag(headers.get("persistent"))


def durable_name(headers: dict[str, str], subscription_id: str, destination: str) -> str | None:
    """The durable subscription a SUBSCRIBE names, if any.

    The flag spellings count on topics only: on a queue, RabbitMQ clients send
    them as queue properties, and they mean nothing more here.
    """
    explicit = explicit_durable_name(headers)
    if explicit is not None:
        return explicit
    if durable_flag(headers) and destination.startswith("/topic/"):
        return headers.get("x-queue-name") or subscription_id
    return None


def shared_name(headers: dict[str, str], destination: str) -> str | None:
    """RabbitMQ's ``x-queue-name`` on a topic SUBSCRIBE: the shared subscription it names
    (None: none); ClientError when it is empty."""
    name = headers.get("x-queue-name")
    if name is None or not destination.startswith("/topic/"):
        return None
    if not name:
        raise ClientError("invalid x-queue-name", "expected a non-empty queue name")
    return name


class Subscriptions:
    """The subscriptions of one session, by id and by key."""

    def __init__(self, session: StompSession) -> None:
        self.session = session
        self.broker: Broker = session.broker
        self.by_id: dict[str, Subscription] = {}
        self.by_key: dict[int, Subscription] = {}
        #: The start of every MESSAGE frame, by subscription key.
        self.heads: dict[int, bytes] = {}
        #: Ids of finished browsing subscriptions (UNSUBSCRIBE of them is fine).
        self.browsers: set[str] = set()
        #: The destination each SUBSCRIBE named, by subscription id (``revoked`` checks it).
        self.named: dict[str, str] = {}
        self._keys = itertools.count(1)

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self.by_id.values()))

    def subscribe(
        self, headers: dict[str, str], version: str
    ) -> tuple[Callable[[], None], Deferred[None] | None]:
        """Handle SUBSCRIBE; returns what starts delivery (to call after the RECEIPT), and
        what the RECEIPT waits for (a new durable subscription's definition being written)."""
        destination, subscription_id = self._new_subscription(headers, version)
        browse = flag(headers.get("browser"))
        self.session.guard.check_subscribe(destination, self.session.client_id, browse)
        ack_mode = headers.get("ack", "auto")
        if ack_mode not in ACK_MODES:
            raise ClientError(
                "invalid ack mode",
                f"ack must be one of {', '.join(ACK_MODES)}; got {ack_mode[:40]!r}",
            )
        selector = _selector(headers.get("selector"))
        if browse:
            return self._browse(subscription_id, destination, selector), None
        try:
            subscription, written = self._attach(
                headers, subscription_id, destination, ack_mode, selector
            )
        except DestinationError as exc:
            raise ClientError(str(exc)) from None
        self._add(subscription)
        self.named[subscription.id] = destination
        return (lambda: self._start(subscription)), written

    def _attach(
        self,
        headers: dict[str, str],
        subscription_id: str,
        destination: str,
        ack_mode: str,
        selector: Selector | None,
    ) -> tuple[Subscription, Deferred[None] | None]:
        """The broker's subscription for a SUBSCRIBE (durable or not), not yet started."""
        prefetch = _prefetch(headers)
        local = no_local(headers)
        key = next(self._keys)
        session = self.session
        durable = durable_name(headers, subscription_id, destination)
        shared = shared_name(headers, destination)
        transient = shared is not None and durable is None
        if transient:
            durable = shared
        if durable is not None or destination.startswith("/dsub/"):
            return self.broker.durables.subscribe(
                session,
                subscription_id,
                destination,
                session.client_id,
                durable or "",
                ack_mode,
                prefetch,
                key,
                start=False,
                selector=selector,
                no_local=local,
                owner=session.session_id,
                shared=shared is not None,
                transient=transient,
            )
        subscription = self.broker.subscribe(
            session,
            subscription_id,
            destination,
            ack_mode,
            prefetch,
            key,
            start=False,
            owner=session.session_id,
            selector=selector,
            exclusive=flag(headers.get("activemq.exclusive")),
            no_local=local,
        )
        return subscription, None

    def _new_subscription(self, headers: dict[str, str], version: str) -> tuple[str, str]:
        """The destination and id of a SUBSCRIBE; ClientError if the id is taken or no
        subscription fits."""
        destination = required(headers, "destination", "SUBSCRIBE")
        if version == "1.0":
            subscription_id = headers.get("id", destination)
        else:
            subscription_id = required(headers, "id", "SUBSCRIBE")
        if subscription_id in self.by_id or subscription_id in self.browsers:
            raise ClientError(
                "duplicate subscription id",
                f"subscription {subscription_id!r} already exists on this connection",
            )
        self._check_room()
        return destination, subscription_id

    def _check_room(self) -> None:
        """ClientError if the connection holds as many subscriptions as it may."""
        limit = self.session.settings.max_subscriptions
        if len(self.by_id) + len(self.browsers) >= limit:
            raise ClientError(
                "too many subscriptions",
                f"the limit is {limit} subscriptions on one connection (limits.max_subscriptions)",
            )

    def _add(self, subscription: Subscription) -> None:
        self.by_id[subscription.id] = subscription
        self.by_key[subscription.key] = subscription
        self.heads[subscription.key] = _wire.message_head(subscription.id, self.session.escaping)

    def _start(self, subscription: Subscription) -> None:
        if subscription.closed:
            return
        if self.session.paused:
            self.broker.pause(subscription)
        else:
            self.broker.resume(subscription)

    def subscribe_reply_queue(self, destination: str) -> None:
        """RabbitMQ's implicit subscription when a SEND names its own temp queue in reply-to."""
        if destination in self.by_id:
            return
        self._check_room()
        key = next(self._keys)
        session = self.session
        subscription = self.broker.subscribe(
            session, destination, destination, "auto", None, key, False, owner=session.session_id
        )
        self._add(subscription)
        self._start(subscription)

    def owns_subscription_to(self, address: str) -> bool:
        """Whether one of our subscriptions consumes from ``address``."""
        return any(s.destination == address for s in self.by_id.values())

    def _browse(
        self, subscription_id: str, destination: str, selector: Selector | None
    ) -> Callable[[], None]:
        try:
            found = self.broker.browse(destination, selector, self.session.session_id)
        except DestinationError as exc:
            raise ClientError(str(exc)) from None
        self.browsers.add(subscription_id)

        def write(messages: list[Message]) -> None:
            session = self.session
            if session.closed:
                return
            head = _wire.message_head(subscription_id, session.escaping)
            for message in messages:
                session.write_message(head, message)
            session.write(_wire.browse_end(subscription_id, destination, session.escaping))

        def failed(failure: Failure) -> None:
            log.failure("browsing {destination} failed", failure, destination=destination)
            write([])

        def send() -> None:
            found.addCallbacks(write, failed)

        return send

    def unsubscribe(self, headers: dict[str, str], version: str) -> None:
        """Handle UNSUBSCRIBE: detach, and delete a durable subscription if it says so.

        Nothing changes when it fails (the ERROR closes the connection, which then
        detaches everything as usual).
        """
        subscription_id = headers.get("id")
        if subscription_id is None and version == "1.0":
            subscription_id = headers.get("destination")
        if subscription_id is not None and subscription_id in self.browsers:
            self.browsers.discard(subscription_id)
            return
        subscription = self.by_id.get(subscription_id) if subscription_id is not None else None
        durable = self._durable_to_delete(headers, subscription, subscription_id)
        if subscription is None and durable is None:
            if subscription_id is None:
                raise ClientError("missing header 'id'", "UNSUBSCRIBE needs the subscription's id")
            raise ClientError(
                "unknown subscription", f"no subscription {subscription_id!r} on this connection"
            )
        if durable is not None:
            holder = subscription
            if holder is not None and not _attached_to(holder, durable):
                holder = None
            try:
                self.broker.delete_durable(self.session.client_id, durable, holder)
            except DestinationError as exc:
                raise ClientError(str(exc)) from None
        if subscription is not None:
            del self.by_id[subscription.id]
            self.named.pop(subscription.id, None)
            del self.by_key[subscription.key]
            del self.heads[subscription.key]
            self.broker.unsubscribe(subscription)

    def _durable_to_delete(
        self,
        headers: dict[str, str],
        subscription: Subscription | None,
        subscription_id: str | None,
    ) -> str | None:
        """The durable subscription an UNSUBSCRIBE deletes, if it deletes one."""
        explicit = explicit_durable_name(headers)
        if explicit is not None:
            return explicit
        if not durable_flag(headers):
            return None
        if subscription is not None:
            target = subscription.target
            # The flag on a plain subscription's UNSUBSCRIBE only detaches it.
            return target.subscription_name if isinstance(target, DurableSubscription) else None
        return headers.get("x-queue-name") or subscription_id

    def find_delivery(self, headers: dict[str, str], command: str) -> tuple[Subscription, str]:
        """The subscription and message id an ACK or NACK names; ClientError if none."""
        ack_id = headers.get("id")
        subscription: Subscription | None = None
        if ack_id is not None and "@" in ack_id:
            message_id, _, key = ack_id.rpartition("@")
            subscription = self.by_key.get(int(key)) if _digits(key) else None
        else:
            message_id = headers.get("message-id") or ack_id or ""
            if not message_id:
                needed = "id" if self.session.version == "1.2" else "message-id"
                raise ClientError(f"missing header '{needed}'", f"{command} needs '{needed}'")
            subscription_id = headers.get("subscription")
            if subscription_id is not None:
                subscription = self.by_id.get(subscription_id)
            else:
                subscription = next(
                    (s for s in self.by_id.values() if message_id in s.unacked), None
                )
        if subscription is None or message_id not in subscription.unacked:
            raise ClientError(
                "unknown message",
                f"{command}: message {message_id!r} is not awaiting acknowledgement"
                " on this connection",
            )
        return subscription, message_id

    def revoked(self) -> tuple[str, str] | None:
        """The ERROR (message, detail) for the first subscription the rules no longer
        allow (SUBSCRIBE's read check, run again after a reload); None if all are."""
        guard, client_id = self.session.guard, self.session.client_id
        for destination in self.named.values():
            why = guard.read_revoked(destination, client_id)
            if why is not None:
                return why
        return None

    def pause_all(self) -> None:
        """Hand us nothing more for now."""
        for subscription in self.by_id.values():
            self.broker.pause(subscription)

    def resume_all(self) -> None:
        """Messages may flow again (stops early if a delivery pauses us again)."""
        for subscription in list(self.by_id.values()):
            if self.session.paused or self.session.closed:
                break
            self.broker.resume(subscription)

    def release(self) -> None:
        """Detach everything: pause all first, so that what one gives back is not
        handed to another of ours."""
        subscriptions = list(self.by_id.values())
        self.by_id.clear()
        self.named.clear()
        self.by_key.clear()
        for subscription in subscriptions:
            self.broker.pause(subscription)
        for subscription in subscriptions:
            self.broker.unsubscribe(subscription)


def _prefetch(headers: dict[str, str]) -> int | None:
    for name in PREFETCH_HEADERS:
        raw = headers.get(name)
        if raw is not None:
            if not _digits(raw) or int(raw) < 1:
                raise ClientError(
                    f"invalid {name}", f"expected a positive integer, got {raw[:40]!r}"
                )
            return int(raw)
    return None


def _digits(text: str) -> bool:
    """Whether ``text`` is a decimal number ``int()`` reads (``isdigit`` alone takes "²")."""
    return text.isascii() and text.isdigit()


def _selector(text: str | None) -> Selector | None:
    if text is None or not text.strip():
        return None
    try:
        return compile_selector(text)
    except _SelectorError as exc:
        raise ClientError("invalid selector", str(exc)) from None


def _attached_to(subscription: Subscription, durable_name: str) -> bool:
    target = subscription.target
    return isinstance(target, DurableSubscription) and target.subscription_name == durable_name

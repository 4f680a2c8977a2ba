"""Transactions: a unit of work of sends and settlements, applied at once or not at all.

* ``send`` stages a message, checked as the send itself would be (a bad destination or
  header is refused when staged); ``acknowledge`` and ``refuse`` stage the settlement of a
  delivered message (an ACK, a NACK). Steps keep their order.
* ``commit`` checks every staged send again (what was fine when staged may not be now: a
  temporary destination's owner left), then applies every step in order within one reactor
  turn, so that the store writes them in one batch. It returns what to wait for: a Deferred
  that fires once every persistent message among them is as safe as it will be (None: they
  are). A settlement whose message is no longer awaiting acknowledgement (its subscription
  ended) is skipped.
* ``abort`` drops the staged sends, and gives back (for redelivery) the messages whose
  settlement it drops, as a NACK would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, gatherResults

from ._subscription import Subscription

if TYPE_CHECKING:
    from ._broker import Broker


class _Send:
    """A staged message."""

    __slots__ = ("body", "destination", "headers", "persistent", "user")

    def __init__(
        self,
        destination: str,
        headers: Mapping[str, str],
        body: bytes,
        persistent: bool | None,
        user: str | None,
    ) -> None:
        self.destination = destination
        self.headers = headers
        self.body = body
        self.persistent = persistent
        self.user = user


class _Settle:
    """A staged ACK (``ack``) or NACK (``requeue`` false: to the dead-letter queue)."""

    __slots__ = ("ack", "message_id", "requeue", "subscription")

    def __init__(self, subscription: Subscription, message_id: str, ack: bool, requeue: bool):
        self.subscription = subscription
        self.message_id = message_id
        self.ack = ack
        self.requeue = requeue

    def pending(self) -> bool:
        """Whether the message still awaits its settlement."""
        return not self.subscription.closed and self.message_id in self.subscription.unacked


class Transaction:
    """Sends and settlements of the session ``owner``, staged until committed or aborted."""

    def __init__(self, broker: Broker, owner: str | None) -> None:
        self._broker = broker
        self._owner = owner
        self._steps: list[_Send | _Settle] = []

    def __len__(self) -> int:
        return len(self._steps)

    def send(
        self,
        destination: str,
        headers: Mapping[str, str],
        body: bytes,
        persistent: bool | None = None,
        user: str | None = None,
    ) -> None:
        """Stage a message from ``user`` (a composite send is one step); raises what sending
        it would (bad destination or header)."""
        self._broker.router.check(destination, headers, self._owner)
        self._steps.append(_Send(destination, headers, body, persistent, user))

    def acknowledge(self, subscription: Subscription, message_id: str) -> None:
        """Stage an ACK of ``message_id`` (cumulative in ``client`` mode)."""
        self._steps.append(_Settle(subscription, message_id, True, True))

    def refuse(self, subscription: Subscription, message_id: str, requeue: bool = True) -> None:
        """Stage a NACK of ``message_id``."""
        self._steps.append(_Settle(subscription, message_id, False, requeue))

    def commit(self) -> Deferred[None] | None:
        """Apply every step in order; return what durability to wait for."""
        steps, self._steps = self._steps, []
        router, owner = self._broker.router, self._owner
        for step in steps:
            if isinstance(step, _Send):
                router.check(step.destination, step.headers, owner)
        waiting: list[Deferred[None]] = []
        for step in steps:
            if isinstance(step, _Send):
                routes = router.routes(step.destination, owner)
                written = router.send_all(
                    routes, step.headers, step.body, step.persistent, owner, step.user, False
                ).written
                if written is not None:
                    waiting.append(written)
            elif step.pending():
                self._settle(step)
        if not waiting:
            return None
        return gatherResults(waiting, consumeErrors=True).addCallback(lambda _: None)

    def _settle(self, step: _Settle) -> None:
        if step.ack:
            self._broker.ack(step.subscription, step.message_id)
        else:
            self._broker.nack(step.subscription, step.message_id, step.requeue)

    def abort(self) -> None:
        """Drop the steps; messages whose settlement is dropped are given back."""
        steps, self._steps = self._steps, []
        for step in steps:
            if isinstance(step, _Settle) and step.pending():
                self._broker.nack(step.subscription, step.message_id)

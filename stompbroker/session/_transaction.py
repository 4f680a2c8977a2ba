"""Transactions: frames staged under a name until COMMIT applies them or ABORT drops them.

* SEND, ACK and NACK frames carrying ``transaction`` are staged in arrival order;
  a staged SEND's destination is checked when it is staged.
* COMMIT applies them in order. What it returns fires once every persistent
  message among them is durable; the COMMIT's RECEIPT waits for it.
* ABORT drops the staged SENDs, and gives back (for redelivery) the messages
  whose ACK or NACK it drops, as a NACK would.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, gatherResults

from stompbroker.core import Broker, Subscription, parse_destination

_Send = tuple[str, dict[str, str], bytes, "bool | None"]
_Settle = tuple[Subscription, str, bool]


class Transaction:
    """The frames staged under one transaction name."""

    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self._staged: list[_Send | _Settle] = []

    def __len__(self) -> int:
        return len(self._staged)

    def stage_send(
        self, destination: str, headers: dict[str, str], body: bytes, persistent: bool | None
    ) -> None:
        """Stage a SEND; raises DestinationError for a destination we cannot serve."""
        parse_destination(destination)
        self._staged.append((destination, headers, body, persistent))

    def stage_settle(self, subscription: Subscription, message_id: str, ack: bool) -> None:
        """Stage an ACK (``ack``) or a NACK."""
        self._staged.append((subscription, message_id, ack))

    def commit(self) -> Deferred[None] | None:
        """Apply every staged frame in order; return what durability to wait for."""
        waiting: list[Deferred[None]] = []
        broker = self.broker
        staged, self._staged = self._staged, []
        for step in staged:
            if len(step) == 4:
                result = broker.send(*step)
                if result is not None:
                    waiting.append(result)
            else:
                subscription, message_id, ack = step
                if not subscription.closed and message_id in subscription.unacked:
                    (broker.ack if ack else broker.nack)(subscription, message_id)
        if not waiting:
            return None
        done: Deferred[None] = gatherResults(waiting, consumeErrors=True).addCallback(
            lambda _: None
        )
        return done

    def abort(self) -> None:
        """Drop the staged frames; messages whose ACK or NACK is dropped are given back."""
        staged, self._staged = self._staged, []
        for step in staged:
            if len(step) == 3:
                subscription, message_id, _ = step
                if not subscription.closed and message_id in subscription.unacked:
                    self.broker.nack(subscription, message_id)

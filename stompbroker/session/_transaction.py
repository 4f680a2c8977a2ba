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

from stompbroker.core import Broker, Subscription

_Send = tuple[str, dict[str, str], bytes, "bool | None", "str | None"]
_Settle = tuple[Subscription, str, bool, bool]


class Transaction:
    """The frames staged under one transaction name."""

    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.name = name
        self._staged: list[_Send | _Settle] = []

    def __len__(self) -> int:
        return len(self._staged)

    def stage_send(
        self,
        destination: str,
        headers: dict[str, str],
        body: bytes,
        persistent: bool | None,
        owner: str | None = None,
    ) -> None:
        """Stage a SEND; raises what the SEND itself would (bad destination or header)."""
        self.broker.check_send(destination, headers, owner)
        self._staged.append((destination, headers, body, persistent, owner))

    def stage_settle(
        self, subscription: Subscription, message_id: str, ack: bool, requeue: bool = True
    ) -> None:
        """Stage an ACK (``ack``) or a NACK (``requeue``: false sends it to the DLQ)."""
        self._staged.append((subscription, message_id, ack, requeue))

    def commit(self) -> Deferred[None] | None:
        """Apply every staged frame in order; return what durability to wait for."""
        waiting: list[Deferred[None]] = []
        broker = self.broker
        staged, self._staged = self._staged, []
        # All or nothing: what was fine when staged may not be now (a temp
        # destination's owner left), so check every SEND before applying any.
        for step in staged:
            if len(step) == 5:
                broker.check_send(step[0], step[1], step[4])
        for step in staged:
            if len(step) == 5:
                result = broker.send(*step)
                if result is not None:
                    waiting.append(result)
            else:
                subscription, message_id, ack, requeue = step
                if not subscription.closed and message_id in subscription.unacked:
                    if ack:
                        broker.ack(subscription, message_id)
                    else:
                        broker.nack(subscription, message_id, requeue)
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
            if len(step) == 4:
                subscription, message_id, _, _ = step
                if not subscription.closed and message_id in subscription.unacked:
                    self.broker.nack(subscription, message_id)

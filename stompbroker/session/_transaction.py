"""Transactions: frames staged under a name until COMMIT applies them or ABORT drops them.

* SEND, ACK and NACK frames carrying ``transaction`` are staged in arrival order;
  a staged SEND's destination is checked when it is staged.
* COMMIT applies them in order. What it returns fires once every persistent
  message among them is durable; the COMMIT's RECEIPT waits for it.
* ABORT drops the staged SENDs, and gives back (for redelivery) the messages
  whose ACK or NACK it drops, as a NACK would.
* A connection holds at most ``max_open`` open transactions, each of at most
  ``max_frames`` staged frames; the frame beyond either is the client's fault.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, gatherResults

from stompbroker.core import Broker, Subscription

from ._errors import ClientError

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
                result = broker.send(*step, admit=False)
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


class Transactions:
    """A connection's open transactions, by name, within the connection's limits."""

    def __init__(self, broker: Broker, max_open: int, max_frames: int) -> None:
        self.broker = broker
        self.max_open = max_open
        self.max_frames = max_frames
        self._open: dict[str, Transaction] = {}

    def __len__(self) -> int:
        return len(self._open)

    def begin(self, name: str) -> None:
        """Open transaction ``name``; ClientError if it is open or too many are."""
        if name in self._open:
            raise ClientError("transaction already begun", f"transaction {name!r} is already open")
        if len(self._open) >= self.max_open:
            raise ClientError(
                "too many transactions",
                f"the limit is {self.max_open} open transactions on one connection"
                " (limits.max_transactions)",
            )
        self._open[name] = Transaction(self.broker, name)

    def find(self, name: str) -> Transaction:
        """The open transaction ``name``; ClientError if there is none."""
        transaction = self._open.get(name)
        if transaction is None:
            raise ClientError(
                "unknown transaction", f"transaction {name!r} was not begun on this connection"
            )
        return transaction

    def staging(self, name: str) -> Transaction:
        """The open transaction ``name``, with room for one more frame; else ClientError."""
        transaction = self.find(name)
        if len(transaction) >= self.max_frames:
            raise ClientError(
                "transaction too large",
                f"transaction {name!r} reached the limit of {self.max_frames} frames"
                " (limits.max_frames_per_transaction)",
            )
        return transaction

    def take(self, name: str) -> Transaction:
        """Remove and return the open transaction ``name`` (to commit or abort it)."""
        transaction = self.find(name)
        del self._open[name]
        return transaction

    def abort_all(self) -> None:
        """Abort every open transaction (the connection ended)."""
        open_, self._open = self._open, {}
        for transaction in open_.values():
            transaction.abort()

"""A connection's transactions: BEGIN, COMMIT and ABORT frames mapped onto the core's units of
work (``core.Transaction``), by name, within the connection's limits.

* BEGIN opens a transaction under a name; SEND, ACK and NACK frames carrying
  ``transaction`` are staged in it, in arrival order; COMMIT applies it (its RECEIPT waits
  for what the commit returns), ABORT drops it. What staging, committing and aborting mean
  is the core's (``core/_transaction.py``).
* A connection holds at most ``max_open`` open transactions, each of at most
  ``max_frames`` staged frames; the frame beyond either is the client's fault.
"""

from __future__ import annotations

from stompbroker.core import Broker, Transaction

from ._errors import ClientError


class Transactions:
    """A connection's open transactions, by name, within the connection's limits."""

    def __init__(self, broker: Broker, owner: str, max_open: int, max_frames: int) -> None:
        self.broker = broker
        self.owner = owner
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
        self._open[name] = self.broker.transaction(self.owner)

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

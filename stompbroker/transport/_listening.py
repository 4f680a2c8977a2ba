"""Listening ports: how many connections one reactor turn accepts.

Twisted's TCP port accepts up to ``numberAccepts`` connections each time its socket is
readable, and grows that number by 20 after every full batch, without a bound. Under a
flood of connections it may then accept thousands in one turn, before reading a byte from
any of them: a client whose CONNECT is already in its socket would be the oldest
connection "before CONNECT" by the time the broker reads it, and closed to make room
(see ``_tcp``). ``AcceptInBatches`` keeps every turn at ``ACCEPT_BATCH`` connections:
large enough to drain a full backlog in a few turns, small enough that a new connection's
first bytes are read before more than a couple of batches come in after it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

#: Connections a listener accepts per reactor turn (Twisted's starts at 100 and grows).
ACCEPT_BATCH = 256


class _Batched:
    """Mixed into a ``tcp.Port``'s class: every turn accepts up to ``accept_batch``."""

    accept_batch = ACCEPT_BATCH
    numberAccepts: int  # noqa: N815 (Twisted's name)

    def doRead(self) -> Any:  # noqa: N802 (Twisted's name)
        self.numberAccepts = self.accept_batch  # Twisted rescales it after each turn
        return super().doRead()  # type: ignore[misc]


_classes: dict[type, type] = {}


def accept_in_batches(port: Any, batch: int = ACCEPT_BATCH) -> Any:
    """Make ``port`` accept up to ``batch`` connections per turn (a ``tcp.Port``; else as is)."""
    if not isinstance(port, tcp.Port):
        return port
    base = type(port)
    if not issubclass(base, _Batched):
        if base not in _classes:
            _classes[base] = type(f"Batched{base.__name__}", (_Batched, base), {})
        port.__class__ = _classes[base]
    port.accept_batch = batch  # type: ignore[attr-defined]
    port.numberAccepts = batch
    return port


@implementer(IStreamServerEndpoint)
class AcceptInBatches:
    """An endpoint whose port accepts ``batch`` connections per turn (see the module)."""

    def __init__(self, endpoint: Any, batch: int = ACCEPT_BATCH) -> None:
        self.endpoint = endpoint
        self.batch = batch

    def listen(self, factory: IProtocolFactory) -> Deferred[Any]:
        listening: Deferred[Any] = self.endpoint.listen(factory)
        return listening.addCallback(accept_in_batches, self.batch)

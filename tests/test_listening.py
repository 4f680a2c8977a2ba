"""Listening ports accept a fixed batch of connections per reactor turn (no sockets opened)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.defer import succeed
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from stompbroker.transport import ACCEPT_BATCH, AcceptInBatches, accept_in_batches


def _batches(monkeypatch: pytest.MonkeyPatch, port: Any, turns: int) -> list[int]:
    """How many accepts each of ``turns`` reads of ``port`` tried (no connection waiting)."""
    tried: list[int] = []

    def accept(logger: Any, accepts: range, listener: Any, reserved: Any) -> Any:
        tried.append(len(accepts))
        return iter(())

    monkeypatch.setattr(tcp, "_accept", accept)
    port.socket = None
    for _ in range(turns):
        port.doRead()
    return tried


def test_twisteds_port_rescales_its_batch_after_each_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the batching a quiet turn shrinks the next batch to 1 (what this module fixes)."""
    port = tcp.Port(0, Factory(), reactor=MemoryReactor())
    port.numberAccepts = 100  # as startListening sets it
    assert _batches(monkeypatch, port, 2) == [100, 1]


def test_a_batched_port_tries_the_same_batch_every_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """accept_in_batches: every turn accepts up to the batch, whatever the last turn did."""
    port = accept_in_batches(tcp.Port(0, Factory(), reactor=MemoryReactor()), 7)
    assert isinstance(port, tcp.Port)
    assert _batches(monkeypatch, port, 3) == [7, 7, 7]
    again = accept_in_batches(port, 9)
    assert type(again) is type(port)
    assert _batches(monkeypatch, port, 1) == [9]


def test_the_endpoint_batches_the_port_it_listens_on() -> None:
    """AcceptInBatches hands the factory on and batches the port (ACCEPT_BATCH by default)."""
    port = tcp.Port(0, Factory(), reactor=MemoryReactor())
    factories: list[Any] = []

    class Endpoint:
        def listen(self, factory: Any) -> Any:
            factories.append(factory)
            return succeed(port)

    factory = Factory()
    listened = SynchronousTestCase().successResultOf(AcceptInBatches(Endpoint()).listen(factory))
    assert listened is port and factories == [factory]
    assert port.numberAccepts == ACCEPT_BATCH


def test_a_port_that_is_not_tcp_is_left_as_it_is() -> None:
    """A UNIX or in-memory port is returned unchanged."""
    other = object()
    assert accept_in_batches(other, 5) is other

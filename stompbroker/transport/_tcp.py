"""STOMP over a byte stream (TCP, TLS): a thin adapter from Twisted to a session."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from stompbroker.session import StompSession

#: Builds the session for a new connection: (transport, peer description) -> session.
SessionFactory = Callable[[ITransport, str], StompSession]


@implementer(IPushProducer)
class SessionProducer:
    """The transport's push producer: a full send buffer pauses the session's deliveries."""

    session: StompSession | None = None

    def pauseProducing(self) -> None:  # noqa: N802
        if self.session is not None:
            self.session.pause_delivery()

    def resumeProducing(self) -> None:  # noqa: N802
        if self.session is not None:
            self.session.resume_delivery()

    def stopProducing(self) -> None:  # noqa: N802
        pass


class StompProtocol(SessionProducer, Protocol):
    """Feeds received bytes to the session; tells it when the send buffer is full."""

    session: StompSession | None = None

    def __init__(self, make_session: SessionFactory) -> None:
        self._make_session = make_session

    def connectionMade(self) -> None:  # noqa: N802
        transport: Any = self.transport
        _set_nodelay(transport)
        peer = transport.getPeer()
        described = f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
        self.session = self._make_session(transport, described)
        transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        assert self.session is not None
        self.session.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.session is not None:
            self.session.connection_lost()


class StompFactory(Factory):
    """Makes a ``StompProtocol`` per accepted connection."""

    noisy = False

    def __init__(self, make_session: SessionFactory) -> None:
        self.make_session = make_session

    def buildProtocol(self, addr: Any) -> StompProtocol:  # noqa: N802
        protocol = StompProtocol(self.make_session)
        protocol.factory = self
        return protocol


def _set_nodelay(transport: Any) -> None:
    """Turn Nagle's algorithm off: replies must not wait ~40 ms for an ACK."""
    set_nodelay = getattr(transport, "setTcpNoDelay", None)
    if set_nodelay is not None:
        with contextlib.suppress(OSError):  # not a TCP socket (a UNIX socket, say)
            set_nodelay(True)

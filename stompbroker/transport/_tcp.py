"""STOMP over a byte stream (TCP, TLS): a thin adapter from Twisted to a session.

Every listener's connections are counted in one ``ConnectionLimiter`` (in total and
per peer host); a connection over a limit is refused as soon as it is made, before a
session exists for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IPushProducer, ISSLTransport, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from stompbroker.session import StompSession, refuse_connection

from ._connections import Connection, Connections, CountingTransport

#: Builds the session for a new connection: (transport, peer description) -> session.
SessionFactory = Callable[[ITransport, str], StompSession]


class TooManyConnections(Exception):
    """A new connection would pass a limit; ``str()`` says which, for the client."""


class ConnectionLimiter:
    """Counts open connections, in total and per peer host, across every listener."""

    def __init__(self, max_connections: int = 10_000, max_per_address: int = 1000) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        #: Connections admitted and not yet released.
        self.open = 0
        self._by_host: dict[str, int] = {}

    def admit(self, host: str | None) -> Callable[[], None]:
        """Count a connection from ``host``; return what releases it (call it once).

        Raises TooManyConnections over a limit. A peer without a host (a UNIX
        socket) counts toward the total only.
        """
        if self.open >= self.max_connections:
            raise TooManyConnections(
                f"the broker accepts at most {self.max_connections} connections"
            )
        if host is not None:
            count = self._by_host.get(host, 0)
            if count >= self.max_per_address:
                raise TooManyConnections(
                    f"the broker accepts at most {self.max_per_address} connections"
                    " from one address"
                )
            self._by_host[host] = count + 1
        self.open += 1
        return lambda: self._release(host)

    def from_host(self, host: str) -> int:
        """How many admitted connections come from ``host``."""
        return self._by_host.get(host, 0)

    def _release(self, host: str | None) -> None:
        self.open -= 1
        if host is not None:
            count = self._by_host.pop(host) - 1
            if count:
                self._by_host[host] = count


class Counted:
    """A protocol's place in its ``ConnectionLimiter``: taken when made, given back when lost."""

    limiter: ConnectionLimiter | None = None
    _release_place: Callable[[], None] | None = None

    def take_place(self, transport: Any) -> str | None:
        """Count this connection; None when admitted, else why it is refused."""
        if self.limiter is None:
            return None
        try:
            self._release_place = self.limiter.admit(getattr(transport.getPeer(), "host", None))
        except TooManyConnections as exc:
            return str(exc)
        return None

    def give_place_back(self) -> None:
        """Release this connection's place (once; nothing if it had none)."""
        release, self._release_place = self._release_place, None
        if release is not None:
            release()


@implementer(IPushProducer)
class SessionProducer:
    """The transport's push producer: a full send buffer pauses the session's deliveries."""

    session: StompSession | None = None

    def pauseProducing(self) -> None:  # noqa: N802
        if self.session is not None:
            self.session.pause_delivery()

    def resumeProducing(self) -> None:  # noqa: N802
        transport: Any = getattr(self, "transport", None)
        if transport is not None and transport.disconnecting:
            # Closing while paused: Twisted resumes the producer instead of closing,
            # then waits for it to unregister, forever. Let go, so the close goes on.
            transport.unregisterProducer()
            return
        if self.session is not None:
            self.session.resume_delivery()

    def stopProducing(self) -> None:  # noqa: N802
        pass


class StompProtocol(SessionProducer, Counted, Protocol):
    """Feeds received bytes to the session; tells it when the send buffer is full."""

    session: StompSession | None = None
    #: This connection in the listeners' registry (None without one).
    connection: Connection | None = None

    def __init__(
        self,
        make_session: SessionFactory,
        limiter: ConnectionLimiter | None = None,
        connections: Connections | None = None,
    ) -> None:
        self._make_session = make_session
        self.limiter = limiter
        self.connections = connections

    def connectionMade(self) -> None:  # noqa: N802
        transport: Any = self.transport
        described = describe_peer(transport)
        kind = "tls" if ISSLTransport.providedBy(transport) else "tcp"
        refusal = self.take_place(transport)
        if refusal is not None:
            if self.connections is not None:
                self.connections.refused(described, kind, refusal)
            refuse_connection(transport, "too many connections", refusal)
            return
        _set_nodelay(transport)
        connections = self.connections
        if connections is None:
            self.session = self._make_session(transport, described)
        else:
            output = CountingTransport(transport)
            self.session = self._make_session(output, described)  # type: ignore[arg-type]
            self.connection = connections.add(self.session, described, kind, output)
        transport.registerProducer(self, True)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        session = self.session
        if session is not None:  # None: refused, closing
            session.data_received(data)
            if self.connection is not None and self.connections is not None:
                self.connections.received(self.connection, len(data))

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self.give_place_back()
        if self.session is not None:
            if self.connection is not None and self.connections is not None:
                self.connections.ended(self.connection, reason)
            self.session.connection_lost()


class StompFactory(Factory):
    """Makes a ``StompProtocol`` per accepted connection."""

    noisy = False

    def __init__(
        self,
        make_session: SessionFactory,
        limiter: ConnectionLimiter | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.make_session = make_session
        #: Shared with the other listeners' factories; None: no limit.
        self.limiter = limiter
        #: The registry of open connections, shared likewise; None: not tracked.
        self.connections = connections

    def buildProtocol(self, addr: Any) -> StompProtocol:  # noqa: N802
        protocol = StompProtocol(self.make_session, self.limiter, self.connections)
        protocol.factory = self
        return protocol


def describe_peer(transport: Any) -> str:
    """``host:port`` of the client (the address itself when it has no host, a UNIX socket's)."""
    peer = transport.getPeer()
    return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"


def _set_nodelay(transport: Any) -> None:
    """Turn Nagle's algorithm off: replies must not wait ~40 ms for an ACK."""
    set_nodelay = getattr(transport, "setTcpNoDelay", None)
    if set_nodelay is not None:
        with contextlib.suppress(OSError):  # not a TCP socket (a UNIX socket, say)
            set_nodelay(True)

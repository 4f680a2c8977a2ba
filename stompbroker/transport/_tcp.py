"""STOMP over a byte stream (TCP, TLS): a thin adapter from Twisted to a session.

Every listener's connections are counted in one ``ConnectionLimiter`` (in total and
per peer host). At a limit, the rule is: a connection that has not completed CONNECT
goes first. The oldest connection that has sent nothing yet (from the same host, for
the per-host limit) is closed to admit the new one; failing that, the oldest whose
CONNECT awaits its answer (a login being checked, a refusal being delayed). Only when
every place is held by a logged-in connection is the new one refused, as soon as it
is made, before a session exists for it.
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
from ._outbox import Outbox

#: Builds the session for a new connection: (transport, peer description) -> session.
SessionFactory = Callable[[ITransport, str], StompSession]

#: The ERROR message a connection closed to make room gets (as a refused one does).
TOO_MANY = "too many connections"

#: Where a connection stands, for making room; it only moves down this list (or closes).
#: Nothing received yet that completes a CONNECT (or closing already): the first to go.
BEFORE_CONNECT = 2
#: CONNECT received, its answer not yet sent: goes when none is before CONNECT.
LOGGING_IN = 1
#: CONNECTED sent: never closed to make room.
LOGGED_IN = 0


class TooManyConnections(Exception):
    """A new connection would pass a limit; ``str()`` says which, for the client."""


class _Place:
    """One admitted connection in a ``ConnectionLimiter``."""

    __slots__ = ("evict", "host", "live", "stage")

    def __init__(
        self, host: str | None, stage: Callable[[], int], evict: Callable[[str], None]
    ) -> None:
        self.host = host
        #: Where the connection stands: BEFORE_CONNECT, LOGGING_IN or LOGGED_IN.
        self.stage = stage
        #: Closes the connection to make room, saying which limit was reached.
        self.evict = evict
        self.live = True


def _logged_in() -> int:
    return LOGGED_IN


def _ignore(why: str) -> None:
    pass


class _Candidates:
    """Connections that may make room, oldest first: those before CONNECT, those logging in.

    A connection is looked at where it stands only when room is needed; one found further
    on moves to the next list (or out, once logged in) for good, so finding room costs
    O(1) amortized.
    """

    __slots__ = ("before", "logging_in")

    def __init__(self) -> None:
        self.before: dict[_Place, None] = {}
        self.logging_in: dict[_Place, None] = {}

    def add(self, place: _Place) -> None:
        self.before[place] = None

    def discard(self, place: _Place) -> None:
        self.before.pop(place, None)
        self.logging_in.pop(place, None)

    def __len__(self) -> int:
        return len(self.before) + len(self.logging_in)

    def oldest(self) -> _Place | None:
        """The connection to close for room (taken out of the lists), or None."""
        before, logging_in = self.before, self.logging_in
        while before:
            place = next(iter(before))
            del before[place]
            stage = place.stage()
            if stage == BEFORE_CONNECT:
                return place
            if stage == LOGGING_IN:
                logging_in[place] = None
        while logging_in:
            place = next(iter(logging_in))
            del logging_in[place]
            if place.stage() != LOGGED_IN:
                return place
        return None


class ConnectionLimiter:
    """Counts open connections, in total and per peer host, across every listener.

    At a limit a connection not logged in makes room (see the module).
    """

    def __init__(self, max_connections: int = 10_000, max_per_address: int = 1000) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        #: Connections admitted and not yet released.
        self.open = 0
        #: Connections closed to make room for a newer one, since start.
        self.evicted = 0
        self._by_host: dict[str, int] = {}
        #: Who may make room: among all, and by host.
        self._waiting = _Candidates()
        self._waiting_from: dict[str, _Candidates] = {}

    def admit(
        self,
        host: str | None,
        stage: Callable[[], int] = _logged_in,
        evict: Callable[[str], None] = _ignore,
    ) -> Callable[[], None]:
        """Count a connection from ``host``; return what releases it (idempotent).

        ``stage`` tells where the connection stands (BEFORE_CONNECT, LOGGING_IN,
        LOGGED_IN), and ``evict`` closes it (given why) when a newer one needs its
        place. Raises TooManyConnections over a limit when no connection can make
        room. A peer without a host (a UNIX socket) counts toward the total only.
        """
        if host is not None:
            while self._by_host.get(host, 0) >= self.max_per_address:
                why = (
                    f"the broker accepts at most {self.max_per_address} connections"
                    " from one address"
                )
                self._make_room(self._waiting_from.get(host), why)
        while self.open >= self.max_connections:
            why = f"the broker accepts at most {self.max_connections} connections"
            self._make_room(self._waiting, why)
        place = _Place(host, stage, evict)
        if host is not None:
            self._by_host[host] = self._by_host.get(host, 0) + 1
            self._waiting_from.setdefault(host, _Candidates()).add(place)
        self._waiting.add(place)
        self.open += 1
        return lambda: self._release(place)

    def from_host(self, host: str) -> int:
        """How many admitted connections come from ``host``."""
        return self._by_host.get(host, 0)

    def _make_room(self, candidates: _Candidates | None, why: str) -> None:
        """Close the connection that goes first (see the module); TooManyConnections if none."""
        place = candidates.oldest() if candidates is not None else None
        if place is None:
            raise TooManyConnections(why)
        self._release(place)
        self.evicted += 1
        place.evict(why)

    def _forget(self, place: _Place) -> None:
        """No longer a candidate to make room."""
        self._waiting.discard(place)
        if place.host is not None:
            waiting = self._waiting_from.get(place.host)
            if waiting is not None:
                waiting.discard(place)
                if not waiting:
                    del self._waiting_from[place.host]

    def _release(self, place: _Place) -> None:
        if not place.live:
            return
        place.live = False
        self._forget(place)
        self.open -= 1
        host = place.host
        if host is not None:
            count = self._by_host.pop(host) - 1
            if count:
                self._by_host[host] = count


class Counted:
    """A protocol's place in its ``ConnectionLimiter``: taken when made, given back when lost.

    A protocol that is counted tells where its connection stands (``stage``) and closes
    itself to make room (``make_room``).
    """

    limiter: ConnectionLimiter | None = None
    session: StompSession | None = None
    connection: Connection | None = None
    transport: Any = None
    _release_place: Callable[[], None] | None = None

    def take_place(self, transport: Any) -> str | None:
        """Count this connection; None when admitted, else why it is refused."""
        if self.limiter is None:
            return None
        host = getattr(transport.getPeer(), "host", None)
        try:
            self._release_place = self.limiter.admit(host, self.stage, self.make_room)
        except TooManyConnections as exc:
            return str(exc)
        return None

    def stage(self) -> int:
        """BEFORE_CONNECT (no session, no CONNECT yet, or closing), LOGGING_IN or LOGGED_IN."""
        session = self.session
        if session is None or session.closed:
            return BEFORE_CONNECT
        if session.connected:
            return LOGGED_IN
        return LOGGING_IN if session.logging_in else BEFORE_CONNECT

    def make_room(self, why: str) -> None:
        """Close this connection, not logged in, to admit a newer one (``why``: the limit)."""
        session = self.session
        if session is None or session.closed:
            self.transport.abortConnection()
            return
        if self.connection is not None:
            self.connection.reason = f"closed to admit a newer connection ({why})"
        session.close_with_error(TOO_MANY, f"{why}: {ROOM_DETAIL}")

    def give_place_back(self) -> None:
        """Release this connection's place (once; nothing if it had none)."""
        release, self._release_place = self._release_place, None
        if release is not None:
            release()


#: What a connection closed to make room is told, after the limit.
ROOM_DETAIL = "this connection had not completed CONNECT and was closed to admit a newer one"


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
        outbox: Outbox | None = None,
    ) -> None:
        self._make_session = make_session
        self.limiter = limiter
        self.connections = connections
        #: Holds this connection's writes to the end of the reactor turn (``_outbox``);
        #: None: each goes to Twisted at once.
        self.outbox = outbox

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
            output = CountingTransport(transport, self.outbox)
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
        outbox: Outbox | None = None,
    ) -> None:
        self.make_session = make_session
        #: Shared with the other listeners' factories; None: no limit.
        self.limiter = limiter
        #: The registry of open connections, shared likewise; None: not tracked.
        self.connections = connections
        #: Holds the connections' writes to the end of the reactor turn; None: not held.
        self.outbox = outbox

    def buildProtocol(self, addr: Any) -> StompProtocol:  # noqa: N802
        protocol = StompProtocol(self.make_session, self.limiter, self.connections, self.outbox)
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

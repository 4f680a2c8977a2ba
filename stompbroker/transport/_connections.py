"""The open STOMP connections of every listener: who, since when, how many bytes; and the log
line of each connection event.

A connection is registered when its session is made (TCP: when accepted; WebSocket: at the
upgrade) and leaves when its session is let go; meanwhile it is its session's observer. It
logs, through ``twisted.logger``, one line when its session sends CONNECTED (peer, STOMP
version, user) and one when it ends (why, how long it lasted, bytes each way). Why it ended
is, first that found of:

* a reason the adapter or an administrator set (a WebSocket Close, a message too large, ...);
* the reason the session gave when it closed the connection itself ("ERROR sent: MESSAGE",
  or "DISCONNECT");
* the transport's reason: closed by the client, or lost.

Bytes are counted where they cross the adapter: received in ``dataReceived``, sent in the
transport the session writes to (``CountingTransport`` over TCP; the WebSocket adapter's own
message transport), STOMP bytes in both cases (not TLS or WebSocket framing).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from stompbroker.core import Clock
from stompbroker.session import StompSession

from ._outbox import Gathered, Outbox

log = Logger(namespace="stompbroker.connection")


class Output:
    """What a connection's writer counts (``CountingTransport``, the WebSocket transport)."""

    bytes_out = 0


class CountingTransport(Output):
    """A TCP transport as the session sees it: every write counted (and held to the end of
    the reactor turn with an ``outbox``: ``_outbox``), the rest passed through."""

    def __init__(self, transport: Any, outbox: Outbox | None = None) -> None:
        self._transport = transport
        self._gathered = Gathered(transport, outbox) if outbox is not None else None
        self._write = self._gathered.write if self._gathered is not None else transport.write

    def write(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self._write(data)

    def writeSequence(self, data: Any) -> None:  # noqa: N802 (Twisted's name)
        self.write(b"".join(data))

    def loseConnection(self) -> None:  # noqa: N802 (Twisted's name)
        if self._gathered is not None:  # what the session wrote last (an ERROR) goes first
            self._gathered.send()
        self._transport.loseConnection()

    def __getattr__(self, name: str) -> Any:
        # abortConnection, pauseProducing, getPeer, ...: the transport's own.
        return getattr(self._transport, name)


class Connection:
    """One STOMP connection: its session, where from, since when, bytes each way.

    It observes its session (a ``session.SessionObserver``): it logs CONNECTED, and keeps
    why the session closed the connection.
    """

    def __init__(
        self, session: StompSession, peer: str, transport: str, output: Output, opened: float
    ) -> None:
        self.session = session
        #: ``host:port`` of the client.
        self.peer = peer
        #: ``tcp``, ``tls``, ``ws`` or ``wss``.
        self.transport = transport
        self.output = output
        self.opened = opened
        self.bytes_in = 0
        #: Why it ends, when the adapter or an administrator knows better than the socket.
        self.reason: str | None = None
        #: Why the session closed the connection itself (None: it did not).
        self.closed_by_session: str | None = None

    @property
    def id(self) -> str:
        """The session id (the CONNECTED frame's ``session`` header)."""
        return self.session.session_id

    @property
    def bytes_out(self) -> int:
        """STOMP bytes sent."""
        return self.output.bytes_out

    @property
    def user(self) -> str | None:
        """The login the client connected with; None: anonymous (or not connected yet)."""
        return self.session.user

    def connected(self, user: str | None, version: str) -> None:
        """The session sent CONNECTED: log it."""
        log.info(
            "connection {id} from {peer} ({transport}) connected: STOMP {version}, user {user}",
            id=self.id,
            peer=self.peer,
            transport=self.transport,
            version=version,
            user=user,
        )

    def closed(self, reason: str) -> None:
        """The session closed the connection, for ``reason``: keep it for the last line."""
        self.closed_by_session = reason

    def why_ended(self, failure: Failure | None) -> str:
        """Why the connection ended (see the module's docstring for the order)."""
        if self.reason is not None:
            return self.reason
        if self.closed_by_session is not None:
            return self.closed_by_session
        if failure is None or failure.check(ConnectionDone):
            return "closed by the client"
        return f"connection lost: {failure.getErrorMessage().rstrip('.')}"


class Connections:
    """The open connections of every listener, by session id; counts of those gone."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.open: dict[str, Connection] = {}
        #: Since start: connections registered, and bytes of those that ended.
        self.opened = 0
        self.bytes_in_closed = 0
        self.bytes_out_closed = 0
        #: Connections a reload closed because their credentials or a subscription's read
        #: permission were revoked (``reloading.end_revoked``).
        self.revoked = 0

    def add(self, session: StompSession, peer: str, transport: str, output: Output) -> Connection:
        """Register the connection of a new session."""
        connection = Connection(session, peer, transport, output, self.clock.seconds())
        session.observer = connection
        self.open[session.session_id] = connection
        self.opened += 1
        return connection

    def received(self, connection: Connection, count: int) -> None:
        """``count`` bytes were handed to the session."""
        connection.bytes_in += count

    def ended(self, connection: Connection, failure: Failure | None = None) -> None:
        """The connection's session is let go (call before telling the session)."""
        if self.open.pop(connection.id, None) is None:
            return
        self.bytes_in_closed += connection.bytes_in
        self.bytes_out_closed += connection.bytes_out
        log.info(
            "connection {id} from {peer} closed after {duration:.1f} s: {reason};"
            " {bytes_in} bytes in, {bytes_out} bytes out",
            id=connection.id,
            peer=connection.peer,
            duration=max(0.0, self.clock.seconds() - connection.opened),
            reason=connection.why_ended(failure),
            bytes_in=connection.bytes_in,
            bytes_out=connection.bytes_out,
        )

    def close(self, session_id: str, reason: str = "closed by an administrator") -> bool:
        """Close a connection with an ERROR saying ``reason``; False if there is none."""
        connection = self.open.get(session_id)
        if connection is None:
            return False
        connection.reason = reason
        connection.session.close_with_error(reason, f"the broker closed this connection: {reason}")
        return True

    def refused(self, peer: str, transport: str, why: str) -> None:
        """Log a connection turned away before a session was made for it."""
        log.info(
            "connection from {peer} ({transport}) refused: {why}",
            peer=peer,
            transport=transport,
            why=why,
        )

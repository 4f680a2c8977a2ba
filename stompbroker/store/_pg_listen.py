"""A LISTEN/NOTIFY connection to PostgreSQL, watched by the reactor.

One psycopg connection per node, apart from the store's: connected in a worker thread (a
connect blocks), then switched to non-blocking and handed to the reactor, which calls
``doRead`` when the server wrote something. Nothing waits in a blocking call after that.

Its states::

    stopped --start--> connecting (worker: connect, LISTEN every channel) --> listening
    listening --the connection drops--> waiting (0.5 s, doubling up to 10 s) --> connecting
    connecting --fails--> waiting (but the first connection of a start: start fails)
    any --stop--> stopped

While listening:

* a read consumes what arrived (``consume_input``), hands each notification's payload to its
  channel's callbacks (``notifies`` until None), then reads the answer to the statement in
  flight, if any;
* ``notify`` queues; one statement per reactor turn sends every queued notification
  (``SELECT pg_notify($1, $2), pg_notify($3, $4), ...``: one transaction, so they arrive
  together and in order), sent without waiting (``send_query_params``, then ``flush``,
  and the reactor's write readiness while the socket is full). One statement is in flight
  at a time; what is queued meanwhile goes with the next;
* a LISTEN asked after the start goes the same way.

Notifications are at most once: those queued while the connection is down are dropped,
those sent to this node while it was down are lost (``reconnected`` tells the user, who
rescans what it missed). TCP keepalives (libpq's ``keepalives*`` settings, unless the DSN
sets them) notice a server that went away without closing the connection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from ._batching import Runner
from ._pg_database import connection_settings
from ._pg_schema import StoreRefused

log = Logger(namespace="stompbroker.store.listen")

#: The first wait before connecting again, and the longest (seconds); doubling between.
FIRST_DELAY = 0.5
MAX_DELAY = 10.0
#: At most this many notifications in one statement (each takes two parameters).
NOTIFIES_PER_STATEMENT = 1000
#: A channel name: a plain lower-case identifier (no quoting needed).
CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@implementer(IReadDescriptor, IWriteDescriptor)
class _Socket:
    """The connection's socket as the reactor watches it: a duplicate of libpq's descriptor,
    ours to close. libpq closes its own as soon as it finds the connection broken, before
    the reactor is told to stop watching; a descriptor number freed that way, taken at once
    by another socket (a client's, the store's), would leave the reactor watching the wrong
    one."""

    def __init__(self, listener: PgListener, fd: int) -> None:
        self._listener = listener
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:  # noqa: N802
        self._listener._readable(self)

    def doWrite(self) -> None:  # noqa: N802
        self._listener._writable(self)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self._listener._lost(self, "the reactor lost the socket")

    def logPrefix(self) -> str:  # noqa: N802
        return "PgListener"


class PgListener:
    """LISTEN and NOTIFY on the database ``dsn`` names, for this node (``node``: shown to the
    server as ``application_name``).

    ``reactor`` provides IReactorTime and IReactorFDSet; ``run`` runs a blocking function in
    a worker thread (as the stores' ``run``): only the connects use it.
    """

    def __init__(self, dsn: str, reactor: Any, run: Runner, node: str = "") -> None:
        self.dsn = dsn
        self.node = node
        self._reactor = reactor
        self._run = run
        self._channels: dict[str, list[Callable[[str], None]]] = {}
        #: Channels the connection listens on (or is asked to).
        self._listening: set[str] = set()
        self._outbox: list[tuple[str, str]] = []
        self._sending: Any = None  # the flush of this turn's notifications, once asked
        self._conn: Any = None
        self._socket: _Socket | None = None
        self._in_flight = False
        self._writing = False
        self._running = False
        self._connecting: Deferred[None] | None = None
        self._retry: Any = None
        self._delay = FIRST_DELAY
        #: Called after a reconnection: notifications may have been lost while down.
        self.reconnected: Callable[[], None] | None = None
        #: The server process of the connection (its own notifications come back with it).
        self.own_pid = 0

    # -- the API ---------------------------------------------------------------------

    def listen(self, channel: str, received: Callable[[str], None]) -> None:
        """Hand the payloads of ``channel``'s notifications to ``received`` (on the reactor);
        before or after ``start``."""
        if not CHANNEL.fullmatch(channel):
            raise ValueError(f"channel {channel!r} is not a plain lower-case identifier")
        self._channels.setdefault(channel, []).append(received)
        if self._socket is not None and channel not in self._listening:
            self._send_soon()

    def notify(self, channel: str, payload: str) -> None:
        """Send ``payload`` on ``channel`` with the other notifications of this reactor turn
        (dropped while disconnected: at most once)."""
        if self._socket is None:
            return
        self._outbox.append((channel, payload))
        self._send_soon()

    def start(self) -> Deferred[None]:
        """Connect and LISTEN; fires once listening, fails (StoreRefused) if the first
        connection cannot be made."""
        self._running = True
        return self._connect(first=True)

    def stop(self) -> Deferred[None]:
        """Close the connection (an attempt under way is closed when it ends); no reconnect."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._sending is not None and self._sending.active():
            self._sending.cancel()
        self._sending = None
        self._outbox.clear()
        self._close()
        connecting = self._connecting
        if connecting is None:
            return succeed(None)
        stopped: Deferred[None] = Deferred()
        connecting.addBoth(lambda _: stopped.callback(None))
        return stopped

    @property
    def connected(self) -> bool:
        """Whether the connection is up and listening."""
        return self._socket is not None

    @property
    def busy(self) -> bool:
        """Whether a LISTEN or a NOTIFY waits to be sent, or for the server's answer."""
        waiting = self._sending is not None and self._sending.active()
        return waiting or self._in_flight or bool(self._outbox)

    # -- connecting ------------------------------------------------------------------

    def _connect(self, first: bool = False) -> Deferred[None]:
        channels = sorted(self._channels)
        opened = self._run(_open, self.dsn, self.node, channels)
        attempt: Deferred[None] = Deferred()
        self._connecting = attempt

        def done(opened: tuple[Any, list[Any]]) -> None:
            self._connecting = None
            conn, early = opened
            if not self._running:
                conn.close()
            else:
                self._connected(conn, channels, first)
                for notification in early:
                    self._hand_on(notification.channel, notification.payload)
                if self._socket is not None:
                    self._poll(self._socket)
            attempt.callback(None)

        def failed(failure: Any) -> None:
            self._connecting = None
            why = _why(failure.value)
            if first or not self._running:
                self._running = False
                attempt.errback(StoreRefused(f"cannot LISTEN on PostgreSQL: {why}"))
                return
            self._wait(why)
            attempt.callback(None)

        opened.addCallbacks(done, failed)
        return attempt

    def _connected(self, conn: Any, channels: list[str], first: bool) -> None:
        self._conn = conn
        self.own_pid = conn.pgconn.backend_pid
        self._listening = set(channels)
        self._socket = _Socket(self, os.dup(conn.pgconn.socket))
        self._reactor.addReader(self._socket)
        self._delay = FIRST_DELAY
        if first:
            log.info("listening on PostgreSQL (backend {pid})", pid=self.own_pid)
        else:
            log.info("listening on PostgreSQL again (backend {pid})", pid=self.own_pid)
        if set(self._channels) != self._listening:
            self._send_soon()  # listen() was called while connecting
        if not first and self.reconnected is not None:
            self.reconnected()

    def _wait(self, why: str) -> None:
        """Connect again after the current delay, doubled for the next time."""
        delay = self._delay
        self._delay = min(delay * 2, MAX_DELAY)
        log.warn(
            "PostgreSQL LISTEN connection: {why}; connecting again in {delay} s",
            why=why,
            delay=delay,
        )
        self._retry = self._reactor.callLater(delay, self._reconnect)

    def _reconnect(self) -> None:
        self._retry = None
        if self._running:
            self._connect()

    def _lost(self, socket: _Socket, why: str) -> None:
        """The connection dropped: drop what it was doing, and connect again."""
        if socket is not self._socket:
            return
        self._close()
        self._outbox.clear()
        if self._running:
            self._wait(why)

    def _close(self) -> None:
        socket, self._socket = self._socket, None
        conn, self._conn = self._conn, None
        if socket is not None:
            self._reactor.removeReader(socket)
            if self._writing:
                self._reactor.removeWriter(socket)
            os.close(socket.fileno())
        self._writing = self._in_flight = False
        if conn is not None:
            conn.close()

    # -- reading ---------------------------------------------------------------------

    def _readable(self, socket: _Socket) -> None:
        if socket is not self._socket:
            return
        if self._poll(socket) and self._writing:
            self._writable(socket)

    def _poll(self, socket: _Socket) -> bool:
        """Take in what arrived: notifications, answers; False if the connection is lost.

        libpq also reads while it flushes, and parses while it answers: notifications are
        handed on after each of those too, as the socket would not tell of them again.
        """
        pgconn = self._conn.pgconn
        try:
            pgconn.consume_input()
            self._dispatch(pgconn)
            if self._in_flight:
                self._answers(pgconn)
                self._dispatch(pgconn)
            if pgconn.status != _ok():
                raise ConnectionError("the server closed the connection")
        except Exception as exc:
            self._lost(socket, _why(exc))
            return False
        return True

    def _dispatch(self, pgconn: Any) -> None:
        """Hand every notification that arrived to its channel's callbacks."""
        while (notification := pgconn.notifies()) is not None:
            self._hand_on(notification.relname.decode(), notification.extra.decode())

    def _hand_on(self, channel: str, payload: str) -> None:
        for received in self._channels.get(channel, ()):
            try:
                received(payload)
            except Exception:
                log.failure("a {channel} notification was not handled", channel=channel)

    def _answers(self, pgconn: Any) -> None:
        """Read the answers to the statement in flight that have arrived; the next goes once
        it is done."""
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                self._in_flight = False
                if self._outbox or set(self._channels) != self._listening:
                    self._send_soon()
                return
            if result.status == _fatal():
                message = result.error_message.decode(errors="replace").strip()
                log.warn("a NOTIFY or LISTEN failed: {message}", message=message)

    # -- writing ---------------------------------------------------------------------

    def _send_soon(self) -> None:
        if self._sending is None or not self._sending.active():
            self._sending = self._reactor.callLater(0, self._send)

    def _send(self) -> None:
        """Send what is queued, as one statement, unless one is in flight."""
        self._sending = None
        socket = self._socket
        if socket is None or self._in_flight:
            return
        pgconn = self._conn.pgconn
        try:
            new = sorted(set(self._channels) - self._listening)
            if new:
                pgconn.send_query("; ".join(f"LISTEN {c}" for c in new).encode())
                self._listening.update(new)
            elif self._outbox:
                batch = self._outbox[:NOTIFIES_PER_STATEMENT]
                del self._outbox[:NOTIFIES_PER_STATEMENT]
                pgconn.send_query_params(_notify_statement(len(batch)), _parameters(batch))
            else:
                return
            self._in_flight = True
        except Exception as exc:
            self._lost(socket, _why(exc))
            return
        self._writable(socket)

    def _writable(self, socket: _Socket) -> None:
        """Push what libpq holds for the server; watch for room while the socket is full."""
        if socket is not self._socket:
            return
        try:
            more = self._conn.pgconn.flush()
        except Exception as exc:
            self._lost(socket, _why(exc))
            return
        if more and not self._writing:
            self._reactor.addWriter(socket)
        elif not more and self._writing:
            self._reactor.removeWriter(socket)
        self._writing = bool(more)
        self._poll(socket)


def connection_string(dsn: str, node: str) -> str:
    """``dsn`` with the store's keepalives and connect timeout (unless it sets them:
    ``_pg_database.KEEPALIVES``) and the listener's name."""
    import psycopg

    settings = connection_settings(dsn)
    settings["application_name"] = " ".join(["stompbroker", *node.split(), "listen"])[:63]
    return str(psycopg.conninfo.make_conninfo("", **settings))


def _open(dsn: str, node: str, channels: list[str]) -> tuple[Any, list[Any]]:
    """(worker thread) A connection with keepalives, listening on ``channels``, non-blocking;
    and the notifications psycopg took in meanwhile (from the first LISTEN on)."""
    import psycopg

    conn = psycopg.connect(connection_string(dsn, node), autocommit=True)
    early: list[Any] = []
    try:
        conn.add_notify_handler(early.append)
        for channel in channels:
            conn.execute(f"LISTEN {channel}")
        conn.remove_notify_handler(early.append)
        conn.pgconn.nonblocking = 1
    except BaseException:
        conn.close()
        raise
    return conn, early


def _notify_statement(count: int) -> bytes:
    """``SELECT pg_notify($1, $2), ...`` for ``count`` notifications."""
    calls = ", ".join(f"pg_notify(${2 * n + 1}, ${2 * n + 2})" for n in range(count))
    return f"SELECT {calls}".encode()


def _parameters(batch: list[tuple[str, str]]) -> list[bytes]:
    return [text.encode() for pair in batch for text in pair]


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _ok() -> Any:
    from psycopg.pq import ConnStatus

    return ConnStatus.OK


def _fatal() -> Any:
    from psycopg.pq import ExecStatus

    return ExecStatus.FATAL_ERROR

"""Test STOMP code against the broker in memory: no sockets, no reactor, no waiting.

A :class:`Client` is one STOMP connection: a real session of the broker on an in-memory
transport, fed frames as if they came off a socket, and read back with the codec's own
parser. Time is a Twisted :class:`~twisted.internet.task.Clock` that the broker and every
session share, so expiry, redelivery delays, heart-beats and timeouts happen exactly when a
test calls ``clock.advance``. :class:`RecordingConsumer` stands in for a session when a test
talks to the :class:`~stompbroker.core.Broker` directly.

Example::

    from stompbroker.testing import connected_clients

    broker, clock, (producer, consumer) = connected_clients(2)
    consumer.subscribe("/queue/orders")
    producer.publish("/queue/orders", b"hello")
    assert consumer.bodies() == [b"hello"]

    producer.send("SEND", {}, b"where to?")
    producer.error("missing header 'destination'")  # and the connection is closing

More in docs/testing.md.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from stompbroker.codec import SERVER_COMMANDS, Frame, FrameParser, encode_frame
from stompbroker.core import Broker, Message, Subscription
from stompbroker.session import SessionSettings, StompSession

__all__ = ["QUIET", "Client", "RecordingConsumer", "connected_clients"]

#: Session settings with heart-beats off on the broker's side, so that no timer runs unless
#: a test asks for one.
QUIET = SessionSettings(heartbeat=(0, 0))


class Client:
    """One STOMP connection to ``broker``: a session, its transport, and a reader of what
    the session writes.

    ``clock`` must be the broker's clock (by default it is: the broker must then have been
    given a :class:`~twisted.internet.task.Clock`). ``settings`` are the session's (default
    :data:`QUIET`); ``session_id`` names the connection in the broker and its logs.

    Nothing is connected yet: call :meth:`connect` first, as a real client would.
    """

    def __init__(
        self,
        broker: Broker,
        clock: Clock | None = None,
        session_id: str = "session-1",
        settings: SessionSettings | None = None,
    ) -> None:
        clock = _shared_clock(broker, clock)
        self.broker = broker
        self.clock = clock
        self.transport = StringTransport()
        self.session = StompSession(
            broker, self.transport, clock, session_id, settings or QUIET, "test:" + session_id
        )
        #: The version frames are escaped in, both ways (set when CONNECTED is read).
        self.version = "1.0"
        self._reader = FrameParser(commands=SERVER_COMMANDS, version="1.0")
        self._reader.stop_after_frame = True
        self._read = 0

    # -- input to the session ------------------------------------------------

    def connect(
        self, version: str | None = "1.2", command: str = "CONNECT", **headers: str
    ) -> Frame:
        """Send CONNECT (``accept-version`` unless ``version`` is None; extra headers as
        keyword arguments, ``_`` for ``-``); return the one frame that answers it."""
        pairs = {"host": "localhost", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if version is not None:
            pairs["accept-version"] = version
        self.send_raw(encode_frame(command, pairs))
        answers = self.frames()
        if len(answers) != 1:
            raise AssertionError(f"expected one answer to {command}, got {answers!r}")
        return answers[0]

    def send(self, command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        """Send one frame, its headers escaped for the negotiated version."""
        self.send_raw(encode_frame(command, headers or {}, body, self.version))

    def send_raw(self, data: bytes) -> None:
        """Feed raw bytes to the session, as if they came off the socket."""
        self.session.data_received(data)

    def subscribe(self, destination: str, sub_id: str = "0", **headers: str) -> None:
        """SUBSCRIBE to ``destination`` as ``sub_id`` (extra headers as keyword arguments,
        ``_`` for ``-``: ``ack="client-individual"``, ``prefetch_count="1"``)."""
        pairs = {"destination": destination, "id": sub_id}
        pairs.update({k.replace("_", "-"): v for k, v in headers.items()})
        self.send("SUBSCRIBE", pairs)

    def publish(self, destination: str, body: bytes, **headers: str) -> None:
        """SEND ``body`` to ``destination`` (extra headers as for :meth:`subscribe`)."""
        pairs = {"destination": destination}
        pairs.update({k.replace("_", "-"): v for k, v in headers.items()})
        self.send("SEND", pairs, body)

    def lose(self) -> None:
        """The socket dropped (or closed after the session asked it to)."""
        self.session.connection_lost()

    # -- output of the session -----------------------------------------------

    def written(self) -> bytes:
        """Every byte the session wrote so far."""
        return self.transport.value()

    def frames(self) -> list[Frame]:
        """The frames written since the previous read (heart-beat EOLs skipped)."""
        data = self.transport.value()
        fresh, self._read = data[self._read :], len(data)
        reader = self._reader
        out: list[Frame] = []
        batch = reader.feed(fresh)
        while batch:
            for frame in batch:
                out.append(frame)
                if frame.command == "CONNECTED":
                    self.version = frame.headers.get("version", "1.0")
                    reader.version = self.version
            batch = reader.feed(b"") if reader.buffered else []
        if reader.error is not None:
            raise AssertionError(f"the session wrote a malformed frame: {reader.error!r}")
        return out

    def messages(self) -> list[Frame]:
        """The MESSAGE frames written since the previous read; any other frame fails."""
        frames = self.frames()
        if not all(f.command == "MESSAGE" for f in frames):
            raise AssertionError(f"expected only MESSAGE frames, got {frames!r}")
        return frames

    def bodies(self) -> list[bytes]:
        """The bodies of the MESSAGE frames written since the previous read."""
        return [f.body for f in self.messages()]

    def error(self, message: str) -> Frame:
        """The ERROR among the frames written since the previous read, which must be exactly
        one, the last of them, with the ``message`` header ``message`` exactly; the session
        must be closing the connection. Anything else fails with an AssertionError."""
        frames = self.frames()
        errors = [f for f in frames if f.command == "ERROR"]
        if len(errors) != 1 or frames[-1] is not errors[0]:
            raise AssertionError(f"expected one ERROR, last, got {frames!r}")
        (error,) = errors
        got = error.headers.get("message")
        if got != message:
            raise AssertionError(f"ERROR message {got!r}, expected {message!r}: {error!r}")
        if not self.closing:
            raise AssertionError(f"the connection is not closing after {error!r}")
        return error

    @property
    def closing(self) -> bool:
        """Whether the session asked its transport to close."""
        return bool(self.transport.disconnecting)


def connected_clients(
    count: int,
    version: str = "1.2",
    settings: SessionSettings | None = None,
    broker: Broker | None = None,
    clock: Clock | None = None,
) -> tuple[Broker, Clock, list[Client]]:
    """A broker, its clock and ``count`` clients (``session-1``, ``session-2``, ...)
    connected with ``version`` and ``settings``.

    Without ``broker`` a new one is made on ``clock`` (a new Clock without it); a given
    ``broker`` and ``clock`` must be the broker's own.
    """
    if broker is None:
        clock = clock if clock is not None else Clock()
        broker = Broker(clock=clock)
    clock = _shared_clock(broker, clock)
    clients = [Client(broker, clock, f"session-{i + 1}", settings) for i in range(count)]
    for client in clients:
        answer = client.connect(version)
        if answer.command != "CONNECTED":
            raise AssertionError(f"CONNECT refused: {answer!r}")
    return broker, clock, clients


def _shared_clock(broker: Broker, clock: Clock | None) -> Clock:
    """``clock``, which must be ``broker``'s; the broker's own when None."""
    if clock is None:
        if not isinstance(broker.clock, Clock):
            raise TypeError("the broker runs on no twisted.internet.task.Clock: give it one")
        return broker.clock
    if broker.clock is not clock:
        raise ValueError("the broker and its sessions must share one clock")
    return clock


class RecordingConsumer:
    """A consumer (what a session is to the broker) that records what the broker hands it:
    ``broker.subscribe(consumer, "sub-1", "/queue/q")``, then read :attr:`deliveries`."""

    def __init__(self) -> None:
        #: Every (subscription, message) the broker delivered, in order.
        self.deliveries: list[tuple[Subscription, Message]] = []
        #: Why the broker gave up on this consumer, if it did.
        self.abandoned: list[str] = []

    def deliver(self, subscription: Subscription, message: Message) -> None:
        """Record one delivery."""
        self.deliveries.append((subscription, message))

    def abandon(self, subscription: Subscription, reason: str) -> None:
        """Record that the broker gave up on this consumer."""
        self.abandoned.append(reason)

    def bodies(self) -> list[bytes]:
        """Bodies of every delivery so far, in order."""
        return [message.body for _, message in self.deliveries]

    def take(self) -> list[Message]:
        """The messages delivered since the previous ``take``."""
        out = [message for _, message in self.deliveries]
        self.deliveries.clear()
        return out

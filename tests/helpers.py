"""Small shared helpers: sessions on in-memory transports, frames in, frames out.

``Client`` wraps one ``StompSession`` on a ``StringTransport`` and reads back what
the session writes with the codec's own parser; ``connected_clients`` builds a
broker, a ``Clock`` and several connected clients sharing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from stompbroker.codec import SERVER_COMMANDS, Frame, FrameParser, encode_frame
from stompbroker.core import Broker, Message, Subscription
from stompbroker.session import SessionSettings, StompSession

#: Settings with heart-beats off on our side, so no timers run unless a test wants them.
QUIET = SessionSettings(heartbeat=(0, 0))


class Client:
    """One connection: a session, its transport, and a reader of what it writes."""

    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        session_id: str = "session-1",
        settings: SessionSettings | None = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.transport = StringTransport()
        self.session = StompSession(
            broker, self.transport, clock, session_id, settings or QUIET, "test:" + session_id
        )
        #: The version frames are escaped in, both ways (set by ``connect``).
        self.version = "1.0"
        self._reader = FrameParser(commands=SERVER_COMMANDS, version="1.0")
        self._reader.stop_after_frame = True
        self._read = 0

    # -- input to the session ------------------------------------------------

    def connect(
        self, version: str | None = "1.2", command: str = "CONNECT", **headers: str
    ) -> Frame:
        """Send CONNECT (``accept-version`` unless ``version`` is None); return the answer."""
        pairs = {"host": "localhost", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if version is not None:
            pairs["accept-version"] = version
        self.send_raw(encode_frame(command, pairs))
        (answer,) = self.frames()
        return answer

    def send(self, command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        """Send one frame, escaped for the negotiated version."""
        self.send_raw(encode_frame(command, headers or {}, body, self.version))

    def send_raw(self, data: bytes) -> None:
        """Feed raw bytes to the session, as if they came off the socket."""
        self.session.data_received(data)

    def subscribe(self, destination: str, sub_id: str = "0", **headers: str) -> None:
        """SUBSCRIBE (extra headers given as keyword arguments, ``_`` for ``-``)."""
        pairs = {"destination": destination, "id": sub_id}
        pairs.update({k.replace("_", "-"): v for k, v in headers.items()})
        self.send("SUBSCRIBE", pairs)

    def publish(self, destination: str, body: bytes, **headers: str) -> None:
        """SEND ``body`` to ``destination``."""
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
        """The frames written since the previous call (heart-beat EOLs skipped)."""
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
        assert reader.error is None, reader.error
        return out

    def messages(self) -> list[Frame]:
        """The MESSAGE frames written since the previous read; any other frame fails."""
        frames = self.frames()
        assert all(f.command == "MESSAGE" for f in frames), frames
        return frames

    def bodies(self) -> list[bytes]:
        """The bodies of the MESSAGE frames written since the previous read."""
        return [f.body for f in self.messages()]

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
    """A broker, a clock and ``count`` clients connected with ``version``."""
    broker = broker or Broker(clock=Clock())
    clock = clock or Clock()
    clients = [Client(broker, clock, f"session-{i + 1}", settings) for i in range(count)]
    for client in clients:
        answer = client.connect(version)
        assert answer.command == "CONNECTED", answer
    return broker, clock, clients


class RecordingConsumer:
    """A ``Consumer`` that records what the broker hands it."""

    def __init__(self) -> None:
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


class RecordingObserver:
    """A ``SessionObserver`` that records what its session tells it, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, ...]] = []

    def connected(self, user: str | None, version: str) -> None:
        """Record that the session sent CONNECTED."""
        self.calls.append(("connected", user, version))

    def closed(self, reason: str) -> None:
        """Record that the session closed the connection, and why."""
        self.calls.append(("closed", reason))


def broker_is_empty(broker: Broker) -> bool:
    """No destination (so no subscription and no message) is left in ``broker``."""
    return not broker.destinations.queues and not broker.destinations.topics


def doc_section(text: str, heading: str, end: str = "\n## ") -> str:
    """The part of a markdown page from ``heading`` up to the next ``end``; fails if the page
    has no such heading."""
    assert heading in text, f"{heading!r} is missing"
    return text.split(heading, 1)[1].split(end, 1)[0]


def doc_default(section: str, key: str) -> str | None:
    """The second cell (the default) of the table row for ``key`` in ``section``; None if
    there is no row for it."""
    row = re.search(rf"^\| `{re.escape(key)}` \| (.+?) \|", section, re.MULTILINE)
    return None if row is None else row.group(1).strip()


def pending_runner() -> tuple[Callable[..., Deferred[Any]], list[Any]]:
    """A password-check runner that holds each check until the test fires it:
    ``held`` gets (deferred, function, args) per check."""
    held: list[Any] = []

    def run(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        waiting: Deferred[Any] = Deferred()
        held.append((waiting, function, args))
        return waiting

    return run, held

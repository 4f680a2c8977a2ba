"""Interop fixtures: the global reactor in a thread, a fresh broker per test, real clients.

Everything here talks over real sockets on 127.0.0.1. Every wait is bounded by
``TIMEOUT``: waits are on a ``threading.Condition`` that a client thread notifies,
or a poll of a condition against a deadline, never a bare sleep.

The broker runs on the reactor thread; the tests run on pytest's thread and only
look at the broker through ``RunningBroker.call`` (``blockingCallFromThread``).
"""

from __future__ import annotations

import functools
import itertools
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import stomp
from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import blockingCallFromThread
from zope.interface import implementer

from stompbroker.config import Config
from stompbroker.core import Broker
from stompbroker.service import BrokerService
from tests.helpers import wait_until

reactor: Any = _global_reactor

#: The longest any single wait in the interop tests may take, in seconds.
TIMEOUT = 5.0

#: Between two looks at a polled condition, in seconds.
POLL_INTERVAL = 0.01

VERSIONS = ("1.0", "1.1", "1.2")

_CONNECTIONS = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}


def poll(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Return once ``condition()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    wait_until(condition, what, timeout, POLL_INTERVAL)


# -- the reactor and the broker ---------------------------------------------------


@pytest.fixture(scope="session")
def running_reactor() -> Iterator[Any]:
    """The global reactor, running in a daemon thread for the whole test session."""
    started = threading.Event()
    reactor.callWhenRunning(started.set)
    thread = threading.Thread(
        target=reactor.run,
        kwargs={"installSignalHandlers": False},
        name="twisted-reactor",
        daemon=True,
    )
    thread.start()
    if not started.wait(TIMEOUT):
        raise RuntimeError("the reactor did not start")
    yield reactor
    reactor.callFromThread(reactor.stop)
    thread.join(TIMEOUT)


class _TrackingFactory(Factory):
    """Hands connections to the broker's own factory and remembers each protocol built."""

    noisy = False

    def __init__(self, inner: Any, protocols: list[Any]) -> None:
        self.inner = inner
        self.protocols = protocols

    def doStart(self) -> None:  # noqa: N802 (Twisted's name)
        self.inner.doStart()

    def doStop(self) -> None:  # noqa: N802 (Twisted's name)
        self.inner.doStop()

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 (Twisted's name)
        protocol = self.inner.buildProtocol(addr)
        if protocol is not None:
            self.protocols.append(protocol)
        return protocol


@implementer(IStreamServerEndpoint)
class _TrackingEndpoint:
    """An endpoint that records the port it listens on and the connections it accepts."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.port: Any = None
        #: The protocols built for accepted connections (StompProtocol instances).
        self.protocols: list[Any] = []

    def listen(self, factory: IProtocolFactory) -> Deferred[Any]:
        def listening(port: Any) -> Any:
            self.port = port
            return port

        listened: Deferred[Any] = self.inner.listen(_TrackingFactory(factory, self.protocols))
        return listened.addCallback(listening)


@dataclass
class RunningBroker:
    """A started BrokerService listening on 127.0.0.1, and what the tests may ask of it."""

    service: BrokerService
    endpoint: _TrackingEndpoint

    @property
    def port(self) -> int:
        """The TCP port the broker listens on."""
        return int(self.endpoint.port.getHost().port)

    @property
    def broker(self) -> Broker:
        """The core broker (touch its state only through ``call``)."""
        return self.service.broker

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the reactor thread and return its result."""
        return blockingCallFromThread(reactor, function, *args)

    def open_connections(self) -> int:
        """How many accepted connections the broker side has not yet seen end."""
        return int(self.call(self._count_open))

    def _count_open(self) -> int:
        return sum(1 for p in self.endpoint.protocols if not _ended(p))

    def leftovers(self) -> dict[str, Any]:
        """Every queue and topic the broker still holds, with what each holds."""
        return dict(self.call(self._describe))

    def _describe(self) -> dict[str, Any]:
        broker = self.broker
        out: dict[str, Any] = {}
        for name, queue in broker.destinations.queues.items():
            out[f"/queue/{name}"] = {
                "messages": len(queue.buffer),
                "subscriptions": [repr(s) for s in queue.subscriptions],
            }
        for name, topic in broker.destinations.topics.items():
            out[f"/topic/{name}"] = {"subscriptions": [repr(s) for s in topic.subscriptions]}
        return out

    def assert_idle(self) -> None:
        """Once every connection has ended, no destination, message or subscription is left."""
        poll(lambda: self.open_connections() == 0, "the broker to see every connection end")
        assert self.leftovers() == {}

    def _stop(self) -> Deferred[Any]:
        stopped: Deferred[Any] = self.service.stopService()
        for protocol in self.endpoint.protocols:
            if not _ended(protocol):
                transport: Any = protocol.transport
                transport.abortConnection()
        return stopped


def _all_closed(running: RunningBroker) -> bool:
    return running.open_connections() == 0


def _ended(protocol: Protocol) -> bool:
    transport: Any = protocol.transport
    return transport is None or bool(transport.disconnected)


def _start_broker(data_dir: Path, config: Config | None = None) -> Any:
    """Start a broker (on the reactor thread); a Deferred firing with it once it listens."""
    config = config or Config()
    config = replace(config, broker=replace(config.broker, data_dir=str(data_dir)))
    endpoint = _TrackingEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
    service = BrokerService(config, reactor, [endpoint])
    service.startService()

    def listening(_: object) -> RunningBroker:
        if endpoint.port is None:
            raise RuntimeError("the broker did not start listening")
        return RunningBroker(service, endpoint)

    started: Deferred[RunningBroker] = service.started.addCallback(listening)
    return started


@pytest.fixture
def broker(running_reactor: Any, tmp_path: Path) -> Iterator[RunningBroker]:
    """A fresh broker on 127.0.0.1 port 0 with its data in a temporary directory."""
    running: RunningBroker = blockingCallFromThread(reactor, _start_broker, tmp_path / "data", None)
    try:
        yield running
    finally:
        blockingCallFromThread(reactor, running._stop)
        poll(lambda: running.open_connections() == 0, "the broker's connections to close")


Starter = Callable[[Config], RunningBroker]


@pytest.fixture
def broker_with(running_reactor: Any, tmp_path: Path) -> Iterator[Starter]:
    """Start brokers with a given configuration (listening on 127.0.0.1 port 0); stop them."""
    started: list[RunningBroker] = []

    def start(config: Config) -> RunningBroker:
        data = tmp_path / f"data-{len(started)}"
        running: RunningBroker = blockingCallFromThread(reactor, _start_broker, data, config)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            blockingCallFromThread(reactor, running._stop)
            poll(functools.partial(_all_closed, running), "the broker's connections to close")


# -- stomp.py clients -------------------------------------------------------------


class Recorder(stomp.ConnectionListener):
    """Records what a stomp.py connection receives and lets a test wait for it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.connected: list[Any] = []
        self.messages: list[Any] = []
        self.errors: list[Any] = []
        self.receipts: list[Any] = []
        self.sent: list[Any] = []
        self.disconnected = False

    def _record(self, into: list[Any], frame: Any) -> None:
        with self._changed:
            into.append(frame)
            self._changed.notify_all()

    def on_connected(self, frame: Any) -> None:
        self._record(self.connected, frame)

    def on_message(self, frame: Any) -> None:
        self._record(self.messages, frame)

    def on_error(self, frame: Any) -> None:
        self._record(self.errors, frame)

    def on_receipt(self, frame: Any) -> None:
        self._record(self.receipts, frame)

    def on_send(self, frame: Any) -> None:
        self._record(self.sent, frame)

    def on_disconnected(self) -> None:
        with self._changed:
            self.disconnected = True
            self._changed.notify_all()

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        """Return once ``condition()`` holds; fail naming ``what`` and what arrived."""
        with self._changed:
            if self._changed.wait_for(condition, timeout):
                return
            bodies = [m.body for m in self.messages]
            errors = [(e.headers, e.body) for e in self.errors]
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what}; "
                f"messages={bodies!r} errors={errors!r} disconnected={self.disconnected}"
            )

    def wait_messages(self, count: int) -> list[Any]:
        """The first ``count`` MESSAGE frames, waiting for them to arrive."""
        self.wait(lambda: len(self.messages) >= count, f"{count} message(s)")
        with self._changed:
            return self.messages[:count]

    def wait_receipt(self, receipt_id: str) -> Any:
        """The RECEIPT for ``receipt_id``, waiting for it to arrive."""

        def find() -> Any:
            return next(
                (r for r in self.receipts if r.headers.get("receipt-id") == receipt_id), None
            )

        self.wait(lambda: find() is not None, f"RECEIPT {receipt_id}")
        with self._changed:
            return find()


class Client:
    """One stomp.py connection of a given protocol version, with waits that are bounded."""

    def __init__(self, port: int, version: str, auto_decode: bool = True) -> None:
        self.version = version
        self.conn: Any = _CONNECTIONS[version](
            [("127.0.0.1", port)],
            timeout=TIMEOUT,
            reconnect_attempts_max=1,
            auto_decode=auto_decode,
        )
        self.frames = Recorder()
        self.conn.set_listener("recorder", self.frames)
        self._ids = itertools.count(1)

    def _next_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    # -- connecting ---------------------------------------------------------

    def connect(self, command: str | None = None) -> Any:
        """Send CONNECT (or STOMP, 1.1/1.2) and return the CONNECTED frame."""
        kwargs: dict[str, Any] = {"wait": False}
        if command is not None and self.version != "1.0":
            kwargs["with_connect_command"] = command == "CONNECT"
        self.conn.connect(**kwargs)
        frames = self.frames
        frames.wait(lambda: bool(frames.connected or frames.errors), "CONNECTED")
        if not frames.connected:
            raise AssertionError(f"CONNECT refused: {frames.errors[0].headers!r}")
        return frames.connected[0]

    def error(self, message: str) -> Any:
        """The ERROR the broker sent, once it has closed the connection: exactly one, whose
        ``message`` header is ``message`` exactly (as ``stompbroker.testing.Client.error``)."""
        frames = self.frames
        frames.wait(lambda: bool(frames.errors) and frames.disconnected, "an ERROR and the close")
        assert len(frames.errors) == 1, [e.headers for e in frames.errors]
        (error,) = frames.errors
        assert error.headers.get("message") == message, error.headers
        return error

    def disconnect(self) -> Any:
        """DISCONNECT with a receipt; return the RECEIPT once the connection has closed.

        stomp.py's own ``disconnect(receipt=...)`` blocks without a bound until the
        socket closes, so it runs in a helper thread that the test waits for.
        """
        receipt_id = self._next_id("disconnect")
        worker = threading.Thread(
            target=self.conn.disconnect, kwargs={"receipt": receipt_id}, daemon=True
        )
        worker.start()
        receipt = self.frames.wait_receipt(receipt_id)
        self.frames.wait(lambda: self.frames.disconnected, "the connection to close")
        worker.join(TIMEOUT)
        assert not worker.is_alive(), "stomp.py's disconnect() did not return"
        return receipt

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crashed client would."""
        self.conn.transport.disconnect_socket()
        self.frames.wait(lambda: self.frames.disconnected, "the connection to close")

    @property
    def is_open(self) -> bool:
        """Whether stomp.py still considers the connection open."""
        return bool(self.conn.is_connected())

    # -- frames that the broker answers with a RECEIPT ---------------------------

    def _headers(self, headers: dict[str, str] | None, receipt: bool) -> tuple[dict[str, str], str]:
        out = dict(headers or {})
        receipt_id = self._next_id("receipt") if receipt else ""
        if receipt:
            out["receipt"] = receipt_id
        return out, receipt_id

    def _await(self, receipt_id: str) -> None:
        if receipt_id:
            self.frames.wait_receipt(receipt_id)

    def send(
        self,
        destination: str,
        body: str | bytes,
        headers: dict[str, str] | None = None,
        transaction: str | None = None,
        receipt: bool = False,
    ) -> None:
        """SEND; with ``receipt``, ask for a RECEIPT and wait for it."""
        out, receipt_id = self._headers(headers, receipt)
        if transaction is not None:
            out["transaction"] = transaction
        self.conn.send(destination, body, headers=out)
        self._await(receipt_id)

    def subscribe(
        self,
        destination: str,
        ack: str = "auto",
        with_id: bool = True,
        headers: dict[str, str] | None = None,
    ) -> str:
        """SUBSCRIBE and wait until the broker has it; return the subscription id.

        Without ``with_id`` (STOMP 1.0 only) no ``id`` header is sent: the
        destination then names the subscription.
        """
        subscription_id = self._next_id("sub") if with_id else destination
        out, receipt_id = self._headers(headers, True)
        if with_id:
            self.conn.subscribe(destination, id=subscription_id, ack=ack, headers=out)
        else:
            self.conn.subscribe(destination, ack=ack, headers=out)
        self._await(receipt_id)
        return subscription_id

    def unsubscribe(self, subscription_id: str, by_destination: bool = False) -> None:
        """UNSUBSCRIBE (in 1.0 optionally naming the destination) and wait for the RECEIPT."""
        out, receipt_id = self._headers(None, True)
        if by_destination:
            self.conn.unsubscribe(destination=subscription_id, headers=out)
        else:
            self.conn.unsubscribe(id=subscription_id, headers=out)
        self._await(receipt_id)

    def ack(self, message: Any, transaction: str | None = None) -> None:
        """ACK ``message`` the way this protocol version names it; wait for the RECEIPT."""
        self._settle(self.conn.ack, message, transaction)

    def nack(self, message: Any, transaction: str | None = None) -> None:
        """NACK ``message`` (1.1/1.2); wait for the RECEIPT."""
        self._settle(self.conn.nack, message, transaction)

    def _settle(self, settle: Callable[..., None], message: Any, transaction: str | None) -> None:
        receipt_id = self._next_id("receipt")
        headers = message.headers
        if self.version == "1.0":
            settle(headers["message-id"], transaction=transaction, receipt=receipt_id)
        elif self.version == "1.1":
            settle(
                headers["message-id"],
                headers["subscription"],
                transaction=transaction,
                receipt=receipt_id,
            )
        else:
            settle(headers["ack"], transaction=transaction, receipt=receipt_id)
        self._await(receipt_id)

    def begin(self) -> str:
        """BEGIN a transaction; return its name."""
        out, receipt_id = self._headers(None, True)
        name = self._next_id("tx")
        self.conn.begin(name, headers=out)
        self._await(receipt_id)
        return name

    def commit(self, name: str) -> None:
        """COMMIT ``name``."""
        out, receipt_id = self._headers(None, True)
        self.conn.commit(name, headers=out)
        self._await(receipt_id)

    def abort(self, name: str) -> None:
        """ABORT ``name``."""
        out, receipt_id = self._headers(None, True)
        self.conn.abort(name, headers=out)
        self._await(receipt_id)

    # -- receiving ----------------------------------------------------------

    def wait_messages(self, count: int) -> list[Any]:
        """The first ``count`` messages this client received."""
        return self.frames.wait_messages(count)

    def wait_for_body(self, body: str | bytes) -> list[Any]:
        """Every message received up to and including the first whose body is ``body``."""
        frames = self.frames
        frames.wait(lambda: any(m.body == body for m in frames.messages), f"a message {body!r}")
        messages = list(frames.messages)
        end = next(i for i, m in enumerate(messages) if m.body == body)
        return messages[: end + 1]


@pytest.fixture
def connect(broker: RunningBroker) -> Iterator[Callable[..., Client]]:
    """Make connected stomp.py clients of the broker; any left open are dropped afterwards."""
    made: list[Client] = []

    def make(version: str, *, command: str | None = None, auto_decode: bool = True) -> Client:
        client = Client(broker.port, version, auto_decode=auto_decode)
        made.append(client)
        client.connect(command)
        return client

    yield make
    for client in made:
        if client.is_open:
            client.drop()


# -- raw sockets --------------------------------------------------------------------


@dataclass
class RawFrame:
    """A frame as read off the wire, headers undecoded."""

    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class RawClient:
    """A plain socket to the broker, for frames no well-behaved client would send."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self._buffer = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        """Write ``data`` as it is."""
        self.sock.sendall(data)

    def connect(self, version: str) -> RawFrame:
        """CONNECT asking for ``version``; return the CONNECTED frame."""
        self.send(f"CONNECT\naccept-version:{version}\nhost:localhost\n\n\0".encode())
        frame = self.read_frame()
        assert frame is not None and frame.command == "CONNECTED", frame
        return frame

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except TimeoutError:
            raise AssertionError(f"nothing from the broker for {TIMEOUT} s") from None
        if not chunk:
            self.closed = True
            return False
        self._buffer += chunk
        return True

    def read_frame(self) -> RawFrame | None:
        """The next frame (heart-beats skipped), or None if the broker closed first."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if not self._fill():
                return None

    def read_until_closed(self) -> list[RawFrame]:
        """Every frame until the broker closes the connection (bounded by TIMEOUT)."""
        frames = []
        while (frame := self.read_frame()) is not None:
            frames.append(frame)
        assert not self._buffer.strip(b"\r\n"), f"a partial frame at close: {self._buffer!r}"
        return frames

    def _parse(self) -> RawFrame | None:
        data = self._buffer.lstrip(b"\r\n")
        head_end = data.find(b"\n\n")
        if head_end < 0:
            return None
        lines = data[:head_end].decode("utf-8").split("\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.rstrip("\r").partition(":")
            headers.setdefault(name, value)
        start = head_end + 2
        if "content-length" in headers:
            end = start + int(headers["content-length"])
            if len(data) <= end:
                return None
            assert data[end] == 0, f"no NUL after content-length octets: {data!r}"
        else:
            end = data.find(b"\0", start)
            if end < 0:
                return None
        self._buffer = data[end + 1 :]
        return RawFrame(lines[0].rstrip("\r"), headers, data[start:end])

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


@pytest.fixture
def raw(broker: RunningBroker) -> Iterator[Callable[[], RawClient]]:
    """Make raw socket connections to the broker; all are closed afterwards."""
    made: list[RawClient] = []

    def make() -> RawClient:
        client = RawClient(broker.port)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()

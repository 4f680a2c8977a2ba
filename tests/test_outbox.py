"""The TCP writes of one reactor turn go out at its end, once per connection, straight to the
socket when Twisted holds nothing for it (``transport/_outbox.py``)."""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from stompbroker.codec import encode_frame
from stompbroker.transport import CountingTransport, Outbox, StompFactory
from stompbroker.transport._outbox import Gathered
from tests.test_connections import CONNECT, Listener


class FakeSocket:
    """Takes at most ``room`` bytes a call (None: all); raises ``error`` if given."""

    def __init__(self, room: int | None = None, error: OSError | None = None) -> None:
        self.room = room
        self.error = error
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = data if self.room is None else data[: self.room]
        self.sent.append(taken)
        return len(taken)


class PlainTcp(tcp.Connection):
    """Twisted's tcp.Connection with the parts the outbox reads set by hand, and a log of
    calls (no socket, no reactor)."""

    def __init__(self, socket: FakeSocket) -> None:  # not tcp.Connection's: no reactor
        self.TLS = False
        self.fake = socket
        self.socket = socket  # type: ignore[assignment]
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataBuffer: list[bytes] = []
        self.connected = 1
        self.disconnecting = False
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writeSequence(self, data: Any) -> None:  # noqa: N802
        raise AssertionError("not called")

    def loseConnection(self) -> None:  # noqa: N802
        self.calls.append(("loseConnection", b""))


def _gathered(transport: Any, *chunks: bytes) -> None:
    """Write ``chunks`` to ``transport`` in one turn of a reactor, then end the turn."""
    clock = Clock()
    writer = Gathered(transport, Outbox(clock))
    for chunk in chunks:
        writer.write(chunk)
    assert transport.calls == []  # nothing leaves before the turn ends
    if isinstance(getattr(transport, "fake", None), FakeSocket):
        assert transport.fake.sent == []
    clock.advance(0)


def test_a_turns_writes_go_to_the_socket_in_one_send_at_its_end() -> None:
    transport = PlainTcp(FakeSocket())
    _gathered(transport, b"MESSAGE 1\0", b"MESSAGE 2\0")
    assert transport.fake.sent == [b"MESSAGE 1\0MESSAGE 2\0"]
    assert transport.calls == []


def test_what_the_socket_does_not_take_is_left_to_twisted() -> None:
    transport = PlainTcp(FakeSocket(room=4))
    _gathered(transport, b"MESSAGE 1\0")
    assert transport.fake.sent == [b"MESS"]
    assert transport.calls == [("write", b"AGE 1\0")]


def test_a_full_socket_leaves_everything_to_twisted() -> None:
    for error in (BlockingIOError(), ConnectionResetError()):
        transport = PlainTcp(FakeSocket(error=error))
        _gathered(transport, b"a", b"b")
        assert transport.calls == [("write", b"ab")]


def test_bytes_queue_behind_what_twisted_still_holds() -> None:
    for held in ("buffer", "temp"):
        transport = PlainTcp(FakeSocket())
        if held == "buffer":
            transport.dataBuffer, transport.offset = b"older", 2
        else:
            transport._tempDataBuffer.append(b"older")
        _gathered(transport, b"newer")
        assert transport.fake.sent == []
        assert transport.calls == [("write", b"newer")]


def test_tls_and_closing_connections_are_never_written_directly() -> None:
    tls = PlainTcp(FakeSocket())
    tls.TLS = True
    closing = PlainTcp(FakeSocket())
    closing.disconnecting = True
    for transport in (tls, closing):
        _gathered(transport, b"a", b"b")
        assert transport.fake.sent == []
        assert transport.calls == [("write", b"ab")]


class TlsWrapper:
    """Like Twisted's TLSMemoryBIOProtocol: a transport that hands unknown attributes to the
    TCP connection beneath it, whose socket must never see the clear text."""

    def __init__(self, tcp_connection: PlainTcp) -> None:
        self.tcp_connection = tcp_connection
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tcp_connection, name)


def test_a_tls_wrapper_is_written_through_even_though_it_shows_the_tcp_connection() -> None:
    wrapper = TlsWrapper(PlainTcp(FakeSocket()))
    _gathered(wrapper, b"a", b"b")
    assert wrapper.tcp_connection.fake.sent == []
    assert wrapper.calls == [("write", b"ab")]


def test_one_call_ends_the_turn_for_every_writer() -> None:
    clock = Clock()
    outbox = Outbox(clock)
    first, second = PlainTcp(FakeSocket()), PlainTcp(FakeSocket())
    writers = [Gathered(first, outbox), Gathered(second, outbox)]
    for n in range(3):
        for writer in writers:
            writer.write(b"%d" % n)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert (first.fake.sent, second.fake.sent) == ([b"012"], [b"012"])
    writers[0].write(b"next turn")
    assert len(clock.getDelayedCalls()) == 1


def test_a_writer_holding_64_kib_sends_at_once() -> None:
    """So that Twisted's buffer fills and pauses the session mid-turn, as without the outbox."""
    clock = Clock()
    transport = PlainTcp(FakeSocket(error=BlockingIOError()))
    writer = Gathered(transport, Outbox(clock))
    chunk = b"x" * 16_384
    for _ in range(3):
        writer.write(chunk)
    assert transport.calls == []
    writer.write(chunk)
    assert transport.calls == [("write", chunk * 4)]
    writer.write(b"tail")
    clock.advance(0)
    assert transport.calls[1:] == [("write", b"tail")]


def test_an_error_frame_leaves_before_the_connection_closes() -> None:
    clock = Clock()
    transport = PlainTcp(FakeSocket(error=BlockingIOError()))
    counting = CountingTransport(transport, Outbox(clock))
    counting.write(b"ERROR\n\nbad frame\0")
    counting.loseConnection()
    assert transport.calls == [("write", b"ERROR\n\nbad frame\0"), ("loseConnection", b"")]
    assert counting.bytes_out == len(b"ERROR\n\nbad frame\0")
    clock.advance(0)  # the turn's end finds nothing left
    assert len(transport.calls) == 2


class CountedWrites(StringTransport):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def test_a_consumer_gets_the_messages_of_one_turn_in_one_write() -> None:
    """Three SENDs read in one turn reach the consumer's connection as one write, at its end."""
    listener = Listener()
    factory = StompFactory(listener.tcp.make_session, None, listener.connections)
    factory.outbox = Outbox(listener.clock)
    consumer = factory.buildProtocol(None)
    consumer_transport = CountedWrites()
    consumer.makeConnection(consumer_transport)
    consumer.dataReceived(CONNECT)
    consumer.dataReceived(encode_frame("SUBSCRIBE", {"id": "s", "destination": "/queue/q"}))
    producer = factory.buildProtocol(None)
    producer.makeConnection(StringTransport())
    producer.dataReceived(CONNECT)
    listener.clock.advance(0)
    before = consumer_transport.writes
    sends = b"".join(
        encode_frame("SEND", {"destination": "/queue/q"}, b"m%d" % n) for n in range(3)
    )
    producer.dataReceived(sends[:-40])
    producer.dataReceived(sends[-40:])
    assert consumer_transport.writes == before
    listener.clock.advance(0)
    assert consumer_transport.writes == before + 1
    assert consumer_transport.value().count(b"MESSAGE\n") == 3
    assert [
        frame.rsplit(b"\n\n", 1)[1] for frame in consumer_transport.value().split(b"\0")[1:4]
    ] == [b"m0", b"m1", b"m2"]

"""Topics across nodes through PostgreSQL's LISTEN/NOTIFY: ``PgListener`` and ``PgTopicBus``.

Two brokers in this process, each with its own listener and bus on one database, on a
reactor of the test's own (never the global one), turned until what the test waits for
has happened, within a bound: no sleeps. The payloads' layout is tested without a server.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.selectreactor import SelectReactor
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from stompbroker.config import parse
from stompbroker.core import Broker, ITopicBus, Message
from stompbroker.service import BrokerService
from stompbroker.store import (
    PgListener,
    PgTopicBus,
    StoreRefused,
    _pg_bus,
    _pg_database,
    _pg_listen,
)
from stompbroker.testing import RecordingConsumer

from ._postgres import free_port
from .test_store import run_now

#: The longest a test waits for what it expects (seconds).
BOUND = 15.0


class Loop:
    """A reactor of the test's own, turned on demand."""

    def __init__(self) -> None:
        self.reactor = SelectReactor()

    def until(self, condition: Callable[[], bool], what: str, seconds: float = BOUND) -> None:
        """Turn the reactor until ``condition()`` holds; fail after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"still waiting, after {seconds} s, for {what}")
            self.reactor.iterate(0.05)

    def wait(self, deferred: Deferred[Any]) -> Any:
        """Turn the reactor until ``deferred`` fires; its result (or raise its failure)."""
        outcome: list[Any] = []
        deferred.addBoth(outcome.append)
        self.until(lambda: bool(outcome), "a Deferred to fire")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]

    def close(self) -> None:
        self.reactor.removeAll()
        waker = self.reactor.waker
        if waker is not None:
            self.reactor.removeReader(waker)
            waker.connectionLost(None)


class Node:
    """One broker with its own listener and bus."""

    def __init__(self, dsn: str, loop: Loop, name: str) -> None:
        self.listener = PgListener(dsn, loop.reactor, run_now, f"node-{name}")
        self.bus = PgTopicBus(self.listener, loop.reactor, name)
        self.broker = Broker(loop.reactor, id_prefix=f"ID-{name}", bus=self.bus)

    def consume(self, destination: str, name: str = "s") -> RecordingConsumer:
        consumer = RecordingConsumer()
        self.broker.subscribe(consumer, name, destination, "auto", 100_000)
        return consumer


@pytest.fixture
def loop() -> Iterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


@pytest.fixture
def nodes(postgres_dsn: str, loop: Loop) -> Iterator[Callable[[str], Node]]:
    """Started nodes on one database, stopped after the test."""
    started: list[Node] = []

    def start(name: str) -> Node:
        node = Node(postgres_dsn, loop, name)
        loop.wait(node.bus.start())
        started.append(node)
        return node

    yield start
    for node in started:
        loop.wait(node.bus.stop())


def _terminate(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


# -- two nodes on one database --------------------------------------------------------


def test_the_bus_provides_the_interface() -> None:
    """PgTopicBus is a full ITopicBus."""
    listener = PgListener("", Clock(), run_now)
    assert verifyObject(ITopicBus, PgTopicBus(listener, Clock(), "a"))


def test_a_publish_on_one_node_reaches_a_subscriber_on_the_other(
    nodes: Callable[[str], Node], loop: Loop
) -> None:
    """A's publish reaches B's subscriber with its id, headers, body, persistent flag,
    priority and expiry."""
    a, b = nodes("a"), nodes("b")
    far = b.consume("/topic/news")
    expires = int(time.time() * 1000) + 60_000
    headers = {"k": "v", "é": "ü", "priority": "8", "expires": str(expires)}
    sent = a.broker.send("/topic/news", headers, b"\x00\xffhello", persistent=True).message
    loop.until(lambda: bool(far.deliveries), "B's subscriber to get A's publish")
    (got,) = far.take()
    assert (got.message_id, got.destination, got.body) == (
        sent.message_id,
        "/topic/news",
        b"\x00\xffhello",
    )
    assert (dict(got.headers), got.persistent, got.priority, got.expires) == (
        dict(sent.headers),
        True,
        8,
        expires,
    )


def test_wildcard_subscribers_on_the_other_node_get_the_publish(
    nodes: Callable[[str], Node], loop: Loop
) -> None:
    """B's a.* gets A's a.b; B's a.> gets a.b and a.b.c, in order."""
    a, b = nodes("a"), nodes("b")
    star, rest = b.consume("/topic/a.*", "1"), b.consume("/topic/a.>", "2")
    a.broker.send("/topic/a.b", {}, b"1")
    a.broker.send("/topic/a.b.c", {}, b"2")
    loop.until(lambda: len(rest.deliveries) == 2, "B's a.> subscriber to get both")
    assert star.bodies() == [b"1"]
    assert rest.bodies() == [b"1", b"2"]


def test_a_large_body_crosses_in_pieces_byte_for_byte(
    nodes: Callable[[str], Node], loop: Loop
) -> None:
    """A 100 KB body goes in several payloads and arrives whole, byte for byte."""
    a, b = nodes("a"), nodes("b")
    far = b.consume("/topic/big")
    body = os.urandom(100 * 1024)
    a.broker.send("/topic/big", {}, body)
    loop.until(lambda: bool(far.deliveries), "B's subscriber to get the large message")
    assert far.bodies() == [body]
    assert a.bus.payloads_sent == b.bus.payloads_received > 10


def test_one_turns_publishes_go_in_one_payload_and_arrive_in_order(
    nodes: Callable[[str], Node], loop: Loop
) -> None:
    """Fifty small publishes of one reactor turn cross in one payload, in order."""
    a, b = nodes("a"), nodes("b")
    far = b.consume("/topic/many")
    for n in range(50):
        a.broker.send("/topic/many", {}, str(n).encode())
    loop.until(lambda: len(far.deliveries) == 50, "B's subscriber to get all fifty")
    assert far.bodies() == [str(n).encode() for n in range(50)]
    assert a.bus.payloads_sent == 1


def test_a_node_does_not_deliver_its_own_publish_twice(
    nodes: Callable[[str], Node], loop: Loop
) -> None:
    """A's subscriber gets A's publish once, though A's notification comes back to A: a
    publish B makes after it arrives after it, and is the only other one."""
    a, b = nodes("a"), nodes("b")
    near, far = a.consume("/topic/news"), b.consume("/topic/news")
    a.broker.send("/topic/news", {}, b"from a")
    loop.until(lambda: bool(far.deliveries), "B to get A's publish")
    b.broker.send("/topic/news", {}, b"from b")
    loop.until(lambda: len(near.deliveries) == 2, "A to get B's publish")
    assert near.bodies() == [b"from a", b"from b"]
    assert far.bodies() == [b"from a", b"from b"]
    assert a.bus.received == 1 and b.bus.received == 1


def test_delivery_resumes_after_the_server_ends_the_listeners_connection(
    nodes: Callable[[str], Node], loop: Loop, postgres_dsn: str
) -> None:
    """The server ends B's listening connection: B connects again on a new backend, says
    so (``reconnected``), and gets A's publishes again; A gets B's."""
    a, b = nodes("a"), nodes("b")
    near, far = a.consume("/topic/news"), b.consume("/topic/news")
    reconnections: list[int] = []
    b.listener.reconnected = lambda: reconnections.append(b.listener.own_pid)
    old = b.listener.own_pid
    _terminate(postgres_dsn, old)
    loop.until(lambda: bool(reconnections), "B's listener to connect again", BOUND)
    assert reconnections[0] != old and b.listener.connected
    a.broker.send("/topic/news", {}, b"after")
    loop.until(lambda: bool(far.deliveries), "B to get A's publish after reconnecting")
    b.broker.send("/topic/news", {}, b"back")
    loop.until(lambda: len(near.deliveries) == 2, "A to get B's publish")
    assert far.bodies() == [b"after", b"back"] and near.bodies() == [b"after", b"back"]


def test_a_service_on_postgresql_starts_and_stops_its_bus_with_the_store(
    nodes: Callable[[str], Node], loop: Loop, postgres_dsn: str, tmp_path: Path
) -> None:
    """``broker.store: postgresql``: the service's broker publishes to and hears from the
    other nodes once started; its listener is gone once stopped."""
    text = f"broker:\n  store: postgresql\n  data_dir: '{tmp_path}'\n"
    config = parse(text + f"postgresql:\n  dsn: '{postgres_dsn}'\n  node: svc\n")
    service = BrokerService(config, loop.reactor, [])
    other = nodes("other")
    service.startService()
    assert service.bus is not None
    listener = service.bus.listener
    assert isinstance(listener, PgListener) and listener.connected
    here, there = RecordingConsumer(), other.consume("/topic/news")
    service.broker.subscribe(here, "s", "/topic/news")
    service.broker.send("/topic/news", {}, b"from the service")
    other.broker.send("/topic/news", {}, b"from the other")
    loop.until(lambda: len(here.deliveries) == len(there.deliveries) == 2, "both ways")
    assert here.bodies() == [b"from the service", b"from the other"]
    assert sorted(there.bodies()) == [b"from the other", b"from the service"]
    loop.wait(service.stopService())
    assert not listener.connected


# -- the listener ---------------------------------------------------------------------


def test_a_listener_hears_channels_listened_to_after_its_start_and_its_own_notifies(
    postgres_dsn: str, loop: Loop
) -> None:
    """A channel listened to after the start is heard; a listener's own notifications come
    back to it too, from its own backend, named for its node in pg_stat_activity."""
    one = PgListener(postgres_dsn, loop.reactor, run_now, "n1")
    other = PgListener(postgres_dsn, loop.reactor, run_now, "n2")
    heard: list[tuple[str, str]] = []
    loop.wait(one.start())
    loop.wait(other.start())
    one.listen("late", lambda payload: heard.append(("one", payload)))
    other.listen("late", lambda payload: heard.append(("other", payload)))
    loop.until(lambda: not one.busy and not other.busy, "the LISTENs to be answered")
    one.notify("late", "x")
    one.notify("late", "y")
    loop.until(lambda: len(heard) == 4, "both listeners to hear both")
    assert sorted(heard) == [("one", "x"), ("one", "y"), ("other", "x"), ("other", "y")]
    with psycopg.connect(postgres_dsn) as conn:
        names = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = %s", (one.own_pid,)
        ).fetchall()
    assert names == [("stompbroker n1 listen",)]
    loop.wait(one.stop())
    loop.wait(other.stop())


def test_a_listener_that_cannot_connect_at_start_fails_in_one_line(loop: Loop) -> None:
    """No server at the DSN: start fails with StoreRefused, saying so on one line."""
    listener = PgListener(
        f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=5", loop.reactor, run_now
    )
    with pytest.raises(StoreRefused) as refused:
        loop.wait(listener.start())
    assert str(refused.value).startswith("cannot LISTEN on PostgreSQL: connection failed:")
    assert "\n" not in str(refused.value)


def test_a_stopped_listener_drops_notifies_and_does_not_reconnect(
    postgres_dsn: str, loop: Loop
) -> None:
    """After stop, a notify is dropped and nothing is scheduled."""
    listener = PgListener(postgres_dsn, loop.reactor, run_now)
    loop.wait(listener.start())
    loop.wait(listener.stop())
    listener.notify("c", "lost")
    assert not listener.connected and loop.reactor.getDelayedCalls() == []


def test_keepalives_are_set_unless_the_dsn_sets_them() -> None:
    """The listening connection probes an idle server (libpq keepalives); a DSN's own
    settings win."""
    mine = psycopg.conninfo.conninfo_to_dict(_pg_listen.connection_string("host=db", "n"))
    assert {k: mine[k] for k in _pg_database.KEEPALIVES} == _pg_database.KEEPALIVES
    theirs = _pg_listen.connection_string("host=db keepalives_idle=60", "n")
    assert psycopg.conninfo.conninfo_to_dict(theirs)["keepalives_idle"] == "60"


def test_a_channel_name_that_would_need_quoting_is_refused() -> None:
    """Channels are plain identifiers: anything else is refused when listened to."""
    listener = PgListener("", Clock(), run_now)
    with pytest.raises(ValueError, match="is not a plain lower-case identifier"):
        listener.listen("Bad-Name", lambda payload: None)


# -- the payloads, without a server ----------------------------------------------------


class Wire:
    """Listeners joined in memory: what one notifies, every one hears, in order."""

    def __init__(self) -> None:
        self.heard: list[Callable[[str], None]] = []
        self.sent: list[str] = []

    def listen(self, channel: str, received: Callable[[str], None]) -> None:
        self.heard.append(received)

    def notify(self, channel: str, payload: str) -> None:
        self.sent.append(payload)

    def start(self) -> Deferred[None]:
        return Deferred()

    def stop(self) -> Deferred[None]:
        return Deferred()


def _message(n: int, body: bytes = b"b") -> Message:
    return Message(f"ID-{n}", "/topic/t", {"n": str(n)}, body, False, n, 4, 0)


def _receiver() -> tuple[PgTopicBus, list[tuple[str, Message]]]:
    got: list[tuple[str, Message]] = []
    bus = PgTopicBus(Wire(), Clock(), "me")
    bus.attach(lambda name, message: got.append((name, message)))
    return bus, got


def test_payloads_stay_under_the_limit_and_join_back_whole() -> None:
    """A batch too long for one payload is cut into pieces under the limit, each with its
    place; joined, they give back every message."""
    messages = [_message(n, bytes([n]) * 300) for n in range(40)]
    payloads = _pg_bus.encode(messages, "a", "7", 1000)
    assert len(payloads) > 10 and all(len(p) <= 1000 for p in payloads)
    assert [p.split(" ")[:5] for p in payloads[:2]] == [
        ["1", "a", "7", "0", str(len(payloads))],
        ["1", "a", "7", "1", str(len(payloads))],
    ]
    bus, got = _receiver()
    for payload in payloads:
        bus._received(payload)
    assert [(name, m.message_id, m.body, m.seq) for name, m in got] == [
        ("t", f"ID-{n}", bytes([n]) * 300, 0) for n in range(40)
    ]


def test_pieces_of_two_senders_interleaved_join_per_sender() -> None:
    """Pieces of two senders' batches, interleaved, each join their own."""
    first = _pg_bus.encode([_message(1, b"x" * 500)], "a", "1", 200)
    second = _pg_bus.encode([_message(2, b"y" * 500)], "b", "1", 200)
    bus, got = _receiver()
    for pair in zip(first, second, strict=False):
        for payload in pair:
            bus._received(payload)
    for payload in first[len(second) :] + second[len(first) :]:
        bus._received(payload)
    assert sorted(m.message_id for _, m in got) == ["ID-1", "ID-2"]


def test_a_batch_missing_a_piece_is_dropped_and_the_next_one_arrives() -> None:
    """A piece lost (the receiver's connection dropped) ends its batch unread, counted; the
    sender's next batch is delivered."""
    broken = _pg_bus.encode([_message(1, b"x" * 500)], "a", "1", 200)
    whole = _pg_bus.encode([_message(2)], "a", "2", 200)
    bus, got = _receiver()
    for payload in [broken[0], *broken[2:], *whole]:
        bus._received(payload)
    assert [m.message_id for _, m in got] == ["ID-2"]
    assert bus.lost == 1


def test_a_node_skips_its_own_payloads_and_unknown_layouts() -> None:
    """Its own sender's payloads and payloads of another layout deliver nothing."""
    bus, got = _receiver()
    bus._received(_pg_bus.encode([_message(1)], "me", "1", 7900)[0])
    bus._received("2 other 1 0 1 []")
    bus._received("garbage")
    assert got == [] and bus.payloads_received == 0


def test_one_turns_publishes_are_sent_together_on_the_next_turn() -> None:
    """Publishes of one turn go out in one payload, once the turn is over."""
    clock = Clock()
    wire = Wire()
    bus = PgTopicBus(wire, clock, "a")
    for n in range(3):
        bus.publish("t", _message(n))
    assert wire.sent == []
    clock.advance(0)
    assert len(wire.sent) == 1 and bus.sent == 3

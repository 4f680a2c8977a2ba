"""A bounded soak: hostile connections hammer a real listener while a canary client works.

For ``SOAK_SECONDS`` four raw sockets send seeded random and mutated frames (the corpus of
``tests/test_session_fuzz.py``, plus oversized lines, header floods and bodies without NUL)
over connection after connection, while a stomp.py canary sends persistent messages with
receipts to a queue and receives them. The broker runs in this process (on the reactor
thread), so its memory is this process's resident set, read from ``/proc/self/status``.

Any input found here to break the broker belongs in ``tests/test_session_fuzz.py`` as a
regression case.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import stomp
from twisted.logger import ILogObserver, globalLogPublisher
from zope.interface import implementer

from stompbroker.codec import encode_frame
from tests.test_session_fuzz import COMMANDS, NAMES, TEMPLATES, VALUES

from .conftest import TIMEOUT, Client, RawClient, RunningBroker, poll

pytestmark = pytest.mark.interop

#: How long the hostile connections run.
SOAK_SECONDS = 6.0
#: How many hostile connections run at once.
FUZZERS = 4
#: How long a hostile connection waits for the broker's answer before hanging up.
READ_SECONDS = 0.3
#: The most the process's resident memory may grow during the soak, in KiB.
MAX_RSS_GROWTH_KIB = 100 * 1024
SEED = 61613
#: The fuzz corpus's header values, huge numbers included.
SOAK_VALUES = VALUES
CANARY = "/queue/canary"


@implementer(ILogObserver)
class Failures:
    """Records the failures logged while it observes the global log."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        if "log_failure" in event:
            self.events.append(event)

    def __enter__(self) -> Failures:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        globalLogPublisher.removeObserver(self)

    def traceback(self) -> str:
        """The first failure's traceback ("" when none was logged)."""
        return self.events[0]["log_failure"].getTraceback() if self.events else ""


def rss_kib() -> int:
    """This process's resident set size, in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# -- hostile input --------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted or repeated, or cut short."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            break
        at = rng.randrange(len(out))
        kind = rng.randrange(5)
        if kind == 0:
            out[at] = rng.choice([0, 10, 13, 58, 92, 255, out[at] ^ 1])
        elif kind == 1:
            out[at:at] = rng.choice([b"\0", b"\n", b"\r\n", b":", b"\\", b"\xff", b"\xc2\xb2"])
        elif kind == 2:
            del out[at : at + rng.randint(1, 8)]
        elif kind == 3:
            out[at:at] = out[at : at + rng.randint(1, 64)] * rng.randint(1, 8)
        else:
            del out[at:]
    return bytes(out)


def oversized(rng: random.Random) -> bytes:
    """A frame past one of the parser's limits (cut short: the broker stops reading first)."""
    return rng.choice(
        [
            b"SEND\ndestination:/queue/fuzz\nx:" + b"x" * 20_000,
            b"SEND\ndestination:/queue/fuzz\n" + b"h:v\n" * 300,
            b"SEND\ndestination:/queue/fuzz\ncontent-length:99999999\n\n",
            b"SEND\ndestination:/queue/fuzz\n\n" + b"y" * 200_000,
            b"CONNECT\naccept-version:1.2\n" + b"z" * 8000,
        ]
    )


def hostile_frame(rng: random.Random) -> bytes:
    """One frame of the soak: mostly a template changed a little, sometimes pure noise."""
    roll = rng.random()
    if roll < 0.05:
        return rng.randbytes(rng.randint(1, 200))
    if roll < 0.08:
        return oversized(rng)
    command, headers, body = rng.choice(TEMPLATES)
    headers = dict(headers)
    if rng.random() < 0.15:
        command = rng.choice(COMMANDS) or "X"
    if rng.random() < 0.3:
        headers[rng.choice(NAMES)] = rng.choice(SOAK_VALUES)
    if headers and rng.random() < 0.15:
        del headers[rng.choice(sorted(headers))]
    data = encode_frame(command, headers, body, rng.choice(["1.0", "1.1", "1.2"]))
    return mutate(rng, data) if rng.random() < 0.3 else data


def hostile_stream(rng: random.Random) -> bytes:
    """What one hostile connection sends, made harmless to the canary: no wildcards."""
    parts = [hostile_frame(rng) for _ in range(rng.randint(1, 10))]
    if rng.random() < 0.8:
        parts.insert(0, encode_frame(*TEMPLATES[0]))
    if rng.random() < 0.5:
        parts.append(b"DISCONNECT\nreceipt:end\n\n\0")
    return b"".join(parts).replace(b"*", b"_").replace(b">", b"_")


class Fuzzer(threading.Thread):
    """Opens connection after connection, each sending a hostile stream, until stopped."""

    def __init__(self, port: int, seed: int, stop: threading.Event) -> None:
        super().__init__(name=f"fuzzer-{seed}", daemon=True)
        self.port = port
        self.rng = random.Random(seed)
        self.stop = stop
        self.counts: Counter[str] = Counter()
        #: What went wrong that should not: the broker refusing or failing a connection.
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set() and not self.problems:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)
            except OSError as exc:
                self.problems.append(f"cannot connect: {exc!r}")
                return
            with sock:
                self._hammer(sock)

    def _hammer(self, sock: socket.socket) -> None:
        """Send one stream, then read until the broker closes or goes quiet."""
        self.counts["connections"] += 1
        try:
            sock.sendall(hostile_stream(self.rng))
        except OSError:
            self.counts["closed while sending"] += 1
            return
        sock.settimeout(READ_SECONDS)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                self.counts["hung up on"] += 1
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.counts["closed by the broker"] += 1
                break
            answer += chunk
        self.counts["errors"] += answer.count(b"ERROR\n")
        if b"internal error" in answer:
            self.problems.append(f"internal error in {answer[-300:]!r}")


# -- the canary -----------------------------------------------------------------------------


def run_canary(client: Client, until: float) -> list[str]:
    """Send persistent messages with receipts until ``until``; the bodies receipted."""
    receipted = []
    count = 0
    while time.monotonic() < until:
        count += 1
        body = f"canary-{count}"
        client.send(CANARY, body, headers={"persistent": "true"}, receipt=True)
        receipted.append(body)
    return receipted


class Soak:
    """The hostile connections, run for SOAK_SECONDS beside the canary, and what they saw."""

    def __init__(self, broker: RunningBroker) -> None:
        self.broker = broker
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        #: Failures logged by the broker during the soak (none is expected).
        self.failures = Failures()

    def run(self, canary: Client) -> list[str]:
        """Hammer the broker while the canary works; the canary's receipted bodies."""
        stop = threading.Event()
        fuzzers = [Fuzzer(self.broker.port, SEED + n, stop) for n in range(FUZZERS)]
        with self.failures:
            try:
                for fuzzer in fuzzers:
                    fuzzer.start()
                receipted = run_canary(canary, time.monotonic() + SOAK_SECONDS)
            finally:
                stop.set()
                for fuzzer in fuzzers:
                    fuzzer.join(TIMEOUT)
        for fuzzer in fuzzers:
            self.counts += fuzzer.counts
            self.problems += fuzzer.problems
            if fuzzer.is_alive():
                self.problems.append(f"{fuzzer.name} did not stop")
        return receipted


def test_broker_survives_hostile_connections_and_keeps_serving(
    broker: RunningBroker, connect: Callable[..., Client]
) -> None:
    """6 s, 4 hostile connections: broker up, canary gets all receipted, RSS grows < 100 MB."""
    canary = connect("1.2")
    canary.subscribe(CANARY)
    canary.send(CANARY, "warm-up", receipt=True)
    canary.wait_for_body("warm-up")
    before = rss_kib()
    soak = Soak(broker)
    receipted = soak.run(canary)
    grown = rss_kib() - before
    counts = soak.counts
    assert not soak.problems, (soak.problems, counts)
    assert counts["connections"] > 50 and counts["errors"] > 50, counts
    assert not soak.failures.events, soak.failures.traceback()
    assert receipted, "the canary got no receipt at all"
    canary.wait_for_body(receipted[-1])
    received = [m.body for m in canary.frames.messages]
    assert [b for b in received if b.startswith("canary-")] == receipted
    assert grown < MAX_RSS_GROWTH_KIB, f"grew {grown} KiB during the soak; {counts}"
    poll(lambda: broker.open_connections() == 1, "the hostile connections to be closed")
    late = connect("1.1")
    late.send(CANARY, "after", receipt=True)
    canary.wait_for_body("after")
    late.disconnect()
    canary.disconnect()
    poll(lambda: broker.call(lambda: broker.service.limiter.open) == 0, "every place back")


def test_connection_limits_hold_on_a_real_listener(
    broker: RunningBroker, connect: Callable[..., Client]
) -> None:
    """With max_connections_per_address at 2, a third stomp.py client gets ERROR, then room."""
    limiter = broker.service.limiter
    broker.call(setattr, limiter, "max_per_address", 2)
    first = connect("1.2")
    connect("1.2")
    third = Client(broker.port, "1.2")
    # The ERROR and the close may come before stomp.py has sent its CONNECT: then its
    # send fails one way or another, and the listener has the ERROR all the same.
    with contextlib.suppress(stomp.exception.NotConnectedException, OSError):
        third.conn.connect(wait=False)
    third.frames.wait(lambda: bool(third.frames.errors), "the refusal")
    assert third.frames.errors[0].headers["message"] == "too many connections"
    third.frames.wait(lambda: third.frames.disconnected, "the refused connection to close")
    first.disconnect()
    poll(lambda: broker.call(lambda: limiter.open) == 1, "the closed connection's place back")
    fourth = connect("1.2")
    assert fourth.frames.connected


# -- regressions found by the soak -------------------------------------------------------------


def _read_until_closed(client: RawClient) -> bytes:
    """Every byte until the broker closes the connection; fails after TIMEOUT of silence."""
    out = bytearray()
    while True:
        try:
            chunk = client.sock.recv(1 << 20)
        except TimeoutError:
            raise AssertionError(f"the broker neither wrote nor closed for {TIMEOUT} s") from None
        except ConnectionResetError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def test_connection_closing_while_its_deliveries_are_paused_still_closes(
    raw: Callable[[], RawClient],
) -> None:
    """ERROR on a connection whose send buffer was full still ends in a close once it drains."""
    client = raw()
    client.connect("1.2")
    client.send(b"SUBSCRIBE\ndestination:/topic/flood\nid:0\n\n\0")
    body = b"f" * (1 << 20)
    flood = encode_frame("SEND", {"destination": "/topic/flood"}, body)
    for _ in range(16):  # far more than the socket buffers hold: the broker pauses
        client.send(flood)
    client.send(b"BAD\n\n\0")
    received = _read_until_closed(client)
    assert b"ERROR\nmessage:unknown command\n" in received


def test_huge_expires_is_refused_not_a_store_failure(raw: Callable[[], RawClient]) -> None:
    """A persistent SEND with expires:9...9 (40 digits) gets a clear ERROR, not a failed write."""
    client = raw()
    client.connect("1.2")
    with Failures() as failures:
        client.send(
            b"SEND\ndestination:/queue/q\npersistent:true\nexpires:"
            + b"9" * 40
            + b"\nreceipt:r\n\nx\0"
        )
        frames = client.read_until_closed()
    assert not failures.events, failures.traceback()
    # Raw frames keep their headers escaped: \c is the colon.
    assert [(f.command, f.headers["message"]) for f in frames] == [
        (
            "ERROR",
            f"invalid expires '{'9' * 40}'\\c "
            "expected a non-negative integer (ms) of at most 15 digits",
        )
    ], frames

"""Durability in a real broker process: SIGKILL under load, and a reactor that keeps serving.

The promises under test: every persistent message whose RECEIPT reached its
producer is delivered after a restart (at least once); while a large persistent
load is being written, a heart-beating client is served on time.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stomp

from stompbroker.store._database import Database

from .conftest import TIMEOUT, Client, RunningBroker, poll
from .test_twistd import Output, free_port, kill_twistd, spawn_twistd

PRODUCERS = 3
#: Messages each producer may send; the kill comes well before they are all sent.
PER_PRODUCER = 20_000
#: Receipts to see before the kill.
RECEIPTS_BEFORE_KILL = 1000


class BrokerProcess:
    """``twistd -n stompbroker`` on a data directory, started and killed at will."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.data = tmp_path / "data"
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.output: Output | None = None

    def start(self) -> None:
        self.process, self.output = spawn_twistd(
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1",
            "--data-dir",
            str(self.data),
            cwd=self.tmp_path,
        )
        # The port is bound before the store opens: wait for the recovery, which follows it.
        self.output.wait_for("recovered ")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        assert self.process is not None and self.output is not None
        kill_twistd(self.process, self.output)
        self.process = None


@pytest.fixture
def process(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker process (not started yet), killed at the end."""
    running = BrokerProcess(tmp_path)
    try:
        yield running
    finally:
        if running.process is not None:
            running.kill()


def _produce(port: int, name: str, sent: dict[str, str], stop: threading.Event) -> Client:
    """Send persistent messages, each asking for a receipt, until the broker dies."""
    client = Client(port, "1.2")
    client.connect()
    for n in range(PER_PRODUCER):
        if stop.is_set():
            break
        body = f"{name}-{n}"
        sent[f"{name}-r{n}"] = body
        try:
            client.conn.send(
                "/queue/crash", body, headers={"persistent": "true", "receipt": f"{name}-r{n}"}
            )
        except Exception:  # the broker is gone: stomp.py says so in several ways
            break
    return client


def test_every_receipted_message_survives_sigkill(process: BrokerProcess) -> None:
    """SIGKILL while 3 producers send persistent messages: after restart, all receipted arrive."""
    process.start()
    stop = threading.Event()
    sent: list[dict[str, str]] = [{} for _ in range(PRODUCERS)]
    clients: list[Any] = [None] * PRODUCERS

    def run(index: int) -> None:
        clients[index] = _produce(process.port, f"p{index}", sent[index], stop)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    poll(
        lambda: (
            sum(len(c.frames.receipts) for c in clients if c is not None) >= RECEIPTS_BEFORE_KILL
        ),
        "receipts before the kill",
        timeout=TIMEOUT * 6,
    )
    process.kill()
    stop.set()
    for thread in threads:
        thread.join(TIMEOUT)
    receipted: set[str] = set()
    for client, bodies in zip(clients, sent, strict=True):
        with client.frames._changed:
            ids = [r.headers["receipt-id"] for r in client.frames.receipts]
        receipted.update(bodies[i] for i in ids)
    assert len(receipted) >= RECEIPTS_BEFORE_KILL
    # The kill must interrupt work: SENDs written by the producers and not yet receipted
    # (stomp.py may hand every SEND to the kernel before the broker has read them).
    attempted = sum(len(bodies) for bodies in sent)
    assert len(receipted) < attempted, "the kill came after the broker had answered everything"

    process.start()
    consumer = Client(process.port, "1.2")
    consumer.connect()
    consumer.subscribe("/queue/crash", ack="auto")
    consumer.frames.wait(
        lambda: receipted <= {m.body for m in consumer.frames.messages},
        "every receipted message after the restart",
        timeout=TIMEOUT * 6,
    )
    with contextlib.suppress(Exception):
        consumer.disconnect()


class _Beats(stomp.ConnectionListener):
    """Counts heart-beat timeouts stomp.py reports for the broker."""

    def __init__(self) -> None:
        self.timeouts = 0

    def on_heartbeat_timeout(self) -> None:
        self.timeouts += 1


def _flood(port: int, count: int, size: int, done: threading.Event) -> None:
    """Write ``count`` persistent SENDs of ``size`` bytes as fast as the socket takes them."""
    body = b"x" * size
    frame = (
        b"SEND\ndestination:/queue/load\npersistent:true\ncontent-length:%d\n\n" % size
        + body
        + b"\0"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT * 6) as sock:
        sock.sendall(b"CONNECT\naccept-version:1.2\nhost:x\n\n\0")
        chunk = frame * 200
        for _ in range(count // 200):
            sock.sendall(chunk)
        sock.sendall(b"SEND\ndestination:/queue/load\nreceipt:last\n\nend\0")
        seen = b""
        while b"receipt-id:last" not in seen:
            data = sock.recv(65536)
            if not data:
                break
            seen = seen[-64:] + data
    done.set()


def test_heartbeats_and_other_clients_are_served_during_a_large_persistent_load(
    process: BrokerProcess,
) -> None:
    """While 100 MB of persistent messages are written, a 100 ms heart-beating client keeps
    its beats and its round trips."""
    process.start()
    beats = _Beats()
    canary = Client(process.port, "1.2")
    canary.conn.heartbeats = (100, 100)
    canary.conn.set_listener("beats", beats)
    canary.connect()
    canary.subscribe("/queue/canary")
    done = threading.Event()
    flood = threading.Thread(target=_flood, args=(process.port, 100_000, 1024, done), daemon=True)
    flood.start()
    round_trips = 0
    while not done.is_set():
        round_trips += 1
        canary.send("/queue/canary", f"ping {round_trips}", receipt=True)
        canary.wait_messages(round_trips)
    flood.join(TIMEOUT)
    assert round_trips > 10, "the load ended before the canary could measure anything"
    assert beats.timeouts == 0
    assert canary.is_open
    canary.disconnect()


def test_disk_work_runs_off_the_reactor_thread(
    broker: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch the SQLite store writes runs in a worker thread, never the reactor's."""
    threads: set[str] = set()
    original = Database.write

    def write(self: Database, *args: Any) -> Any:
        threads.add(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(Database, "write", write)
    client = Client(broker.port, "1.2")
    client.connect()
    for n in range(20):
        client.send("/queue/threads", f"m{n}", headers={"persistent": "true"}, receipt=True)
    client.disconnect()
    reactor_thread = broker.call(lambda: threading.current_thread().name)
    assert threads and reactor_thread not in threads

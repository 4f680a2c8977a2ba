#!/usr/bin/env python3
"""Benchmark a stompbroker cluster: 1, 2, 3 ... nodes on one PostgreSQL database.

Each round starts N ``twistd stompbroker`` nodes from this work tree on the database DSN
names (a fresh schema each round: the schemas ``stompbroker*`` are dropped first), spreads
producers and consumers over the nodes (producer i on node i mod N, consumer j on node
(j + 1) mod N, so that with more than one node every message crosses nodes), and reports
delivered msg/s, each node's CPU per message and PostgreSQL's (every ``postgres`` process
of the machine, from /proc). The ``failover`` scenario kills (SIGKILL) a node whose consumer
holds messages unacknowledged and times the first redelivery through another node. The
``fanout`` scenario (``--fanout``) publishes non-persistent messages to a topic through node 1
and counts what subscribers spread over every node receive.

    python3 -m tests._postgres          # a server with fsync on; prints its DSN
    python3 bench/cluster.py --dsn 'host=127.0.0.1 port=5432 user=postgres dbname=postgres'

Standard library only (and psycopg, which the PostgreSQL store needs anyway, to drop the
schemas).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def postgres_cpu() -> float:
    """CPU of every process named postgres on the machine."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


class Node:
    """One twistd node of the cluster."""

    def __init__(self, dsn: str, name: str, directory: Path) -> None:
        self.port = free_port()
        self.name = name
        config = directory / f"{name}.yaml"
        config.write_text(
            "destinations:\n  - name: /queue/>\n    persistent: false\n"
            # The generator's readers may fall behind the fan-out: they are not cut off.
            "  - name: /topic/fan\n    max_pending: 1000000\n"
            f"broker:\n  store: postgresql\npostgresql:\n  dsn: '{dsn}'\n  node: '{name}'\n"
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                TWISTD,
                "-n",
                "--pidfile=",
                "stompbroker",
                "--config",
                str(config),
                "--listen",
                f"tcp:{self.port}:interface=127.0.0.1",
                "--data-dir",
                str(directory / name),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.process.stdout:
            if f"starting on {self.port}" in line:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)


class Stomp:
    """A minimal STOMP 1.2 connection (bodies without NUL)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buffer = b""
        self.send(b"CONNECT", {"accept-version": "1.2", "host": "/"})
        assert self.frame()[0] == b"CONNECTED"

    def send(self, command: bytes, headers: dict[str, str], body: bytes = b"") -> None:
        head = b"".join(f"{k}:{v}\n".encode() for k, v in headers.items())
        self.sock.sendall(command + b"\n" + head + b"\n" + body + b"\0")

    def frame(self) -> tuple[bytes, dict[str, str]]:
        while b"\0" not in self.buffer:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data
        raw, self.buffer = self.buffer.split(b"\0", 1)
        raw = raw.lstrip(b"\r\n")
        head = raw.split(b"\n\n", 1)[0].split(b"\n")
        headers = dict(line.decode().split(":", 1) for line in head[1:] if b":" in line)
        return head[0], headers


def produce(
    port: int,
    count: int,
    size: int,
    headers: dict[str, str] | None = None,
    every: int = 100,
    window: int = 10,
) -> None:
    """SENDs of ``headers`` (persistent ones to /queue/cluster unless given), a receipt
    every ``every`` and at most ``window`` outstanding."""
    client = Stomp(port)
    body = b"x" * size
    sent = headers or {"destination": "/queue/cluster", "persistent": "true"}
    outstanding = 0
    for n in range(1, count + 1):
        frame = dict(sent)
        if n % every == 0 or n == count:
            frame["receipt"] = str(n)
            outstanding += 1
        client.send(b"SEND", frame, body)
        while outstanding >= window or (n == count and outstanding):
            if client.frame()[0] == b"RECEIPT":
                outstanding -= 1


def consume(port: int, expected: list[int], lock: threading.Lock, done: threading.Event) -> None:
    client = Stomp(port)
    client.send(b"SUBSCRIBE", {"destination": "/queue/cluster", "id": "0", "ack": "auto"})
    client.sock.settimeout(1.0)
    while not done.is_set():
        try:
            command, _ = client.frame()
        except TimeoutError:
            continue
        if command == b"MESSAGE":
            with lock:
                expected[0] -= 1
                if expected[0] <= 0:
                    done.set()


def count_frames(port: int, counts: list[int], index: int, done: threading.Event) -> None:
    """Subscribe to /topic/fan and count the frames received (each ends with a NUL)."""
    client = Stomp(port)
    client.send(b"SUBSCRIBE", {"destination": "/topic/fan", "id": "0", "receipt": "in"})
    assert client.frame()[0] == b"RECEIPT"
    client.sock.settimeout(0.5)
    while not done.is_set():
        try:
            data = client.sock.recv(1 << 18)
        except TimeoutError:
            continue
        if not data:
            return
        counts[index] += data.count(b"\0")


def fanout(dsn: str, nodes: int, messages: int, subscribers: int) -> None:
    """One publisher on node 1, ``subscribers`` spread over the nodes (subscriber j on node
    j mod N): delivered msg/s from the first SEND to the last delivery."""
    reset(dsn)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = [Node(dsn, f"fan-{i + 1}", Path(tmp)) for i in range(nodes)]
        try:
            counts, done = [0] * subscribers, threading.Event()
            readers = [
                threading.Thread(
                    target=count_frames, args=(cluster[j % nodes].port, counts, j, done)
                )
                for j in range(subscribers)
            ]
            for reader in readers:
                reader.start()
            time.sleep(0.5)  # every subscriber is in (a benchmark, not a test)
            before = [cpu_seconds(n.process.pid) for n in cluster], postgres_cpu()
            started = time.monotonic()
            # Non-persistent, a receipt every 1,000 and at most 5 outstanding.
            produce(cluster[0].port, messages, 100, {"destination": "/topic/fan"}, 1000, 5)
            last, last_at = -1, time.monotonic()
            while sum(counts) != last:  # until nothing arrived for a second
                last, last_at = sum(counts), time.monotonic()
                time.sleep(1.0)
            elapsed = last_at - started
            nodes_cpu = [
                cpu_seconds(n.process.pid) - b for n, b in zip(cluster, before[0], strict=True)
            ]
            pg_cpu = postgres_cpu() - before[1]
            done.set()
            for thread in readers:
                thread.join(30)
        finally:
            for node in cluster:
                node.kill()
    delivered = sum(counts)
    per_node = " ".join(f"{c / delivered * 1e6:.1f}" for c in nodes_cpu)
    print(
        f"| {nodes} | {delivered:,} of {messages * subscribers:,} | {delivered / elapsed:,.0f}"
        f" | {sum(nodes_cpu) / delivered * 1e6:.2f} ({per_node})"
        f" | {pg_cpu / delivered * 1e6:.2f} |",
        flush=True,
    )


def reset(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for (schema,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stompbroker%'"
        ).fetchall():
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def spread(dsn: str, nodes: int, messages: int, producers: int, consumers: int) -> None:
    reset(dsn)
    messages -= messages % producers
    with tempfile.TemporaryDirectory() as tmp:
        cluster = [Node(dsn, f"bench-{i + 1}", Path(tmp)) for i in range(nodes)]
        try:
            left, lock, done = [messages], threading.Lock(), threading.Event()
            readers = [
                threading.Thread(
                    target=consume, args=(cluster[(j + 1) % nodes].port, left, lock, done)
                )
                for j in range(consumers)
            ]
            for reader in readers:
                reader.start()
            time.sleep(0.5)  # the subscriptions are in before the first SEND (a benchmark)
            before = [cpu_seconds(n.process.pid) for n in cluster], postgres_cpu()
            started = time.monotonic()
            writers = [
                threading.Thread(
                    target=produce, args=(cluster[i % nodes].port, messages // producers, 100)
                )
                for i in range(producers)
            ]
            for writer in writers:
                writer.start()
            done.wait(600)
            elapsed = time.monotonic() - started
            nodes_cpu = [
                cpu_seconds(n.process.pid) - b for n, b in zip(cluster, before[0], strict=True)
            ]
            pg_cpu = postgres_cpu() - before[1]
            for thread in writers + readers:
                thread.join(30)
        finally:
            for node in cluster:
                node.kill()
    per_node = " ".join(f"{c / messages * 1e6:.1f}" for c in nodes_cpu)
    print(
        f"| {nodes} | {messages / elapsed:,.0f} | {sum(nodes_cpu) / messages * 1e6:.1f}"
        f" ({per_node}) | {pg_cpu / messages * 1e6:.1f} |",
        flush=True,
    )


def failover(dsn: str) -> None:
    """Time from SIGKILL of a node holding unacknowledged messages to their first
    redelivery through another node."""
    reset(dsn)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Node(dsn, "fail-1", Path(tmp)), Node(dsn, "fail-2", Path(tmp))
        try:
            holder = Stomp(first.port)
            holder.send(
                b"SUBSCRIBE",
                {"destination": "/queue/held", "id": "0", "ack": "client", "prefetch-count": "10"},
            )
            producer = Stomp(first.port)
            for n in range(10):
                producer.send(
                    b"SEND",
                    {"destination": "/queue/held", "persistent": "true", "receipt": str(n)},
                    b"held",
                )
            for _ in range(10):
                holder.frame()  # its 10 MESSAGEs (the RECEIPTs go to the producer)
            survivor = Stomp(second.port)
            survivor.send(b"SUBSCRIBE", {"destination": "/queue/held", "id": "0"})
            time.sleep(0.5)  # its SUBSCRIBE is in (a benchmark, not a test)
            killed = time.monotonic()
            first.kill()
            command, headers = survivor.frame()
            took = time.monotonic() - killed
            print(
                f"failover: first redelivery {took:.2f} s after SIGKILL"
                f" ({command.decode()}, redelivered={headers.get('redelivered')})",
                flush=True,
            )
        finally:
            first.kill()
            second.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--no-failover", action="store_true")
    parser.add_argument(
        "--fanout",
        type=int,
        metavar="SUBSCRIBERS",
        help="run the topic fan-out instead: this many subscribers spread over the nodes",
    )
    args = parser.parse_args()
    if args.fanout:
        print(
            "| nodes | delivered (of sent times subscribers) | delivered msg/s"
            " | broker CPU µs/delivered: total (per node) | PostgreSQL µs/delivered |"
        )
        print("|---|---|---|---|---|")
        for count in (int(n) for n in args.nodes.split(",")):
            fanout(args.dsn, count, args.messages, args.fanout)
        return
    print("| nodes | delivered msg/s | broker CPU µs/msg: total (per node) | PostgreSQL µs/msg |")
    print("|---|---|---|---|")
    for count in (int(n) for n in args.nodes.split(",")):
        spread(args.dsn, count, args.messages, args.producers, args.consumers)
    if not args.no_failover:
        failover(args.dsn)


if __name__ == "__main__":
    main()

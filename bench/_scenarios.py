"""The scenarios bench/run.py knows: stompbench arguments, and which figures the table shows."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

Metrics = tuple[tuple[str, str], ...]  # (key in stompbench's JSON "result", row label)


@dataclass(frozen=True)
class Scenario:
    """One group of table rows: how stompbench runs it and what it reports."""

    name: str
    full: str  # stompbench arguments of a full run
    quick: str  # appended for --quick (stompbench's argparse: the last value wins)
    metrics: Metrics
    deliveries_per_received: int  # delivered messages per "received" in the result; 0: none
    what: str  # one line for --help and the README
    transport: str = "tcp"  # "ws": run by wsbench.py against the broker's WebSocket endpoint

    def args(self, quick: bool) -> list[str]:
        """The stompbench arguments, full-size or quick."""
        return shlex.split(self.full) + (shlex.split(self.quick) if quick else [])


RATE: Metrics = (("msgs_per_s", "msg/s"),)
FANOUT: Metrics = (("delivered_per_s", "delivered msg/s"),)
LATENCY: Metrics = (("p50_us", "p50 µs"), ("p99_us", "p99 µs"), ("p999_us", "p99.9 µs"))
CONNECTIONS: Metrics = (
    ("connected", "connected"),
    ("connect_s", "s to connect all"),
    ("rss_per_conn_kb", "KiB RSS per connection"),
)
BACKLOG: Metrics = (
    ("produce_per_s", "produce msg/s"),
    ("drain_per_s", "drain msg/s"),
    ("rss_peak_mb", "peak RSS MB"),
)
PERSISTENT = "--scenario queue-persistent"

# In the order they run. Full sizes are stompbench's defaults unless given here.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("queue-throughput", "--scenario queue-throughput", "--messages 5000", RATE, 1,
             "1 producer -> 1 auto-ack consumer on one queue, non-persistent (200k)"),
    Scenario("topic-fanout", "--scenario topic-fanout", "--messages 1000", FANOUT, 1,
             "1 producer -> 10 subscribers on one topic (20k published)"),
    Scenario("queue-persistent", PERSISTENT, "--messages 3000", RATE, 1,
             "persistent sends, a receipt every 100, at most 10 outstanding (200k)"),
    Scenario("queue-persistent-sync", f"{PERSISTENT} --sync", "--messages 300", RATE, 1,
             "persistent, each send waits for its receipt, 1 producer (5k)"),
    Scenario("queue-persistent-sync-16", f"{PERSISTENT} --sync --producers 16",
             "--messages 800", RATE, 1,
             "persistent, each send waits for its receipt, 16 producers (5k)"),
    Scenario("client-ack", "--scenario client-ack", "--messages 3000", RATE, 1,
             "ack:client-individual, one ACK frame per message (100k)"),
    Scenario("latency", "--scenario latency", "--rate 500 --duration 2 --warmup 0.5",
             LATENCY, 2, "request/reply round trips through two queues at 2000/s for 10 s"),
    Scenario("connections", "--scenario connections --connections 10000",
             "--connections 300 --hold 1", CONNECTIONS, 0,
             "10,000 idle STOMP connections opened and held"),
    Scenario("backlog", "--scenario backlog --persistent", "--messages 5000", BACKLOG, 1,
             "500k persistent messages queued with no consumer, then drained"),
    Scenario("ws-queue-throughput", "--scenario queue-throughput", "--messages 5000", RATE, 1,
             "queue-throughput over ws://, one WebSocket message per frame (200k)", "ws"),
    Scenario("ws-topic-fanout", "--scenario topic-fanout", "--messages 1000", FANOUT, 1,
             "topic-fanout over ws://, 10 WebSocket subscribers (20k published)", "ws"),
)  # fmt: skip
BY_NAME = {s.name: s for s in SCENARIOS}

"""The broker's own CPU per message, without sockets: the real broker service and its STOMP
protocols on in-memory transports, one producer and its consumers in one process.

It measures what the broker's Python does for a message (parse, route, dispatch, build and
write the MESSAGE) and nothing of the kernel or the generator, so that two builds compare on a
busy machine: the CPU time of this process (``time.process_time``) divided by the messages
delivered. ``bench/run.py`` measures the whole broker over real sockets.

    python3 bench/hotpath.py --scenario queue --messages 200000
    python3 bench/hotpath.py --scenario client-ack
    python3 bench/hotpath.py --scenario topic      # 10 subscribers
    python3 bench/hotpath.py --scenario persistent # persistent:true, a receipt every 100

It runs the stompbroker found first on ``sys.path`` (this tree's, when run from it; a
compiled build's, from a tree built in place: see docs/performance.md) and says which.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import stompbroker  # noqa: E402
from stompbroker.service import BrokerService  # noqa: E402
from stompbroker.tap import Options  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

PEER = IPv4Address("TCP", "127.0.0.1", 50000)
ACK_ID = re.compile(rb"\nack:([^\n]*)\n")
#: SEND frames handed to the broker at once, as one TCP read would.
PER_READ = 100


def _service(config: str) -> BrokerService:
    options = Options()
    data = tempfile.mkdtemp(prefix="stompbroker-hotpath-")
    options.parseOptions(["--config", config, "--data-dir", data, "--listen", "tcp:0"])
    service = BrokerService(options["parsed"], reactor, [], [], managed=False)
    service.startService()
    for _ in range(20):  # the store opens in a thread
        reactor.iterate(0.01)  # type: ignore[attr-defined]
    return service


def _connect(service: BrokerService) -> tuple[Any, StringTransport]:
    protocol = service.factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    protocol.dataReceived(b"CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0")
    reactor.iterate(0)  # type: ignore[attr-defined]  # the turn ends: CONNECTED leaves
    assert transport.value().startswith(b"CONNECTED"), transport.value()[:200]
    transport.clear()
    return protocol, transport


def run(service: BrokerService, scenario: str, messages: int, size: int) -> float:
    """CPU seconds per delivered message of one run."""
    producer, _ = _connect(service)
    topic = scenario == "topic"
    persistent = scenario == "persistent"
    destination = "/topic/hotpath" if topic else "/queue/hotpath"
    ack = "client-individual" if scenario == "client-ack" else "auto"
    consumers = [_connect(service) for _ in range(10 if topic else 1)]
    for n, (protocol, _) in enumerate(consumers):
        protocol.dataReceived(
            f"SUBSCRIBE\nid:s{n}\ndestination:{destination}\nack:{ack}\n\n\0".encode()
        )
    reactor.iterate(0)  # type: ignore[attr-defined]
    body = b"x" * size
    send = b"SEND\ndestination:%s\ncontent-length:%d\n\n%s\0" % (destination.encode(), size, body)
    read = send * PER_READ
    if persistent:  # rows the consumer mostly takes before they are written; one receipt a read
        head = b"SEND\ndestination:%s\npersistent:true\ncontent-length:%d\n" % (
            destination.encode(),
            size,
        )
        frame = head + b"\n" + body + b"\0"
        read = frame * (PER_READ - 1) + head + b"receipt:r\n\n" + body + b"\0"
    producer_transport = producer.transport
    gc.collect()
    start = time.process_time()
    for _ in range(messages // PER_READ):
        producer.dataReceived(read)
        # The turn ends: the writes it held leave (transport/_outbox.py), the store's
        # batch too (persistent: then wait for its RECEIPT).
        reactor.iterate(0)  # type: ignore[attr-defined]
        if persistent:
            while b"RECEIPT" not in producer_transport.value():
                reactor.iterate(0.05)  # type: ignore[attr-defined]
            producer_transport.clear()
        for protocol, transport in consumers:
            written = transport.value()
            transport.clear()
            if ack != "auto":
                ids = ACK_ID.findall(written)
                protocol.dataReceived(b"".join(b"ACK\nid:%s\n\n\0" % i for i in ids))
                reactor.iterate(0)  # type: ignore[attr-defined]
    spent = time.process_time() - start
    for protocol in [producer, *(protocol for protocol, _ in consumers)]:
        protocol.connectionLost(None)
    return spent / (messages // PER_READ * PER_READ * len(consumers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario", choices=["queue", "client-ack", "topic", "persistent"], default="queue"
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default=os.path.join(HERE, "stompbroker.yaml"))
    args = parser.parse_args()
    service = _service(args.config)
    build = "compiled" if stompbroker.compiled() else "pure Python"
    runs = [run(service, args.scenario, args.messages, args.size) for _ in range(args.repeat)]
    print(
        f"{args.scenario} ({build}, {os.path.dirname(stompbroker.__file__)}):"
        f" {statistics.median(runs) * 1e6:.2f} µs CPU per delivered message"
        f" (median of {args.repeat}: {', '.join(f'{r * 1e6:.2f}' for r in runs)})"
    )


if __name__ == "__main__":
    main()

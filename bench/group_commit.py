"""Group commit, measured: N producers each send persistent messages and wait for every
RECEIPT (stop-and-wait), to a queue nobody consumes, so that every message is written to
disk before its receipt. Prints messages per second for each N.

    python3 bench/group_commit.py --port 61613 --producers 1,4,16 --seconds 5

Standard library only (the STOMP client is stompbench's); one process per producer. A
consumer-less queue is the worst case: with a waiting consumer, stompbroker delivers the
message and never writes it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid
from types import SimpleNamespace

from stompbench import Client, encode


def _producer(
    port: int, login: str, queue: str, seconds: float, size: int, out: multiprocessing.Queue
) -> None:
    try:
        out.put(_produce(port, login, queue, seconds, size))
    except Exception as exc:  # reported by the parent
        out.put(exc)


def _produce(port: int, login: str, queue: str, seconds: float, size: int) -> int:
    user, _, passcode = login.partition(":")
    broker = SimpleNamespace(
        host="127.0.0.1",
        port=port,
        stomp_version="1.2",
        vhost="/",
        connect_cmd="CONNECT",
        login=user,
        passcode=passcode,
    )
    client = Client(broker)  # stompbench's blocking client: CONNECT, then wait for CONNECTED
    headers = [("destination", queue), ("persistent", "true"), ("receipt", "r")]
    frame = encode("SEND", [*headers, ("content-length", size)], b"x" * size)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        client.request(frame, "r")  # raises on an ERROR frame
        sent += 1
    client.close()
    return sent


def run(port: int, login: str, producers: int, seconds: float, size: int) -> float:
    """Messages per second for ``producers`` stop-and-wait producers."""
    queue = f"/queue/group-commit.{uuid.uuid4().hex[:8]}"
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_producer, args=(port, login, queue, seconds, size, out))
        for _ in range(producers)
    ]
    for proc in procs:
        proc.start()
    counts = [out.get(timeout=seconds + 30) for _ in procs]
    for proc in procs:
        proc.join()
    for count in counts:
        if isinstance(count, Exception):
            raise count
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=61613)
    parser.add_argument("--producers", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--login", default="guest:guest", help="LOGIN:PASSCODE")
    args = parser.parse_args()
    for count in (int(n) for n in args.producers.split(",")):
        rate = run(args.port, args.login, count, args.seconds, args.size)
        print(f"{count:3d} producer(s): {rate:10,.0f} msg/s")


if __name__ == "__main__":
    main()

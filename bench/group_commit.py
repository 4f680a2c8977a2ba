"""Group commit, measured: N producers each send persistent messages and wait for every
RECEIPT (stop-and-wait), to a queue nobody consumes, so that every message is written to
disk before its receipt. Prints messages per second for each N.

    python3 bench/group_commit.py --port 61613 --producers 1,4,16 --seconds 5

Standard library only; one process per producer. A consumer-less queue is the worst case:
with a waiting consumer, stompbroker delivers the message and never writes it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import time
import uuid


def _producer(
    port: int, login: str, queue: str, seconds: float, size: int, out: multiprocessing.Queue
) -> None:
    try:
        out.put(_produce(port, login, queue, seconds, size))
    except Exception as exc:  # reported by the parent
        out.put(exc)


def _produce(port: int, login: str, queue: str, seconds: float, size: int) -> int:
    body = b"x" * size
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    user, _, passcode = login.partition(":")
    sock.sendall(
        b"CONNECT\naccept-version:1.2\nhost:/\nlogin:%s\npasscode:%s\n\n\0"
        % (user.encode(), passcode.encode())
    )
    _read_frame(sock)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.sendall(
            b"SEND\ndestination:%s\npersistent:true\nreceipt:r\ncontent-length:%d\n\n"
            % (queue.encode(), size)
            + body
            + b"\0"
        )
        _read_frame(sock)
        sent += 1
    sock.close()
    return sent


def _read_frame(sock: socket.socket) -> bytes:
    data = b""
    while not data.rstrip(b"\r\n").endswith(b"\0"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    if data.lstrip(b"\n").startswith(b"ERROR"):
        raise RuntimeError(data.decode(errors="replace"))
    return data


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

"""The wrong-password attacks of issue 15, against a running broker (standard library only).

    python3 bench/login_attack.py guesses --port P --count 60
        COUNT wrong guesses for LOGIN from --attacker, each connection closed right after its
        CONNECT (after --linger s), then the right passcode from the same address: how fast
        the guesses went out, and when the right one got CONNECTED.
    python3 bench/login_attack.py flood --port P --seconds 10
        --threads connections flood wrong guesses from --attacker (closed at once) while
        --good-login logs in from --user again and again: each good login's latency.

Both addresses must be loopback (127.0.0.1, 127.0.0.2, ...). The broker needs users LOGIN
(--passcode) and GOOD_LOGIN (--good-passcode).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import threading
import time


def frame(login: str, passcode: str) -> bytes:
    """A STOMP 1.2 CONNECT frame."""
    text = f"CONNECT\naccept-version:1.2\nhost:h\nlogin:{login}\npasscode:{passcode}\n\n\x00"
    return text.encode()


def guess(port: int, source: str, login: str, passcode: str, linger: float) -> None:
    """CONNECT and close (after ``linger`` s) without waiting for the answer."""
    with socket.create_connection(("127.0.0.1", port), 10, source_address=(source, 0)) as conn:
        conn.sendall(frame(login, passcode))
        if linger:
            conn.settimeout(linger)
            with contextlib.suppress(TimeoutError):
                conn.recv(1)


def answer(
    port: int,
    source: str,
    login: str,
    passcode: str,
    timeout: float,
    opened: list[float] | None = None,
) -> str:
    """CONNECT and wait for the answer's command ('' if the connection closed first);
    ``opened`` gets how long the TCP connection took to open."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), 10, source_address=(source, 0)) as conn:
        if opened is not None:
            opened.append(time.monotonic() - start)
        conn.settimeout(timeout)
        conn.sendall(frame(login, passcode))
        received = b""
        while b"\n" not in received.lstrip(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
    return received.lstrip(b"\n").split(b"\n", 1)[0].decode()


def guesses(args: argparse.Namespace) -> None:
    began = time.monotonic()
    for n in range(args.count):
        guess(args.port, args.attacker, args.login, f"wrong-{n}", args.linger)
    sent = time.monotonic()
    command = answer(args.port, args.attacker, args.login, args.passcode, args.timeout)
    done = time.monotonic()
    print(
        f"{args.count} guesses sent in {sent - began:.2f} s"
        f" ({args.count / (sent - began):.1f}/s, linger {args.linger} s);"
        f" the right passcode then got {command or 'nothing'} after {(done - sent) * 1000:.0f} ms;"
        f" first guess to CONNECTED: {done - began:.2f} s"
    )


def flood(args: argparse.Namespace) -> None:
    stop = threading.Event()
    sent = [0] * args.threads

    def run(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                guess(args.port, args.attacker, args.login, f"flood-{index}-{n}", 0.0)
            except OSError:
                continue
            sent[index] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    latencies: list[float] = []
    opened: list[float] = []
    began = time.monotonic()
    while time.monotonic() - began < args.seconds:
        start = time.monotonic()
        command = answer(
            args.port, args.user, args.good_login, args.good_passcode, args.timeout, opened
        )
        took = time.monotonic() - start
        latencies.append(took)
        if command != "CONNECTED":
            print(f"good login got {command or 'nothing'} after {took:.2f} s")
    elapsed = time.monotonic() - began
    stop.set()
    for thread in threads:
        thread.join(10)
    print(
        f"flood: {args.threads} threads, {sum(sent)} guesses sent in {elapsed:.1f} s"
        f" ({sum(sent) / elapsed:.0f}/s); {len(latencies)} good logins:"
        f" min {min(latencies) * 1000:.0f} ms, median {statistics.median(latencies) * 1000:.0f} ms,"
        f" max {max(latencies) * 1000:.0f} ms; of which opening TCP: median"
        f" {statistics.median(opened) * 1000:.0f} ms, max {max(opened) * 1000:.0f} ms;"
        f" CONNECT to CONNECTED at most"
        f" {max(t - o for t, o in zip(latencies, opened, strict=True)) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("guesses", "flood"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--attacker", default="127.0.0.2")
    parser.add_argument("--user", default="127.0.0.1")
    parser.add_argument("--login", default="bob")
    parser.add_argument("--passcode", default="bob-pw")
    parser.add_argument("--good-login", default="alice")
    parser.add_argument("--good-passcode", default="alice-pw")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--linger", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()
    guesses(args) if args.mode == "guesses" else flood(args)


if __name__ == "__main__":
    main()

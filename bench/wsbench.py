#!/usr/bin/env python3
"""wsbench - stompbench's queue-throughput and topic-fanout over STOMP-over-WebSocket (ws://).

    python3 bench/wsbench.py --ws-path /ws --port 15674 --scenario topic-fanout [stompbench options]

It runs bench/stompbench.py's own scenario code, unchanged (the file stays a verbatim copy of the
shared generator), with one substitution: its STOMP connection (``stompbench.Client``) opens a
WebSocket instead of a bare TCP connection. The load processes still write pre-encoded batches and
count NULs in what they read; the WebSocket framing is done here, as a browser's would be:

* the handshake is an HTTP/1.1 ``GET`` with ``Upgrade: websocket``, offering the subprotocols
  ``v10.stomp, v11.stomp, v12.stomp`` (as STOMP.js does); anything but ``101`` with the right
  ``Sec-WebSocket-Accept`` fails the run;
* every STOMP frame the client sends is one masked WebSocket message (STOMP.js sends one message
  per frame), so the broker unframes and unmasks one message per frame. The mask key is random
  per connection; a batch of frames is framed and masked once, then written over and over (the
  same pre-encoding stompbench does for TCP);
* what the broker sends is unframed here (any opcode, any fragmentation, messages holding
  several frames or part of one); only the payload bytes reach stompbench's counters. A Ping is
  answered with a Pong; a Close ends the connection as EOF would.

Only ``queue-throughput`` and ``topic-fanout`` are supported (they are the scenarios whose load
processes use no more than ``sendall`` and ``recv_into``). The JSON records are stompbench's,
with ``, ws`` added to the variant. Standard library only, like stompbench.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import socket
import sys
from typing import Any

import stompbench  # beside this file (a script's directory is first on sys.path)

SUPPORTED = ("queue-throughput", "topic-fanout")
SUBPROTOCOLS = "v10.stomp, v11.stomp, v12.stomp"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 1.3
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
MAX_HANDSHAKE = 16 * 1024


class WebSocketError(stompbench.BenchError):
    """The broker's side of the WebSocket was not what RFC 6455 asks for."""


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key`` (one big-integer XOR: no per-byte loop)."""
    if not payload:
        return payload
    n = len(payload)
    keys = (key * (n // 4 + 1))[:n]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")
    return masked.to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final, masked client frame (RFC 6455, 5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


class WsSocket:
    """What stompbench's load processes use of a socket, over one WebSocket connection.

    ``sendall`` sends each NUL-terminated STOMP frame of its argument as one message;
    ``recv``/``recv_into`` return payload bytes only. Everything else (timeouts, blocking,
    ``fileno`` for select, SO_RCVLOWAT) is the TCP socket's: a read that yields no payload yet
    (a frame head split over two reads) reads again, so a timeout or ``BlockingIOError`` still
    means "nothing to count yet". A recv never returns more than it was asked for, so no
    unframed payload waits in here unseen by select.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._key = os.urandom(4)
        self._head = b""  # the start of a frame head split over two reads
        self._left = 0  # payload bytes of the current frame still to come
        self._control: bytearray | None = None  # the payload of a control frame being read
        self._control_op = 0
        self._eof = False
        self._framed_for: bytes | None = None  # the last sendall argument, and its frames
        self._framed = b""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    # -- sending ------------------------------------------------------------------------

    def frames(self, data: bytes) -> bytes:
        """``data`` (whole STOMP frames) as one masked WebSocket message per frame."""
        parts = data.split(b"\0")
        tail = parts.pop()
        if tail.strip(b"\r\n"):
            raise WebSocketError(f"not whole STOMP frames: {tail[:40]!r}")
        masked: dict[bytes, bytes] = {}  # a batch repeats one frame: mask it once
        out = []
        for part in parts:
            frame = masked.get(part)
            if frame is None:
                frame = masked[part] = client_frame(OP_TEXT, part + b"\0", self._key)
            out.append(frame)
        return b"".join(out)

    def sendall(self, data: bytes) -> None:
        if data is not self._framed_for:  # stompbench writes the same batch object again
            self._framed_for, self._framed = data, self.frames(data)
        self._sock.sendall(self._framed)

    # -- receiving ----------------------------------------------------------------------

    def recv(self, size: int) -> bytes:
        while True:
            if self._eof:
                return b""
            raw = self._sock.recv(size)
            if not raw:
                return b""
            payload = self._unframe(raw)
            if payload or self._eof:
                return payload

    def recv_into(self, buffer: bytearray, size: int = 0) -> int:
        payload = self.recv(size or len(buffer))
        buffer[: len(payload)] = payload
        return len(payload)

    def _unframe(self, data: bytes) -> bytes:
        """The payload bytes in ``data``; frame heads and control frames are consumed."""
        if self._head:
            data, self._head = self._head + data, b""
        out = []
        i, n = 0, len(data)
        while i < n:
            left = self._left
            if left:
                end = min(n, i + left)
                if self._control is None:
                    out.append(data[i:end])
                else:
                    self._control += data[i:end]
                self._left = left - (end - i)
                i = end
                if not self._left and self._control is not None:
                    self._on_control()
                continue
            head = self._parse_head(data, i)
            if head is None:
                self._head = data[i:]
                break
            i, opcode, length = head
            self._left = length
            if opcode & 0x8:
                self._control, self._control_op = bytearray(), opcode
                if not length:
                    self._on_control()
        return b"".join(out)

    def _parse_head(self, data: bytes, i: int) -> tuple[int, int, int] | None:
        """(index after the head, opcode, payload length), or None if the head is cut."""
        if len(data) - i < 2:
            return None
        b0, b1 = data[i], data[i + 1]
        if b1 & 0x80:
            raise WebSocketError("the broker sent a masked frame")
        length, start = b1 & 0x7F, i + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(data) - start < size:
                return None
            length = int.from_bytes(data[start : start + size], "big")
            start += size
        return start, b0 & 0x0F, length

    def _on_control(self) -> None:
        payload, self._control = bytes(self._control or b""), None
        if self._control_op == OP_PING:
            self._sock.sendall(client_frame(OP_PONG, payload, self._key))
        elif self._control_op == OP_CLOSE:
            self._eof = True


def handshake(sock: socket.socket, host: str, port: int, path: str) -> None:
    """The client's opening handshake (RFC 6455, 4.1); WebSocketError unless it gets 101."""
    key = base64.b64encode(os.urandom(16))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Protocol: {SUBPROTOCOLS}\r\n\r\n"
    )
    sock.sendall(request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk or len(answer) > MAX_HANDSHAKE:
            raise WebSocketError(f"no WebSocket handshake answer: {answer[:200]!r}")
        answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    if rest:  # the broker speaks only after CONNECT
        raise WebSocketError(f"data before CONNECT: {rest[:40]!r}")
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split(" ")[1:2] != ["101"]:
        raise WebSocketError(f"upgrade refused: {lines[0]}")
    headers = {n.strip().lower(): v.strip() for n, _, v in (x.partition(":") for x in lines[1:])}
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        raise WebSocketError("wrong Sec-WebSocket-Accept in the 101")


def _connect(path: str) -> Any:
    """socket.create_connection for stompbench.Client: TCP, then the WebSocket handshake."""

    def create_connection(address: tuple[str, int], timeout: float | None = None) -> WsSocket:
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshake(sock, address[0], address[1], path)
        return WsSocket(sock)

    return create_connection


class _SocketModule:
    """stompbench's ``socket`` global: the real module, but connections are WebSockets."""

    def __init__(self, path: str) -> None:
        self.create_connection = _connect(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)


def install(path: str) -> None:
    """Make stompbench's scenarios connect over WebSocket to ``path``, and say so in results."""
    stompbench.socket = _SocketModule(path)
    report = stompbench.report

    def ws_report(args: Any, scenario: str, variant: str, *rest: Any, **kw: Any) -> Any:
        return report(args, scenario, f"{variant}, ws" if variant else "ws", *rest, **kw)

    stompbench.report = ws_report


def main(argv: list[str] | None = None) -> int:
    """Parse --ws-path, check the scenario, and run stompbench's main over WebSocket."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--ws-path", default="/ws", help="the WebSocket path (default /ws)")
    ws, rest = own.parse_known_args(argv)
    if any(a in ("-h", "--help") for a in rest):
        print(__doc__)
        print("--ws-path PATH   the WebSocket path (default /ws); all else is stompbench's:\n")
        return stompbench.main(["--help"])
    args = stompbench.build_parser().parse_args(rest)
    if args.scenario not in SUPPORTED or args.serve or args.summarize:
        print(f"wsbench: only --scenario {' or '.join(SUPPORTED)}", file=sys.stderr)
        return 2
    install(ws.ws_path)
    return stompbench.main(rest)


if __name__ == "__main__":
    sys.exit(main())

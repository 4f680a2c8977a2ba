"""A raw STOMP-over-WebSocket client on a real socket, for frames and timings STOMP.js hides.

It is conftest's ``RawClient`` (the same frame reading and waits, bounded by ``TIMEOUT``) with
wsproto doing the WebSocket: the upgrade, masked messages out (one per ``send``), payloads in.
It answers the broker's Pings with Pongs, as a browser does, unless told not to, and counts
them; a Close from the broker is answered and ends the stream like a socket close.
"""

from __future__ import annotations

import socket
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from .conftest import TIMEOUT, RawClient, RawFrame


class WebSocketClient(RawClient):
    """One WebSocket to ``path`` on 127.0.0.1:``port``, offering ``v12.stomp``."""

    def __init__(self, port: int, path: str = "/ws", answer_pings: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self._buffer = b""
        self.closed = False
        self.answer_pings = answer_pings
        #: Pings the broker sent, and the Close code it sent (None: none yet).
        self.pings = 0
        self.close_code: int | None = None
        self._ws = WSConnection(ConnectionType.CLIENT)
        request = Request(host=f"127.0.0.1:{port}", target=path, subprotocols=["v12.stomp"])
        self.sock.sendall(self._ws.send(request))
        while True:
            data = self.sock.recv(65536)
            assert data, "the broker closed the connection during the upgrade"
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    return
                assert not isinstance(event, RejectConnection), event

    def send(self, data: bytes) -> None:
        """``data`` as one WebSocket text message."""
        self.sock.sendall(self._ws.send(TextMessage(data=data.decode())))

    def _fill(self) -> bool:
        """Read until the stream yields STOMP bytes (False: it ended), bounded by TIMEOUT."""
        try:
            while not self.closed:
                if self._receive():
                    return True
        except TimeoutError:
            raise AssertionError(f"nothing from the broker for {TIMEOUT} s") from None
        return False

    def _receive(self) -> bool:
        """One read (bounded by the socket's timeout: TimeoutError); whether it brought STOMP
        bytes. A read that brings only a Ping, or the end of the stream, brings none."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self._ws.receive_data(data)
        payload = self._events()
        self._buffer += payload
        return bool(payload)

    def _events(self) -> bytes:
        payload = b""
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                payload += event.data.encode()
            elif isinstance(event, BytesMessage):
                payload += bytes(event.data)
            elif isinstance(event, Ping):
                self.pings += 1
                if self.answer_pings:
                    self.sock.sendall(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                self.sock.sendall(self._ws.send(event.response()))
                self.closed = True
        return payload

    def frames_for(self, seconds: float) -> list[RawFrame]:
        """What the broker sends in the next ``seconds`` (pings answered meanwhile).

        The wait is the point here: a client that stays silent for a while. It reads the socket
        until the deadline (each read bounded by what is left of it), never sleeps, and fails if
        the broker closes the connection first.
        """
        deadline = time.monotonic() + seconds
        frames = []
        while (left := deadline - time.monotonic()) > 0:
            if (frame := self._parse()) is not None:
                frames.append(frame)
                continue
            self.sock.settimeout(left)
            try:
                self._receive()
            except TimeoutError:  # the deadline has come
                break
            finally:
                self.sock.settimeout(TIMEOUT)
            assert not self.closed, f"the broker closed the connection: {frames}"
        return frames

"""HTTP in memory for the web tree's tests: raw request bytes into a listener's twisted.web
``Site`` on a ``StringTransport``, the answer read back by h11 in client mode (no sockets)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

import h11
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import IResource

from stompbroker.transport import WebSocketFactory

PEER = IPv4Address("TCP", "192.0.2.5", 4000)


@dataclass
class Answer:
    """An HTTP answer as a client read it."""

    status: int
    #: Header names in lower case; a repeated header's values joined with ", ".
    headers: dict[str, str]
    body: bytes
    #: Whether the server closed (or is closing) the connection after it.
    closed: bool

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json", self.headers
        return json.loads(self.body)

    def decoded(self) -> bytes:
        """The body, un-gzipped when it came gzip-encoded."""
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.body)
        return self.body


def read_answer(data: bytes, method: str = "GET") -> Answer | None:
    """The answer in ``data``, or None while it is incomplete."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    if not data:
        return None
    client.receive_data(data)
    response: h11.Response | None = None
    body = b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            return None
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    assert response is not None
    headers: dict[str, str] = {}
    for name, value in response.headers:
        key = name.decode().lower()
        headers[key] = f"{headers[key]}, {value.decode()}" if key in headers else value.decode()
    return Answer(response.status_code, headers, body, closed=False)


class Web:
    """A listener (``WebSocketFactory``) serving ``resource``; requests sent as raw bytes."""

    def __init__(self, resource: IResource | None = None, **factory: Any) -> None:
        self.clock = factory.pop("clock", None) or Clock()
        self.factory = WebSocketFactory(
            factory.pop("make_session", None) or _no_session,
            self.clock,
            resource=resource,
            **factory,
        )

    def connect(self, peer: IPv4Address = PEER) -> tuple[Any, StringTransport]:
        """A new connection: (the channel, its transport)."""
        channel = self.factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        channel.makeConnection(transport)
        return channel, transport

    def send(self, data: bytes) -> tuple[Any, StringTransport]:
        """``data`` on a new connection."""
        channel, transport = self.connect()
        channel.dataReceived(data)
        return channel, transport

    def request(self, method: str, target: str, **headers: str) -> Answer:
        """``method target`` with ``headers`` (``_`` for ``-``; Host given unless set); the
        answer, which must be complete."""
        answer = self.pending(method, target, **headers)()
        assert answer is not None, "the answer is still pending"
        return answer

    def pending(self, method: str, target: str, **headers: str) -> Any:
        """Send the request; return what reads its answer (None while there is none)."""
        fields = {"host": "127.0.0.1:61614"}
        fields.update({k.replace("_", "-").lower(): v for k, v in headers.items()})
        if method == "POST":
            fields["content-length"] = "0"
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.items()
        )
        _, transport = self.send(head.encode("latin-1") + b"\r\n")

        def answer() -> Answer | None:
            found = read_answer(transport.value(), method)
            if found is not None:
                found.closed = bool(transport.disconnecting)
            return found

        return answer


def _no_session(transport: Any, peer: str) -> Any:
    raise AssertionError("no upgrade expected")

"""A WebSocket listener's twisted.web side, in memory: the access log, the headers every
answer carries (the 101 and the 503 too), one answer per connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from stompbroker.transport import (
    ConnectionLimiter,
    Console,
    WebSocketSettings,
    security_headers,
)
from tests.web import Web

HEADERS = security_headers(tls=True, extra=("X-Frame-Options: DENY",))
EXPECTED = (
    b"x-content-type-options: nosniff\r\n",
    b"strict-transport-security: max-age=31536000\r\n",
    b"x-frame-options: deny\r\n",
)


def _web(**factory: Any) -> Web:
    clock = Clock()
    clock.advance(1_700_000_000)  # 2023-11-14 22:13:20 UTC
    settings = WebSocketSettings(http_headers=HEADERS)
    return Web(Console(), clock=clock, settings=settings, **factory)


def _access_lines(events: Sequence[Any]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_namespace") == "stompbroker.http.access"]


def test_one_request_is_one_combined_format_line() -> None:
    """Each answered request is one access-log event, in the combined log format."""
    web = _web()
    with capturedLogs() as events:
        web.request("GET", "/nothing?x=1", user_agent="probe/1.0", referer="http://a.example/")
    assert _access_lines(events) == [
        '"192.0.2.5" - - [14/Nov/2023:22:13:20 +0000] "GET /nothing?x=1 HTTP/1.1" 404 10'
        ' "http://a.example/" "probe/1.0"'
    ]


def test_the_upgrade_is_logged_with_its_101() -> None:
    """A WebSocket upgrade is one access-log line too, with status 101."""
    web = _web(make_session=lambda transport, peer: _Session())
    client = WSConnection(ConnectionType.CLIENT)
    with capturedLogs() as events:
        web.send(client.send(Request(host="localhost", target="/ws", subprotocols=["stomp"])))
    (line,) = _access_lines(events)
    assert line.startswith('"192.0.2.5" - - [14/Nov/2023:22:13:20 +0000] "GET /ws HTTP/1.1" 101 ')


class _Session:
    """A session that is given nothing to do."""

    versions: tuple[str, ...] = ()

    def connection_lost(self) -> None:
        pass


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /console.js HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"a" * 20_000,
        b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_every_answer_carries_the_listeners_headers(request_bytes: bytes) -> None:
    """200, 404, a bad request's 400, 431, a bad upgrade: each has the security headers once."""
    _, transport = _web().send(request_bytes)
    head = transport.value().split(b"\r\n\r\n", 1)[0].lower() + b"\r\n"
    for header in EXPECTED:
        assert head.count(header) == 1, (header, head)


def test_the_101_carries_the_listeners_headers() -> None:
    """The upgrade's 101 has the security headers and the chosen subprotocol."""
    web = _web(make_session=lambda transport, peer: _Session())
    client = WSConnection(ConnectionType.CLIENT)
    _, transport = web.send(client.send(Request(host="h", target="/ws", subprotocols=["stomp"])))
    head = transport.value().split(b"\r\n\r\n", 1)[0].lower() + b"\r\n"
    assert head.startswith(b"http/1.1 101 ")
    for header in EXPECTED:
        assert head.count(header) == 1, (header, head)
    client.receive_data(transport.value())
    (accepted,) = client.events()
    assert isinstance(accepted, AcceptConnection) and accepted.subprotocol == "stomp"


def test_the_503_over_the_limits_carries_the_listeners_headers() -> None:
    """A connection over the limits gets 503 with the security headers, before any request."""
    web = _web(limiter=ConnectionLimiter(max_connections=0))
    _, transport = web.connect(IPv4Address("TCP", "10.0.0.1", 5000))
    answer = transport.value().lower()
    assert answer.startswith(b"http/1.1 503 service unavailable\r\n")
    for header in EXPECTED:
        assert answer.count(header) == 1, header
    assert answer.endswith(b"\r\n\r\ntoo many connections\n")
    assert transport.disconnecting


def test_one_answer_per_connection() -> None:
    """A second request on the same connection is not read: the first answer closes it.
    The answer names no software version (Server: stompbroker)."""
    web = _web()
    _, transport = web.send(
        b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /console.js HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    answer = transport.value()
    assert answer.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in answer.lower()
    assert b"\r\nserver: stompbroker\r\n" in answer.lower()
    assert transport.disconnecting

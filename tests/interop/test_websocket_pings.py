"""WebSocket pings stand in for STOMP heart-beats (issue 19), on real sockets.

A client over WebSocket promises heart-beats every 500 ms (``heart-beat:500,0``) and then
sends nothing at all, as STOMP.js does in a background tab whose timers the browser throttles.
The broker's read timeout is then 1 s (tolerance 2). A client that answers the broker's Pings
stays connected for several timeouts; one that answers nothing, or any client on a listener
with ``pings: false``, gets the heart-beat ERROR and the Close. Both with a raw client
(``_wsclient``) and with STOMP.js in headless Chromium, whose heart-beats the page stalls
(``js/pings.html``) so that only Chromium's own Pongs answer for it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stompbroker.config import WebSocketListener

from . import _listeners
from ._listeners import LOOPBACK, Listeners, Start
from ._wsclient import WebSocketClient
from .conftest import RawClient, RawFrame
from .test_stompjs import JS, chromium, node, run_browser, static_site

__all__ = ["chromium", "node", "static_site"]  # fixtures shared with test_stompjs

pytestmark = pytest.mark.interop

start_broker = _listeners.start_broker

#: The client's promised interval: the broker expects a beat within twice this.
CLIENT_BEAT_MS = 500
#: How long the silent client stays silent: three of the broker's read timeouts.
SILENCE_S = 3 * 2 * CLIENT_BEAT_MS / 1000


def _broker(start_broker: Start, pings: bool = True) -> Listeners:
    # The broker's own interval (100 ms) is below the client's: the client's 500 ms rules.
    entry = WebSocketListener(LOOPBACK, pings=pings)
    return start_broker({"ws": (LOOPBACK, entry)}, heartbeat_ms=100)


@pytest.fixture
def clients() -> Iterator[list[RawClient]]:
    """Clients a test made, closed afterwards."""
    made: list[RawClient] = []
    yield made
    for client in made:
        client.close()


def _silent_client(
    broker: Listeners, clients: list[RawClient], answer_pings: bool = True
) -> WebSocketClient:
    client = WebSocketClient(broker.ws_port(), answer_pings=answer_pings)
    clients.append(client)
    client.send(
        f"CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:{CLIENT_BEAT_MS},0\n\n\0".encode()
    )
    connected = client.read_frame()
    assert connected is not None and connected.command == "CONNECTED", connected
    assert connected.headers["heart-beat"] == "100,100"  # the broker's offer: 500 ms rules
    client.send(b"SUBSCRIBE\nid:0\ndestination:/queue/pings\nreceipt:sub\n\n\0")
    receipt = client.read_frame()
    assert receipt is not None and receipt.headers.get("receipt-id") == "sub", receipt
    return client


def _dropped(client: WebSocketClient) -> RawFrame:
    """The one frame before the broker closed the connection, with its WebSocket Close."""
    frames = client.read_until_closed()
    assert [f.command for f in frames] == ["ERROR"], frames
    assert client.close_code == 1000
    return frames[0]


def test_client_answering_pings_stays_connected_without_heart_beats(
    start_broker: Start, clients: list[RawClient]
) -> None:
    """Pongs alone keep a silent client connected past three read timeouts; it still gets
    what is sent to it afterwards."""
    broker = _broker(start_broker)
    client = _silent_client(broker, clients)
    assert client.frames_for(SILENCE_S) == []
    assert client.pings >= 2  # fewer could not have kept it past two timeouts
    producer = RawClient(broker.port)
    clients.append(producer)
    producer.connect("1.2")
    producer.send(b"SEND\ndestination:/queue/pings\nreceipt:sent\n\nstill here\0")
    sent = producer.read_frame()
    assert sent is not None and sent.headers.get("receipt-id") == "sent", sent
    message = client.read_frame()
    assert message is not None and (message.command, message.body) == ("MESSAGE", b"still here")
    client.send(b"DISCONNECT\nreceipt:bye\n\n\0")
    assert [(f.command, f.headers.get("receipt-id")) for f in client.read_until_closed()] == [
        ("RECEIPT", "bye")
    ]
    producer.close()
    broker.assert_idle()


def test_client_answering_nothing_is_dropped(start_broker: Start, clients: list[RawClient]) -> None:
    """A client that sends nothing and ignores the Pings gets the heart-beat ERROR and a Close."""
    broker = _broker(start_broker)
    client = _silent_client(broker, clients, answer_pings=False)
    error = _dropped(client)
    assert error.headers["message"] == "heart-beat timeout"
    assert client.pings >= 1  # they came, unanswered
    broker.assert_idle()


def test_with_pings_off_a_pong_answering_client_is_dropped(
    start_broker: Start, clients: list[RawClient]
) -> None:
    """With ``pings: false`` no Ping comes, so the same silent client is dropped."""
    broker = _broker(start_broker, pings=False)
    client = _silent_client(broker, clients)
    error = _dropped(client)
    assert error.headers["message"] == "heart-beat timeout"
    assert client.pings == 0
    broker.assert_idle()


# -- STOMP.js in Chromium ----------------------------------------------------------------------


ChromiumPage = Callable[[bool], Any]


@pytest.fixture
def chromium_page(
    node: str,
    chromium: Path,
    start_broker: Start,
    static_site: tuple[Path, int],
    tmp_path: Path,
) -> ChromiumPage:
    """Open js/pings.html against a fresh broker (``pings`` on its listener or not); return
    what the page reports, once the broker has seen the connection end cleanly."""
    directory, http_port = static_site
    shutil.copy(JS / "pings.html", directory / "pings.html")

    def run(pings: bool) -> Any:
        broker = _broker(start_broker, pings=pings)
        page = (
            f"http://127.0.0.1:{http_port}/pings.html?broker={broker.url()}"
            f"&beat={CLIENT_BEAT_MS}&hold={int(SILENCE_S * 1000)}"
        )
        result = run_browser(node, page, tmp_path / f"pings-{pings}.png", waitFor="result")
        broker.assert_idle()
        return result["result"]

    return run


def test_chromium_answers_pings_for_stalled_stompjs(chromium_page: ChromiumPage) -> None:
    """STOMP.js whose heart-beats never leave the page stays connected past three read
    timeouts: Chromium answers the broker's Pings; then a message still goes round."""
    result = chromium_page(True)
    assert result["connected"] is True, result
    assert (result["received"], result["error"]) == ("still here", None), result
    assert result["dropped"] >= 2, result  # STOMP.js did try to beat, and was stalled


def test_chromium_stalled_stompjs_is_dropped_without_pings(chromium_page: ChromiumPage) -> None:
    """The same page on a listener with ``pings: false`` gets the heart-beat ERROR and 1000."""
    result = chromium_page(False)
    assert result["connected"] is True, result
    assert (result["error"], result["closed"], result["received"]) == (
        "heart-beat timeout",
        1000,
        None,
    ), result

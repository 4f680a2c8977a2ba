"""@stomp/stompjs 7 against a live broker: in Node over ws://, wss:// and TCP, and in Chromium.

The JavaScript side lives in tests/interop/js (``npm ci`` there; scripts/test does it). Each
test runs one Node process with a JSON spec and a bounded timeout and reads the one JSON line it
prints. Missing node, node_modules or chromium is a failure that says what to install, never a
skip.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import ssl

from stompbroker.config import WebSocketListener

from . import _listeners
from ._listeners import LOOPBACK, Start
from .conftest import TIMEOUT

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
JS = Path(__file__).resolve().parent / "js"
CHROMIUM = Path("/usr/bin/chromium")
BUNDLE = JS / "node_modules" / "@stomp" / "stompjs" / "bundles" / "stomp.umd.min.js"

#: Bound on one Node run, in seconds (its own timeout is a little shorter).
NODE_TIMEOUT = 4 * TIMEOUT
#: Bound on one Chromium run (start, page, screenshot), in seconds.
BROWSER_TIMEOUT = 12 * TIMEOUT


# -- the JavaScript tools -------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/interop/js's packages installed; fail if either is missing."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed: these tests need Node.js 18+ (scripts/test checks)")
    if not (JS / "node_modules" / "@stomp" / "stompjs").is_dir():
        pytest.fail(f"npm packages missing: run `npm ci` in {JS} (scripts/test does it)")
    return found


@pytest.fixture(scope="session")
def chromium(node: str) -> Path:
    """Debian's chromium; fail with the install command if it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does it)")
    return CHROMIUM


def run_node(node: str, script: str, spec: dict[str, Any], timeout: float = NODE_TIMEOUT) -> Any:
    """Run ``script`` with ``spec``; return its JSON result, failing with its output if it fails."""
    spec = {"timeoutMs": int((timeout - 2) * 1000), **spec}
    try:
        done = subprocess.run(
            [node, script, json.dumps(spec)],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{script} did not finish in {timeout} s: {exc.stdout!r}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(
            f"{script} failed ({done.returncode}): {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


# -- a broker with TCP and WebSocket listeners ----------------------------------------------

start_broker = _listeners.start_broker


def _decoded(received: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    return sorted((m["destination"], base64.b64decode(m["body"])) for m in received)


def _roundtrip(node: str, spec: dict[str, Any]) -> Any:
    return run_node(node, "stompjs_client.mjs", {"scenario": "roundtrip", **spec})


EXPECTED = sorted(
    [
        ("/queue/js", b"hello, queue"),
        ("/topic/js", "héllo, topic".encode()),
        ("/queue/js", b"\xff\xfe\x00\x01"),
    ]
)


# -- Node over WebSocket -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "subprotocol", "version"),
    [
        (None, "v12.stomp", "1.2"),
        (["1.2", "1.1", "1.0"], "v12.stomp", "1.2"),
        (["1.1", "1.0"], "v11.stomp", "1.1"),
        (["1.0"], "v10.stomp", "1.0"),
    ],
)
def test_stompjs_over_websocket(
    node: str, start_broker: Start, versions: list[str] | None, subprotocol: str, version: str
) -> None:
    """STOMP.js connects through brokerURL; subprotocol and STOMP version agree; all arrives."""
    broker = start_broker()
    result = _roundtrip(node, {"transport": "ws", "url": broker.url(), "stompVersions": versions})
    assert (result["subprotocol"], result["version"]) == (subprotocol, version)
    assert result["server"].startswith("stompbroker/")
    assert result["receipts"] == ["sub-q", "send-q"]
    assert _decoded(result["received"]) == EXPECTED
    broker.assert_idle()


@pytest.mark.parametrize("split", [False, True])
def test_stompjs_large_message(node: str, start_broker: Start, split: bool) -> None:
    """A 1 MiB body goes through whole, also when STOMP.js splits it over 16 KiB messages."""
    broker = start_broker()
    spec = {
        "transport": "ws",
        "url": broker.url(),
        "bigBytes": 1024 * 1024,
        "splitLargeFrames": split,
        "maxWebSocketChunkSize": 16 * 1024,
    }
    result = _roundtrip(node, spec)
    bodies = [body for _, body in _decoded(result["received"]) if body.startswith(b"x")]
    assert bodies == [b"x" * 1024 * 1024]
    broker.assert_idle()


def test_stompjs_heart_beats_over_websocket(node: str, start_broker: Start) -> None:
    """Heart-beats flow both ways over WebSocket: a 1.5 s hold at 100 ms beats keeps the link."""
    broker = start_broker(heartbeat_ms=100)
    spec = {
        "scenario": "heartbeat",
        "transport": "ws",
        "url": broker.url(),
        "heartbeatMs": 100,
        "holdMs": 1500,
    }
    result = run_node(node, "stompjs_client.mjs", spec)
    assert result["heartBeat"] == "100,100"
    assert result["body"] == "still here"
    assert result["pongs"] >= 5, result  # beats the broker sent
    assert result["pings"] >= 5, result  # beats STOMP.js sent, that kept us from closing
    broker.assert_idle()


def _self_signed(directory: Path) -> Path:
    pair = ssl.KeyPair.generate(size=2048)
    pem = directory / "broker.pem"
    pem.write_bytes(pair.selfSignedCert(1, commonName="127.0.0.1").dumpPEM())
    return pem


def test_stompjs_over_wss(node: str, start_broker: Start, tmp_path: Path) -> None:
    """An ssl: endpoint serves wss://: STOMP.js connects over TLS and gets everything."""
    pem = _self_signed(tmp_path)
    endpoint = f"ssl:0:interface=127.0.0.1:privateKey={pem}"
    broker = start_broker({"wss": (endpoint, WebSocketListener(endpoint))})
    spec = {"transport": "ws", "url": broker.url("wss", "wss"), "rejectUnauthorized": False}
    result = _roundtrip(node, spec)
    assert (result["subprotocol"], result["version"]) == ("v12.stomp", "1.2")
    assert _decoded(result["received"]) == EXPECTED
    broker.assert_idle()


def test_stompjs_over_tcp(node: str, start_broker: Start) -> None:
    """The same STOMP.js code over plain TCP (@stomp/tcp-wrapper) reaches the same broker."""
    broker = start_broker()
    result = _roundtrip(node, {"transport": "tcp", "port": broker.port})
    assert result["version"] == "1.2"
    assert _decoded(result["received"]) == EXPECTED
    broker.assert_idle()


@pytest.mark.parametrize(
    ("origin", "status"),
    [("http://app.example", 101), ("http://evil.example", 403), (None, 101)],
)
def test_origin_check_with_a_real_client(
    node: str, start_broker: Start, origin: str | None, status: int
) -> None:
    """With allowed_origins set, another Origin gets 403; the allowed one and none get in."""
    entry = WebSocketListener(LOOPBACK, "/stomp", ("http://app.example",))
    broker = start_broker({"ws": (LOOPBACK, entry)})
    spec = {
        "scenario": "probe",
        "url": broker.url(path="/stomp"),
        "protocols": ["v10.stomp", "v11.stomp"],
        "origin": origin,
    }
    result = run_node(node, "stompjs_client.mjs", spec)
    assert result["status"] == status
    if status == 101:
        assert result["protocol"] == "v11.stomp"
    else:
        assert "not allowed" in result["body"]


def test_other_paths_are_404(node: str, start_broker: Start) -> None:
    """A WebSocket upgrade on another path of the listener is refused with 404."""
    broker = start_broker()
    spec = {"scenario": "probe", "url": broker.url(path="/other"), "protocols": ["v12.stomp"]}
    assert run_node(node, "stompjs_client.mjs", spec)["status"] == 404


# -- real Chromium -------------------------------------------------------------------------------


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A plain HTTP server on 127.0.0.1 port 0 serving a fresh directory; (directory, port)."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(BUNDLE, site / "stomp.umd.min.js")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def run_browser(node: str, url: str, screenshot: Path, **wait: Any) -> Any:
    """Open ``url`` in headless Chromium; return what the page reports (see browser.mjs)."""
    spec = {"url": url, "screenshot": str(screenshot), "chromium": str(CHROMIUM), **wait}
    return run_node(node, "browser.mjs", spec, BROWSER_TIMEOUT)


def test_chromium_page_uses_stompjs_over_websocket(
    node: str, chromium: Path, start_broker: Start, static_site: tuple[Path, int], tmp_path: Path
) -> None:
    """In real Chromium, a page's STOMP.js connects (v12.stomp, 1.2), subscribes, sends, receives.

    The page's own origin is allowed on one listener; on a second listener that allows only
    another origin the same page is refused. A screenshot is kept next to the test's files.
    """
    site, http_port = static_site
    shutil.copy(JS / "page.html", site / "page.html")
    origin = f"http://127.0.0.1:{http_port}"
    broker = start_broker(
        {
            "ws": (LOOPBACK, WebSocketListener(LOOPBACK, "/ws", (origin,))),
            "elsewhere": (LOOPBACK, WebSocketListener(LOOPBACK, "/ws", ("http://x.example",))),
        }
    )
    page = f"{origin}/page.html?broker={broker.url()}&refused={broker.url('elsewhere')}"
    result = run_browser(node, page, tmp_path / "stompjs-page.png", waitFor="result")["result"]
    assert result["error"] is None, result
    assert (result["subprotocol"], result["version"]) == ("v12.stomp", "1.2")
    assert sorted(result["received"]) == sorted(
        [
            "/queue/page text:hello from Chromium",
            "/topic/page text:héllo, topic",
            "/queue/page binary:255,254,0,1",
            "/queue/page text:" + "y" * 100_000,
        ]
    )
    assert result["refused"] == {"connected": False, "closed": True}
    assert (tmp_path / "stompjs-page.png").stat().st_size > 0
    broker.assert_idle()


def _docs_page() -> str:
    text = (ROOT / "docs" / "websocket.md").read_text()
    blocks = re.findall(r"```html\n(.*?)```", text, re.DOTALL)
    assert blocks, "docs/websocket.md has no ```html page"
    return str(blocks[0])


def test_the_page_in_the_docs_works_in_chromium(
    node: str, chromium: Path, start_broker: Start, static_site: tuple[Path, int], tmp_path: Path
) -> None:
    """docs/websocket.md's copy-paste page, unchanged but for URLs, works in real Chromium."""
    site, http_port = static_site
    broker = start_broker()
    page = _docs_page()
    assert '<script src="stomp.umd.min.js">' in page, "the page loads the bundle beside it"
    assert "ws://127.0.0.1:61614/ws" in page
    page = page.replace("ws://127.0.0.1:61614/ws", broker.url())
    (site / "docs.html").write_text(page)
    wanted = ["connected: STOMP 1.2 over v12.stomp", "queue: hello, queue", "topic: hello, topic"]
    result = run_browser(
        node, f"http://127.0.0.1:{http_port}/docs.html", tmp_path / "docs-page.png", waitText=wanted
    )
    for line in wanted:
        assert line in result["text"], result

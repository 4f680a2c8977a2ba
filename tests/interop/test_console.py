"""The web console at / of a WebSocket listener, in Debian's headless Chromium.

The page comes from the broker itself and talks to it over its own STOMP-over-WebSocket; the
browser side is tests/interop/js/console.mjs, driven step by step from here. Screenshots go to
the test's tmp_path and, for a look after the run, to tests/interop/artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stompbroker.config import (
    Config,
    ManagementSection,
    SecuritySection,
    UserEntry,
)
from stompbroker.core import hash_password

from . import _listeners, test_stompjs
from ._listeners import Listeners, Start
from .conftest import Client
from .test_stompjs import BROWSER_TIMEOUT, CHROMIUM, run_node

pytestmark = pytest.mark.interop

#: The fixtures that find node (with tests/interop/js's packages) and Debian's chromium.
node = test_stompjs.node
chromium = test_stompjs.chromium

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: Bound on one step of the page (a wait, a click), in ms: a few statistics intervals.
STEP_TIMEOUT_MS = 10_000
QUEUE = "console.demo"
#: A body that would run script if the console put message data into the page as HTML.
XSS = '<img src=x onerror="window.pwned = 1">'

PEEK_STATE = "document.querySelector('#peek-result').dataset.state"

StartConsole = Callable[[Config], Listeners]


start_broker = _listeners.start_broker


@pytest.fixture
def start_console(start_broker: Start) -> StartConsole:
    """Start brokers with one WebSocket listener (127.0.0.1 port 0, at /ws) and statistics
    every 200 ms; stopped after the test."""

    def start(config: Config) -> Listeners:
        return start_broker(
            config=replace(config, management=ManagementSection(stats_interval_ms=200))
        )

    return start


def run_console(node: str, url: str, steps: list[dict[str, Any]], tmp_path: Path) -> Any:
    """Open ``url`` in headless Chromium and run ``steps`` (see console.mjs); its results."""
    spec = {
        "url": url,
        "chromium": str(CHROMIUM),
        "steps": steps,
        "stepTimeoutMs": STEP_TIMEOUT_MS,
        "failureScreenshot": str(tmp_path / "failure.png"),
    }
    return run_node(node, "console.mjs", spec, BROWSER_TIMEOUT)


def keep(screenshot: Path) -> Path:
    """Copy a screenshot to tests/interop/artifacts/; return the copy."""
    ARTIFACTS.mkdir(exist_ok=True)
    return Path(shutil.copy(screenshot, ARTIFACTS / screenshot.name))


def cell(kind: str, name: str, field: str) -> str:
    """A JS expression: the text of one cell of the destinations table ('' when absent)."""
    row = f"tr[data-kind={json.dumps(kind)}][data-name={json.dumps(name)}]"
    selector = json.dumps(f'{row} td[data-field="{field}"]')
    return f"((document.querySelector({selector}) || {{}}).textContent || '')"


def no_browser_complaints(lines: list[str]) -> None:
    """Nothing the page did was refused (CSP), failed to load, threw, or logged an error."""
    complaints = ("error", "warning", "pageerror", "requestfailed")
    assert [line for line in lines if line.startswith(complaints)] == [], lines


def test_console_shows_a_queue_publishes_and_peeks_without_consuming(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """The console shows a queue's depth live, publishes with a RECEIPT, and peeks its messages,
    which stay in the queue. Screenshot: tests/interop/artifacts/console.png."""
    broker = start_console(Config())
    sender = Client(broker.port, "1.2")
    sender.connect()
    sender.send(f"/queue/{QUEUE}", "first message", {"x-order": "1"}, receipt=True)
    sender.send(f"/queue/{QUEUE}", XSS, receipt=True)
    sender.send(f"/queue/{QUEUE}", "x" * 2000, receipt=True)
    depth = cell("queue", QUEUE, "depth")
    screenshot = tmp_path / "console.png"
    steps = [
        {"wait": f"{depth} === '3'"},
        {"fill": "#publish-destination", "value": f"/queue/{QUEUE}"},
        {"fill": "#publish-body", "value": "from the console"},
        {"fill": "#publish-headers", "value": "x-origin: console\nx-note: a:b"},
        {"check": "#publish-persistent"},
        {"click": "#publish-form button[type=submit]"},
        {"wait": "document.querySelector('#publish-result').dataset.state !== 'busy'"},
        {"read": "document.querySelector('#publish-result').textContent", "as": "published"},
        {"wait": f"{depth} === '4'"},
        {"click": f'tr[data-kind="queue"][data-name="{QUEUE}"] button.peek'},
        {"wait": f"['done', 'error'].includes({PEEK_STATE})"},
        {"read": "document.querySelector('#peek-result').textContent", "as": "peek"},
        {
            "read": "[...document.querySelectorAll('#peek-list li')].map((li) => ({"
            "headers: li.querySelector('.headers').textContent,"
            "body: li.querySelector('.body').textContent}))",
            "as": "peeked",
        },
        {"read": "typeof window.pwned", "as": "pwned"},
        {"read": "document.querySelectorAll('#peek-list img').length", "as": "images"},
        {"screenshot": str(screenshot)},
    ]
    url = f"http://127.0.0.1:{broker.ws_port()}/"
    result = run_console(node, url, steps, tmp_path)
    results = result["results"]
    assert results["published"].startswith(f"sent to /queue/{QUEUE}: RECEIPT"), results
    assert results["peek"] == f"4 messages wait in /queue/{QUEUE}; none was consumed"
    bodies = [m["body"] for m in results["peeked"]]
    assert bodies[:2] == ["first message", XSS]
    assert bodies[2] == "x" * 500 + "… (2,000 bytes)"
    assert bodies[3] == "from the console"
    assert "x-order: 1" in results["peeked"][0]["headers"]
    assert "x-origin: console" in results["peeked"][3]["headers"]
    assert "x-note: a:b" in results["peeked"][3]["headers"]
    assert "persistent: true" in results["peeked"][3]["headers"]
    assert (results["pwned"], results["images"]) == ("undefined", 0)
    no_browser_complaints(result["console"])
    assert keep(screenshot).stat().st_size > 0
    # Peeking consumed nothing: the four messages are still there, in order.
    consumer = Client(broker.port, "1.2")
    consumer.connect()
    consumer.subscribe(f"/queue/{QUEUE}")
    received = [m.body for m in consumer.frames.wait_messages(4)]
    assert received == ["first message", XSS, "x" * 2000, "from the console"]
    consumer.disconnect()
    sender.disconnect()


def test_console_charts_the_broker_live(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """The broker chart (SVG, no library) fills from the statistics samples and updates: its
    caption gives the latest values; messages waiting show as depth. Screenshot:
    tests/interop/artifacts/console-chart.png."""
    broker = start_console(Config())
    sender = Client(broker.port, "1.2")
    sender.connect()
    for n in range(5):
        sender.send(f"/queue/{QUEUE}", f"m{n}", receipt=True)
    samples = "Number(document.querySelector('#broker-chart-svg').dataset.samples || 0)"
    caption = "document.querySelector('#broker-chart-caption').textContent"
    screenshot = tmp_path / "console-chart.png"
    steps = [
        {"wait": f"{samples} >= 3 && {caption}.includes('depth 5')"},
        {"read": samples, "as": "first"},
        {"wait": f"{samples} > 4"},
        {"read": samples, "as": "later"},
        {"read": caption, "as": "caption"},
        {
            "read": "[...document.querySelectorAll('#broker-chart-svg polyline')].map("
            "(p) => [p.getAttribute('class'), p.getAttribute('points').split(' ').length])",
            "as": "lines",
        },
        {"screenshot": str(screenshot)},
    ]
    url = f"http://127.0.0.1:{broker.ws_port()}/"
    result = run_console(node, url, steps, tmp_path)
    results = result["results"]
    assert results["later"] > results["first"] >= 3, results
    assert results["caption"].startswith(f"last {results['later']} samples (in: blue"), results
    assert "depth 5" in results["caption"], results
    assert [name for name, _ in results["lines"]] == ["series-in", "series-out", "series-depth"]
    assert all(points == results["later"] for _, points in results["lines"]), results
    no_browser_complaints(result["console"])
    assert keep(screenshot).stat().st_size > 0
    sender.disconnect()


def test_console_asks_for_a_login_when_the_broker_requires_one(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """With users configured, the console shows its login form ("login required", then
    "login failed" for a wrong passcode) and, logged in, the live table. Screenshot:
    tests/interop/artifacts/console-login.png."""
    user = UserEntry("ops", hash_password("secret", n=2**4))
    broker = start_console(Config(security=SecuritySection(users=(user,))))
    reason = "document.querySelector('#login-reason').textContent"
    form_shown = "!document.querySelector('#login').hidden"
    screenshot = tmp_path / "console-login.png"
    steps = [
        {"wait": f"{form_shown} && {reason}.includes('login required')"},
        {"fill": "#login-name", "value": "ops"},
        {"fill": "#login-passcode", "value": "wrong"},
        {"click": "#login-form button[type=submit]"},
        {"wait": f"{reason}.includes('login failed')"},
        {"fill": "#login-name", "value": "ops"},
        {"fill": "#login-passcode", "value": "secret"},
        {"click": "#login-form button[type=submit]"},
        {"wait": f"{cell('topic', 'stompbroker.stats', 'consumers')} === '1'"},
        {"read": "document.querySelector('#status').textContent", "as": "status"},
        {"read": "document.querySelector('#login').hidden", "as": "form_hidden"},
        {"screenshot": str(screenshot)},
    ]
    url = f"http://127.0.0.1:{broker.ws_port()}/"
    result = run_console(node, url, steps, tmp_path)
    assert result["results"]["status"].startswith("connected as ops"), result["results"]
    assert result["results"]["form_hidden"] is True
    no_browser_complaints(result["console"])
    assert keep(screenshot).stat().st_size > 0


# -- the console's own STOMP code, in Node ----------------------------------------------------

SOURCE = Path(__file__).resolve().parents[2] / "stompbroker" / "console" / "stomp.js"

#: Frames as the broker may send them: heart-beats between, CRLF, escapes, a NUL in a body.
STREAM = (
    b"\n\r\n"
    b"CONNECTED\nversion:1.2\nheart-beat:0,0\nserver:a\\cb\n\n\x00"
    b"\n"
    b"MESSAGE\r\ndestination:/queue/a\\cb\r\nx:first\r\nx:second\r\nnote:a\\nb\\\\c\r\n"
    b"content-length:5\r\n\r\nh\x00llo\x00"
    b"ERROR\nmessage:login required\n\nno body length\x00"
)


def test_the_consoles_frame_parser_reads_frames_fed_three_ways(node: str) -> None:
    """stomp.js parses whole, byte by byte, and keeps an incomplete frame; it escapes headers."""
    tail = b"\nMESSAGE\ncontent-length:9\n\nabc"
    spec = {
        "source": str(SOURCE),
        "stream": list(STREAM),
        "tail": list(tail),
        "encode": [
            ["SEND", [["destination", "/queue/a:b"], ["note", "x\ny\\"]], "héllo"],
            ["CONNECT", [["login", "a:b"]], ""],
        ],
    }
    result = run_node(node, "console_frames.mjs", spec)
    connected, message, error = result["whole"]
    assert connected["command"] == "CONNECTED"
    assert connected["headers"]["server"] == "a\\cb"  # CONNECTED headers are not escaped
    assert message["headers"] == {
        "destination": "/queue/a:b",
        "x": "first",
        "note": "a\nb\\c",
        "content-length": "5",
    }
    assert bytes(message["body"]) == b"h\x00llo" and message["text"] == "h\x00llo"
    assert (error["command"], error["headers"]["message"]) == ("ERROR", "login required")
    assert error["text"] == "no body length"
    assert result["byteByByte"] == result["whole"]
    assert result["withTail"]["frames"] == result["whole"]
    assert bytes(result["withTail"]["left"]) == tail.lstrip(b"\n")
    send, connect = (bytes(frame) for frame in result["encoded"])
    assert send == "SEND\ndestination:/queue/a\\cb\nnote:x\\ny\\\\\n\nhéllo\x00".encode()
    assert connect == b"CONNECT\nlogin:a:b\n\n\x00"

"""The web console's admin actions in headless Chromium: purge, delete, replay dead letters and
close a connection, each through its confirmation dialog, against the management API; offered
to admins only.

Built on test_console.py's broker (statistics every 200 ms, a loopback listener: with no users
configured the API answers this machine) and its page driver.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.threads import blockingCallFromThread

from stompbroker.config import Config, RuleEntry, SecuritySection, UserEntry
from stompbroker.core import hash_password

from . import _listeners, test_console
from ._listeners import Listeners
from .conftest import Client, reactor
from .test_console import StartConsole, cell, no_browser_complaints, run_console
from .test_console_views import connected_client, text

pytestmark = pytest.mark.interop

node = test_console.node
chromium = test_console.chromium
start_broker = _listeners.start_broker
start_console = test_console.start_console

QUEUE = "console.admin"

DIALOG_OPEN = "document.querySelector('#confirm').open"
RESULT = text("#action-result")
RESULT_STATE = "document.querySelector('#action-result').dataset.state"
FOCUSED = "document.activeElement.id"


def refused_loads_only(lines: list[str], *statuses: str) -> None:
    """No complaint from the browser but its note of the API's refusals ``statuses`` (such as
    "409 (Conflict)"), which the page shows in its own words."""
    expected = {
        f"error: Failed to load resource: the server responded with a status of {s}"
        for s in statuses
    }
    no_browser_complaints([line for line in lines if line not in expected])


def action(kind: str, name: str, what: str) -> str:
    """The selector of an admin action's button on a destination's row."""
    return f"tr[data-kind={json.dumps(kind)}][data-name={json.dumps(name)}] button.{what}"


def confirmed(button: str, outcome: str = "ok") -> list[dict[str, Any]]:
    """Steps: click ``button``, confirm in the dialog, keep the line that says what happened
    (as ``result``) once it shows ``outcome`` (``ok`` or ``error``)."""
    return [
        {"click": button},
        {"wait": DIALOG_OPEN},
        {"click": "#confirm-ok"},
        {"wait": f"{RESULT_STATE} === {json.dumps(outcome)}"},
        {"read": RESULT, "as": "result"},
    ]


def depth(broker: Listeners, name: str) -> int:
    """The broker's own count of the messages waiting in queue ``name``."""
    return int(blockingCallFromThread(reactor, broker.service.broker.queue_depth, name))


def url(broker: Listeners) -> str:
    """The console's page on the broker's WebSocket listener."""
    return f"http://127.0.0.1:{broker.ws_port()}/"


def fill_queue(broker: Listeners, count: int, queue: str = QUEUE, **headers: str) -> None:
    """Send ``count`` messages to ``queue`` (each RECEIPTed)."""
    sender = Client(broker.port, "1.2")
    sender.connect()
    for n in range(count):
        sender.send(f"/queue/{queue}", f"m{n}", dict(headers), receipt=True)
    sender.disconnect()


def test_purge_goes_through_its_dialog_and_cancel_or_escape_does_nothing(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """Enter on purge opens a modal dialog with Cancel focused; Escape and Cancel leave the
    queue alone; Purge drops its 3 messages and says so, and the depth shows 0."""
    broker = start_console(Config())
    fill_queue(broker, 3)
    purge = action("queue", QUEUE, "purge")
    shown_depth = cell("queue", QUEUE, "depth")
    steps = [
        {"wait": f"{shown_depth} === '3' && document.querySelector({json.dumps(purge)})"},
        {"press": "Enter", "on": purge},
        {"wait": DIALOG_OPEN},
        {"read": FOCUSED, "as": "focused"},
        {"read": text("#confirm-title"), "as": "title"},
        {"read": text("#confirm-ok"), "as": "confirm"},
        {"press": "Escape"},
        {"wait": f"!{DIALOG_OPEN}"},
        {"read": "document.activeElement.dataset.focus", "as": "focus_back"},
        {"click": purge},
        {"wait": DIALOG_OPEN},
        {"click": "#confirm-cancel"},
        {"wait": f"!{DIALOG_OPEN}"},
        {"read": RESULT, "as": "after_cancel"},
        {"read": shown_depth, "as": "depth_after_cancel"},
        *confirmed(purge),
        # An empty queue nobody consumes from is forgotten: its row goes, or shows 0.
        {"wait": f"['0', ''].includes({shown_depth})"},
    ]
    result = run_console(node, url(broker), steps, tmp_path)
    results = result["results"]
    assert results["focused"] == "confirm-cancel", results
    assert results["title"] == f"Purge queue /queue/{QUEUE}?"
    assert results["confirm"] == "Purge"
    assert results["focus_back"] == f"destination queue {QUEUE} purge"
    assert (results["after_cancel"], results["depth_after_cancel"]) == ("", "3")
    assert results["result"] == f"purged 3 messages from queue /queue/{QUEUE}"
    assert depth(broker, QUEUE) == 0
    no_browser_complaints(result["console"])


def test_an_action_the_broker_refuses_shows_the_apis_error(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """Deleting a queue a consumer is attached to shows the API's refusal (its status and
    its words), and the queue stays."""
    broker = start_console(Config())
    consumer = Client(broker.port, "1.2")
    consumer.connect()
    consumer.subscribe(f"/queue/{QUEUE}", ack="client")
    fill_queue(broker, 1)
    delete = action("queue", QUEUE, "delete")
    steps = [
        {
            "wait": f"{cell('queue', QUEUE, 'consumers')} === '1' && document.querySelector("
            f"{json.dumps(delete)})"
        },
        *confirmed(delete, "error"),
    ]
    result = run_console(node, url(broker), steps, tmp_path)
    assert result["results"]["result"] == (
        f"could not delete queue /queue/{QUEUE}: queue '{QUEUE}' has 1 consumer(s); they must"
        " leave first (HTTP 409)"
    )
    queues = blockingCallFromThread(reactor, lambda: set(broker.service.broker.destinations.queues))
    assert QUEUE in queues
    refused_loads_only(result["console"], "409 (Conflict)")
    consumer.disconnect()


def test_closing_a_connection_ends_it_with_an_error(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """Close on a connection's row, confirmed, ends that client with ERROR "closed by an
    administrator"; the console's own connection is offered no close."""
    broker = start_console(Config())
    client = connected_client(broker)
    session = client.frames.connected[0].headers["session"]
    close = f'#connections tr[data-id="{session}"] button.close'
    steps = [
        {"wait": f"document.querySelector({json.dumps(close)})"},
        {"read": "document.querySelectorAll('#connections tr.own button').length", "as": "own"},
        {"read": text(f'#connections tr[data-id="{session}"] td[data-field=peer]'), "as": "peer"},
        {"click": close},
        {"wait": DIALOG_OPEN},
        {"read": text("#confirm-title"), "as": "title"},
        {"click": "#confirm-ok"},
        {"wait": f"{RESULT_STATE} === 'ok'"},
        {"read": RESULT, "as": "result"},
        {"wait": f"!document.querySelector({json.dumps(close)})"},
    ]
    result = run_console(node, url(broker), steps, tmp_path)
    results = result["results"]
    assert results["peer"].startswith("127.0.0.1:"), results
    who = f"the connection of an anonymous client from {results['peer']}"
    assert results["title"] == f"Close {who}?", results
    assert results["result"] == f"closed {who}"
    assert results["own"] == 0
    client.error("closed by an administrator")
    no_browser_complaints(result["console"])


def test_replaying_dead_letters_sends_them_back(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """Replay is offered on the dead-letter queue only; confirmed, it sends its messages back
    to their original destination."""
    broker = start_console(Config())
    fill_queue(broker, 2, "DLQ", **{"original-destination": f"/queue/{QUEUE}"})
    replay = action("queue", "DLQ", "replay")
    steps = [
        {"wait": f"document.querySelector({json.dumps(replay)})"},
        {"read": "document.querySelectorAll('button.replay').length", "as": "offered"},
        *confirmed(replay),
        {"wait": f"{cell('queue', QUEUE, 'depth')} === '2'"},
    ]
    result = run_console(node, url(broker), steps, tmp_path)
    results = result["results"]
    assert results["offered"] == 1
    assert results["result"] == (
        "replayed 2 dead letters from queue /queue/DLQ; 0 skipped, 0 failed, 0 remaining"
    )
    assert (depth(broker, QUEUE), depth(broker, "DLQ")) == (2, 0)
    no_browser_complaints(result["console"])


def _users() -> Config:
    everything = ("/queue/>", "/topic/>")
    users = tuple(UserEntry(name, hash_password("secret", n=2**4)) for name in ("ops", "viewer"))
    rules = (
        RuleEntry("ops", everything, ("read", "write", "create", "admin")),
        RuleEntry("viewer", everything, ("read",)),
    )
    return Config(security=SecuritySection(users=users, rules=rules))


def _log_in(name: str) -> list[dict[str, Any]]:
    return [
        {"wait": "!document.querySelector('#login').hidden"},
        {"fill": "#login-name", "value": name},
        {"fill": "#login-passcode", "value": "secret"},
        {"click": "#login-form button[type=submit]"},
    ]


def test_with_users_configured_only_an_admin_is_offered_actions(
    node: str, chromium: Path, start_console: StartConsole, tmp_path: Path
) -> None:
    """Logged in as a user without ``admin`` the console offers no action (peek stays); as an
    admin, purge and delete appear."""
    broker = start_console(_users())
    sender = Client(broker.port, "1.2")
    sender.conn.connect("ops", "secret", wait=False)
    sender.frames.wait(lambda: bool(sender.frames.connected), "CONNECTED")
    sender.send(f"/queue/{QUEUE}", "one", receipt=True)
    note = "document.querySelector('#admin-note').dataset.state"
    buttons = "[...document.querySelectorAll('button.action')].map((b) => b.textContent)"
    row_buttons = f"[...document.querySelectorAll({json.dumps(action('queue', QUEUE, 'action'))})]"
    steps = [
        *_log_in("viewer"),
        {"wait": f"{note} === 'read-only' && {cell('queue', QUEUE, 'depth')} === '1'"},
        {"read": buttons, "as": "viewer_buttons"},
        {"read": "document.querySelectorAll('button.peek').length", "as": "viewer_peeks"},
        {"read": text("#admin-note"), "as": "viewer_note"},
        {"click": "#logout"},
        *_log_in("ops"),
        {"wait": f"{note} === 'admin' && {row_buttons}.length > 0"},
        {"read": f"{row_buttons}.map((b) => b.textContent)", "as": "ops_buttons"},
        {"read": text("#admin-note"), "as": "ops_note"},
    ]
    result = run_console(node, url(broker), steps, tmp_path)
    results = result["results"]
    assert (results["viewer_buttons"], results["viewer_peeks"]) == ([], 1), results
    assert results["viewer_note"] == "read only: the management API does not answer this login"
    assert results["ops_buttons"] == ["purge", "delete"]
    assert results["ops_note"] == "admin actions offered"
    refused_loads_only(result["console"], "401 (Unauthorized)")
    sender.disconnect()

"""stompbroker-admin, /metrics and the statistics topic against a live broker on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stompbroker.admin import main
from stompbroker.config import (
    Config,
    ManagementSection,
    RuleEntry,
    SecuritySection,
    UserEntry,
)
from stompbroker.core import hash_password

from . import _listeners
from ._listeners import Listeners, Start
from .conftest import TIMEOUT, Client

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent.parent


start_broker = _listeners.start_broker


@pytest.fixture
def start(start_broker: Start) -> Callable[..., Listeners]:
    """Start brokers (a STOMP listener, and a WebSocket one serving the management API) with
    the management options and configuration sections given; stopped after the test."""

    def run(management: ManagementSection | None = None, **sections: Any) -> Listeners:
        config = replace(Config(), management=management or ManagementSection(), **sections)
        return start_broker(config=config)

    return run


def _url(running: Listeners) -> str:
    """The management API's base URL."""
    return f"http://127.0.0.1:{running.ws_port()}"


def _stomp(running: Listeners, version: str = "1.2") -> Client:
    client = Client(running.port, version)
    client.connect()
    return client


def _admin(running: Listeners, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["--url", _url(running), *argv]) == 0
    return capsys.readouterr().out


def test_status_and_queue_table(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """status summarises the broker; queues prints an aligned table with each depth."""
    running = start()
    client = _stomp(running)
    for i in range(3):
        client.send("/queue/orders", f"m{i}", receipt=True)
    client.send("/queue/a.much.longer.name", "x", receipt=True)
    status = _admin(running, capsys, "status")
    assert "connections   1 open" in status
    assert "4 enqueued" in status
    table = _admin(running, capsys, "queues").splitlines()
    header, *rows = table
    assert header.split()[:3] == ["KIND", "DESTINATION", "DEPTH"]
    by_name = {row.split()[1]: row for row in rows}
    assert by_name["/queue/orders"].split()[2] == "3"
    depth_column = header.index("DEPTH") + len("DEPTH")
    assert all(row[depth_column - 1] != " " for row in rows)  # numbers end under the header
    client.disconnect()


def test_purge_replay_and_close(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """purge empties a queue, replay sends dead letters home, close ends a connection."""
    running = start()
    client = _stomp(running)
    for i in range(5):
        client.send("/queue/work", f"w{i}", receipt=True)
    assert "purged 5 message(s)" in _admin(running, capsys, "purge", "/queue/work")
    headers = {"original-destination": "/queue/home", "dead-letter-reason": "nack"}
    client.send("/queue/DLQ", "lost", headers=headers, receipt=True)
    assert "replayed 1 message(s)" in _admin(running, capsys, "replay")
    client.subscribe("/queue/home")
    (message,) = client.wait_messages(1)
    assert message.body == "lost" and "dead-letter-reason" not in message.headers
    (connection,) = json.loads(_admin(running, capsys, "--json", "connections"))
    assert connection["version"] == "1.2" and connection["bytes_in"] > 0
    assert "closed connection" in _admin(running, capsys, "close", connection["id"])
    client.frames.wait(lambda: client.frames.disconnected, "the connection to close")
    assert client.frames.errors[0].headers["message"] == "closed by an administrator"


def test_errors_are_one_line_on_stderr(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown queue, or no broker at all, is reported in one line with status 1."""
    running = start()
    with pytest.raises(SystemExit) as exited:
        main(["--url", _url(running), "purge", "/queue/none"])
    assert exited.value.code == 1
    assert "no queue named 'none'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--url", "http://127.0.0.1:1", "status"])
    assert "cannot reach http://127.0.0.1:1" in capsys.readouterr().err


def test_with_users_the_tool_needs_an_admins_credentials(
    start: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once users exist, the API wants an admin's HTTP Basic credentials."""
    users = (
        UserEntry("ops", hash_password("secret", n=2**4), ("admins",)),
        UserEntry("app", hash_password("pw", n=2**4)),
    )
    rules = (
        RuleEntry("admins", ("/queue/>", "/topic/>"), ("read", "write", "create", "admin")),
        RuleEntry("app", ("/queue/>",), ("read", "write", "create")),
    )
    running = start(security=SecuritySection(users=users, rules=rules))
    with pytest.raises(SystemExit):
        main(["--url", _url(running), "status"])
    assert "give --user" in capsys.readouterr().err
    monkeypatch.setenv("STOMPBROKER_PASSWORD", "pw")
    with pytest.raises(SystemExit):
        main(["--url", _url(running), "--user", "app", "status"])
    capsys.readouterr()
    monkeypatch.setenv("STOMPBROKER_PASSWORD", "secret")
    assert "stompbroker" in _admin(running, capsys, "--user", "ops", "status")


def test_metrics_over_http(start: Any) -> None:
    """GET /metrics answers Prometheus text with the destinations' series."""
    running = start()
    client = _stomp(running)
    client.send("/queue/metered", "x", receipt=True)
    with urllib.request.urlopen(_url(running) + "/metrics", timeout=TIMEOUT) as answer:
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    depths = {
        sample.labels["destination"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "stompbroker_destination_depth"
    }
    assert depths["/queue/metered"] == 1
    assert "stompbroker_connections 1" in text
    client.disconnect()


def test_the_statistics_topic_over_stomp(start: Any) -> None:
    """A STOMP subscriber to /topic/stompbroker.stats gets JSON snapshots every interval."""
    running = start(ManagementSection(stats_interval_ms=200))
    client = _stomp(running)
    client.subscribe("/topic/stompbroker.stats")
    first, second = client.wait_messages(2)
    snapshot = json.loads(first.body)
    assert snapshot["schema"] == 1
    assert snapshot["broker"]["connections"]["open"] == 1
    assert first.headers["content-type"] == "application/json"
    assert json.loads(second.body)["time"] > snapshot["time"]
    client.disconnect()


def test_the_module_runs_as_a_program(start: Any) -> None:
    """python -m stompbroker.admin works (what the stompbroker-admin script runs)."""
    running = start()
    done = subprocess.run(
        [sys.executable, "-m", "stompbroker.admin", "--url", _url(running), "status"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "connections   0 open" in done.stdout

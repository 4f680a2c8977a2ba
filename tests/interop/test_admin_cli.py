"""stompbroker-admin, /metrics and the statistics topic against a live broker on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import blockingCallFromThread

from stompbroker.admin import main
from stompbroker.config import (
    Config,
    ManagementSection,
    RuleEntry,
    SecuritySection,
    UserEntry,
    WebSocketListener,
)
from stompbroker.core import hash_password
from stompbroker.service import BrokerService

from .conftest import TIMEOUT, Client, _ended, _TrackingEndpoint, poll, reactor

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Running:
    """A broker with a STOMP listener and a WebSocket listener (the management API)."""

    service: BrokerService
    tcp: _TrackingEndpoint
    ws: _TrackingEndpoint

    @property
    def port(self) -> int:
        return int(self.tcp.port.getHost().port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{int(self.ws.port.getHost().port)}"

    def stomp(self, version: str = "1.2") -> Client:
        client = Client(self.port, version)
        client.connect()
        return client

    def _stop(self) -> Any:
        stopped = self.service.stopService()
        for endpoint in (self.tcp, self.ws):
            for protocol in endpoint.protocols:
                if not _ended(protocol):
                    protocol.transport.abortConnection()
        return stopped

    def _open(self) -> int:
        every = [*self.tcp.protocols, *self.ws.protocols]
        return sum(1 for p in every if not _ended(p))


def _start(config: Config) -> Any:
    """Start a broker (on the reactor thread); a Deferred firing with it once it listens."""
    tcp = _TrackingEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
    ws = _TrackingEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
    entry = WebSocketListener("tcp:0:interface=127.0.0.1")
    service = BrokerService(config, reactor, [tcp], [(ws, entry)])
    service.startService()
    running = Running(service, tcp, ws)
    started: Deferred[Running] = service.started.addCallback(lambda _: running)
    return started


@pytest.fixture
def start(running_reactor: Any, tmp_path: Path) -> Iterator[Any]:
    """Start brokers with the management options given; stop them after the test."""
    started: list[Running] = []

    def run(management: ManagementSection | None = None, **sections: Any) -> Running:
        config = Config()
        config = replace(
            config,
            broker=replace(config.broker, data_dir=str(tmp_path / f"data-{len(started)}")),
            management=management or ManagementSection(),
            **sections,
        )
        running: Running = blockingCallFromThread(reactor, _start, config)
        started.append(running)
        return running

    yield run
    for running in started:
        blockingCallFromThread(reactor, running._stop)
        poll(functools.partial(_closed, running), "the broker's connections to close")


def _closed(running: Running) -> bool:
    return running._open() == 0


def _admin(running: Running, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["--url", running.url, *argv]) == 0
    return capsys.readouterr().out


def test_status_and_queue_table(start: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """status summarises the broker; queues prints an aligned table with each depth."""
    running = start()
    client = running.stomp()
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
    client = running.stomp()
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
        main(["--url", running.url, "purge", "/queue/none"])
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
        main(["--url", running.url, "status"])
    assert "give --user" in capsys.readouterr().err
    monkeypatch.setenv("STOMPBROKER_PASSWORD", "pw")
    with pytest.raises(SystemExit):
        main(["--url", running.url, "--user", "app", "status"])
    capsys.readouterr()
    monkeypatch.setenv("STOMPBROKER_PASSWORD", "secret")
    assert "stompbroker" in _admin(running, capsys, "--user", "ops", "status")


def test_metrics_over_http(start: Any) -> None:
    """GET /metrics answers Prometheus text with the destinations' series."""
    running = start()
    client = running.stomp()
    client.send("/queue/metered", "x", receipt=True)
    with urllib.request.urlopen(running.url + "/metrics", timeout=TIMEOUT) as answer:
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    assert 'stompbroker_destination_depth{kind="queue",destination="/queue/metered"} 1' in text
    assert "stompbroker_connections 1" in text
    client.disconnect()


def test_the_statistics_topic_over_stomp(start: Any) -> None:
    """A STOMP subscriber to /topic/stompbroker.stats gets JSON snapshots every interval."""
    running = start(ManagementSection(stats_interval_ms=200))
    client = running.stomp()
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
        [sys.executable, "-m", "stompbroker.admin", "--url", running.url, "status"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "connections   0 open" in done.stdout

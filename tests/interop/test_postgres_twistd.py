"""``twistd stompbroker`` on PostgreSQL (``broker.store: postgresql``), as a subprocess, against
the tests' throw-away PostgreSQL server: a receipted message outlives SIGKILL; a second node
on the same database, and a node without psycopg, are refused in one line."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .conftest import Client
from .test_twistd import Output, free_port, kill_twistd, run_twistd, spawn_twistd

LOCKED = "another stompbroker node is using this database; clustering is not supported yet"


def _config(tmp_path: Path) -> Path:
    """A configuration naming the PostgreSQL store; the DSN comes from --dsn."""
    path = tmp_path / "broker.yaml"
    path.write_text("broker:\n  store: postgresql\n", encoding="utf-8")
    return path


class Node:
    """``twistd -n stompbroker --config ... --dsn ...`` on a port, started and killed at will."""

    def __init__(self, tmp_path: Path, dsn: str) -> None:
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.args = ("--config", str(_config(tmp_path)), "--dsn", dsn)
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.output: Output | None = None

    def start(self) -> None:
        self.process, self.output = spawn_twistd(
            *self.args, "--listen", f"tcp:{self.port}:interface=127.0.0.1", cwd=self.tmp_path
        )
        self.output.wait_for(f"starting on {self.port}")

    def kill(self) -> None:
        assert self.process is not None and self.output is not None
        kill_twistd(self.process, self.output)
        self.process = None


@pytest.fixture
def node(tmp_path: Path, postgres_dsn: str) -> Iterator[Node]:
    """A broker process on a new database (not started yet), killed at the end."""
    running = Node(tmp_path, postgres_dsn)
    try:
        yield running
    finally:
        if running.process is not None:
            running.kill()


def test_a_receipted_persistent_message_survives_sigkill_on_postgresql(node: Node) -> None:
    """SEND persistent with a receipt, SIGKILL the broker, start it again: the message is
    delivered, from PostgreSQL."""
    node.start()
    producer = Client(node.port, "1.2")
    producer.connect()
    producer.send("/queue/pg", "kept in postgres", headers={"persistent": "true"}, receipt=True)
    node.kill()
    with psycopg.connect(node.dsn) as conn:
        rows = conn.execute("SELECT qkey, body FROM stompbroker.messages").fetchall()
    assert rows == [("/queue/pg", b"kept in postgres")]
    node.start()
    consumer = Client(node.port, "1.2")
    consumer.connect()
    consumer.subscribe("/queue/pg")
    [message] = consumer.wait_messages(1)
    assert message.body == "kept in postgres"
    with contextlib.suppress(Exception):
        consumer.disconnect()


def test_a_second_node_on_the_same_database_exits_saying_why(node: Node, tmp_path: Path) -> None:
    """While one node runs on a database, a second exits non-zero in one line, no traceback."""
    node.start()
    second = tmp_path / "second"
    second.mkdir()
    result = run_twistd(
        "-n",
        "--pidfile=",
        "stompbroker",
        *node.args,
        "--listen",
        f"tcp:{free_port()}:interface=127.0.0.1",
        cwd=second,
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert f"stompbroker cannot start: {LOCKED} (held by stompbroker " in text, text
    assert "Traceback" not in text, text


def test_without_psycopg_twistd_exits_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg not importable: twistd exits non-zero with one line naming the extra."""
    fake = tmp_path / "no-psycopg" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('psycopg is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    result = run_twistd(
        "-n", "--pidfile=", "stompbroker", "--config", str(_config(tmp_path)), cwd=tmp_path
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert (
        "broker.store is postgresql but psycopg is not installed:"
        " pip install 'stompbroker[postgresql]'" in text
    ), text
    assert "Traceback" not in text, text

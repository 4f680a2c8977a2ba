"""``twistd stompbroker`` on PostgreSQL (``broker.store: postgresql``), as a subprocess, against
the tests' throw-away PostgreSQL server: a receipted message outlives SIGKILL; a second node
of the name of a running one, and a node without psycopg, are refused in one line."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psycopg
import pytest

from .conftest import Client
from .test_durability import BrokerProcess, process
from .test_twistd import free_port, run_twistd

__all__ = ["process"]  # the fixture


def _config(directory: Path, dsn: str | None = None, name: str | None = None) -> Path:
    """``conf/stompbroker.yaml`` in ``directory`` (read when no --config is given), naming the
    PostgreSQL store, ``dsn`` and the node's ``name``."""
    path = directory / "conf" / "stompbroker.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "broker:\n  store: postgresql\n"
    if dsn is not None or name is not None:
        text += "postgresql:\n"
    if dsn is not None:
        text += f"  dsn: '{dsn}'\n"
    if name is not None:
        text += f"  node: '{name}'\n"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def node(process: BrokerProcess, tmp_path: Path, postgres_dsn: str) -> BrokerProcess:
    """A broker process (test_durability's) on a new database, not started yet."""
    _config(tmp_path, postgres_dsn, "pg-node")
    return process


def test_a_receipted_persistent_message_survives_sigkill_on_postgresql(
    node: BrokerProcess, postgres_dsn: str
) -> None:
    """SEND persistent with a receipt, SIGKILL the broker, start it again: the message is
    delivered, from PostgreSQL."""
    node.start()
    producer = Client(node.port, "1.2")
    producer.connect()
    producer.send("/queue/pg", "kept in postgres", headers={"persistent": "true"}, receipt=True)
    node.kill()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT qkey, body FROM stompbroker.shared").fetchall()
    assert rows == [("/queue/pg", b"kept in postgres")]
    node.start()
    consumer = Client(node.port, "1.2")
    consumer.connect()
    consumer.subscribe("/queue/pg")
    [message] = consumer.wait_messages(1)
    assert message.body == "kept in postgres"
    with contextlib.suppress(Exception):
        consumer.disconnect()


def test_a_second_node_of_a_running_nodes_name_exits_saying_why(
    node: BrokerProcess, tmp_path: Path, postgres_dsn: str
) -> None:
    """While node "pg-node" runs on a database, a second one of that name (given the
    database with --dsn) exits non-zero in one line, no traceback."""
    node.start()
    second = tmp_path / "second"
    _config(second, name="pg-node")
    result = run_twistd(
        "-n",
        "--pidfile=",
        "stompbroker",
        "--dsn",
        postgres_dsn,
        "--listen",
        f"tcp:{free_port()}:interface=127.0.0.1",
        cwd=second,
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert (
        "stompbroker cannot start: a stompbroker node named 'pg-node' is running on this"
        " database already (from 127.0.0.1): give each node its own postgresql.node" in text
    ), text
    assert "Traceback" not in text, text


def test_without_psycopg_twistd_exits_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg not importable: twistd exits non-zero with one line naming the extra."""
    fake = tmp_path / "no-psycopg" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('psycopg is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    _config(tmp_path, "host=db")
    result = run_twistd("-n", "--pidfile=", "stompbroker", cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert (
        "broker.store is postgresql but psycopg is not installed:"
        " pip install 'stompbroker[postgresql]'" in text
    ), text
    assert "Traceback" not in text, text

"""``security.checker`` against a real ``twistd stompbroker``: stomp.py logs in with the
password the named checker (tests/_example_checker.py's DictChecker) knows, and is refused
with another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stomp

from .conftest import TIMEOUT
from .test_twistd import free_port, kill_twistd, spawn_twistd


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    """A ``twistd -n stompbroker`` whose logins the example checker decides, on 127.0.0.1."""
    chosen = free_port()
    config = tmp_path / "broker.yaml"
    config.write_text(
        "broker: {store: memory}\n"
        "security:\n"
        "  login_delay_ms: 10\n"
        "  checker: tests._example_checker.DictChecker\n"
        "  checker_options: {users: {carol: carol-pw}}\n",
        encoding="utf-8",
    )
    listen = f"tcp:{chosen}:interface=127.0.0.1"
    process, output = spawn_twistd("--config", str(config), "--listen", listen, cwd=tmp_path)
    try:
        output.wait_for(f"starting on {chosen}")
        yield chosen
    finally:
        kill_twistd(process, output)
        assert "Traceback" not in output.text, output.text


def _connect(port: int, passcode: str) -> stomp.Connection12:
    conn = stomp.Connection12([("127.0.0.1", port)], timeout=TIMEOUT)
    conn.connect("carol", passcode, wait=True)
    return conn


def test_the_named_checker_decides_stomp_logins(port: int) -> None:
    """The checker's password is accepted; another gets the usual refusal."""
    conn = _connect(port, "carol-pw")
    assert conn.is_connected()
    conn.disconnect()
    with pytest.raises(stomp.exception.ConnectFailedException):
        _connect(port, "wrong")

"""The real command line: ``twistd stompbroker`` run as a subprocess.

Each run uses ``cwd=tmp_path`` so that the repository's ``conf/`` is not picked
up, and every wait on the child process is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TIMEOUT, Client

#: Bound on a whole short-lived ``twistd`` run (it imports Twisted and scans plugins).
RUN_TIMEOUT = 30.0


def _twistd() -> str:
    """The twistd script of the interpreter running the tests (else the one on PATH)."""
    beside = Path(sys.executable).with_name("twistd")
    if beside.exists():
        return str(beside)
    found = shutil.which("twistd")
    if found is None:
        pytest.fail("twistd is not installed: the test command installs it")
    return found


#: This tree: the child runs its code, and can import ``tests`` (an example checker).
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def run_twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``twistd ARGS`` to completion (bounded) and capture its output."""
    return subprocess.run(
        [_twistd(), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Output:
    """Collects a child's output lines on a thread; lets the test wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ended = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    @property
    def text(self) -> str:
        """Everything read so far."""
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, fragment: str, timeout: float = RUN_TIMEOUT) -> None:
        """Return once a line contains ``fragment``; fail if the output ends or time runs out."""
        with self._changed:
            seen = self._changed.wait_for(
                lambda: self.ended or any(fragment in line for line in self.lines), timeout
            )
            found = any(fragment in line for line in self.lines)
        if not found:
            why = "the output ended" if seen else f"{timeout} s passed"
            raise AssertionError(f"{why} before {fragment!r} appeared:\n{self.text}")

    def join(self) -> str:
        """Wait (bounded) for the output to end; return all of it."""
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the child's output did not end"
        return self.text


def spawn_twistd(*args: str, cwd: Path) -> tuple[subprocess.Popen[str], Output]:
    """Start ``twistd -n --pidfile= stompbroker ARGS`` with its output collected."""
    process = subprocess.Popen(
        [_twistd(), "-n", "--pidfile=", "stompbroker", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, Output(process)


def kill_twistd(process: subprocess.Popen[str], output: Output) -> None:
    """SIGKILL the child if it still runs (no flush, no goodbye); wait for its output to end."""
    if process.poll() is None:
        process.kill()
        process.wait(TIMEOUT)
    output.join()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, int]]:
    """``twistd -n stompbroker --listen tcp:PORT:... --data-dir ...`` running; killed at the end."""
    port = free_port()
    process, output = spawn_twistd(
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=tmp_path,
    )
    try:
        yield process, output, port
    finally:
        kill_twistd(process, output)


def test_twistd_lists_the_plugin(tmp_path: Path) -> None:
    """`twistd --help` lists the stompbroker subcommand with its description."""
    result = run_twistd("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert any(words and words[0] == "stompbroker" for words in lines), result.stdout


def test_plugin_help_documents_options(tmp_path: Path) -> None:
    """`twistd stompbroker --help` documents --config, --listen and --data-dir."""
    result = run_twistd("stompbroker", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for option in ("--config", "--listen", "--data-dir"):
        assert option in result.stdout, f"{option} missing from:\n{result.stdout}"


def test_twistd_serves_stomp_until_sigterm(
    tmp_path: Path, started: tuple[subprocess.Popen[str], Output, int]
) -> None:
    """`twistd -n stompbroker --listen ... --data-dir ...` serves STOMP; SIGTERM ends it cleanly."""
    process, output, port = started
    output.wait_for(f"starting on {port}")
    output.wait_for("objects made at start are left out of garbage collection")
    client = Client(port, "1.2")
    client.connect()
    client.subscribe("/queue/cli")
    client.send("/queue/cli", "through twistd")
    [message] = client.wait_messages(1)
    assert message.body == "through twistd"
    client.disconnect()
    assert (tmp_path / "data").is_dir()

    process.send_signal(signal.SIGTERM)
    # twistd stops the reactor, then re-raises the signal so its parent sees it.
    assert process.wait(TIMEOUT) in (0, -signal.SIGTERM)
    text = output.join()
    assert f"Port {port} Closed" in text, text
    assert "Traceback" not in text, text


def test_invalid_config_is_reported_without_traceback(tmp_path: Path) -> None:
    """An unknown config key: twistd exits non-zero naming file, line and key; no traceback."""
    path = tmp_path / "broker.yaml"
    path.write_text("broker:\n  name: test\n  colour: blue\n", encoding="utf-8")
    result = run_twistd("-n", "--pidfile=", "stompbroker", "--config", str(path), cwd=tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert f"{path}:3" in text, text
    assert "broker.colour" in text, text
    assert "Traceback" not in text, text
    assert not (tmp_path / "data").exists()


def test_invalid_listen_endpoint_is_reported_without_traceback(tmp_path: Path) -> None:
    """A --listen that is no endpoint string makes twistd exit non-zero naming it, no traceback."""
    result = run_twistd(
        "-n", "--pidfile=", "stompbroker", "--listen", "nonsense:61613", cwd=tmp_path
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert "nonsense:61613" in text, text
    assert "Traceback" not in text, text


def test_sighup_reloads_the_file_and_refuses_an_invalid_one(tmp_path: Path) -> None:
    """SIGHUP re-reads --config: a new policy applies to a running broker; an invalid file is
    refused with file:line: key, and the broker keeps serving."""
    port = free_port()
    path = tmp_path / "broker.yaml"
    path.write_text(f"listeners:\n  stomp: ['tcp:{port}:interface=127.0.0.1']\n")
    process, output = spawn_twistd("--config", str(path), cwd=tmp_path)
    try:
        output.wait_for(f"starting on {port}")
        path.write_text(
            f"listeners:\n  stomp: ['tcp:{port}:interface=127.0.0.1']\n"
            "destinations:\n  - {name: /queue/hup, max_messages: 1, on_full: reject}\n"
        )
        process.send_signal(signal.SIGHUP)
        output.wait_for("configuration reloaded")
        client = Client(port, "1.2")
        client.connect()
        client.send("/queue/hup", "one", receipt=True)
        client.conn.send("/queue/hup", "two")
        client.frames.wait(lambda: bool(client.frames.errors), "an ERROR")
        assert client.frames.errors[0].headers["message"] == (
            "destination /queue/hup is full (max_messages 1, max_bytes unlimited); "
            "the message was not accepted"
        )

        path.write_text("destinations:\n  - {name: /queue/hup, max_messages: ten}\n")
        process.send_signal(signal.SIGHUP)
        output.wait_for("configuration not reloaded")
        assert f"{path}:2: destinations[0].max_messages" in output.text
        again = Client(port, "1.2")
        again.connect()
        again.send("/queue/other", "still served", receipt=True)
        again.disconnect()
    finally:
        kill_twistd(process, output)

"""Issue 15: a header line over the limit is refused at the line, by a real ``twistd``.

The attack: a complete over-long header line, its EOL sent, then nothing (no blank
line). The broker must answer with ERROR ``header line too long`` and close at once,
not wait for an end of the header block that never comes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stompbroker.codec import SERVER_COMMANDS, Frame, FrameParser

from .conftest import TIMEOUT
from .test_twistd import Output, _env, free_port, kill_twistd, spawn_twistd

#: The tree under test: the twistd child must import this one, not another checkout.
TREE = Path(__file__).resolve().parents[2]

CONNECT = b"CONNECT\naccept-version:1.2\nhost:/\n\n\0"


@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[int]:
    """A ``twistd -n stompbroker`` child on 127.0.0.1 that imports this tree; its port."""
    imported = subprocess.run(
        [sys.executable, "-c", "import stompbroker; print(stompbroker.__file__)"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout.strip()
    assert Path(imported).resolve().is_relative_to(TREE), f"{imported} is not under {TREE}"
    port = free_port()
    process, output = spawn_twistd(
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=tmp_path,
    )
    try:
        output.wait_for(f"starting on {port}")
        yield port
    finally:
        kill_twistd(process, output)
        _no_traceback(output)


def _no_traceback(output: Output) -> None:
    text = output.text
    assert "Traceback" not in text, text


def read_until_closed(sock: socket.socket, parser: FrameParser, deadline: float) -> list[Frame]:
    """Frames read from ``sock`` until the broker closes it; fail at ``deadline``."""
    frames: list[Frame] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the connection was still open; frames so far: {frames}")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            return frames
        frames += parser.feed(data)


def read_frame(sock: socket.socket, parser: FrameParser) -> Frame:
    """The next frame from ``sock`` (bounded by ``TIMEOUT``)."""
    sock.settimeout(TIMEOUT)
    while True:
        frames = parser.feed(b"")
        if frames:
            return frames[0]
        data = sock.recv(65536)
        assert data, "the broker closed the connection"
        frames = parser.feed(data)
        if frames:
            return frames[0]


@pytest.mark.parametrize(
    ("connect_first", "line", "limit"),
    [
        pytest.param(True, b"h:" + b"x" * 19_998, 16_384, id="after-connect-20000-bytes"),
        pytest.param(False, b"login:" + b"x" * 4_994, 4_096, id="before-connect-5000-bytes"),
    ],
)
def test_complete_long_header_line_gets_error_at_the_line(
    broker_port: int, connect_first: bool, line: bytes, limit: int
) -> None:
    """A complete over-long header line with no blank line after it gets ERROR and a close."""
    parser = FrameParser(commands=SERVER_COMMANDS, version="1.2")
    parser.stop_after_frame = True
    with socket.create_connection(("127.0.0.1", broker_port), TIMEOUT) as sock:
        if connect_first:
            sock.sendall(CONNECT)
            assert read_frame(sock, parser).command == "CONNECTED"
            sock.sendall(b"SEND\ndestination:/queue/issue15\n" + line + b"\n")
        else:
            sock.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n" + line + b"\n")
        parser.stop_after_frame = False
        sent = time.monotonic()
        frames = read_until_closed(sock, parser, sent + TIMEOUT)
    assert len(line) == (20_000 if connect_first else 5_000)
    assert [f.command for f in frames] == ["ERROR"], frames
    (error,) = frames
    assert error.headers["message"] == "header line too long"
    assert f"the limit is {limit} bytes a line" in error.body.decode()

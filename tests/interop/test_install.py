"""The README's install command, `pip install .`, in a fresh virtual environment.

A plain editable install does not expose ``twisted/plugins``; this pins that the
real install does, so that ``twistd --help`` lists ``stompbroker`` for a user, that the
web console's files (package data) are installed with it, and that its hot modules are
compiled (mypyc, ``setup.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Bound on creating the environment and installing into it (packages come from the index).
INSTALL_TIMEOUT = 300.0

#: A script using the installed stompbroker.testing (docs/testing.md).
_TESTING_CHECK = (
    "from stompbroker.testing import connected_clients\n"
    "_, _, (producer, consumer) = connected_clients(2)\n"
    "consumer.subscribe('/queue/q')\n"
    "producer.publish('/queue/q', b'hello')\n"
    "print(consumer.bodies())\n"
)

#: Every path of the web console, and a script printing what an installed broker answers.
_CONSOLE_PATHS = ("/", "/console.js", "/stomp.js", "/console.css", "/favicon.svg")
_CONSOLE_CHECK = (
    "from twisted.internet.task import Clock\n"
    "from twisted.internet.testing import StringTransport\n"
    "from stompbroker.transport import Console, WebSocketFactory\n"
    "factory = WebSocketFactory(None, Clock(), resource=Console())\n"
    f"for path in {_CONSOLE_PATHS!r}:\n"
    "    channel, wire = factory.buildProtocol(None), StringTransport()\n"
    "    channel.makeConnection(wire)\n"
    "    channel.dataReceived(f'GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'.encode())\n"
    "    head, _, body = wire.value().partition(b'\\r\\n\\r\\n')\n"
    "    print(path, head.split()[1].decode() if body else 'empty')\n"
)


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> Any:
    """Run a command to completion, bounded, capturing its output as text."""
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_pip_install_dot_exposes_the_twistd_plugin(tmp_path: Path) -> None:
    """After `pip install .` in a new venv, twistd lists stompbroker; stompbroker-passwd works."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    python = str(bin_dir / "python")
    install = _run(
        [python, "-m", "pip", "install", "--quiet", str(ROOT)], tmp_path, environ, INSTALL_TIMEOUT
    )
    assert install.returncode == 0, install.stderr[-2000:]
    listing = _run([str(bin_dir / "twistd"), "--help"], tmp_path, environ)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "stompbroker" in listing.stdout
    usage = _run([str(bin_dir / "twistd"), "stompbroker", "--help"], tmp_path, environ)
    assert usage.returncode == 0, usage.stderr[-2000:]
    for option in ("--config", "--listen", "--data-dir"):
        assert option in usage.stdout
    # The console script that prints password hashes is installed too.
    hashed = subprocess.run(
        [str(bin_dir / "stompbroker-passwd")],
        input="secret\n",
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert hashed.stdout.startswith("scrypt$"), hashed.stderr[-2000:]
    # The plugin and package came from the new environment, not from this checkout.
    where = _run(
        [python, "-c", "import stompbroker; print(stompbroker.__file__)"], tmp_path, environ
    )
    assert where.stdout.startswith(str(env_dir)), (where.stdout, sys.prefix)
    # The hot modules were compiled with mypyc (setup.py), as this machine can.
    built = _run(
        [python, "-c", "import stompbroker; print(stompbroker.compiled())"], tmp_path, environ
    )
    assert built.stdout == "True\n", (built.stdout, built.stderr[-2000:])
    # The web console's files are package data: installed, and served from there.
    console = _run([python, "-c", _CONSOLE_CHECK], tmp_path, environ)
    assert console.stdout.split("\n")[:-1] == [f"{path} 200" for path in _CONSOLE_PATHS], (
        console.stdout,
        console.stderr[-2000:],
    )
    # The in-memory clients for users' tests are installed too.
    testing = _run([python, "-c", _TESTING_CHECK], tmp_path, environ)
    assert testing.stdout == "[b'hello']\n", testing.stderr[-2000:]

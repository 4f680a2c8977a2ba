"""A throw-away PostgreSQL server for the tests: ``initdb`` into a temporary directory, started
with ``pg_ctl`` on a free loopback port (its unix socket in that directory), stopped after.

As root, initdb and the server run as the ``postgres`` user (initdb refuses root). Each
test gets a database of its own (``PostgresServer.database``). Run as a script, it starts
one by hand, with fsync on, and prints its DSN (for the benchmarks) until Enter is pressed::

    python3 -m tests._postgres
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where Debian's postgresql-15 puts its programs.
BIN_DIRS = tuple(f"/usr/lib/postgresql/{major}/bin" for major in (15, 16, 17))
#: Bound on initdb, a start and a stop (seconds).
TIMEOUT = 60.0


def bin_dir() -> Path:
    """The directory of initdb and pg_ctl; fail (never skip) when PostgreSQL is missing."""
    for candidate in BIN_DIRS:
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found is None:
        pytest.fail("PostgreSQL is not installed: scripts/test installs it (postgresql-15)")
    return Path(os.path.realpath(found)).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, for one test session."""

    def __init__(self, *settings: str, fast: bool = True) -> None:
        self.bin = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="stompbroker-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        #: The tests' server writes no fsync (fast, not crash-safe for the machine).
        self._settings = ("fsync=off", "full_page_writes=off", *settings) if fast else settings
        self._names = (f"t{n}" for n in itertools.count(1))
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)

    @property
    def dsn(self) -> str:
        """The libpq connection string of the ``postgres`` database."""
        return self.dsn_of("postgres")

    def dsn_of(self, database: str) -> str:
        """The libpq connection string of ``database`` on this server."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self._as, *command],
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
            cwd=self.root,
        )

    def initdb(self) -> None:
        """Make the data directory (first time only: a standby's is a base backup)."""
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )

    def start(self) -> None:
        """initdb (first time only) and start; return once it accepts connections."""
        self.initdb()
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                *(f"-c {setting}" for setting in self._settings),
            ]
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(TIMEOUT)),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed; no shutdown checkpoint)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop if running, and delete every file."""
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def database(self) -> str:
        """A new, empty database; its DSN."""
        import psycopg

        name = next(self._names)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.dsn_of(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """The DSN of a new, empty database on the session's server."""
    return postgres_server.database()


if __name__ == "__main__":
    # With the defaults' durability (fsync on), as a measurement needs.
    by_hand = PostgresServer(fast=False)
    by_hand.start()
    print(by_hand.dsn, flush=True)
    try:
        input()
    finally:
        by_hand.remove()

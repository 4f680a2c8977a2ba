"""A throw-away PostgreSQL primary with a synchronous streaming standby, for the failover
tests: two ``PostgresServer`` of ``tests._postgres`` on free loopback ports.

The primary runs with ``wal_level=replica``, WAL senders and
``synchronous_standby_names = 'ANY 1 (standby1)'`` (given on its command line, so that the
base backup does not carry it to the standby: once promoted, the standby commits alone);
its pg_hba lets ``postgres`` replicate from 127.0.0.1 without a password. The standby is
``pg_basebackup -R`` of it (as ``postgres``), whose ``primary_conninfo`` names it
``standby1``. Every step is bounded: the programs by ``TIMEOUT``, the waits for the
replication by polling a condition against a deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from ._postgres import TIMEOUT, PostgresServer
from .helpers import wait_until

#: The standby's name, as the primary sees it (its ``application_name``).
STANDBY = "standby1"
#: Between two looks at the replication's state, in seconds.
PAUSE = 0.05


def _poll(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    wait_until(condition, what, timeout, PAUSE)


class StandbyPair:
    """A primary and its synchronous standby; either may be stopped, killed or promoted."""

    def __init__(self) -> None:
        self.primary = PostgresServer(
            "wal_level=replica",
            "max_wal_senders=4",
            f"synchronous_standby_names='ANY 1 ({STANDBY})'",
        )
        self.standby = PostgresServer("hot_standby=on")

    @property
    def dsn(self) -> str:
        """The ``postgres`` database through both servers: libpq takes the first that
        answers and accepts writes (the primary, or the standby once promoted)."""
        return (
            f"host=127.0.0.1,127.0.0.1 port={self.primary.port},{self.standby.port}"
            " user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"
        )

    def start(self) -> None:
        """Start the primary (initdb first), then the standby (a base backup the first time);
        return once the primary counts the standby as synchronous."""
        primary = self.primary
        if not primary.data.exists():
            primary.initdb()
            with (primary.data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                hba.write("host replication postgres 127.0.0.1/32 trust\n")
        primary.start()
        if not self.standby.data.exists():
            self.standby._run(
                str(self.standby.bin / "pg_basebackup"),
                "-D",
                str(self.standby.data),
                "-d",
                f"host=127.0.0.1 port={primary.port} user=postgres application_name={STANDBY}",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            )
        self.start_standby()

    def sync_state(self) -> str | None:
        """The primary's view of the standby (``pg_stat_replication.sync_state`` while it
        streams), None while it does not."""
        with psycopg.connect(self.primary.dsn, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT sync_state FROM pg_stat_replication"
                " WHERE application_name = %s AND state = 'streaming'",
                (STANDBY,),
            ).fetchone()
        return None if row is None else str(row[0])

    def start_standby(self) -> None:
        """Start the standby; return once the primary counts it as synchronous."""
        self.standby.start()
        _poll(lambda: self.sync_state() in ("sync", "quorum"), "the standby to be synchronous")

    def stop_standby(self) -> None:
        """Stop the standby (fast): the primary's synchronous commits wait from now on."""
        self.standby.stop()
        _poll(lambda: self.sync_state() is None, "the primary to see the standby gone")

    def kill_primary(self) -> None:
        """Crash the primary: an immediate stop, no shutdown checkpoint, no goodbye beyond
        the connection's end."""
        self.primary.stop("immediate")

    def promote(self) -> None:
        """Promote the standby (``pg_ctl promote -w``): it accepts writes once this returns."""
        self.standby._run(
            str(self.standby.bin / "pg_ctl"), "-D", str(self.standby.data), "-w", "promote"
        )

        def writable() -> bool:
            with psycopg.connect(self.standby.dsn, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return row is not None and not row[0]

        _poll(writable, "the standby to accept writes")

    def remove(self) -> None:
        """Stop whatever runs and delete both servers' files."""
        for server in (self.standby, self.primary):
            server.remove()


@pytest.fixture
def standby_pair() -> Iterator[StandbyPair]:
    """A primary and its synchronous standby, started; removed at the end."""
    pair = StandbyPair()
    try:
        pair.start()
        yield pair
    finally:
        pair.remove()

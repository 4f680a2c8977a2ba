"""What only the PostgreSQL store does (its contract is tests/test_store.py's): one node per
database, the schema's version, synchronous_commit per batch, a lost server, psycopg missing."""

from __future__ import annotations

import socket
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path

import psycopg
import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent
from twisted.python import usage

from stompbroker.config import Config, ConfigError, PostgresqlSection, parse
from stompbroker.core import DurableRecord, Message, ScheduledRecord
from stompbroker.core._durables import durable_store_key
from stompbroker.service import data_location, node_name
from stompbroker.store import PostgresStore, StoreRefused, _pg_database, _pg_schema, psycopg_missing
from stompbroker.tap import Options

from ._postgres import PostgresServer, free_port
from .helpers import doc_default, doc_section
from .test_store import Harness, _load, _message, _sized, run_now

#: Long enough that no poll runs in a test that does not ask for one.
NO_POLL = 3600.0


def _harness(dsn: str, node: str = "") -> Harness:
    clock = Clock()
    return Harness(
        PostgresStore(dsn, clock, run_now, node, poll_s=NO_POLL),
        clock,
        lambda: PostgresStore(dsn, clock, run_now, node, poll_s=NO_POLL),
    )


def _opened(dsn: str, node: str = "") -> Harness:
    h = _harness(dsn, node)
    h.result(h.store.open())
    return h


def _refusal(h: Harness) -> str:
    with pytest.raises(StoreRefused) as refused:
        h.result(h.store.open())
    return str(refused.value)


def _sql(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_nodes_of_other_names_share_a_database_and_a_second_one_of_a_name_is_refused(
    postgres_dsn: str,
) -> None:
    """Nodes of different names open the same database together, each with a number and
    tables of its own, and the durable subscriptions of all; a second process with a live
    node's name is told so (while the first runs), and opens once it is gone."""
    first = _opened(postgres_dsn, "node-a:61613")
    other = _opened(postgres_dsn, "node-b:61613")
    other.result(other.store.add_durable(DurableRecord("c", "b", "news", None)))
    again = _harness(postgres_dsn, "node-a:61613")
    assert _refusal(again) == (
        "a stompbroker node named 'node-a:61613' is running on this database already"
        " (from 127.0.0.1): give each node its own postgresql.node"
    )
    first.result(first.store.add_durable(DurableRecord("c", "a", "news", None)))
    first.result(first.store.close())
    recovery = again.result(again.store.open())
    assert sorted(recovery.durables, key=lambda r: r.name) == [
        DurableRecord("c", "a", "news", None),
        DurableRecord("c", "b", "news", None),
    ]
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT number, name FROM stompbroker.nodes ORDER BY 1").fetchall() == [
            (1, "node-a:61613"),
            (2, "node-b:61613"),
        ]
    again.result(again.store.close())
    other.result(other.store.close())


def test_a_schema_newer_than_this_code_is_refused(postgres_dsn: str) -> None:
    """A database written by a newer stompbroker is not opened (nothing is changed in it)."""
    h = _opened(postgres_dsn)
    h.result(h.store.close())
    _sql(postgres_dsn, "UPDATE stompbroker.schema_version SET version = 6")
    again = _harness(postgres_dsn)
    assert _refusal(again) == (
        "the database's stompbroker schema is version 6, newer than this stompbroker knows (5):"
        " run a stompbroker at least as new as the one that wrote it"
    )
    _sql(postgres_dsn, "UPDATE stompbroker.schema_version SET version = 5")
    again.result(again.store.open())
    again.result(again.store.close())


def test_an_older_schema_is_migrated_at_open_and_keeps_its_rows(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at an older version gets each migration step at open, its data kept."""
    h = _opened(postgres_dsn)
    h.result(h.store.add_durable(DurableRecord("c", "d", "news", None)))
    h.result(h.store.close())
    monkeypatch.setattr(_pg_schema, "SCHEMA_VERSION", 6)
    monkeypatch.setattr(
        _pg_schema,
        "MIGRATIONS",
        {**_pg_schema.MIGRATIONS, 5: ("ALTER TABLE stompbroker.nodes ADD COLUMN note text",)},
    )
    recovery = h.restart()
    h.result(h.store.close())
    assert recovery.durables == (DurableRecord("c", "d", "news", None),)
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT version FROM stompbroker.schema_version").fetchall() == [(6,)]
        assert conn.execute("SELECT note FROM stompbroker.nodes").fetchall() == [(None,)]


def test_synchronous_commit_is_on_only_for_batches_that_ask_to_sync(postgres_dsn: str) -> None:
    """``always`` and ``batch`` adds and durable definitions commit with synchronous_commit
    on; ``never`` and transient adds, and removals alone, with it off."""
    h = _opened(postgres_dsn)
    store = h.store
    steps = [
        ("always", lambda: store.add("/queue/q", _message(1), "always"), "on"),
        ("batch", lambda: store.add("/queue/q", _message(2), "batch"), "on"),
        ("never", lambda: store.add("/queue/q", _message(3), "never"), "off"),
        (
            "transient",
            lambda: store.add("/queue/q", _message(4, persistent=False), "transient"),
            "off",
        ),
        ("remove", lambda: store.remove("/queue/q", _message(1)), "off"),
        ("durable", lambda: store.add_durable(DurableRecord("c", "d", "t", None)), "on"),
    ]
    h.settle()
    expected: Counter[str] = Counter(store.synchronous_commits)  # the ids reserved at open
    for what, step, mode in steps:
        step()
        h.settle()
        expected[mode] += 1
        assert store.synchronous_commits == expected, what
    both = [
        store.add("/queue/q", _message(5), "never"),
        store.add("/queue/q", _message(6), "always"),
    ]
    h.result(both[0])
    expected["on"] += 1
    assert store.synchronous_commits == expected, "a batch with one always add syncs"
    assert store.fsyncs == expected["on"]
    assert [m.seq for m in _load(h, "/queue/q")] == [2, 3, 4, 5, 6]
    h.result(store.close())


def test_a_crash_of_the_server_keeps_committed_persistent_rows_only(
    postgres_server: PostgresServer, postgres_dsn: str, logged_failures: list[LogEvent]
) -> None:
    """After PostgreSQL crashes (immediate stop), persistent rows come back and transient ones
    do not; the running store fails the batch that found the server gone, then reconnects."""
    h = _opened(postgres_dsn)
    h.result(h.store.add("/queue/q", _message(1), "always"))
    h.result(h.store.add("/queue/q", _message(2, persistent=False), "transient"))
    postgres_server.stop("immediate")
    postgres_server.start()
    with pytest.raises(psycopg.OperationalError):
        h.result(h.store.add("/queue/q", _message(3), "always"))
    (failure,) = logged_failures
    assert formatEvent(failure) == "the message store failed to write a batch"
    assert h.result(h.store.add("/queue/q", _message(4), "always")) is None
    recovery = h.restart()
    assert recovery.queues[0].priorities == {4: (2, 1)}
    assert [(m.seq, m.persistent) for m in _load(h, "/queue/q")] == [(1, True), (4, True)]
    h.result(h.store.close())


def test_after_a_failed_reconnection_batches_fail_at_once_for_a_while_that_doubles(
    postgres_server: PostgresServer, postgres_dsn: str, logged_failures: list[LogEvent]
) -> None:
    """PostgreSQL down: the batch that finds the connection lost fails, the next tries to
    connect and fails; the batches of the next 0.1 s fail at once, saying when the next
    attempt is, without trying (even once the server is back); the next attempt fails too
    while it is down, and then 0.2 s go by without trying; the first batch after that,
    the server back, connects and is written. Only the first failure is logged as one."""
    now = [0.0]
    clock = Clock()

    def store() -> PostgresStore:
        return PostgresStore(postgres_dsn, clock, run_now, poll_s=NO_POLL, timer=lambda: now[0])

    h = Harness(store(), clock, store)
    h.result(h.store.open())

    def refusal(seq: int) -> str:
        with pytest.raises(StoreRefused) as refused:
            h.result(h.store.add("/queue/q", _message(seq), "always"))
        return str(refused.value)

    postgres_server.stop("immediate")
    try:
        with pytest.raises(psycopg.OperationalError):
            h.result(h.store.add("/queue/q", _message(1), "always"))
        tried = refusal(2)
        assert tried.startswith("cannot connect to PostgreSQL: ") and "\n" not in tried, tried
        now[0] = 0.09
        assert refusal(3) == f"{tried} (the next attempt in 0.01 s)"
        now[0] = 0.1
        tried_again = refusal(4)
        assert not tried_again.endswith(" s)"), tried_again
        now[0] = 0.25
        assert refusal(5) == f"{tried_again} (the next attempt in 0.05 s)"
    finally:
        postgres_server.start()
    now[0] = 0.29
    assert refusal(6).endswith("(the next attempt in 0.01 s)")
    now[0] = 0.31
    assert h.result(h.store.add("/queue/q", _message(7), "always")) is None
    assert [m.seq for m in _load(h, "/queue/q")] == [7]
    # The lost connection's traceback; the refusals after it are one warning, no traceback.
    assert len(logged_failures) == 1
    h.result(h.store.close())


def test_a_failed_batch_is_rolled_back_and_the_store_goes_on(
    postgres_dsn: str, logged_failures: list[LogEvent]
) -> None:
    """A batch that fails fails its waiters and writes nothing of itself; the next one is kept."""
    h = _opened(postgres_dsn)
    bad = _message(1)
    bad.headers = {"x": object()}  # type: ignore[dict-item]
    h.store.remember("/queue/q", "in-the-bad-batch", 0)
    written = h.store.add("/queue/q", bad, "always")
    with pytest.raises(TypeError):
        h.result(written)
    assert len(logged_failures) == 1
    assert h.result(h.store.add("/queue/q", _message(2), "always")) is None
    recovery = h.restart()
    assert recovery.duplicate_ids == ()
    assert [m.seq for m in _load(h, "/queue/q")] == [2]
    h.result(h.store.close())


def test_a_dsn_of_several_hosts_opens_on_the_one_that_answers(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    """libpq's multi-host strings work: a host that is down is passed over."""

    dbname = postgres_dsn.split("dbname=")[1]
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={free_port()},{postgres_server.port} user=postgres"
        f" dbname={dbname} target_session_attrs=read-write"
    )
    h = _opened(dsn)
    h.result(h.store.add("/queue/q", _message(1), "always"))
    h.result(h.store.close())


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    """No server at the DSN: the store refuses to open, saying why in one line."""

    h = _harness(f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=5")
    line = _refusal(h)
    assert line.startswith("cannot connect to PostgreSQL: ") and "\n" not in line, line


MISSING = (
    "broker.store is postgresql but psycopg is not installed: pip install 'stompbroker[postgresql]'"
)


def test_without_psycopg_the_store_and_the_command_line_say_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg not importable: twistd's options refuse the configuration in one line naming
    the extra to install, and the store refuses to open with the same line."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert psycopg_missing() == MISSING
    path = tmp_path / "broker.yaml"
    path.write_text("broker:\n  store: postgresql\npostgresql:\n  dsn: host=db\n", encoding="utf-8")
    with pytest.raises(usage.UsageError) as refused:
        Options().parseOptions(["--config", str(path)])
    assert str(refused.value) == MISSING
    assert _refusal(_harness("host=db")) == MISSING


def test_the_command_line_dsn_replaces_the_files_and_one_is_required(tmp_path: Path) -> None:
    """``--dsn`` overrides ``postgresql.dsn``; with neither, the options name the key."""
    path = tmp_path / "broker.yaml"
    path.write_text("broker:\n  store: postgresql\n", encoding="utf-8")
    with pytest.raises(usage.UsageError) as refused:
        Options().parseOptions(["--config", str(path)])
    assert str(refused.value) == (
        f"{path}: postgresql.dsn: required with broker.store: postgresql (or give --dsn)"
    )
    options = Options()
    options.parseOptions(["--config", str(path), "--dsn", "host=db1,db2 dbname=stomp"])
    assert options["parsed"].postgresql.dsn == "host=db1,db2 dbname=stomp"
    with pytest.raises(usage.UsageError) as bad:
        Options().parseOptions(["--config", str(path), "--dsn", "host=db 'unterminated"])
    assert str(bad.value).startswith(f"{path}: postgresql.dsn: not a libpq connection string: ")


# -- the configuration ----------------------------------------------------------------


def test_the_postgresql_section_is_read_and_checked_with_file_and_line() -> None:
    """``broker.store: postgresql`` and the ``postgresql`` keys are read; a wrong value or an
    unknown key names the line and the key."""
    config = parse("broker:\n  store: postgresql\npostgresql:\n  dsn: host=db\n  node: n1\n")
    assert config.broker.store == "postgresql"
    assert config.postgresql == PostgresqlSection(dsn="host=db", node="n1")
    with pytest.raises(ConfigError) as wrong:
        parse("postgresql:\n  dsn: 5\n")
    assert str(wrong.value) == "<string>:2: postgresql.dsn: expected a non-empty string, got 5"
    with pytest.raises(ConfigError) as unknown:
        parse("postgresql:\n  pool_size: 3\n")
    assert str(unknown.value) == (
        "<string>:2: postgresql.pool_size: unknown key (known: dsn, node)"
    )


def test_every_postgresql_key_is_documented() -> None:
    """docs/configuration.md has a row, with its default, for every key of the section."""
    text = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    part = doc_section(text, "## `postgresql`")
    for field in fields(PostgresqlSection):
        assert doc_default(part, field.name), f"postgresql.{field.name} is not documented"


def test_a_nodes_name_is_its_host_and_stomp_port_unless_configured() -> None:
    """``postgresql.node`` defaults to the host's name and the first listener's port."""
    assert node_name(Config()) == f"{socket.gethostname()}:61613"
    assert node_name(parse("postgresql:\n  node: blue\n")) == "blue"


# -- statement budgets and bytes ------------------------------------------------------


def test_the_statement_budget_splits_writes_and_ends_pages_across_both_tables(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose bodies pass one statement's budget is written whole, in several; a page
    holds the rows that start under the budget (one at least), persistent and transient rows
    together in seq order."""
    monkeypatch.setattr(_pg_database, "STATEMENT_BYTES", 2500)
    h = _opened(postgres_dsn)
    sizes = [1000, 1000, 1000, 1000, 1000, 1000, 5000, 0, 2500, 1]
    written = [_sized(seq, size) for seq, size in enumerate(sizes, 1)]
    for message in written:
        message.persistent = message.seq not in (5, 8)
        h.store.add("/queue/q", message, "never")
    pages = [
        [(m.seq, m.persistent) for m in _load(h, "/queue/q", from_seq=start)]
        for start in (1, 4, 7, 8)
    ]
    assert pages == [
        [(1, True), (2, True), (3, True)],
        [(4, True), (5, False), (6, True)],
        [(7, True)],
        [(8, False), (9, True)],
    ]
    monkeypatch.setattr(_pg_database, "STATEMENT_BYTES", 1 << 30)
    loaded = _load(h, "/queue/q")
    assert [(m.seq, m.body) for m in loaded] == [(m.seq, m.body) for m in written]
    h.result(h.store.close())


def test_a_scheduled_body_comes_back_byte_for_byte(postgres_dsn: str) -> None:
    """A scheduled message's body (not UTF-8, NULs) and headers survive a restart exactly."""
    h = _opened(postgres_dsn)
    message = Message(
        "ID-1", "/queue/q", {"ü": "\u2603\n"}, b"\0\xff\xfe" + bytes(range(256)), True, 1
    )
    h.result(h.store.schedule(ScheduledRecord(("queue", "q"), message, 1000), "always"))
    h.restart()
    (record,) = h.result(h.store.load_scheduled((0, 0), 10))
    assert (record.message.body, record.message.headers) == (message.body, message.headers)
    h.result(h.store.close())


def test_the_start_names_the_database_without_its_password() -> None:
    """The start's log line says which database holds the data, never its password."""
    config = parse(
        "broker:\n  store: postgresql\npostgresql:\n  dsn: host=db1,db2 dbname=stomp password=s3\n"
    )
    assert data_location(config) == "the PostgreSQL database 'dbname=stomp host=db1,db2'"


#: The tables of schema version 1 (one node per database), as that version made them.
SCHEMA_1 = (
    "CREATE SCHEMA stompbroker",
    "CREATE TABLE stompbroker.schema_version (version integer NOT NULL)",
    """CREATE TABLE stompbroker.messages (
        qkey text NOT NULL, priority smallint NOT NULL, seq bigint NOT NULL,
        message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
        body bytea NOT NULL, expires bigint NOT NULL, delivery_count integer NOT NULL,
        grp text, PRIMARY KEY (qkey, priority, seq))""",
    "CREATE UNLOGGED TABLE stompbroker.transient (LIKE stompbroker.messages INCLUDING ALL)",
    """CREATE TABLE stompbroker.durables (
        client_id text NOT NULL, name text NOT NULL, pattern text NOT NULL, selector text,
        no_local boolean NOT NULL DEFAULT false, PRIMARY KEY (client_id, name))""",
    """CREATE TABLE stompbroker.duplicate_ids (
        id bigserial NOT NULL, address text NOT NULL, dupl_id text NOT NULL,
        expires bigint NOT NULL, PRIMARY KEY (address, dupl_id))""",
    """CREATE TABLE stompbroker.scheduled (
        seq bigint PRIMARY KEY, due bigint NOT NULL, target text NOT NULL,
        repeats integer NOT NULL, period bigint NOT NULL, priority smallint NOT NULL,
        message_id text NOT NULL, destination text NOT NULL, headers text NOT NULL,
        body bytea NOT NULL, expires bigint NOT NULL, persistent boolean NOT NULL, grp text)""",
    "CREATE INDEX scheduled_by_due ON stompbroker.scheduled (due, seq)",
    "INSERT INTO stompbroker.schema_version (version) VALUES (1)",
    "INSERT INTO stompbroker.messages VALUES ('/queue/q', 4, 7, 'ID-1', '/queue/q', '{}',"
    " 'queued', 0, 0, NULL), ('durable:[\"c\",\"d\"]', 4, 8, 'ID-2', '/topic/t', '{}',"
    " 'for the durable', 0, 0, NULL)",
    "INSERT INTO stompbroker.durables VALUES ('c', 'd', 't', NULL, false)",
)


def test_a_one_node_database_of_version_1_becomes_the_first_nodes_of_a_cluster(
    postgres_dsn: str,
) -> None:
    """A version 1 database (one node) is migrated at open: its durable subscription becomes
    the cluster's, every message it kept (its queues' and its durable subscription's) a
    shared one, and its other tables the first node's to open, whatever its name."""
    for statement in SCHEMA_1:
        _sql(postgres_dsn, statement)
    h = _harness(postgres_dsn, "renamed:61613")
    recovery = h.result(h.store.open())
    assert recovery.durables == (DurableRecord("c", "d", "t", None),)
    assert recovery.queues == ()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT qkey, body, owner FROM stompbroker.shared ORDER BY id")
        assert rows.fetchall() == [
            ("/queue/q", b"queued", None),
            ('durable:["c","d"]', b"for the durable", None),
        ]
        assert conn.execute("SELECT number, name FROM stompbroker.nodes").fetchall() == [
            (1, "renamed:61613")
        ]
        assert conn.execute("SELECT version FROM stompbroker.schema_version").fetchall() == [(5,)]
    h.result(h.store.close())


def _schema_2(dsn: str) -> None:
    """A version 2 database of two nodes (their durable subscriptions their own, one name on
    both), made from this version's layout."""
    h = _opened(dsn, "one:61613")
    h.result(h.store.close())
    h = _opened(dsn, "two:61613")
    h.result(h.store.close())
    for statement in (
        "DROP TABLE stompbroker.durables, stompbroker.durable_changes, stompbroker.duplicates,"
        " stompbroker.scheduled",
        "UPDATE stompbroker.schema_version SET version = 2",
        *(
            f"""CREATE TABLE stompbroker_n{n}.durables (
            client_id text NOT NULL, name text NOT NULL, pattern text NOT NULL, selector text,
            no_local boolean NOT NULL DEFAULT false, PRIMARY KEY (client_id, name))"""
            for n in (1, 2)
        ),
        "INSERT INTO stompbroker_n1.durables VALUES ('c', 'd', 't', NULL, false)",
        "INSERT INTO stompbroker_n2.durables VALUES ('c', 'd', 'other', NULL, false),"
        " ('c', 'e', 'u', 'x = 1', true)",
        "INSERT INTO stompbroker_n1.messages VALUES ('durable:[\"c\",\"d\"]', 4, 8, 'ID-1',"
        " '/topic/t', '{}', 'kept by one', 0, 1, NULL)",
        "INSERT INTO stompbroker_n2.messages VALUES ('durable:[\"c\",\"e\"]', 4, 3, 'ID-2',"
        " '/topic/u', '{}', 'kept by two', 0, 0, NULL)",
    ):
        _sql(dsn, statement)


def test_the_durable_subscriptions_of_version_2_nodes_become_the_clusters(
    postgres_dsn: str,
) -> None:
    """A version 2 database (durable subscriptions per node) is migrated at open: every node's
    definitions become the cluster's (of one name on two nodes, the first node's), and what
    they kept shared rows, waiting, for whichever node their subscriber comes back to."""
    _schema_2(postgres_dsn)
    h = _harness(postgres_dsn, "two:61613")
    recovery = h.result(h.store.open())
    assert sorted(recovery.durables, key=lambda record: record.name) == [
        DurableRecord("c", "d", "t", None),
        DurableRecord("c", "e", "u", "x = 1", True),
    ]
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT qkey, body, delivery_count, owner FROM stompbroker.shared")
        assert sorted(rows.fetchall()) == [
            ('durable:["c","d"]', b"kept by one", 1, None),
            ('durable:["c","e"]', b"kept by two", 0, None),
        ]
        for n in (1, 2):
            assert conn.execute(f"SELECT count(*) FROM stompbroker_n{n}.messages").fetchone() == (
                0,
            )
            assert conn.execute(
                "SELECT to_regclass(%s)", (f"stompbroker_n{n}.durables",)
            ).fetchone() == (None,)
        assert conn.execute("SELECT version FROM stompbroker.schema_version").fetchall() == [(5,)]
    h.result(h.store.close())


def _schema_3(dsn: str) -> None:
    """A version 3 database of two nodes (their duplicate ids their own, one id of one queue
    on both), made from this version's layout."""
    for name in ("one:61613", "two:61613"):
        h = _opened(dsn, name)
        h.result(h.store.close())
    for statement in (
        "DROP TABLE stompbroker.duplicates, stompbroker.scheduled",
        "UPDATE stompbroker.schema_version SET version = 3",
        "INSERT INTO stompbroker_n1.duplicate_ids (address, dupl_id, expires) VALUES"
        " ('/queue/q', 'a', 0), ('/queue/q', 'b', 0), ('/queue/r', 'a', 99)",
        "INSERT INTO stompbroker_n2.duplicate_ids (address, dupl_id, expires) VALUES"
        " ('/queue/q', 'c', 0), ('/queue/q', 'a', 5)",
    ):
        _sql(dsn, statement)


def test_the_duplicate_ids_of_version_3_nodes_become_the_clusters(postgres_dsn: str) -> None:
    """A version 3 database (duplicate ids per node) is migrated at open: every node's ids
    become the cluster's, oldest first node by node (an id both nodes had stays once, the
    first node's), the nodes' own tables are emptied, and a send of a migrated id is a
    duplicate whichever node sends it."""
    _schema_3(postgres_dsn)
    h = _harness(postgres_dsn, "two:61613")
    h.result(h.store.open())
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT qkey, dupl_id, expires, incarnation FROM stompbroker.duplicates ORDER BY id"
        )
        assert rows.fetchall() == [
            ("/queue/q", "a", 0, 0),
            ("/queue/q", "b", 0, 0),
            ("/queue/r", "a", 99, 0),
            ("/queue/q", "c", 0, 0),
        ]
        for n in (1, 2):
            count = conn.execute(f"SELECT count(*) FROM stompbroker_n{n}.duplicate_ids")
            assert count.fetchone() == (0,)
        assert conn.execute("SELECT version FROM stompbroker.schema_version").fetchall() == [(5,)]
    again = h.store.publish_once("/queue/q", _message(1, body=b"again"), "c", 100, 0, "never")
    new = h.store.publish_once("/queue/q", _message(2, body=b"new"), "d", 100, 0, "never")
    assert (h.result(again), h.result(new)) == (False, True)
    with psycopg.connect(postgres_dsn) as conn:
        bodies = conn.execute("SELECT body FROM stompbroker.shared ORDER BY id").fetchall()
        assert bodies == [(b"new",)]
    h.result(h.store.close())


def test_a_running_version_1_node_keeps_the_database_from_being_migrated(
    postgres_dsn: str,
) -> None:
    """While a version 1 node holds its lock, a node of this version refuses to migrate the
    database under it, saying so."""
    for statement in SCHEMA_1:
        _sql(postgres_dsn, statement)
    with psycopg.connect(postgres_dsn, autocommit=True) as old:
        old.execute("SELECT pg_advisory_lock(%s)", (_pg_schema.V1_LOCK_KEY,))
        assert _refusal(_harness(postgres_dsn, "new:61613")) == (
            "a stompbroker node of an older version (schema 1) is using this database: stop it"
            " before starting this one, which migrates the schema"
        )


def test_a_node_connects_with_keepalives_and_a_bound_unless_the_dsn_sets_its_own(
    postgres_dsn: str,
) -> None:
    """The store's connection has TCP keepalives (5 s idle) and a 5 s connect timeout,
    and on the server's side of the session keepalives too; a DSN's own values win."""
    h = _opened(postgres_dsn + " connect_timeout=7")
    database = h.store._database
    assert database is not None
    conn = database._conn
    parameters = conn.info.get_parameters()
    assert (parameters["connect_timeout"], parameters["keepalives_idle"]) == ("7", "5")
    assert conn.execute("SHOW tcp_user_timeout").fetchone() == ("10000",)
    h.result(h.store.close())


def _schema_4(dsn: str) -> None:
    """A version 4 database of two nodes (their scheduled messages their own), made from
    this version's layout: node one's queue and durable subscription's messages (one due
    later, one repeating), node two's topic message and a non-persistent one."""
    for name in ("one:61613", "two:61613"):
        h = _opened(dsn, name)
        h.result(h.store.close())
    columns = (
        "(seq, due, target, repeats, period, priority, message_id, destination, headers, body,"
        " expires, persistent, grp)"
    )
    for statement in (
        "DROP TABLE stompbroker.scheduled",
        "UPDATE stompbroker.schema_version SET version = 4",
        f"INSERT INTO stompbroker_n1.scheduled {columns} VALUES"
        " (1, 3000, '[\"queue\",\"q\"]', 0, 0, 4, 'ID-1', '/queue/q', '{}', 'to q', 0, true,"
        " NULL), (2, 1000, '[\"durable\",\"c\",\"d\"]', 1, 500, 4, 'ID-2', '/topic/t', '{}',"
        " 'to d', 0, true, NULL)",
        f"INSERT INTO stompbroker_n2.scheduled {columns} VALUES"
        " (1, 2000, '[\"topic\",\"t\"]', 0, 0, 6, 'ID-3', '/topic/t', '{\"h\":\"v\"}',"
        " 'to t', 0, true, 'g'), (2, 500, '[\"queue\",\"q\"]', 0, 0, 4, 'ID-4', '/queue/q',"
        " '{}', 'gone', 0, false, NULL)",
        "INSERT INTO stompbroker_n1.duplicate_ids (address, dupl_id, expires) VALUES"
        " ('/queue/q', 'x', 0)",
    ):
        _sql(dsn, statement)


def test_the_scheduled_messages_of_version_4_nodes_become_the_clusters(postgres_dsn: str) -> None:
    """A version 4 database (scheduled messages and scheduled sends' ids per node) is
    migrated at open: every node's persistent scheduled messages become the cluster's, in
    due order, each with the shared queue it is released into (a queue's, a durable
    subscription's store key; none for a topic's), its ids the cluster's, the nodes' own
    tables emptied (a non-persistent one dropped, as at its node's start); a release
    through any node then puts them into their shared queues, hands the topic's back, and
    moves the repeating one on."""
    _schema_4(postgres_dsn)
    h = _harness(postgres_dsn, "two:61613")
    recovery = h.result(h.store.open())
    assert recovery.scheduled == ()
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT due, target, qkey, repeats, body, incarnation FROM stompbroker.scheduled"
            " ORDER BY id"
        )
        assert rows.fetchall() == [
            (1000, '["durable","c","d"]', durable_store_key("c", "d"), 1, b"to d", 0),
            (3000, '["queue","q"]', "/queue/q", 0, b"to q", 0),
            (2000, '["topic","t"]', None, 0, b"to t", 0),
        ]
        ids = conn.execute("SELECT qkey, dupl_id FROM stompbroker.duplicates").fetchall()
        assert ids == [("/queue/q", "x")]
        for n in (1, 2):
            for table in ("scheduled", "duplicate_ids"):
                count = conn.execute(f"SELECT count(*) FROM stompbroker_n{n}.{table}")
                assert count.fetchone() == (0,)
        assert conn.execute("SELECT version FROM stompbroker.schema_version").fetchall() == [(5,)]
    released = h.result(h.store.release_due(5000, 10, "ID-x-"))
    ((target, message),) = [(r.target, r.message) for r in released.handed]
    assert (target, message.body, message.headers, message.priority) == (
        ("topic", "t"),
        b"to t",
        {"h": "v"},
        6,
    )
    assert (released.ended, released.count, released.next_due) == (
        (("topic", "t"), ("queue", "q")),
        3,
        1500,
    )
    with psycopg.connect(postgres_dsn) as conn:
        shared = conn.execute(
            "SELECT id, qkey, message_id, body FROM stompbroker.shared ORDER BY id"
        )
        assert [
            (key, message_id == f"ID-x-s{id_}", body) for id_, key, message_id, body in shared
        ] == [
            (durable_store_key("c", "d"), True, b"to d"),
            ("/queue/q", True, b"to q"),
        ]
        left = conn.execute("SELECT due, repeats FROM stompbroker.scheduled").fetchall()
        assert left == [(1500, 0)]
    h.result(h.store.close())

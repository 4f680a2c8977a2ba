"""The twistd command line: options override the file; mistakes are usage errors."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
from twisted.logger import capturedLogs, formatEvent
from twisted.python import usage

from stompbroker.config import WebSocketListener
from stompbroker.service import log_backlog, somaxconn
from stompbroker.tap import Options, freeze_startup_heap, makeService, with_backlog
from stompbroker.transport import StompFactory, WebSocketFactory


def _parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config and without conf/ in the working directory, the built-ins apply."""
    monkeypatch.chdir(tmp_path)
    config = _parse()["parsed"]
    assert config.listeners.stomp == ("tcp:61613:interface=127.0.0.1",)
    assert config.listeners.websocket == ()
    assert config.broker.data_dir == "data"


def test_options_override_the_file(tmp_path: Path) -> None:
    """--listen (repeatable) and --data-dir replace the file's values."""
    path = tmp_path / "b.yaml"
    path.write_text("broker: {data_dir: a}\nlisteners: {stomp: ['tcp:1']}\n")
    options = _parse("--config", str(path), "--listen", "tcp:2", "-l", "tcp:3", "--data-dir", "b")
    config = options["parsed"]
    assert config.listeners.stomp == ("tcp:2", "tcp:3")
    assert config.broker.data_dir == "b"
    assert len(options["endpoints"]) == 2


def test_file_values_apply_without_options(tmp_path: Path) -> None:
    """The file's listeners and data directory apply when no option overrides them."""
    path = tmp_path / "b.yaml"
    path.write_text("broker: {data_dir: a}\nlisteners: {stomp: ['tcp:1']}\n")
    config = _parse("--config", str(path))["parsed"]
    assert config.listeners.stomp == ("tcp:1",)
    assert config.broker.data_dir == "a"


def test_invalid_file_is_a_usage_error(tmp_path: Path) -> None:
    """An invalid file stops the start with file:line: key, not a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("broker:\n  colour: red\n")
    with pytest.raises(usage.UsageError, match=r"bad.yaml:2: broker.colour: unknown key"):
        _parse("--config", str(path))


def test_invalid_endpoint_is_a_usage_error(tmp_path: Path) -> None:
    """A listener string Twisted cannot parse is refused by name."""
    with pytest.raises(usage.UsageError, match="invalid listener endpoint 'nonsense:1'"):
        _parse("--listen", "nonsense:1", "--data-dir", str(tmp_path))


WS_FILE = """\
listeners:
  websocket:
    - endpoint: tcp:1
      path: /stomp
      allowed_origins: [https://app.example]
"""


def test_listen_ws_replaces_the_files_websocket_list(tmp_path: Path) -> None:
    """--listen-ws (repeatable) replaces listeners.websocket; its entries use /ws, any origin."""
    path = tmp_path / "b.yaml"
    path.write_text(WS_FILE)
    options = _parse("--config", str(path), "--listen-ws", "tcp:2", "--listen-ws", "tcp:3")
    assert options["parsed"].listeners.websocket == (
        WebSocketListener("tcp:2"),
        WebSocketListener("tcp:3"),
    )
    assert [entry.path for _, entry in options["websocket_endpoints"]] == ["/ws", "/ws"]


def test_file_websocket_listeners_apply_without_options(tmp_path: Path) -> None:
    """Without --listen-ws the file's websocket entries, with their path and origins, apply."""
    path = tmp_path / "b.yaml"
    path.write_text(WS_FILE)
    options = _parse("--config", str(path))
    (entry,) = options["parsed"].listeners.websocket
    assert entry == WebSocketListener("tcp:1", "/stomp", ("https://app.example",))
    assert len(options["websocket_endpoints"]) == 1


def test_invalid_websocket_endpoint_is_a_usage_error(tmp_path: Path) -> None:
    """A --listen-ws string Twisted cannot parse is refused by name."""
    with pytest.raises(usage.UsageError, match="invalid listener endpoint 'nonsense:2'"):
        _parse("--listen-ws", "nonsense:2", "--data-dir", str(tmp_path))


def test_service_has_one_listener_per_endpoint(tmp_path: Path) -> None:
    """makeService builds a STOMP factory per --listen and a WebSocket one per --listen-ws."""
    options = _parse(
        "--listen",
        "tcp:0",
        "--listen-ws",
        "tcp:0",
        "--listen-ws",
        "tcp:0",
        "--data-dir",
        str(tmp_path),
    )
    service = makeService(options)
    factories = [listener.factory for listener in service.listeners]
    assert [type(f) for f in factories] == [StompFactory, WebSocketFactory, WebSocketFactory]
    ws = factories[1]
    assert isinstance(ws, WebSocketFactory)
    assert (ws.settings.path, ws.settings.allowed_origins) == ("/ws", ())
    assert ws.make_session == service.make_session


def test_bad_durable_selector_is_a_usage_error(tmp_path: Path) -> None:
    """A declared durable subscription's selector is compiled at start, with file:line: key."""
    path = tmp_path / "b.yaml"
    path.write_text(
        'durable_subscriptions:\n  - name: s\n    topic: /topic/t\n    selector: "a = "\n'
    )
    with pytest.raises(usage.UsageError, match=r"b.yaml:2: durable_subscriptions\[0\].selector: "):
        _parse("--config", str(path), "--data-dir", str(tmp_path))


def test_policies_and_durables_reach_the_broker(tmp_path: Path) -> None:
    """The file's destination policies and declared durables are what the broker uses."""
    from twisted.internet.task import Clock

    from stompbroker.service import BrokerService

    path = tmp_path / "b.yaml"
    path.write_text(
        "destinations:\n"
        "  - {name: /queue/orders.>, max_redeliveries: 1, dead_letter_queue: /queue/o.DLQ}\n"
        "durable_subscriptions:\n"
        "  - {name: archive, client_id: billing, topic: /topic/invoices.>, selector: 'x > 1'}\n"
    )
    options = _parse("--config", str(path), "--data-dir", str(tmp_path))
    service = BrokerService(options["parsed"], Clock(), [])
    service.startService()
    policy = service.broker.policies.for_destination("/queue/orders.eu")
    assert (policy.max_redeliveries, policy.dead_letter_queue) == (1, "/queue/o.DLQ")
    assert service.broker.policies.for_destination("/queue/other").max_redeliveries == 6
    durable = service.broker.durables.get("billing", "archive")
    assert durable is not None and durable.pattern == "invoices.>"
    assert durable.filter is not None and durable.filter.text == "x > 1"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tcp:61613:interface=127.0.0.1", "tcp:61613:interface=127.0.0.1:backlog=4096"),
        ("ssl:61614:privateKey=k.pem", "ssl:61614:privateKey=k.pem:backlog=4096"),
        ("unix:/run/b.sock", "unix:/run/b.sock:backlog=4096"),
        ("tcp:61613:backlog=10", "tcp:61613:backlog=10"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_listen_backlog_is_added_to_endpoints_that_take_one(spec: str, expected: str) -> None:
    """tcp, ssl and unix endpoints get limits.listen_backlog unless they name their own."""
    assert with_backlog(spec, 4096) == expected


def test_listeners_ask_for_the_configured_backlog(tmp_path: Path) -> None:
    """The endpoints built from the file listen with limits.listen_backlog (default 4096)."""
    path = tmp_path / "b.yaml"
    path.write_text("limits: {listen_backlog: 777}\n")
    (endpoint,) = _parse("--config", str(path), "-l", "tcp:0:interface=127.0.0.1")["endpoints"]
    assert endpoint._backlog == 777
    (default,) = _parse("-l", "tcp:0:interface=127.0.0.1")["endpoints"]
    assert default._backlog == 4096


def test_somaxconn_is_read_and_what_is_granted_is_logged(tmp_path: Path) -> None:
    """The kernel's cap is read from /proc; a cap below the backlog asked is a warning."""
    cap = tmp_path / "somaxconn"
    cap.write_text("1024\n")
    assert somaxconn(str(cap)) == 1024
    assert somaxconn(str(tmp_path / "absent")) is None
    with capturedLogs() as events:
        log_backlog(4096, 1024)
        log_backlog(4096, 4096)
        log_backlog(4096, None)
    assert [formatEvent(e) for e in events] == [
        "listen backlog 4096 asked, 1024 granted: net.core.somaxconn is 1024;"
        " raise it for larger reconnect bursts",
        "listen backlog 4096 granted (net.core.somaxconn is 4096)",
        "listen backlog 4096 asked (the kernel's cap is unknown)",
    ]


def test_the_start_s_heap_is_frozen_out_of_garbage_collection() -> None:
    """Once the reactor runs, what the start made is left out of the collector's full
    collections (they walked it all, again and again); what is made later is collected."""
    gc.unfreeze()
    try:
        freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000
        later = _Cycle()
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None, "a cycle made after the freeze is still collected"
    finally:
        gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self

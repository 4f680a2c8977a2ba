"""Configuration parsing: defaults, strictness with file:line: key messages, and the docs."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from stompbroker.config import (
    BrokerSection,
    Config,
    ConfigError,
    DestinationEntry,
    DurableEntry,
    HeartbeatSection,
    ListenersSection,
    ManagementSection,
    WebSocketListener,
    load,
    parse,
)
from tests.helpers import doc_default, doc_section

ROOT = Path(__file__).resolve().parent.parent


def test_empty_text_gives_the_defaults() -> None:
    """An empty file means every default."""
    assert parse("", "f.yaml") == Config(source="f.yaml")


def test_shipped_default_file_equals_the_built_in_defaults() -> None:
    """conf/stompbroker.yaml spells out exactly the built-in defaults."""
    shipped = load(str(ROOT / "conf" / "stompbroker.yaml"))
    assert shipped == Config(source=shipped.source)


def test_values_are_read() -> None:
    """Given keys replace the defaults; lists become tuples."""
    config = parse(
        "broker: {name: b1, data_dir: /tmp/x}\n"
        "listeners: {stomp: ['tcp:1', 'tcp:2']}\n"
        "heartbeat: {send_ms: 0, receive_ms: 5000, tolerance: 3}\n"
    )
    assert config.broker == BrokerSection(name="b1", data_dir="/tmp/x")
    assert config.listeners == ListenersSection(stomp=("tcp:1", "tcp:2"))
    assert config.heartbeat == HeartbeatSection(send_ms=0, receive_ms=5000, tolerance=3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope: 1\n", "f.yaml:1: nope: unknown section"),
        ("broker:\n  name: x\n  colour: red\n", "f.yaml:3: broker.colour: unknown key"),
        (
            "heartbeat:\n  send_ms: ten\n",
            "f.yaml:2: heartbeat.send_ms: expected a non-negative integer, got 'ten'",
        ),
        ("heartbeat:\n  send_ms: -1\n", "f.yaml:2: heartbeat.send_ms: expected a non-negative"),
        ("heartbeat:\n  send_ms: true\n", "f.yaml:2: heartbeat.send_ms: expected a non-negative"),
        ("heartbeat:\n  tolerance: 0.5\n", "f.yaml:2: heartbeat.tolerance: expected a number"),
        ("listeners:\n  stomp: tcp:1\n", "f.yaml:2: listeners.stomp: expected a list"),
        ("listeners:\n  stomp: ['']\n", "f.yaml:2: listeners.stomp: expected a list"),
        ("broker: [1, 2]\n", "f.yaml:1: broker: expected a mapping"),
        ("listeners:\n  websocket: tcp:1\n", "f.yaml:2: listeners.websocket: expected a list"),
        ("listeners:\n  websocket:\n", "f.yaml:2: listeners.websocket: expected a list"),
        (
            "listeners:\n  websocket:\n    - tcp:1\n",
            "f.yaml:3: listeners.websocket[0]: expected a mapping",
        ),
        (
            "listeners:\n  websocket:\n    - path: /x\n",
            "f.yaml:3: listeners.websocket[0].endpoint: required key missing",
        ),
        (
            "listeners:\n  websocket:\n    - endpoint: tcp:1\n    - endpoint: ''\n",
            "f.yaml:4: listeners.websocket[1].endpoint: expected a non-empty string",
        ),
        (
            "listeners:\n  websocket:\n    - endpoint: tcp:1\n      colour: red\n",
            "f.yaml:4: listeners.websocket[0].colour: unknown key (known: endpoint, path,",
        ),
        (
            "listeners:\n  websocket:\n    - endpoint: tcp:1\n      path: ws\n",
            "f.yaml:4: listeners.websocket[0].path: expected a URL path starting with /",
        ),
        (
            "listeners:\n  websocket:\n    - endpoint: tcp:1\n      path: /ws?x=1\n",
            "f.yaml:4: listeners.websocket[0].path: expected a URL path",
        ),
        (
            "listeners:\n  websocket:\n    - endpoint: tcp:1\n      allowed_origins: https://a.b\n",
            "f.yaml:4: listeners.websocket[0].allowed_origins: expected a list of origins",
        ),
        (
            "listeners:\n  websocket:\n    - endpoint: tcp:1\n"
            "      allowed_origins: [https://a.b/app]\n",
            "f.yaml:4: listeners.websocket[0].allowed_origins: expected a list of origins",
        ),
        (
            "listeners:\n  websocket:\n    - endpoint: tcp:1\n      allowed_origins: [a.b]\n",
            "f.yaml:4: listeners.websocket[0].allowed_origins: expected a list of origins",
        ),
        ("broker:\n  name: a\n  name: b\n", "f.yaml:3: broker.name: given twice"),
        ("- 1\n", "f.yaml:1: (top): expected a mapping"),
        ("broker: {name: [\n", "f.yaml:2: not valid YAML"),
    ],
)
def test_mistakes_name_file_line_and_key(text: str, message: str) -> None:
    """Each mistake is refused with the file, the line and the key path."""
    with pytest.raises(ConfigError) as caught:
        parse(text, "f.yaml")
    assert str(caught.value).startswith(message)


def test_websocket_listeners_are_read() -> None:
    """Each listeners.websocket entry is read with its defaults: path /ws, any origin."""
    config = parse(
        "listeners:\n"
        "  websocket:\n"
        "    - endpoint: tcp:61614:interface=127.0.0.1\n"
        "    - endpoint: ssl:61615:privateKey=k.pem:certKey=c.pem\n"
        "      path: /stomp\n"
        "      allowed_origins: [https://app.example, 'http://localhost:8080']\n"
    )
    assert config.listeners.websocket == (
        WebSocketListener("tcp:61614:interface=127.0.0.1"),
        WebSocketListener(
            "ssl:61615:privateKey=k.pem:certKey=c.pem",
            "/stomp",
            ("https://app.example", "http://localhost:8080"),
        ),
    )
    assert config.listeners.stomp == ListenersSection().stomp


def test_no_websocket_listener_by_default() -> None:
    """The built-in default is no WebSocket listener (docs/websocket.md says why)."""
    assert Config().listeners.websocket == ()
    assert parse("listeners:\n  websocket: []\n").listeners.websocket == ()


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file is reported by name, not as a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "missing.yaml"))


def test_every_key_is_documented() -> None:
    """docs/configuration.md has a row for every key, with its default."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    sections = {
        "broker": BrokerSection,
        "listeners": ListenersSection,
        "heartbeat": HeartbeatSection,
        "management": ManagementSection,
    }
    for section, cls in sections.items():
        part = doc_section(text, f"## `{section}`")
        for field in fields(cls):
            default = doc_default(part, field.name)
            assert default is not None, f"{section}.{field.name} is not documented"
            assert default, f"{section}.{field.name} has no default documented"


def test_every_websocket_entry_key_is_documented() -> None:
    """docs/configuration.md has a row for every key of a listeners.websocket entry."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    part = doc_section(text, "### `listeners.websocket` entries")
    for field in fields(WebSocketListener):
        default = doc_default(part, field.name)
        assert default is not None, f"listeners.websocket[].{field.name} is not documented"
        assert default, f"listeners.websocket[].{field.name} has no default"


# -- destinations and durable subscriptions ------------------------------------------------


def test_destination_entry_defaults_equal_the_core_policy_defaults() -> None:
    """A destinations entry that sets nothing behaves exactly like an undeclared destination."""
    from stompbroker.core import DEFAULT_POLICY

    entry = DestinationEntry(name="/queue/x")
    for field in fields(DEFAULT_POLICY):
        assert getattr(entry, field.name) == getattr(DEFAULT_POLICY, field.name), field.name


def test_duplicate_window_and_ttl_reach_the_core_policy() -> None:
    """destinations[].duplicate_window and duplicate_ttl_ms become the core policy's values."""
    from stompbroker.service import policies

    config = parse(
        "destinations:\n  - name: /queue/orders\n    duplicate_window: 5\n"
        "    duplicate_ttl_ms: 60000\n"
    )
    policy = policies(config).for_destination("/queue/orders")
    assert (policy.duplicate_window, policy.duplicate_ttl_ms) == (5, 60000)


def test_forward_to_and_stamp_user_reach_the_core_policy() -> None:
    """destinations[].forward_to and stamp_user become the core policy's values."""
    from stompbroker.service import policies

    config = parse(
        "destinations:\n  - name: /queue/orders\n    forward_to: [/queue/audit, /topic/o]\n"
        "    stamp_user: false\n"
    )
    policy = policies(config).for_destination("/queue/orders")
    assert policy.forward_to == ("/queue/audit", "/topic/o")
    assert policy.stamp_user is False


def test_destinations_and_durables_are_read_with_their_lines() -> None:
    """Entries keep the line they start on, for later messages about them."""
    config = parse(
        "destinations:\n"
        "  - name: /queue/orders.>\n"
        "    max_redeliveries: 2\n"
        "    dead_letter_queue: /queue/orders.DLQ\n"
        "    persistent: false\n"
        "durable_subscriptions:\n"
        "  - name: archive\n"
        "    client_id: billing\n"
        "    topic: /topic/invoices.*\n"
        "    selector: total > 10\n",
        "f.yaml",
    )
    (entry,) = config.destinations
    assert (entry.name, entry.max_redeliveries, entry.dead_letter_queue, entry.persistent) == (
        "/queue/orders.>",
        2,
        "/queue/orders.DLQ",
        False,
    )
    assert entry.line == 2
    (durable,) = config.durable_subscriptions
    assert (durable.client_id, durable.name, durable.topic, durable.selector, durable.line) == (
        "billing",
        "archive",
        "/topic/invoices.*",
        "total > 10",
        7,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("destinations:\n  - name: /foo\n", "f.yaml:2: destinations[0].name: expected /queue/"),
        ("destinations:\n  - max_redeliveries: 1\n", "f.yaml:2: destinations[0].name: required"),
        ("destinations:\n  - name: /queue/a.>.b\n", "f.yaml:2: destinations[0].name: expected"),
        ("destinations:\n  - name: /queue/a..b\n", "f.yaml:2: destinations[0].name: expected"),
        (
            "destinations:\n  - name: /queue/a\n    max_redeliveries: -1\n",
            "f.yaml:3: destinations[0].max_redeliveries: expected a non-negative integer",
        ),
        (
            "destinations:\n  - name: /queue/a\n    redelivery_backoff: 0.5\n",
            "f.yaml:3: destinations[0].redelivery_backoff: expected a number of at least 1",
        ),
        (
            "destinations:\n  - name: /queue/a\n    prefetch: 0\n",
            "f.yaml:3: destinations[0].prefetch: expected a positive integer",
        ),
        (
            "destinations:\n  - name: /queue/a\n    dead_letter_queue: /topic/x\n",
            "f.yaml:3: destinations[0].dead_letter_queue: expected /queue/NAME",
        ),
        (
            "destinations:\n  - name: /queue/a\n    dead_letter_queue: /queue/a\n",
            "f.yaml:2: destinations[0].dead_letter_queue: a destination cannot be its own DLQ",
        ),
        (
            "destinations:\n  - name: /queue/a\n    forward_to: /queue/b\n",
            "f.yaml:3: destinations[0].forward_to: expected a list of /queue/NAME or"
            " /topic/NAME (no wildcards)",
        ),
        (
            "destinations:\n  - name: /queue/a\n    forward_to: [/queue/b, /topic/x.*]\n",
            "f.yaml:3: destinations[0].forward_to: expected a list of /queue/NAME or"
            " /topic/NAME (no wildcards); '/topic/x.*' is not one destination",
        ),
        (
            "destinations:\n  - name: /queue/a\n    forward_to: [/exchange/b]\n",
            "f.yaml:3: destinations[0].forward_to: expected a list of /queue/NAME or"
            " /topic/NAME (no wildcards)",
        ),
        (
            "destinations:\n  - name: /queue/a\n    forward_to: [/queue/a]\n",
            "f.yaml:2: destinations[0].forward_to: a destination cannot forward to itself",
        ),
        (
            "destinations:\n  - name: /queue/a\n    duplicate_window: -1\n",
            "f.yaml:3: destinations[0].duplicate_window: expected a non-negative integer",
        ),
        (
            "destinations:\n  - name: /queue/a\n    duplicate_ttl_ms: soon\n",
            "f.yaml:3: destinations[0].duplicate_ttl_ms: expected a non-negative integer",
        ),
        (
            "destinations:\n  - name: /queue/a\n    stamp_user: maybe\n",
            "f.yaml:3: destinations[0].stamp_user: expected true or false",
        ),
        (
            "destinations:\n  - name: /queue/a\n    dead_letter_expired: yes please\n",
            "f.yaml:3: destinations[0].dead_letter_expired: expected true or false",
        ),
        (
            "destinations:\n  - name: /queue/a\n  - name: /queue/a\n",
            "f.yaml:3: destinations[1].name: '/queue/a' is given twice",
        ),
        ("destinations: {name: x}\n", "f.yaml:1: destinations: expected a list of mappings"),
        (
            "durable_subscriptions:\n  - name: s\n    topic: /queue/a\n",
            "f.yaml:3: durable_subscriptions[0].topic: expected /topic/NAME",
        ),
        (
            "durable_subscriptions:\n  - name: s\n",
            "f.yaml:2: durable_subscriptions[0].topic: required key missing",
        ),
        (
            "durable_subscriptions:\n"
            "  - {name: s, topic: /topic/a}\n"
            "  - {name: s, topic: /topic/b}\n",
            "f.yaml:3: durable_subscriptions[1].name: 's' (client id '') is given twice",
        ),
    ],
)
def test_destination_and_durable_mistakes(text: str, message: str) -> None:
    """Bad destination policies and durable declarations are refused with file:line: key."""
    with pytest.raises(ConfigError) as caught:
        parse(text, "f.yaml")
    assert str(caught.value).startswith(message)


def test_every_destination_and_durable_key_is_documented() -> None:
    """docs/configuration.md has a row, with a default, for every entry key of both lists."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    for section, cls in (
        ("destinations", DestinationEntry),
        ("durable_subscriptions", DurableEntry),
    ):
        part = doc_section(text, f"## `{section}`")
        for field in fields(cls):
            if field.name == "line":
                continue
            default = doc_default(part, field.name)
            assert default is not None, f"{section}[].{field.name} is not documented"
            assert default, f"{section}[].{field.name} has no default"


def test_every_example_in_conf_is_valid() -> None:
    """Every file in conf/ parses (with its selectors) as the broker would read it."""
    from stompbroker.service import selectors

    files = sorted((ROOT / "conf").glob("*.yaml"))
    assert len(files) >= 2
    for path in files:
        selectors(load(str(path)))


@pytest.mark.parametrize(
    ("text", "prefixes"),
    [
        ("broker: {}\n", ("VirtualTopic.", "Consumer.*.")),
        ("broker:\n  virtual_topics: false\n", None),
        ("broker:\n  virtual_topics: {topic_prefix: VT.}\n", ("VT.", "Consumer.*.")),
        (
            "broker:\n  virtual_topics: {topic_prefix: VT., consumer_prefix: Shared.*.*.}\n",
            ("VT.", "Shared.*.*."),
        ),
    ],
)
def test_virtual_topic_prefixes_are_read(text: str, prefixes: tuple[str, str] | None) -> None:
    """broker.virtual_topics: the defaults, false (off), and one or both prefixes given."""
    assert parse(text, "f.yaml").broker.virtual_topics == prefixes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "broker:\n  virtual_topics: true\n",
            "f.yaml:2: broker.virtual_topics: expected false or a mapping of topic_prefix and"
            " consumer_prefix, got True",
        ),
        (
            "broker:\n  virtual_topics: {prefix: VT.}\n",
            "f.yaml:2: broker.virtual_topics: expected false or a mapping of topic_prefix and"
            " consumer_prefix, got dict",
        ),
        (
            "broker:\n  virtual_topics: {topic_prefix: VirtualTopic}\n",
            "f.yaml:2: broker.virtual_topics: expected topic_prefix to be name parts ending"
            " with '.', such as 'VirtualTopic.', got dict",
        ),
        (
            "broker:\n  virtual_topics: {topic_prefix: 'VT.*.'}\n",
            "f.yaml:2: broker.virtual_topics: expected topic_prefix with no wildcards, got dict",
        ),
        (
            "broker:\n  virtual_topics: {consumer_prefix: 'Consumer.>.'}\n",
            "f.yaml:2: broker.virtual_topics: expected consumer_prefix with '*' only as a whole"
            " part, got dict",
        ),
        (
            "broker:\n  virtual_topics: {consumer_prefix: 'Consumer..'}\n",
            "f.yaml:2: broker.virtual_topics: expected consumer_prefix without an empty name"
            " part ('..'), got dict",
        ),
    ],
)
def test_a_bad_virtual_topics_value_is_refused(text: str, message: str) -> None:
    """A bad broker.virtual_topics value names the key, the line and what was expected."""
    with pytest.raises(ConfigError) as caught:
        parse(text, "f.yaml")
    assert str(caught.value) == message


def test_a_durable_subscription_may_be_shared() -> None:
    """durable_subscriptions[].shared: true is read; a value not true or false is refused."""
    text = "durable_subscriptions:\n  - {name: s, topic: /topic/a, shared: true}\n"
    assert parse(text, "f.yaml").durable_subscriptions[0].shared is True
    with pytest.raises(ConfigError) as caught:
        parse(text.replace("true", "sometimes"), "f.yaml")
    assert str(caught.value) == (
        "f.yaml:2: durable_subscriptions[0].shared: expected true or false, got 'sometimes'"
    )


def test_websocket_pings_and_http_headers_are_read_and_checked() -> None:
    """listeners.websocket[].pings (true or false) and http_headers ("Name: value" lines)."""
    text = (
        "listeners:\n  websocket:\n"
        "    - {endpoint: 'tcp:0', pings: false, http_headers: ['X-Frame-Options: DENY']}\n"
    )
    (entry,) = parse(text, "f.yaml").listeners.websocket
    assert (entry.pings, entry.http_headers) == (False, ("X-Frame-Options: DENY",))
    with pytest.raises(ConfigError) as raised:
        parse("listeners:\n  websocket:\n    - {endpoint: 'tcp:0', pings: sometimes}\n", "f.yaml")
    assert str(raised.value) == (
        "f.yaml:3: listeners.websocket[0].pings: expected true or false, got 'sometimes'"
    )
    with pytest.raises(ConfigError) as raised:
        parse("listeners:\n  websocket:\n    - {endpoint: 'tcp:0', http_headers: [x]}\n", "f.yaml")
    assert str(raised.value) == (
        "f.yaml:3: listeners.websocket[0].http_headers: expected a list of header lines like"
        " \"X-Frame-Options: DENY\"; 'x' is not one, got list"
    )

"""YAML text -> frozen, validated configuration. Pure: no files are opened here but in ``load``.

Every mistake is reported as ``FILE:LINE: key.path: what was expected, got what``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: Where ``twistd stompbroker`` looks for its file when ``--config`` is not given.
DEFAULT_CONFIG_PATH = "conf/stompbroker.yaml"


class ConfigError(Exception):
    """An invalid configuration; ``str()`` is the message for the user."""


@dataclass(frozen=True)
class BrokerSection:
    """``broker:``"""

    name: str = "stompbroker"
    data_dir: str = "data"
    #: ``sqlite`` (durable, in data_dir) or ``memory`` (nothing survives a restart).
    store: str = "sqlite"
    #: Whether a destination not matched by a ``destinations`` entry is created on first use.
    auto_create: bool = True


@dataclass(frozen=True)
class WebSocketListener:
    """One entry of ``listeners.websocket``: STOMP over WebSocket on an HTTP listener."""

    endpoint: str
    path: str = "/ws"
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListenersSection:
    """``listeners:``"""

    stomp: tuple[str, ...] = ("tcp:61613:interface=127.0.0.1",)
    websocket: tuple[WebSocketListener, ...] = ()


@dataclass(frozen=True)
class HeartbeatSection:
    """``heartbeat:``"""

    send_ms: int = 10000
    receive_ms: int = 10000
    tolerance: float = 2.0


#: The largest header block the parser accepts: no header line can be longer.
MAX_HEADER_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class LimitsSection:
    """``limits:`` against exhaustion. The frame limits apply after CONNECT; before it
    the codec's smaller pre-connect limits apply (a test keeps the defaults equal)."""

    max_connections: int = 10_000
    max_connections_per_address: int = 1000
    connect_timeout_ms: int = 10_000
    max_subscriptions: int = 1000
    max_transactions: int = 100
    max_frames_per_transaction: int = 10_000
    max_frame_body_bytes: int = 16 * 1024 * 1024
    max_headers: int = 128
    max_header_line_bytes: int = 16 * 1024


@dataclass(frozen=True)
class DestinationEntry:
    """One entry of ``destinations:``: the policy of a destination or a pattern of them.

    The defaults equal the core's ``DestinationPolicy`` (a test keeps them equal).
    """

    name: str
    persistent: bool | None = None
    max_redeliveries: int = 6
    redelivery_delay_ms: int = 0
    redelivery_backoff: float = 2.0
    max_redelivery_delay_ms: int = 60_000
    dead_letter_queue: str | None = "/queue/DLQ"
    dead_letter_expired: bool = True
    message_ttl_ms: int = 0
    prefetch: int = 1000
    fsync: str = "always"
    memory_window: int = 10_000
    memory_window_bytes: int = 16 * 1024 * 1024
    max_messages: int = 0
    max_bytes: int = 0
    on_full: str = "block"
    max_pending: int = 10_000
    on_slow: str = "disconnect"
    line: int = 0


@dataclass(frozen=True)
class DurableEntry:
    """One entry of ``durable_subscriptions:``: declared before any subscriber comes."""

    name: str
    topic: str
    client_id: str = ""
    selector: str | None = None
    line: int = 0


@dataclass(frozen=True)
class UserEntry:
    """One entry of ``security.users`` (or of the users file): a login."""

    name: str
    #: As ``stompbroker-passwd`` prints it: ``scrypt$N$r$p$SALT$KEY``.
    password_hash: str
    groups: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class RuleEntry:
    """One entry of ``security.rules``: permissions on destinations for a principal."""

    #: A user, a group, or ``*`` (every client, anonymous ones too).
    principal: str
    #: Destination patterns (one pattern in the file becomes a tuple of one).
    destinations: tuple[str, ...]
    permissions: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class SecuritySection:
    """``security:`` users, groups, access rules."""

    #: Whether clients without a login are let in; None: when no users are configured.
    allow_anonymous: bool | None = None
    #: A YAML file of more users (``users: [...]``), read with the configuration.
    users_file: str | None = None
    users: tuple[UserEntry, ...] = ()
    rules: tuple[RuleEntry, ...] = ()


@dataclass(frozen=True)
class ManagementSection:
    """``management:`` the HTTP API and ``/metrics`` on WebSocket listeners, and statistics."""

    #: Whether WebSocket listeners serve the JSON API under /api/ and /metrics.
    api: bool = True
    #: Rates are averages over this interval; the statistics topic publishes this often.
    stats_interval_ms: int = 5000


@dataclass(frozen=True)
class Config:
    """The whole file."""

    broker: BrokerSection = field(default_factory=BrokerSection)
    listeners: ListenersSection = field(default_factory=ListenersSection)
    heartbeat: HeartbeatSection = field(default_factory=HeartbeatSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    management: ManagementSection = field(default_factory=ManagementSection)
    destinations: tuple[DestinationEntry, ...] = ()
    durable_subscriptions: tuple[DurableEntry, ...] = ()
    source: str = "<defaults>"


class _Reader:
    """Walks YAML nodes, keeping line numbers for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = SafeConstructor()

    def fail(self, node: Node | None, path: str, message: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ConfigError(f"{self.source}{line}: {path}: {message}")

    def fail_at(self, line: int, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{line}: {path}: {message}")

    def value(self, node: Node) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def mapping(self, node: Node, path: str) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, path, f"expected a mapping, got {_shown(self.value(node))}")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                raise self.fail(key_node, path, f"keys are names, got {key!r}")
            if key in out:
                raise self.fail(key_node, f"{path}.{key}", "given twice")
            out[key] = (key_node, value_node)
        return out


def _shown(value: Any) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return None if ok else "expected a positive integer"


def _non_negative_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "expected a non-negative integer"


def _at_least_one(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1
    return None if ok else "expected a number of at least 1"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "expected a non-empty string"


def _text_list(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return None
    return "expected a list of non-empty strings"


def _url_path(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"/[^\s?#]*", value) is not None
    return None if ok else "expected a URL path starting with / (no query, no spaces)"


_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]+")


def _origin_list(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(v, str) and _ORIGIN.fullmatch(v) for v in value):
        return None
    return "expected a list of origins like https://app.example.com (scheme://host[:port])"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _optional_bool(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "expected true, false or null"


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else "expected one of " + ", ".join(choices)

    return check


def _backoff(value: Any) -> str | None:
    return _at_least_one(value)


def _any_text(value: Any) -> str | None:
    return None if isinstance(value, str) else "expected a string"


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _pattern_problem(name: str) -> str | None:
    parts = name.split(".")
    if any(not part for part in parts):
        return "has an empty name part"
    if ">" in parts[:-1]:
        return "may use '>' only as its last part"
    return None


def _destination_pattern(value: Any) -> str | None:
    expected = "expected /queue/NAME or /topic/NAME (NAME may use the wildcards * and >)"
    if not isinstance(value, str) or not value.startswith(("/queue/", "/topic/")):
        return expected
    name = value.split("/", 2)[2]
    problem = _pattern_problem(name) if name else "has no name"
    return None if problem is None else f"{expected}; {value!r} {problem}"


def _topic_pattern(value: Any) -> str | None:
    if not isinstance(value, str) or not value.startswith("/topic/"):
        return "expected /topic/NAME (NAME may use the wildcards * and >)"
    return _destination_pattern(value)


def _dead_letter_queue(value: Any) -> str | None:
    if value is None:
        return None
    expected = "expected /queue/NAME (no wildcards) or null"
    if not isinstance(value, str) or not value.startswith("/queue/") or len(value) == 7:
        return expected
    parts = value[7:].split(".")
    if any(p in ("*", ">", "") for p in parts):
        return expected
    return None


Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class _Entries:
    """A key whose value is a list of mappings, each read into ``cls`` with ``checks``."""

    cls: type
    checks: dict[str, Check]


_NAME = re.compile(r"[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]*")
_HASH = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{43}")
_PERMISSIONS = ("read", "write", "create", "admin")


def _name(value: Any) -> str | None:
    ok = isinstance(value, str) and _NAME.fullmatch(value) is not None
    return None if ok else "expected a name of letters, digits and _ . @ + -"


def _names(value: Any) -> str | None:
    ok = isinstance(value, list) and all(_name(v) is None for v in value)
    return None if ok else "expected a list of names of letters, digits and _ . @ + -"


def _principal(value: Any) -> str | None:
    return None if value == "*" else _name(value)


def _password_hash(value: Any) -> str | None:
    found = _HASH.fullmatch(value) if isinstance(value, str) else None
    if found is not None:
        n, r, p = (int(found.group(i)) for i in (1, 2, 3))
        if 1 < n <= 2**20 and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16:
            return None
    return "expected a hash printed by stompbroker-passwd (scrypt$N$r$p$SALT$KEY)"


def _patterns(value: Any) -> str | None:
    items = value if isinstance(value, list) and value else [value]
    problems = [_destination_pattern(item) for item in items]
    return next((p for p in problems if p is not None), None)


def _permissions(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(v in _PERMISSIONS for v in value)
    return None if ok else "expected a list of permissions: " + ", ".join(_PERMISSIONS)


_USER_CHECKS: dict[str, Check] = {"name": _name, "password_hash": _password_hash, "groups": _names}


def _stats_interval(value: Any) -> str | None:
    if _positive_int(value) is None and 100 <= value <= 3_600_000:
        return None
    return "expected an integer from 100 to 3600000 (ms)"


def _header_line_bytes(value: Any) -> str | None:
    if _positive_int(value) is None and value <= MAX_HEADER_BLOCK_BYTES:
        return None
    return f"expected an integer from 1 to {MAX_HEADER_BLOCK_BYTES}"


#: Per section: key -> check. Defaults live in the dataclasses above.
_SCHEMA: dict[str, tuple[type, dict[str, Check | _Entries]]] = {
    "broker": (
        BrokerSection,
        {
            "name": _text,
            "data_dir": _text,
            "store": _one_of("sqlite", "memory"),
            "auto_create": _bool,
        },
    ),
    "listeners": (
        ListenersSection,
        {
            "stomp": _text_list,
            "websocket": _Entries(
                WebSocketListener,
                {"endpoint": _text, "path": _url_path, "allowed_origins": _origin_list},
            ),
        },
    ),
    "heartbeat": (
        HeartbeatSection,
        {"send_ms": _non_negative_int, "receive_ms": _non_negative_int, "tolerance": _at_least_one},
    ),
    "limits": (
        LimitsSection,
        {
            "max_connections": _positive_int,
            "max_connections_per_address": _positive_int,
            "connect_timeout_ms": _positive_int,
            "max_subscriptions": _positive_int,
            "max_transactions": _positive_int,
            "max_frames_per_transaction": _positive_int,
            "max_frame_body_bytes": _positive_int,
            "max_headers": _positive_int,
            "max_header_line_bytes": _header_line_bytes,
        },
    ),
    "security": (
        SecuritySection,
        {
            "allow_anonymous": _optional_bool,
            "users_file": _optional_text,
            "users": _Entries(UserEntry, _USER_CHECKS),
            "rules": _Entries(
                RuleEntry,
                {"principal": _principal, "destinations": _patterns, "permissions": _permissions},
            ),
        },
    ),
    "management": (
        ManagementSection,
        {"api": _bool, "stats_interval_ms": _stats_interval},
    ),
}


_DESTINATION_CHECKS: dict[str, Check] = {
    "name": _destination_pattern,
    "persistent": _optional_bool,
    "max_redeliveries": _non_negative_int,
    "redelivery_delay_ms": _non_negative_int,
    "redelivery_backoff": _backoff,
    "max_redelivery_delay_ms": _non_negative_int,
    "dead_letter_queue": _dead_letter_queue,
    "dead_letter_expired": _bool,
    "message_ttl_ms": _non_negative_int,
    "prefetch": _positive_int,
    "fsync": _one_of("always", "batch", "never"),
    "memory_window": _positive_int,
    "memory_window_bytes": _positive_int,
    "max_messages": _non_negative_int,
    "max_bytes": _non_negative_int,
    "on_full": _one_of("block", "reject", "drop-oldest"),
    "max_pending": _positive_int,
    "on_slow": _one_of("disconnect", "drop"),
}
_DURABLE_CHECKS: dict[str, Check] = {
    "name": _text,
    "topic": _topic_pattern,
    "client_id": _any_text,
    "selector": _optional_text,
}

#: Sections whose value is a list of mappings.
_LIST_SECTIONS: dict[str, _Entries] = {
    "destinations": _Entries(DestinationEntry, _DESTINATION_CHECKS),
    "durable_subscriptions": _Entries(DurableEntry, _DURABLE_CHECKS),
}


def parse(text: str, source: str = "<string>") -> Config:
    """Parse and validate configuration text; raise ConfigError naming the line and key."""
    reader = _Reader(source)
    root = _compose(text, source)
    if root is None:
        return Config(source=source)
    sections: dict[str, Any] = {}
    for name, (key_node, value_node) in reader.mapping(root, "(top)").items():
        if name in _LIST_SECTIONS:
            sections[name] = _entries(reader, name, value_node, _LIST_SECTIONS[name])
            continue
        if name not in _SCHEMA:
            known = ", ".join([*_SCHEMA, *_LIST_SECTIONS])
            raise reader.fail(key_node, name, f"unknown section (known: {known})")
        sections[name] = _section(reader, name, value_node)
    _check_destinations(reader, sections.get("destinations", ()))
    _check_durables(reader, sections.get("durable_subscriptions", ()))
    if "security" in sections:
        security = sections["security"] = _one_pattern_is_a_list(sections["security"])
        if security.users_file is None:  # else checked once ``load`` read the file
            _check_security(reader, security, ())
    return Config(source=source, **sections)


def _one_pattern_is_a_list(security: SecuritySection) -> SecuritySection:
    rules = tuple(
        replace(rule, destinations=(rule.destinations,))
        if isinstance(rule.destinations, str)
        else rule
        for rule in security.rules
    )
    return replace(security, rules=rules)


def _check_security(
    reader: _Reader, security: SecuritySection, more: tuple[tuple[_Reader, UserEntry], ...]
) -> None:
    """Users given twice or overlapping, names both a user's and a group's, unknown principals.

    ``more``: the users of the users file, with the reader of that file.
    """
    named = [(reader, f"security.users[{i}]", u) for i, u in enumerate(security.users)]
    named += [(r, f"users[{i}]", u) for i, (r, u) in enumerate(more)]
    users: set[str] = set()
    for where, path, user in named:
        if user.name in users:
            raise where.fail_at(user.line, f"{path}.name", f"{user.name!r} is given twice")
        users.add(user.name)
    groups = {group for _, _, user in named for group in user.groups}
    for where, path, user in named:
        owner = next((n for n in users if user.name.startswith(n + ".")), None)
        if owner is not None:
            why = f"begins with the user {owner!r} and a dot: their client-ids would overlap"
            raise where.fail_at(user.line, f"{path}.name", why)
        if user.name in groups:
            raise where.fail_at(user.line, f"{path}.name", f"{user.name!r} is also a group")
    for index, rule in enumerate(security.rules):
        if rule.principal != "*" and rule.principal not in users | groups:
            raise reader.fail_at(
                rule.line,
                f"security.rules[{index}].principal",
                f"no user or group is named {rule.principal!r}",
            )


def _compose(text: str, source: str) -> Node | None:
    """The YAML document's root node; None when the document is empty."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{line}: not valid YAML: {problem}") from None
    if root is None or (isinstance(root, ScalarNode) and root.value == ""):
        return None
    return root


def _check_destinations(reader: _Reader, entries: tuple[DestinationEntry, ...]) -> None:
    """Contradictions between entries, or within one."""
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        path = f"destinations[{index}]"
        if entry.name in seen:
            raise reader.fail_at(entry.line, f"{path}.name", f"{entry.name!r} is given twice")
        seen.add(entry.name)
        if entry.dead_letter_queue == entry.name:
            raise reader.fail_at(
                entry.line, f"{path}.dead_letter_queue", "a destination cannot be its own DLQ"
            )


def _check_durables(reader: _Reader, entries: tuple[DurableEntry, ...]) -> None:
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        key = (entry.client_id, entry.name)
        if key in seen:
            raise reader.fail_at(
                entry.line,
                f"durable_subscriptions[{index}].name",
                f"{entry.name!r} (client id {entry.client_id!r}) is given twice",
            )
        seen.add(key)


def _section(reader: _Reader, name: str, node: Node) -> Any:
    cls, checks = _SCHEMA[name]
    return _mapping(reader, name, node, cls, checks)


def _mapping(
    reader: _Reader, name: str, node: Node, cls: type, checks: dict[str, Check | _Entries]
) -> Any:
    """Read the mapping at ``node`` into ``cls``; keys without a default are required."""
    values: dict[str, Any] = {}
    for key, (key_node, value_node) in reader.mapping(node, name).items():
        path = f"{name}.{key}"
        check = checks.get(key)
        if check is None:
            known = ", ".join(f.name for f in fields(cls) if f.name != "line")
            raise reader.fail(key_node, path, f"unknown key (known: {known})")
        if isinstance(check, _Entries):
            values[key] = _entries(reader, path, value_node, check)
            continue
        value = reader.value(value_node)
        problem = check(value)
        if problem is not None:
            raise reader.fail(value_node, path, f"{problem}, got {_shown(value)}")
        if isinstance(value_node, SequenceNode):
            value = tuple(value)
        values[key] = value
    for required in fields(cls):
        no_default = required.default is MISSING and required.default_factory is MISSING
        if no_default and required.name not in values:
            raise reader.fail(node, f"{name}.{required.name}", "required key missing")
    if "line" in {f.name for f in fields(cls)}:
        values["line"] = node.start_mark.line + 1
    return cls(**values)


def _entries(reader: _Reader, path: str, node: Node, entries: _Entries) -> tuple[Any, ...]:
    if not isinstance(node, SequenceNode):
        value = reader.value(node)
        raise reader.fail(node, path, f"expected a list of mappings, got {_shown(value)}")
    return tuple(
        _mapping(reader, f"{path}[{i}]", item, entries.cls, dict(entries.checks))
        for i, item in enumerate(node.value)
    )


def load(path: str) -> Config:
    """Read and parse the file at ``path``."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration is not UTF-8 text") from None
    config = parse(text, path)
    users_file = config.security.users_file
    if users_file is None:
        return config
    try:
        with open(users_file, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{path}: security.users_file: cannot read {users_file}: {why}") from None
    reader = _Reader(users_file)
    more = tuple((reader, user) for user in parse_users(text, users_file))
    _check_security(_Reader(path), config.security, more)
    users = config.security.users + tuple(user for _, user in more)
    return replace(config, security=replace(config.security, users=users))


def parse_users(text: str, source: str = "<string>") -> tuple[UserEntry, ...]:
    """The users of a users file: a mapping whose only key is ``users``, a list of entries."""
    reader = _Reader(source)
    root = _compose(text, source)
    if root is None:
        return ()
    entries: tuple[UserEntry, ...] = ()
    for name, (key_node, value_node) in reader.mapping(root, "(top)").items():
        if name != "users":
            raise reader.fail(key_node, name, "unknown key (a users file holds only: users)")
        entries = _entries(reader, "users", value_node, _Entries(UserEntry, _USER_CHECKS))
    return entries

"""YAML text -> frozen, validated configuration. Pure: no files are opened here but in ``load``.

Every mistake is reported as ``FILE:LINE: key.path: what was expected, got what``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
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


@dataclass(frozen=True)
class Config:
    """The whole file."""

    broker: BrokerSection = field(default_factory=BrokerSection)
    listeners: ListenersSection = field(default_factory=ListenersSection)
    heartbeat: HeartbeatSection = field(default_factory=HeartbeatSection)
    source: str = "<defaults>"


class _Reader:
    """Walks YAML nodes, keeping line numbers for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = SafeConstructor()

    def fail(self, node: Node | None, path: str, message: str) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return ConfigError(f"{self.source}{line}: {path}: {message}")

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


Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class _Entries:
    """A key whose value is a list of mappings, each read into ``cls`` with ``checks``."""

    cls: type
    checks: dict[str, Check]


#: Per section: key -> check. Defaults live in the dataclasses above.
_SCHEMA: dict[str, tuple[type, dict[str, Check | _Entries]]] = {
    "broker": (BrokerSection, {"name": _text, "data_dir": _text}),
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
}


def parse(text: str, source: str = "<string>") -> Config:
    """Parse and validate configuration text; raise ConfigError naming the line and key."""
    reader = _Reader(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{line}: not valid YAML: {problem}") from None
    if root is None or (isinstance(root, ScalarNode) and root.value == ""):
        return Config(source=source)
    sections: dict[str, Any] = {}
    for name, (key_node, value_node) in reader.mapping(root, "(top)").items():
        if name not in _SCHEMA:
            known = ", ".join(_SCHEMA)
            raise reader.fail(key_node, name, f"unknown section (known: {known})")
        sections[name] = _section(reader, name, value_node)
    return Config(source=source, **sections)


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
            known = ", ".join(f.name for f in fields(cls))
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
    return parse(text, path)

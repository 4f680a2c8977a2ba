"""Reading YAML into the sections: walking nodes with their line numbers, checking each value,
then what no single value shows (names given twice, unknown principals); ``load`` reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields, replace
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ._checks import _LIST_SECTIONS, _SCHEMA, _USER_CHECKS, Check, _Entries
from ._sections import (
    BrokerSection,
    Config,
    ConfigError,
    DestinationEntry,
    DurableEntry,
    SecuritySection,
    UserEntry,
)


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
    if "broker" in sections:
        sections["broker"] = _virtual_topic_prefixes(sections["broker"])
    _check_destinations(reader, sections.get("destinations", ()))
    _check_durables(reader, sections.get("durable_subscriptions", ()))
    if "security" in sections:
        security = sections["security"] = _one_pattern_is_a_list(sections["security"])
        if security.users_file is None:  # else checked once ``load`` read the file
            _check_security(reader, security, ())
    return Config(source=source, **sections)


def _virtual_topic_prefixes(broker: BrokerSection) -> BrokerSection:
    """``broker.virtual_topics`` as read (false, or a mapping) turned into its two prefixes."""
    value: Any = broker.virtual_topics
    if value is False:
        return replace(broker, virtual_topics=None)
    if isinstance(value, dict):
        default = BrokerSection().virtual_topics
        assert default is not None
        prefixes = (value.get("topic_prefix", default[0]), value.get("consumer_prefix", default[1]))
        return replace(broker, virtual_topics=prefixes)
    return broker


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
        if entry.name in entry.forward_to:
            raise reader.fail_at(
                entry.line, f"{path}.forward_to", "a destination cannot forward to itself"
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
    reader: _Reader, name: str, node: Node, cls: type, checks: Mapping[str, Check | _Entries]
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
        _mapping(reader, f"{path}[{i}]", item, entries.cls, entries.checks)
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

"""The checks of single values, and the schema saying which check each key gets.

A check takes the value YAML gave and returns None when it is fine, else what was expected.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._sections import (
    MAX_HEADER_BLOCK_BYTES,
    BrokerSection,
    DestinationEntry,
    DurableEntry,
    HeartbeatSection,
    LimitsSection,
    ListenersSection,
    ManagementSection,
    PostgresqlSection,
    RuleEntry,
    SecuritySection,
    UserEntry,
    WebSocketListener,
)


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


#: An HTTP header line an operator may add: a token name, then a value of visible text.
_HEADER_LINE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+: *[\x21-\x7e][\x20-\x7e]*")


def _header_list(value: Any) -> str | None:
    expected = 'expected a list of header lines like "X-Frame-Options: DENY"'
    if not isinstance(value, list):
        return expected
    for line in value:
        if not (isinstance(line, str) and _HEADER_LINE.fullmatch(line)):
            return f"{expected}; {line!r} is not one"
    return None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _optional_bool(value: Any) -> str | None:
    return None if value is None or isinstance(value, bool) else "expected true, false or null"


def _checker(value: Any) -> str | None:
    """A dotted ``package.module.Name`` that imports, naming a class or factory of a
    twisted.cred credentials checker (a class must have ``requestAvatarId``)."""
    if value is None:
        return None
    if not isinstance(value, str) or "." not in value.strip("."):
        return "expected package.module.Name (a credentials checker class or factory)"
    try:
        found = import_dotted(value)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"cannot import {value!r}: {reason}"
    if isinstance(found, type) and not callable(getattr(found, "requestAvatarId", None)):
        return f"{value!r} is not an ICredentialsChecker (no requestAvatarId)"
    if not callable(found):
        return f"{value!r} is not an ICredentialsChecker class or factory"
    return None


def import_dotted(path: str) -> Any:
    """The object ``package.module.Name`` names (ImportError/AttributeError if none)."""
    module_name, _, name = path.rpartition(".")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no {name!r}") from None


def _optional_mapping(value: Any) -> str | None:
    if value is None or (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
        return None
    return "expected a mapping of keyword arguments"


def _one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else "expected one of " + ", ".join(choices)

    return check


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


def _forward_targets(value: Any) -> str | None:
    expected = "expected a list of /queue/NAME or /topic/NAME (no wildcards)"
    if not isinstance(value, list) or not value:
        return expected
    for target in value:
        ok = isinstance(target, str) and target.startswith(("/queue/", "/topic/"))
        if not ok or not target[7:] or "," in target:
            return expected
        if any(not part or part in ("*", ">") for part in target[7:].split(".")):
            return f"{expected}; {target!r} is not one destination"
    return None


def _prefix_problem(key: str, prefix: Any, wildcards: bool) -> str | None:
    """As the core's ``prefix_problem``: whole name parts ending with '.', '*' a whole part."""
    if not isinstance(prefix, str) or not prefix.endswith(".") or prefix == ".":
        return f"expected {key} to be name parts ending with '.', such as 'VirtualTopic.'"
    for part in prefix[:-1].split("."):
        if not part:
            return f"expected {key} without an empty name part ('..')"
        if ">" in part or ("*" in part and (not wildcards or part != "*")):
            allowed = "'*' only as a whole part" if wildcards else "no wildcards"
            return f"expected {key} with {allowed}"
    return None


def _virtual_topics(value: Any) -> str | None:
    if value is False:
        return None
    if not isinstance(value, dict) or not set(value) <= {"topic_prefix", "consumer_prefix"}:
        return "expected false or a mapping of topic_prefix and consumer_prefix"
    for key, wildcards in (("topic_prefix", False), ("consumer_prefix", True)):
        problem = _prefix_problem(key, value[key], wildcards) if key in value else None
        if problem is not None:
            return problem
    return None


def _header_line_bytes(value: Any) -> str | None:
    if _positive_int(value) is None and value <= MAX_HEADER_BLOCK_BYTES:
        return None
    return f"expected an integer from 1 to {MAX_HEADER_BLOCK_BYTES}"


#: Per section: key -> check. Defaults live in the dataclasses (``_sections``).
_SCHEMA: dict[str, tuple[type, dict[str, Check | _Entries]]] = {
    "broker": (
        BrokerSection,
        {
            "name": _text,
            "data_dir": _text,
            "store": _one_of("sqlite", "memory", "postgresql"),
            "auto_create": _bool,
            "virtual_topics": _virtual_topics,
        },
    ),
    "listeners": (
        ListenersSection,
        {
            "stomp": _text_list,
            "websocket": _Entries(
                WebSocketListener,
                {
                    "endpoint": _text,
                    "path": _url_path,
                    "allowed_origins": _origin_list,
                    "http_headers": _header_list,
                    "pings": _bool,
                },
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
            "listen_backlog": _positive_int,
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
            "login_delay_ms": _positive_int,
            "max_login_delay_ms": _positive_int,
            "login_failures_kept_ms": _positive_int,
            "login_checks_per_address": _positive_int,
            "checker": _checker,
            "checker_options": _optional_mapping,
        },
    ),
    "management": (
        ManagementSection,
        {"api": _bool, "stats_interval_ms": _stats_interval},
    ),
    "postgresql": (PostgresqlSection, {"dsn": _optional_text, "node": _optional_text}),
}


_DESTINATION_CHECKS: dict[str, Check] = {
    "name": _destination_pattern,
    "persistent": _optional_bool,
    "max_redeliveries": _non_negative_int,
    "redelivery_delay_ms": _non_negative_int,
    "redelivery_backoff": _at_least_one,
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
    "forward_to": _forward_targets,
    "stamp_user": _bool,
    "duplicate_window": _non_negative_int,
    "duplicate_ttl_ms": _non_negative_int,
    "max_delivery_delay_ms": _non_negative_int,
}
_DURABLE_CHECKS: dict[str, Check] = {
    "name": _text,
    "topic": _topic_pattern,
    "client_id": _any_text,
    "selector": _optional_text,
    "shared": _bool,
    "no_local": _bool,
}

#: Sections whose value is a list of mappings.
_LIST_SECTIONS: dict[str, _Entries] = {
    "destinations": _Entries(DestinationEntry, _DESTINATION_CHECKS),
    "durable_subscriptions": _Entries(DurableEntry, _DURABLE_CHECKS),
}

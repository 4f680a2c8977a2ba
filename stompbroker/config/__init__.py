"""YAML text -> frozen, validated configuration. Pure: no files are opened here but in ``load``.

Every mistake is reported as ``FILE:LINE: key.path: what was expected, got what``.
"""

from ._checks import import_dotted
from ._parse import load, parse, parse_users
from ._sections import (
    DEFAULT_CONFIG_PATH,
    MAX_HEADER_BLOCK_BYTES,
    BrokerSection,
    Config,
    ConfigError,
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

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MAX_HEADER_BLOCK_BYTES",
    "BrokerSection",
    "Config",
    "ConfigError",
    "DestinationEntry",
    "DurableEntry",
    "HeartbeatSection",
    "LimitsSection",
    "ListenersSection",
    "ManagementSection",
    "PostgresqlSection",
    "RuleEntry",
    "SecuritySection",
    "UserEntry",
    "WebSocketListener",
    "import_dotted",
    "load",
    "parse",
    "parse_users",
]

"""The JMS model: destinations, subscriptions, dispatch, acknowledgement, dead letters."""

from ._access import (
    EVERYONE,
    PERMISSIONS,
    SCRYPT_N,
    AccessControl,
    LoginThrottle,
    Rule,
    User,
    covers,
    hash_password,
    verify_password,
)
from ._admin import (
    AdminError,
    Conflict,
    NotFound,
    delete_destination,
    purge_destination,
    replay_dead_letters,
)
from ._broker import Broker
from ._broker_headers import BROKER_HEADERS, MessageError
from ._clock import Clock, DelayedCall
from ._destination import Destination, Queue
from ._durable import DurableSubscription
from ._inspect import KINDS, counts, describe_all, describe_one, find, kind_and_name, totals
from ._message import DEFAULT_PRIORITY, Message, MessageBuffer
from ._names import (
    GLOBAL_TEMP_PREFIX,
    PREFIXES,
    DestinationError,
    DestinationFull,
    check_send_name,
    check_subscribe_name,
    parse_destination,
)
from ._policy import (
    DEFAULT_DEAD_LETTER_QUEUE,
    DEFAULT_POLICY,
    STATS_TOPIC,
    DestinationPolicy,
    PolicyMap,
    is_pattern,
    matches,
    valid_pattern,
)
from ._selector import SelectorError, compile_selector
from ._stats import BOUNDS, SAMPLE_EVERY, DestinationStats, Histogram, Statistics
from ._stats_topic import StatsPublisher
from ._store import (
    SYNC_LEVELS,
    TRANSIENT,
    CommitStats,
    DurableRecord,
    IMessageStore,
    Recovery,
    StoredQueue,
)
from ._subscription import (
    ACK_MODES,
    DEFAULT_PREFETCH,
    Consumer,
    Selector,
    Subscription,
    selector_view,
)
from ._topic import Topic

__all__ = [
    "ACK_MODES",
    "BOUNDS",
    "BROKER_HEADERS",
    "DEFAULT_DEAD_LETTER_QUEUE",
    "DEFAULT_POLICY",
    "DEFAULT_PREFETCH",
    "DEFAULT_PRIORITY",
    "EVERYONE",
    "GLOBAL_TEMP_PREFIX",
    "KINDS",
    "PERMISSIONS",
    "PREFIXES",
    "SAMPLE_EVERY",
    "SCRYPT_N",
    "STATS_TOPIC",
    "SYNC_LEVELS",
    "TRANSIENT",
    "AccessControl",
    "AdminError",
    "Broker",
    "Clock",
    "CommitStats",
    "Conflict",
    "Consumer",
    "DelayedCall",
    "Destination",
    "DestinationError",
    "DestinationFull",
    "DestinationPolicy",
    "DestinationStats",
    "DurableRecord",
    "DurableSubscription",
    "Histogram",
    "IMessageStore",
    "LoginThrottle",
    "Message",
    "MessageBuffer",
    "MessageError",
    "NotFound",
    "PolicyMap",
    "Queue",
    "Recovery",
    "Rule",
    "Selector",
    "SelectorError",
    "Statistics",
    "StatsPublisher",
    "StoredQueue",
    "Subscription",
    "Topic",
    "User",
    "check_send_name",
    "check_subscribe_name",
    "compile_selector",
    "counts",
    "covers",
    "delete_destination",
    "describe_all",
    "describe_one",
    "find",
    "hash_password",
    "is_pattern",
    "kind_and_name",
    "matches",
    "parse_destination",
    "purge_destination",
    "replay_dead_letters",
    "selector_view",
    "totals",
    "valid_pattern",
    "verify_password",
]

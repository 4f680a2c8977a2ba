"""The JMS model: destinations, subscriptions, dispatch, acknowledgement, dead letters."""

from ._access import (
    EVERYONE,
    PERMISSIONS,
    SCRYPT_N,
    AccessControl,
    LoginCheck,
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
from ._backlog import Backlog, MemoryBacklog
from ._broker import Broker
from ._clock import Clock, DelayedCall
from ._cred import Identity, IIdentity, LoginRefused, PeerCredentials, login_portal
from ._dead_letters import DEAD_LETTER_HEADERS, DeadLetters
from ._destination import Destination
from ._durable import DurableSubscription
from ._durables import DurableSubscriptions
from ._inspect import KINDS, counts, describe_all, describe_one, find, totals
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
from ._paging import PagedBacklog
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
from ._queue import Queue
from ._registry import Destinations, kind_and_name
from ._routing import Router, Sent
from ._scheduled import ScheduledDeliveries
from ._selector import SelectorError, compile_selector
from ._send_headers import BROKER_HEADERS, MessageError
from ._stats import BOUNDS, SAMPLE_EVERY, DestinationStats, Histogram, Statistics
from ._stats_topic import StatsPublisher
from ._store import (
    SYNC_LEVELS,
    TRANSIENT,
    CommitStats,
    DurableRecord,
    IMessageStore,
    ISharedQueues,
    ITopicBus,
    Member,
    Recovery,
    Released,
    ScheduledRecord,
    StoredQueue,
    StoreUnavailable,
)
from ._subscription import (
    ACK_MODES,
    DEFAULT_PREFETCH,
    Consumer,
    Selector,
    Subscription,
    selector_view,
)
from ._temporaries import TemporaryDestinations
from ._throttle import CHECKS_AT_ONCE, FairScheduler, LoginThrottle
from ._topic import Topic
from ._transaction import Transaction
from ._virtual import VirtualTopics

__all__ = [
    "ACK_MODES",
    "BOUNDS",
    "BROKER_HEADERS",
    "CHECKS_AT_ONCE",
    "DEAD_LETTER_HEADERS",
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
    "Backlog",
    "Broker",
    "Clock",
    "CommitStats",
    "Conflict",
    "Consumer",
    "DeadLetters",
    "DelayedCall",
    "Destination",
    "DestinationError",
    "DestinationFull",
    "DestinationPolicy",
    "DestinationStats",
    "Destinations",
    "DurableRecord",
    "DurableSubscription",
    "DurableSubscriptions",
    "FairScheduler",
    "Histogram",
    "IIdentity",
    "IMessageStore",
    "ISharedQueues",
    "ITopicBus",
    "Identity",
    "LoginCheck",
    "LoginRefused",
    "LoginThrottle",
    "Member",
    "MemoryBacklog",
    "Message",
    "MessageBuffer",
    "MessageError",
    "NotFound",
    "PagedBacklog",
    "PeerCredentials",
    "PolicyMap",
    "Queue",
    "Recovery",
    "Released",
    "Router",
    "Rule",
    "ScheduledDeliveries",
    "ScheduledRecord",
    "Selector",
    "SelectorError",
    "Sent",
    "Statistics",
    "StatsPublisher",
    "StoreUnavailable",
    "StoredQueue",
    "Subscription",
    "TemporaryDestinations",
    "Topic",
    "Transaction",
    "User",
    "VirtualTopics",
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
    "login_portal",
    "matches",
    "parse_destination",
    "purge_destination",
    "replay_dead_letters",
    "selector_view",
    "totals",
    "valid_pattern",
    "verify_password",
]

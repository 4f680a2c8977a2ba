"""The JMS model: destinations, subscriptions, dispatch, acknowledgement, dead letters."""

from ._broker import BROKER_HEADERS, Broker, MessageError
from ._clock import Clock, DelayedCall
from ._destination import Destination, Queue, Topic
from ._durable import DurableSubscription
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
    DestinationPolicy,
    PolicyMap,
    is_pattern,
    matches,
    valid_pattern,
)
from ._selector import SelectorError, compile_selector
from ._store import (
    SYNC_LEVELS,
    TRANSIENT,
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

__all__ = [
    "ACK_MODES",
    "BROKER_HEADERS",
    "DEFAULT_DEAD_LETTER_QUEUE",
    "DEFAULT_POLICY",
    "DEFAULT_PREFETCH",
    "DEFAULT_PRIORITY",
    "GLOBAL_TEMP_PREFIX",
    "PREFIXES",
    "SYNC_LEVELS",
    "TRANSIENT",
    "Broker",
    "Clock",
    "Consumer",
    "DelayedCall",
    "Destination",
    "DestinationError",
    "DestinationFull",
    "DestinationPolicy",
    "DurableRecord",
    "DurableSubscription",
    "IMessageStore",
    "Message",
    "MessageBuffer",
    "MessageError",
    "PolicyMap",
    "Queue",
    "Recovery",
    "Selector",
    "SelectorError",
    "StoredQueue",
    "Subscription",
    "Topic",
    "check_send_name",
    "check_subscribe_name",
    "compile_selector",
    "is_pattern",
    "matches",
    "parse_destination",
    "selector_view",
    "valid_pattern",
]

"""The JMS model: destinations, subscriptions, dispatch and acknowledgement."""

from ._broker import BROKER_HEADERS, PREFIXES, Broker, DestinationError, parse_destination
from ._destination import Destination, Queue, Topic
from ._message import Message, MessageBuffer
from ._subscription import ACK_MODES, DEFAULT_PREFETCH, Consumer, Subscription

__all__ = [
    "ACK_MODES",
    "BROKER_HEADERS",
    "DEFAULT_PREFETCH",
    "PREFIXES",
    "Broker",
    "Consumer",
    "Destination",
    "DestinationError",
    "Message",
    "MessageBuffer",
    "Queue",
    "Subscription",
    "Topic",
    "parse_destination",
]

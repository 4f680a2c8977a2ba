"""The JMS model: destinations, subscriptions, dispatch and acknowledgement."""

from ._broker import BROKER_HEADERS, PREFIXES, Broker, DestinationError, parse_destination
from ._clock import Clock, DelayedCall
from ._destination import Destination, Queue, Topic
from ._message import Message, MessageBuffer
from ._subscription import ACK_MODES, DEFAULT_PREFETCH, Consumer, Subscription

__all__ = [
    "ACK_MODES",
    "BROKER_HEADERS",
    "DEFAULT_PREFETCH",
    "PREFIXES",
    "Broker",
    "Clock",
    "Consumer",
    "DelayedCall",
    "Destination",
    "DestinationError",
    "Message",
    "MessageBuffer",
    "Queue",
    "Subscription",
    "Topic",
    "parse_destination",
]

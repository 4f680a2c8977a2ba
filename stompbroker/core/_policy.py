"""Destination names, wildcard patterns, and the policies that apply to destinations.

Names have parts separated by ``.``. In a pattern, ``*`` matches exactly one
part and ``>`` (last part only) matches one or more remaining parts:
``orders.*`` matches ``orders.eu`` but not ``orders.eu.new``; ``orders.>``
matches both. When several policy patterns match a name, the most specific wins:
the one with more literal parts, then fewer ``*``, then no ``>``, then the
longer pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

#: The default dead-letter queue.
DEFAULT_DEAD_LETTER_QUEUE = "/queue/DLQ"
#: Where the broker publishes its statistics: declared by every configuration.
STATS_TOPIC = "/topic/stompbroker.stats"


@dataclass(frozen=True)
class DestinationPolicy:
    """How one destination behaves. The defaults are what ActiveMQ users expect."""

    #: Messages without a ``persistent`` header are persistent (None: queues yes, topics no).
    persistent: bool | None = None
    #: Deliveries after the first before a message is dead-lettered.
    max_redeliveries: int = 6
    #: Wait before the first redelivery, in ms (0: at once).
    redelivery_delay_ms: int = 0
    #: Each further redelivery waits this many times longer ...
    redelivery_backoff: float = 2.0
    #: ... up to this many ms.
    max_redelivery_delay_ms: int = 60_000
    #: Where dead letters go; None: nowhere (dropped and counted).
    dead_letter_queue: str | None = DEFAULT_DEAD_LETTER_QUEUE
    #: Whether expired messages are dead-lettered (else dropped and counted).
    dead_letter_expired: bool = True
    #: Time to live given to messages that carry none, in ms (0: forever).
    message_ttl_ms: int = 0
    #: Unacknowledged messages in flight per client-ack subscription, by default.
    prefetch: int = 1000
    #: When a persistent message's RECEIPT may go: ``always`` (after an fsync),
    #: ``batch`` (after a group fsync a few ms later), ``never`` (once written to the OS).
    fsync: str = "always"
    #: Messages a queue keeps in memory; beyond, new ones wait on disk (paged) ...
    memory_window: int = 10_000
    #: ... or beyond about this many bytes of bodies.
    memory_window_bytes: int = 16 * 1024 * 1024
    #: A queue's most waiting messages, and bytes of bodies (0: no limit) ...
    max_messages: int = 0
    max_bytes: int = 0
    #: ... and what a SEND to a full queue meets: ``block`` (accepted, then the producer
    #: is not read until there is room), ``reject`` (an ERROR naming the destination), or
    #: ``drop-oldest`` (the oldest waiting message is dead-lettered to make room).
    on_full: str = "block"
    #: Messages a topic subscriber may have waiting (it reads too slowly) ...
    max_pending: int = 10_000
    #: ... then ``disconnect`` (ERROR "slow consumer", the connection closes) or ``drop``
    #: (its oldest waiting message is dropped, and counted).
    on_slow: str = "disconnect"
    #: Where every message sent here also goes (ActiveMQ's composite queue): queues and
    #: topics, no wildcards. A forwarded copy is not forwarded again.
    forward_to: tuple[str, ...] = ()
    #: With users configured, stamp the sender's login on its messages as ``JMSXUserID``.
    stamp_user: bool = True
    #: Ids (``_AMQ_DUPL_ID``) a queue remembers to refuse a resent message (0: no detection) ...
    duplicate_window: int = 20_000
    #: ... each for this many ms (0: until pushed out by newer ones).
    duplicate_ttl_ms: int = 0
    #: The longest delivery delay a SEND may ask (``AMQ_SCHEDULED_DELAY``, ...), and the
    #: longest repeat period, in ms (0: no limit).
    max_delivery_delay_ms: int = 0

    @cached_property
    def limited(self) -> bool:
        """Whether a queue under this policy has a size limit (worked out once per policy:
        every SEND asks)."""
        return bool(self.max_messages or self.max_bytes)

    def redelivery_delay(self, delivery_count: int) -> float:
        """Seconds to wait before delivering again a message delivered ``delivery_count`` times."""
        if self.redelivery_delay_ms <= 0:
            return 0.0
        delay = self.redelivery_delay_ms * self.redelivery_backoff ** max(0, delivery_count - 1)
        return min(delay, self.max_redelivery_delay_ms) / 1000.0


DEFAULT_POLICY = DestinationPolicy()


def is_pattern(name: str) -> bool:
    """Whether a destination name holds a wildcard part."""
    if "*" not in name and ">" not in name:
        return False
    return any(part in ("*", ">") for part in name.split("."))


def valid_pattern(name: str) -> bool:
    """Whether ``>`` appears only as the last part (and no part is empty)."""
    parts = name.split(".")
    if any(not part for part in parts):
        return False
    return ">" not in parts[:-1]


@lru_cache(maxsize=4096)
def matches(pattern: str, name: str) -> bool:
    """Whether destination ``name`` (no wildcards) matches ``pattern``."""
    want = pattern.split(".")
    have = name.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have):
            return False
        if part != "*" and part != have[index]:
            return False
    return len(have) == len(want)


def _specificity(pattern: str) -> tuple[int, int, int, int]:
    parts = pattern.split(".")
    literal = sum(1 for p in parts if p not in ("*", ">"))
    stars = sum(1 for p in parts if p == "*")
    tail = 1 if parts[-1] == ">" else 0
    return (literal, -stars, -tail, len(pattern))


class PolicyMap:
    """Policies by destination (``/queue/NAME`` or ``/topic/NAME``, NAME may be a pattern)."""

    def __init__(
        self,
        entries: dict[str, DestinationPolicy] | None = None,
        default: DestinationPolicy = DEFAULT_POLICY,
    ) -> None:
        self.default = default
        self._exact: dict[str, DestinationPolicy] = {}
        self._patterns: list[tuple[tuple[int, int, int, int], str, str, DestinationPolicy]] = []
        for destination, policy in (entries or {}).items():
            prefix, _, name = destination.rpartition("/")
            if is_pattern(name):
                self._patterns.append((_specificity(name), prefix, name, policy))
            else:
                self._exact[destination] = policy
        self._patterns.sort(key=lambda entry: entry[0], reverse=True)
        self._cache: dict[str, DestinationPolicy] = {}
        #: Whether any destination has a size limit (else nothing needs checking).
        self.limited = default.limited or any(p.limited for p in (entries or {}).values())
        every = [default, *(entries or {}).values()]
        #: The dead-letter queues the policies name (they are declared too).
        self.dead_letter_queues = {p.dead_letter_queue for p in every if p.dead_letter_queue}
        #: The destinations the policies forward to (they are declared too).
        self.forward_targets = {target for p in every for target in p.forward_to}

    def declares(self, destination: str) -> bool:
        """Whether an entry (exact or pattern) names ``destination``, or it is a DLQ or the
        statistics topic."""
        if destination in self._exact or destination in self.dead_letter_queues:
            return True
        if destination in self.forward_targets:
            return True
        if destination == STATS_TOPIC:
            return True
        prefix, _, name = destination.rpartition("/")
        return any(p == prefix and matches(pattern, name) for _, p, pattern, _ in self._patterns)

    def for_destination(self, destination: str) -> DestinationPolicy:
        """The policy for a destination: exact entry, else the most specific pattern."""
        policy = self._cache.get(destination)
        if policy is not None:
            return policy
        policy = self._exact.get(destination)
        if policy is None:
            prefix, _, name = destination.rpartition("/")
            policy = self.default
            for _, pattern_prefix, pattern, candidate in self._patterns:
                if pattern_prefix == prefix and matches(pattern, name):
                    policy = candidate
                    break
        if len(self._cache) < 100_000:
            self._cache[destination] = policy
        return policy

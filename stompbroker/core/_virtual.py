"""Virtual topics (ActiveMQ's spelling of shared subscriptions): a publish to a topic whose
name starts with the topic prefix (``VirtualTopic.``) also lands in every existing queue
named the consumer prefix (``Consumer.*.``, ``*`` one name part) and then that topic's name::

    SEND /topic/VirtualTopic.orders --> /queue/Consumer.A.VirtualTopic.orders (A's compete)
                                    --> /queue/Consumer.B.VirtualTopic.orders (B's too)

A consumer queue is an ordinary queue (stored, recovered, browsed), made when first used and
kept when unused, so that it goes on collecting while its consumers are away. Its topic part
may be a wildcard pattern (``/queue/Consumer.A.VirtualTopic.orders.>``): that queue then gets
a copy of every publish to a virtual topic the pattern matches.
"""

from __future__ import annotations

from ._policy import is_pattern, valid_pattern

DEFAULT_TOPIC_PREFIX = "VirtualTopic."
DEFAULT_CONSUMER_PREFIX = "Consumer.*."


def prefix_problem(prefix: str, wildcards: bool) -> str | None:
    """What is wrong with a prefix (None: nothing): whole name parts ending with ``.``; ``*``
    (a whole part) only where ``wildcards``, ``>`` never."""
    if not prefix.endswith(".") or prefix == ".":
        return "expected name parts ending with '.', such as 'VirtualTopic.'"
    for part in prefix[:-1].split("."):
        if not part:
            return "expected no empty name part ('..')"
        if ">" in part or ("*" in part and (not wildcards or part != "*")):
            allowed = "'*' only as a whole part" if wildcards else "no wildcards"
            return f"expected {allowed}"
    return None


class VirtualTopics:
    """Which queues are consumer queues of which virtual topics."""

    def __init__(
        self,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        consumer_prefix: str = DEFAULT_CONSUMER_PREFIX,
    ) -> None:
        for what, prefix, wildcards in (
            ("topic prefix", topic_prefix, False),
            ("consumer prefix", consumer_prefix, True),
        ):
            problem = prefix_problem(prefix, wildcards)
            if problem is not None:
                raise ValueError(f"virtual topics: {what} {prefix!r}: {problem}")
        self.topic_prefix = topic_prefix
        self.consumer_prefix = consumer_prefix
        self._parts = consumer_prefix[:-1].split(".")

    def topic_of(self, queue: str) -> str | None:
        """The virtual topic, or pattern of virtual topics, queue ``queue`` consumes (None:
        it is no consumer queue). The consumer prefix's parts never hold a wildcard; the
        topic part may be a valid pattern below the topic prefix."""
        parts = queue.split(".")
        n = len(self._parts)
        if len(parts) <= n:
            return None
        for want, part in zip(self._parts, parts, strict=False):
            if part in ("*", ">") or (want != part and not (want == "*" and part)):
                return None
        topic = ".".join(parts[n:])
        if not topic.startswith(self.topic_prefix) or topic == self.topic_prefix:
            return None
        if is_pattern(topic) and not valid_pattern(topic):
            return None
        return topic

    def is_virtual(self, topic: str) -> bool:
        """Whether a publish to topic ``topic`` feeds consumer queues."""
        return topic.startswith(self.topic_prefix)


#: ActiveMQ's default: ``/queue/Consumer.*.VirtualTopic.X`` consumes ``/topic/VirtualTopic.X``.
DEFAULT_VIRTUAL_TOPICS = VirtualTopics()

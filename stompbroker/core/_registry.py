"""The destinations registry: queues and topics by name, made on first use, forgotten when
unused, deleted on demand; and which wildcard topics and durables a publish feeds.

A destination's life, and its statistics' (``_stats``)::

    made (statistics of an earlier life revived) --unused--> forgotten (statistics retired)
      |                                                        (kept a while, then gone)
      +--deleted (an administrator, a durable's UNSUBSCRIBE, a temporary's owner leaving):
         what it holds and its stored rows go, and its statistics with it

``Destinations`` owns queues, topics and wildcard topics; durable subscriptions
(``_durables``) and temporary destinations (``_temporaries``) keep their own tables, and all
three end a destination through ``end`` below, the one place that does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ._destination import Destination, Hooks
from ._names import GLOBAL_TEMP_PREFIX, DestinationError
from ._policy import PolicyMap, matches
from ._queue import Queue
from ._shared import SharedQueues
from ._stats import Statistics, StatsKey
from ._store import IMessageStore
from ._topic import Topic
from ._virtual import VirtualTopics

if TYPE_CHECKING:
    from ._durable import DurableSubscription
    from ._durables import DurableSubscriptions
    from ._message import Message

#: At most this many topic names' fan-outs are cached.
FANOUT_CACHE = 10_000


def kind_and_name(destination: Destination) -> StatsKey:
    """The (kind, name) a destination is described and found by (see ``_inspect``)."""
    if destination.owner is not None:
        kind = "temp-" + destination.kind
        return kind, destination.address.removeprefix(GLOBAL_TEMP_PREFIX[kind])
    return destination.kind, destination.name


def end(destination: Destination, statistics: Statistics) -> list[Message]:
    """Delete ``destination`` for good: its timers, waiters, messages and stored rows go, and
    its statistics; return the messages memory held. Its subscriptions must be gone."""
    assert not destination.subscriptions, "detach the subscriptions first"
    dropped = destination.delete() if isinstance(destination, Queue) else destination.close()
    statistics.drop(destination.counted())
    return dropped


class Destinations:
    """Queues, topics and wildcard topics by name (``hooks``: what they need of the broker).

    Without ``auto_create``, clients may use only the queues and topics ``policies`` declare.
    """

    def __init__(
        self,
        hooks: Hooks,
        policies: PolicyMap,
        statistics: Statistics,
        store: IMessageStore | None,
        auto_create: bool = True,
        virtual_topics: VirtualTopics | None = None,
    ) -> None:
        self.hooks = hooks
        #: Which queues are consumer queues of virtual topics (None: there are none).
        self.virtual_topics = virtual_topics
        self.policies = policies
        self.auto_create = auto_create
        self.statistics = statistics
        self.store = store
        #: The backlogs of queues whose messages a cluster shares (None: the store keeps
        #: this node's own; the broker sets it when its store shares queues).
        self.shared: SharedQueues | None = None
        self.queues: dict[str, Queue] = {}
        self.topics: dict[str, Topic] = {}
        #: Topics subscribed to by wildcard pattern, by pattern.
        self.wildcards: dict[str, Topic] = {}
        #: The consumer queues of virtual topics, by queue name: (virtual topic, queue). They
        #: are kept when unused (they collect while their consumers are away).
        self.consumer_queues: dict[str, tuple[str, Queue]] = {}
        #: Bumped whenever ``wildcards`` or ``consumer_queues`` changes (``Fanout`` then
        #: forgets what it cached).
        self.version = 0

    def __iter__(self) -> Iterator[Destination]:
        """Every queue, topic and wildcard topic (a snapshot: they may go meanwhile)."""
        return iter([*self.queues.values(), *self.topics.values(), *self.wildcards.values()])

    def queue(self, name: str) -> Queue:
        """Queue ``name``, made if needed."""
        queue = self.queues.get(name)
        if queue is None:
            address = f"/queue/{name}"
            queue = Queue(name, address, self.hooks, self.policies.for_destination(address))
            self.revive(queue)
            if self.shared is not None:
                queue.backlog = self.shared.backlog(queue)
            elif self.store is not None:
                queue.attach_store(self.store)
            self.queues[name] = queue
            virtual = self.virtual_topics
            topic = virtual.topic_of(name) if virtual is not None else None
            if topic is not None:
                self.consumer_queues[name] = (topic, queue)
                self.version += 1
        return queue

    def topic(self, name: str) -> Topic:
        """Topic ``name``, or the wildcard topic of pattern ``name``, made if needed."""
        wildcard = name in self.wildcards or any(p in name for p in "*>")
        table = self.wildcards if wildcard else self.topics
        topic = table.get(name)
        if topic is None:
            address = f"/topic/{name}"
            topic = Topic(name, address, self.hooks, self.policies.for_destination(address))
            self.revive(topic)
            table[name] = topic
            if wildcard:
                self.version += 1
        return topic

    def revive(self, destination: Destination) -> None:
        """A destination is made: it takes over the statistics of its earlier life, if kept."""
        key = kind_and_name(destination)
        destination.stats = self.statistics.revive(key, destination.stats)

    def check_declared(self, kind: str, name: str, destination: str) -> None:
        """Without ``auto_create``: only declared destinations (and those that exist) may be
        used; DestinationError for the others."""
        if self.policies.declares(destination):
            return
        if (kind == "queue" and name in self.queues) or (kind == "topic" and name in self.topics):
            return
        raise DestinationError(
            f"destination {destination} does not exist, and this broker creates only the"
            " destinations its configuration declares (broker.auto_create is false)"
        )

    def forget_if_unused(self, target: Destination) -> None:
        """Drop ``target`` if it holds nothing (its statistics are retired, kept a while)."""
        if not target.unused() or target.owner is not None:
            return
        if target.kind == "queue" and target.name in self.consumer_queues:
            return  # kept: a publish to its virtual topic must still find it
        if target.kind == "queue" and self.queues.get(target.name) is target:
            del self.queues[target.name]
        elif target.kind == "topic" and self.topics.get(target.name) is target:
            del self.topics[target.name]
        elif target.kind == "topic" and self.wildcards.get(target.name) is target:
            del self.wildcards[target.name]
            self.version += 1
        else:
            return
        self.statistics.retire(kind_and_name(target), target.counted())

    def delete(self, destination: Destination) -> int:
        """Delete a queue or topic of this registry nobody consumes from, with what it holds;
        return how many messages were waiting."""
        held = destination.depth() if isinstance(destination, Queue) else 0
        name = destination.name
        if self.queues.get(name) is destination:
            del self.queues[name]
            if self.consumer_queues.pop(name, None) is not None:
                self.version += 1
        elif self.topics.get(name) is destination:
            del self.topics[name]
        elif self.wildcards.get(name) is destination:
            del self.wildcards[name]
            self.version += 1
        else:
            raise ValueError(f"{destination!r} is not in the registry")
        end(destination, self.statistics)
        return held

    def set_policies(self, policies: PolicyMap) -> None:
        """New policies for every destination here and those made from now on."""
        self.policies = policies
        for destination in self:
            destination.policy = policies.for_destination(destination.address)


#: What a publish to one topic name feeds: wildcard topics, durable subscriptions, and
#: virtual topics' consumer queues.
Feeds = tuple[list[Topic], list["DurableSubscription"], list[Queue]]


class Fanout:
    """Which wildcard topics, durable subscriptions and virtual topics' consumer queues a
    publish to each topic name feeds, cached until one of the tables changes."""

    def __init__(self, destinations: Destinations, durables: DurableSubscriptions) -> None:
        self._destinations = destinations
        self._durables = durables
        self._cache: dict[str, Feeds] = {}
        #: The tables' versions the cache was filled at.
        self._wildcards = self._durable = -1

    def get(self, name: str) -> Feeds:
        """What a publish to topic ``name`` feeds (one cached lookup)."""
        destinations, durables = self._destinations, self._durables
        if destinations.version != self._wildcards or durables.version != self._durable:
            self.clear()
            self._wildcards = destinations.version
            self._durable = durables.version
        fanout = self._cache.get(name)
        if fanout is None:
            if len(self._cache) > FANOUT_CACHE:
                self._cache.clear()
            consumer_queues = destinations.consumer_queues.values()
            fanout = self._cache[name] = (
                [t for p, t in destinations.wildcards.items() if matches(p, name)],
                [d for d in durables if matches(d.pattern, name)],
                [q for topic, q in consumer_queues if matches(topic, name)],
            )
        return fanout

    def durable(self, client_id: str, subscription_name: str) -> DurableSubscription | None:
        """The durable subscription (client id, name), if it still exists."""
        return self._durables.get(client_id, subscription_name)

    def clear(self) -> None:
        """Forget everything cached (the policies changed)."""
        self._cache.clear()

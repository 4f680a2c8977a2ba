"""The seam between a queue's dispatch and where its messages live: the *backlog*.

A queue (or durable subscription) dispatches from its in-memory ``buffer``; its backlog
decides the rest, and owns every stored row of the queue::

    new message --accept?--> buffer (memory) --dispatch--> subscription
         |                     ^
         +--held back--> backlog --fill--+        (rows: written, delivered, done)

* ``holds_back`` says whether a new message stays out of memory (``hold`` keeps it there);
  otherwise it joins the buffer and ``keep`` writes its row if it is persistent.
* ``fill`` brings held-back messages into the buffer when it runs low
  (``Queue.paged_in`` takes them).
* A message with a row (``Message.store_key`` set) is reported ``handed`` when it goes out
  and ``done`` when it is finished (acknowledged, dead-lettered, discarded): the backlog, and
  nothing else, deletes rows.

Three backlogs exist: ``MemoryBacklog`` (nothing stored: temporary destinations, a broker
without a store), ``PagedBacklog`` (``_paging``: written behind to the local store, paged
out beyond the memory window) and ``SharedBacklog`` (``_shared``: a queue whose messages live
in a database a cluster shares: ``holds_back`` but what its own consumers have room for,
``fill`` claiming a batch up to their credit). Dispatch
(round robin, prefetch, exclusive consumers, groups, selectors, redelivery, dead letters)
is written once, in ``_destination.Queue``, over either.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from ._message import Message
from ._subscription import Subscription


class Backlog(Protocol):
    """Where a queue's messages live beyond its buffer, and the owner of their stored rows."""

    @property
    def total(self) -> int:
        """Messages held back (not in the buffer, not in flight)."""

    @property
    def bytes(self) -> int:
        """Their bodies' size."""

    #: Whether messages are on their way into the buffer now.
    loading: bool
    #: Whether dispatch should ask for a ``fill`` whenever it leaves credit unused, even
    #: with nothing counted as held back (a shared backlog: other nodes add messages).
    refills: bool

    def holds_back(self, message: Message) -> bool:
        """Whether the new ``message`` stays out of memory (then ``hold`` it)."""

    def hold(self, message: Message) -> Deferred[None] | None:
        """Keep a new message out of the buffer for now; fires once it is as safe as its
        persistence asks (None: nothing to wait for)."""

    def keep(self, message: Message) -> Deferred[None] | None:
        """A new persistent message joins the buffer: write its row (None: nothing written)."""

    def handed(self, subscription: Subscription, message: Message) -> None:
        """A message with a row went out to ``subscription``."""

    def done(self, message: Message) -> None:
        """A message is finished (acknowledged, dead-lettered, discarded): its row goes."""

    def group_closed(self, group: str) -> None:
        """The producer closed message group ``group`` (``JMSXGroupSeq: -1``), whose last
        message just went out: the group is nobody's now."""

    def fill(self) -> None:
        """Bring held-back messages into the buffer if it has room."""

    def idle(self) -> None:
        """The queue's last subscription left (a shared backlog gives its buffer back)."""

    def purge(self, dropped: list[Message]) -> int:
        """The buffer's messages ``dropped`` and everything held back go; return how many
        were held back."""

    def drop_all(self) -> None:
        """The queue is deleted: every row goes."""

    def renewed(self) -> Backlog:
        """An empty backlog like this one, for the queue after a purge or a close."""


class MemoryBacklog:
    """Nothing held back, nothing stored: every message lives in the queue's buffer."""

    __slots__ = ()

    total = 0
    bytes = 0
    loading = False
    refills = False

    def holds_back(self, message: Message) -> bool:
        return False

    def hold(self, message: Message) -> Deferred[None]:
        raise AssertionError("a memory backlog holds nothing back")

    def keep(self, message: Message) -> Deferred[None] | None:
        return None

    def handed(self, subscription: Subscription, message: Message) -> None:
        pass

    def done(self, message: Message) -> None:
        pass

    def group_closed(self, group: str) -> None:
        pass

    def fill(self) -> None:
        pass

    def idle(self) -> None:
        pass

    def purge(self, dropped: list[Message]) -> int:
        return 0

    def drop_all(self) -> None:
        pass

    def renewed(self) -> MemoryBacklog:
        return self


#: The one memory backlog (it holds no state).
MEMORY = MemoryBacklog()

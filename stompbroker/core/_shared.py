"""Shared queues: a queue whose messages live in a database every node of a cluster shares.

A ``SharedBacklog`` is the backlog (``_backlog``) of such a queue. A new message sent
through this node is delivered here when the queue's local subscriptions have room for it in
their prefetch (counting what the buffer holds; none selects; it is in no group): a
persistent one's row is written already claimed by this node, and never written at all if
it is acknowledged before its batch leaves; a non-persistent one has no row. Any other new
message is held back: *published* to the database, where any node may claim it. The buffer
is filled by *claiming* waiting messages, never more than the local subscriptions can take
now (their free credit); dispatch is the queue's, as for any backlog. States of one shared
queue on one node::

    drained --woken (a node published; the poll; a reconnection)--> claiming
       ^                                                              |
       +--a claim found fewer than it asked--+--it found as many: claim again while credit
          (and this node published nothing       is left (after dispatch, after an ACK)
          since it asked: else claim again)

* A message in the buffer or in flight here was claimed by this node: an ACK (or auto
  ack, a dead letter, an expiry) *settles* it, its row goes; when the queue's last local
  subscription leaves, what the buffer holds is *released*: it waits for any node again.
  A NACK redelivers here, as on one node (the delivery count goes with a release).
* An exclusive consumer holds its queue for the cluster: its node takes the queue when it
  claims (if no live node holds it), no other node claims from it or delivers to its own
  consumers meanwhile, and the node gives it up when its exclusive consumers are gone.
* A message group belongs to the node that claimed its first message (its incarnation),
  until that node has no subscription of the queue left: no other node claims its messages
  meanwhile (claims of a queue with grouped messages waiting take turns between nodes).
* A claimed message that no local subscription's selector accepts is given back at once,
  and this node's next claims skip it while its subscriptions stay the same.
* Fenced (the node lost its liveness lock, and came back under a new incarnation): what
  the buffer holds is not this node's any more and is dropped; the sweep of another node,
  or its own, gives it back to the queue. What is in flight stays with its consumer; its
  late ACK changes nothing in the database (the message comes back, flagged redelivered).
* Order per producer: while a message this node published may wait in the database, a
  new message its subscriptions have room for waits *behind* it, on this node (its row
  written claimed by this node, as if delivered at once), and joins the buffer once the
  claims brought the published ones back; one without room is published too. The node
  knows the ids of those it published (``unclaimed``) until its claims brought them all
  back; it loses track of them (rows from before its start, rows it gave back, more than
  MAX_UNCLAIMED, those of ``hold_once``) until a claim asked after the last of them came
  back short.
* A new message with an ``_AMQ_DUPL_ID`` (``hold_once``: duplicate detection for the whole
  cluster) is always published, written only if the database finds its id new for the
  queue; it reaches this node's consumers by a claim, once its batch committed. While one
  is on its way, the queue's new messages are published too (claimed in order after it).
* ``total`` and ``bytes`` are the cluster's waiting messages, as the store last read them:
  limits and statistics count the cluster-wide depth.

``SharedQueues`` (one per broker with such a store) makes the backlogs and finds them again,
by store key, when the store says messages may wait or that the node was fenced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._message import Message
from ._store import ISharedQueues

if TYPE_CHECKING:
    from ._queue import Queue
    from ._subscription import Subscription

log = Logger(namespace="stompbroker.shared")

#: A claim asks for at most this many messages (more come with the next claim): enough to
#: catch up with producers that outran the claims (order per producer waits on them).
MAX_CLAIM = 2000
#: Beyond this many skipped messages, a queue forgets them (and may claim them again).
MAX_SKIPPED = 10_000
#: Beyond this many of its published messages not claimed back, a node loses track of them.
MAX_UNCLAIMED = 10_000


class SharedQueues:
    """This node's shared queues' backlogs, by store key, over the store's ``ISharedQueues``."""

    __slots__ = ("backlogs", "store")

    def __init__(self, store: ISharedQueues) -> None:
        self.store = store
        self.backlogs: dict[str, SharedBacklog] = {}
        store.watch(self.woken, self.fenced)

    def backlog(self, queue: Queue, watched: bool = True) -> SharedBacklog:
        """The backlog of ``queue`` (its messages shared under its ``store_key``); found
        again when woken unless not ``watched`` (a queue that only sends: a proxy)."""
        backlog = SharedBacklog(queue, self)
        if watched:
            self.backlogs[queue.store_key] = backlog
        return backlog

    def peek(self, store_key: str, limit: int) -> Deferred[list[Message]]:
        """Up to ``limit`` of the messages waiting in the cluster for the queue of
        ``store_key``, in claim order (a browser's view: copies that belong to no one)."""
        return self.store.peek(store_key, limit)

    def woken(self, store_key: str | None) -> None:
        """Messages may wait in the queue of ``store_key`` (None: in any queue)."""
        if store_key is not None:
            backlog = self.backlogs.get(store_key)
            if backlog is not None:
                backlog.woken()
            return
        for key, backlog in list(self.backlogs.items()):
            queue = backlog.queue
            if queue.backlog is not backlog or not queue.subscriptions:
                # Renewed, forgotten, or idle: found again by its next fill, which claims
                # (what it last saw drained may have been published to since).
                del self.backlogs[key]
                backlog.drained = False
            else:
                backlog.woken()

    def fenced(self) -> None:
        """What this node claimed is not its own any more."""
        for backlog in list(self.backlogs.values()):
            if backlog.queue.backlog is backlog:
                backlog.fenced()


class SharedBacklog:
    """The backlog of one shared queue on this node (see the module's states)."""

    __slots__ = (
        "_skip_for",
        "behind",
        "drained",
        "exclusive",
        "loading",
        "once",
        "owner",
        "published",
        "queue",
        "skipped",
        "store",
        "unclaimed",
    )

    #: Dispatch asks for a fill whenever it leaves credit unused (``Queue.dispatch``).
    refills = True

    def __init__(self, queue: Queue, owner: SharedQueues) -> None:
        self.queue = queue
        self.owner = owner
        self.store = owner.store
        #: A claim is on its way; the last one found fewer messages than it asked.
        self.loading = False
        self.drained = False
        #: Claimed messages no local subscription accepts (their selectors), given back and
        #: not claimed again while the subscriptions are the same (``_skip_for``).
        self.skipped: set[int] = set()
        self._skip_for: list[Subscription] = []
        #: Whether this node asked to hold the queue for an exclusive consumer of its own.
        self.exclusive = False
        #: Whether this node published a message since its last claim was asked (a claim
        #: that comes back short then does not mean drained: it may not have seen it).
        self.published = False
        #: Messages with a duplicate id on their way (``hold_once``), not answered yet.
        self.once = 0
        #: The ids of the messages this node published that no claim of its brought back
        #: yet (new ones wait behind them: order per producer); None: it lost track (at
        #: first: rows may wait from before the start), until a claim comes back short.
        self.unclaimed: set[str] | None = None
        #: New messages kept here behind those (claimed by this node: the buffer takes
        #: them once ``unclaimed`` is empty).
        self.behind: list[Message] = []

    @property
    def total(self) -> int:
        return self.store.depth(self.queue.store_key)[0] + len(self.behind)

    @property
    def bytes(self) -> int:
        return self.store.depth(self.queue.store_key)[1]

    def holds_back(self, message: Message) -> bool:
        """Whether a new message is not delivered here at once: while messages this node
        published may wait in the database (``unclaimed``: order per producer), or unless
        it may keep it (``_may_keep``)."""
        unclaimed = self.unclaimed
        if unclaimed is None or unclaimed or self.behind:
            return True
        return not self._may_keep(message)

    def _may_keep(self, message: Message) -> bool:
        """Whether this node may keep a new message for its own subscriptions: they have
        room for it (``_room_here``, less what waits behind), none selects, it is in no
        group, no message with a duplicate id is on its way, no other node holds the queue
        for an exclusive consumer, and a row id is at hand if it is persistent."""
        if self.once or message.group is not None:
            return False
        if self._room_here() - len(self.behind) <= 0:
            return False
        if self.store.held_elsewhere(self.queue.store_key):
            return False
        return not message.persistent or self.store.keeps_now()

    def hold(self, message: Message) -> Deferred[None] | None:
        """Hold back a new message: kept here behind this node's published ones if it may
        (``behind``), else published for any node to claim (this one first: ``fill``
        follows)."""
        unclaimed = self.unclaimed
        if (unclaimed is None or unclaimed) and self._may_keep(message):
            self.behind.append(message)
            return self.keep(message) if message.persistent else None
        return self.store.publish(self.queue.store_key, message, self._publishing(message))

    def _publishing(self, message: Message) -> str:
        """This node publishes ``message`` (the queue is not drained now, and a claim on its
        way may not see it); the sync level its row is written at."""
        self.drained = False
        self.published = True
        unclaimed = self.unclaimed
        if unclaimed is not None:
            unclaimed.add(message.message_id)
            if len(unclaimed) > MAX_UNCLAIMED:
                self.unclaimed = None
        return self._sync(message)

    def _sync(self, message: Message) -> str:
        """The sync level ``message``'s row is written at."""
        return self.queue.policy.fsync if message.persistent else "never"

    def hold_once(self, message: Message, dupl_id: str, window: int, ttl_ms: int) -> Deferred[bool]:
        """Publish a new message unless its queue took ``dupl_id`` lately, through any node
        (the database decides, in the batch that writes it); fires with whether it was
        taken (written), once committed. A non-persistent one is published too."""
        sync = self._publishing(message)
        self.unclaimed = None  # it may not be written
        self.once += 1
        key = self.queue.store_key
        taken = self.store.publish_once(key, message, dupl_id, window, ttl_ms, sync)
        return taken.addBoth(self._answered)

    def _answered(self, taken: object) -> object:
        self.once -= 1
        return taken

    def keep(self, message: Message) -> Deferred[None] | None:
        """A new persistent message delivered here: its row is written claimed by this node
        (a non-persistent one has none: it is this node's alone until it goes back)."""
        queue = self.queue
        return self.store.publish_claimed(queue.store_key, message, queue.policy.fsync)

    def handed(self, subscription: Subscription, message: Message) -> None:
        """A claimed message went out: with auto ack it is done."""
        if subscription.auto:
            self.store.settle(message)
            message.store_key = None

    def done(self, message: Message) -> None:
        if message.store_key is not None:
            self.store.settle(message)
            message.store_key = None

    def group_closed(self, group: str) -> None:
        """The group this node delivered is free for any node's next claim (the database's
        owner row goes)."""
        self.store.close_group(self.queue.store_key, group)

    def credit(self) -> int:
        """How many more messages the queue's ready subscriptions could take now, beyond
        what its buffer holds."""
        queue = self.queue
        free = 0
        for subscription in queue.subscriptions:
            if subscription.closed or subscription.paused:
                continue
            if subscription.auto:
                free += subscription.prefetch
            else:
                free += max(0, subscription.prefetch - len(subscription.unacked))
        return free - len(queue.buffer)

    def _room_here(self) -> int:
        """How many more new messages this node keeps for its own subscriptions: their free
        prefetch (paused ones' too), and as many again as their prefetch in the buffer,
        ahead; less what the buffer holds. 0 if one has a selector."""
        queue = self.queue
        free = 0
        for subscription in queue.subscriptions:
            if subscription.selector is not None:
                return 0
            if subscription.closed:
                continue
            prefetch = subscription.prefetch
            if subscription.auto:
                free += 2 * prefetch
            else:
                free += prefetch + max(0, prefetch - len(subscription.unacked))
        return free - len(queue.buffer)

    def fill(self) -> None:
        """Claim what the local subscriptions can take, unless the queue looked drained;
        either way, be found again when woken (the poll forgets an idle queue's backlog)."""
        queue = self.queue
        if queue.backlog is self and queue.subscriptions:
            self.owner.backlogs[queue.store_key] = self
        if self.loading or self.drained:
            return
        room = self.credit()
        if room <= 0:
            return
        limit = min(room, MAX_CLAIM)
        self.loading = True
        exclusive = queue.consumed_alone()
        if self.exclusive and not exclusive:
            self.store.give_up(queue.store_key, False)
        self.exclusive = exclusive
        if self.skipped and (
            self._skip_for != queue.subscriptions or len(self.skipped) > MAX_SKIPPED
        ):
            self.skipped = set()
        self.published = False
        claimed = self.store.claim(queue.store_key, limit, sorted(self.skipped), exclusive)
        claimed.addCallbacks(self._claimed, self._failed, callbackArgs=(limit,))

    def _claimed(self, messages: list[Message], limit: int) -> None:
        self.loading = False
        unclaimed = self.unclaimed
        if len(messages) < limit and not self.published:
            self.drained = True
            self.unclaimed = set()  # what this node published before the ask came back
        elif unclaimed:
            for message in messages:
                unclaimed.discard(message.message_id)
        queue = self.queue
        if queue.backlog is not self or not queue.subscriptions:
            if messages:
                self.unclaimed = None
            for message in messages:
                self.store.release(message)  # purged, closed, or nobody left to take them
            return
        if messages:
            counts = [message.delivery_count for message in messages]
            queue.paged_in(messages)
            self._give_back_unwanted(messages, counts)
        elif self.published:
            self.fill()  # what was published meanwhile, in the next batch
        if self.behind and self.unclaimed is not None and not self.unclaimed:
            behind, self.behind = self.behind, []
            queue.paged_in(behind)  # caught up: behind the published ones, in order

    def _give_back_unwanted(self, messages: list[Message], counts: list[int]) -> None:
        """Claimed messages left in the buffer that no local subscription accepts (while one
        could take more) go back for the other nodes, and are skipped by the next claims."""
        queue = self.queue
        subscriptions = queue.subscriptions
        if not any(s.selector is not None for s in subscriptions):
            return
        if not any(s.ready() for s in subscriptions):
            return
        for message, count in zip(messages, counts, strict=True):
            if message.delivery_count != count or message.store_key is None:
                continue  # delivered, or expired
            if any(s.accepts(message) for s in subscriptions):
                continue  # it waits for its subscription's credit
            queue.withdraw(message)
            self.store.release(message)
            self.skipped.add(message.seq)
        self._skip_for = list(subscriptions)

    def _failed(self, failure: object) -> None:
        self.loading = False
        log.error("{queue}: claiming shared messages failed", queue=self.queue.address)

    def woken(self) -> None:
        """Messages may wait for this queue: claim if the subscriptions have credit."""
        self.drained = False
        if self.queue.subscriptions:
            self.fill()

    def fenced(self) -> None:
        """The buffer's messages are not this node's any more: they go (unreleased), but
        those without a row (non-persistent, delivered here at once), which are published."""
        behind, self.behind = self.behind, []
        for message in self.queue.let_go() + behind:
            if message.store_key is None:
                self.store.publish(self.queue.store_key, message, "never")
        self.drained = False
        self.unclaimed = None

    def idle(self) -> None:
        """The queue has no subscription left here: what the buffer holds waits for any node
        (published, if it has no row yet), and what waited behind is published anew, after
        the messages it waited for (its row, under an id reserved earlier, goes in the same
        batch); the queue and its message groups are free for other nodes' exclusive
        consumers and groups."""
        self.exclusive = False
        self.unclaimed = None
        self.store.give_up(self.queue.store_key, True)
        behind, self.behind = self.behind, []
        key = self.queue.store_key
        for message in self.queue.let_go():
            if message.store_key is None:
                self.store.publish(key, message, "never")
            else:
                self.store.release(message)
        for message in behind:
            self.done(message)
            self.store.publish(key, message, self._sync(message))

    def purge(self, dropped: list[Message]) -> int:
        """``dropped`` (claimed here) and every waiting message go; return how many waited."""
        behind, self.behind = self.behind, []
        for message in dropped + behind:
            self.done(message)
        waiting = self.total + len(behind)
        self.store.purge(self.queue.store_key, False)
        return waiting

    def drop_all(self) -> None:
        """The queue is deleted: every one of its messages goes, wherever claimed (those
        kept behind here too)."""
        self.behind = []
        self.store.purge(self.queue.store_key, True)

    def renewed(self) -> SharedBacklog:
        return self.owner.backlog(self.queue)

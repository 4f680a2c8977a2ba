"""Scheduled delivery: messages held back until their delivery time (JMS 2.0's delivery
delay; ActiveMQ's ``AMQ_SCHEDULED_*``, RabbitMQ's ``x-delay``).

A scheduled message waits here, outside any queue: consumers, browsers and selectors do not
see it until it is due. Then it is *released*: handed to its target as a new arrival (a
queue's message takes its place by priority behind those already waiting), and, if it
repeats, held again for its next time.

With a store, every scheduled record is written there (persistent messages at their
destination's ``fsync`` level, others as transient rows), and memory holds only a *window*:
the earliest ``WINDOW`` records by (due, seq). The invariant::

    every record with key < boundary is in memory; boundary None: every record is

Records past the boundary wait in the store until the window runs dry, then the next ones
are read in key order (``load_scheduled``). One timer is armed, for the earliest record in
memory. A release writes the target's row and takes the scheduled record out (or moves it
on) in the same reactor turn, so in the same store batch.

Without a store, every scheduled record is in memory. In a cluster (a store with
``ISharedQueues``), ``SharedSchedule`` (``_scheduled_shared``) takes this one's place: the
records are the cluster's, kept by the store alone.
"""

from __future__ import annotations

from bisect import insort
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._clock import Clock, DelayedCall
from ._store import TRANSIENT, IMessageStore, ScheduledRecord

log = Logger(namespace="stompbroker.scheduled")

#: Scheduled records held in memory at most (the earliest due); the rest wait in the store.
WINDOW = 1000
#: Records released in one reactor turn at most (more due: the next turn).
RELEASE_BATCH = 500
#: Seconds before reading the store again after a read failed.
RETRY_S = 1.0

Key = tuple[int, int]
#: Hand a due record's message to its target (the session that sent it, None after a restart).
Release = Callable[[ScheduledRecord, "str | None"], None]


class EarliestTimer:
    """One timer, for the earliest of the times it was asked to fire at: then ``fire`` runs."""

    __slots__ = ("_at", "_call", "_clock", "_fire")

    def __init__(self, clock: Clock, fire: Callable[[], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._call: DelayedCall | None = None
        self._at = 0.0

    def within(self, delay: float) -> None:
        """Fire in ``delay`` seconds, unless it fires sooner already."""
        at = self._clock.seconds() + delay
        call = self._call
        if call is not None and call.active():
            if self._at <= at:
                return
            call.cancel()
        self._at = at
        self._call = self._clock.callLater(delay, self._fired)

    def _fired(self) -> None:
        self._call = None
        self._fire()

    def cancel(self) -> None:
        """Fire at no time asked so far."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


def count_key(target: tuple[str, ...]) -> tuple[str, str]:
    """The (kind, name) a target's scheduled messages are counted under in statistics."""
    if target[0] == "durable":
        return ("durable", f"{target[1]}:{target[2]}")
    return (target[0], target[1])


class ScheduledDeliveries:
    """Holds scheduled messages until due and releases them, one timer for all."""

    def __init__(
        self, clock: Clock, now_ms: Callable[[], float], release: Release, window: int = WINDOW
    ) -> None:
        self._clock = clock
        self._now_ms = now_ms
        self._release = release
        self._window_size = window
        #: Where records are kept (None: memory only).
        self.store: IMessageStore | None = None
        #: Keys of the records in memory, in order; the records with their senders, by seq.
        self._keys: list[Key] = []
        self._held: dict[int, tuple[ScheduledRecord, str | None]] = {}
        self._boundary: Key | None = None
        #: While a load is out: what changed meanwhile, by seq (None: gone).
        self._changed: dict[int, ScheduledRecord | None] | None = None
        self._timer = EarliestTimer(clock, self._fire)
        self._retry: DelayedCall | None = None
        #: Scheduled messages by what they are counted under: (kind, name).
        self.counts: Counter[tuple[str, str]] = Counter()
        self.released = 0
        self._stopped = False

    def __len__(self) -> int:
        return sum(self.counts.values())

    # -- holding --------------------------------------------------------------------

    def hold(
        self,
        record: ScheduledRecord,
        owner: str | None,
        sync: str,
        once: tuple[str, int, int] | None = None,
    ) -> Deferred[None] | None:
        """Keep ``record`` until due; the Deferred of its write (None: nothing to wait for).
        ``once`` is a cluster's (``SharedSchedule``): on one node, ``Duplicates`` checked
        the send's id before."""
        self.counts[count_key(record.target)] += 1
        written = None
        store = self.store
        if store is not None:
            level = sync if record.message.persistent else TRANSIENT
            written = store.schedule(record, level)
            if not record.message.persistent:
                written = None
        self._keep(record, owner)
        self._arm()
        return written

    def _keep(self, record: ScheduledRecord, owner: str | None) -> None:
        """Hold ``record`` in memory if it falls inside the window (else the store has it)."""
        key = record.key
        changed = self._changed
        if changed is not None:
            changed[key[1]] = record
        boundary = self._boundary
        if boundary is not None and key >= boundary:
            return
        insort(self._keys, key)
        self._held[key[1]] = (record, owner)
        if self.store is not None and len(self._keys) > self._window_size:
            last = self._keys.pop()
            del self._held[last[1]]
            self._boundary = last

    # -- releasing ------------------------------------------------------------------

    def _arm(self) -> None:
        """Have the timer fire when the earliest record in memory is due (or load more)."""
        keys = self._keys
        if self._stopped:
            return
        if not keys:
            if self._boundary is not None and self._changed is None:
                self._load()
            return
        self._timer.within(max(0.0, (keys[0][0] - self._now_ms()) / 1000.0))

    def _fire(self) -> None:
        if self._stopped:
            return
        now = self._now_ms()
        keys = self._keys
        released = 0
        while keys and keys[0][0] <= now and released < RELEASE_BATCH:
            key = keys.pop(0)
            record, owner = self._held.pop(key[1])
            released += 1
            self._due(record, owner)
        self.released += released
        if keys and keys[0][0] <= now:
            self._timer.within(0)
        else:
            self._arm()

    def _due(self, record: ScheduledRecord, owner: str | None) -> None:
        """Release one due record, then hold it again for its next time or forget it."""
        store = self.store
        seq = record.message.seq
        try:
            self._release(record, owner)
        except Exception:
            log.failure("releasing the scheduled message {seq} failed", seq=seq)
        if record.repeats:
            again = replace(record, due=record.due + record.period, repeats=record.repeats - 1)
            if store is not None:
                store.reschedule(seq, again.due, again.repeats)
            self._keep(again, owner)
            return
        self.counts[count_key(record.target)] -= 1
        if not self.counts[count_key(record.target)]:
            del self.counts[count_key(record.target)]
        if store is not None:
            store.unschedule(seq)
        if self._changed is not None:
            self._changed[seq] = None

    # -- the store ------------------------------------------------------------------

    def recover(self, counts: tuple[tuple[tuple[str, ...], int], ...]) -> None:
        """At start: the store holds ``counts`` records by target; read the earliest."""
        for target, count in counts:
            self.counts[count_key(target)] += count
        if counts:
            self._boundary = (-1, -1)
            self._arm()

    def _load(self) -> None:
        """Read the next window of records past the boundary."""
        store, boundary = self.store, self._boundary
        assert store is not None and boundary is not None
        self._changed = {}
        limit = self._window_size
        store.load_scheduled(boundary, limit).addCallbacks(
            self._loaded, self._load_failed, callbackArgs=(limit,)
        )

    def _loaded(self, records: list[ScheduledRecord], limit: int) -> None:
        changed = self._changed or {}
        self._changed = None
        self._boundary = None if len(records) < limit else _after(records[-1].key)
        for record in records:
            seq = record.message.seq
            if seq in changed or seq in self._held:
                continue
            self._keep(record, None)
        for seq, later in changed.items():
            if later is not None and seq not in self._held:
                self._keep(later, None)
        self._arm()

    def _load_failed(self, failure: Any) -> None:
        self._changed = None
        log.failure("reading scheduled messages failed; trying again in {s} s", failure, s=RETRY_S)
        self._retry = self._clock.callLater(RETRY_S, self._arm)

    # -- shutting down ----------------------------------------------------------------

    def stop(self) -> None:
        """Release nothing more (the broker is stopping; the store keeps what is due)."""
        self._timer.cancel()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._stopped = True


def _after(key: Key) -> Key:
    """The smallest key past ``key``."""
    return (key[0], key[1] + 1)

"""The login throttle: when a password check may start, and in which order checks run.

The penalty is owed by an address and by a login, not by a connection. After the n-th
recent failure of an address (or of a login), no check for that address (or login) starts
before ``time of that failure + delay(n)``::

    delay(n) = min(first * 2 ** (n - 1), most)      an address (a login) without a failure
                                                    for ``forget_after`` s starts over at n = 1

A check's way (``LoginThrottle.admit``, then ``FairScheduler.submit``)::

    pending (FIFO per address) --a slot of its address--> admitted --both penalties over-->
      scheduled (round robin by address) --a pool thread--> checked --> failure counted, or
      the address's and the login's penalties cleared --> slot released (``release``)

* An address has at most ``per_address`` checks admitted while it has no failure on
  record, and one while it has: its guesses then run one after another, each after the
  penalty of the one before. A closed connection does not take its check back: the check
  runs in its turn and counts (so closing early frees no wait).
* At most ``max_pending`` checks wait per address, ``max_pending_total`` in all; beyond,
  ``admit`` answers None (the caller refuses without a check).
* The scheduler runs ``at_once`` checks; when they are busy, the address served longest
  ago goes first, so one flooding address does not hold up another's check.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from ._clock import Clock

#: Runs ``function(*args)`` somewhere (a thread) and fires with its result.
Runner = Callable[..., "Deferred[Any]"]

#: Password checks running at once (scrypt, about 50 ms of CPU each): the rest of the
#: thread pool stays free for the store.
CHECKS_AT_ONCE = 2


class LoginThrottle:
    """Penalties by address and by login, and the admission of checks (see the module).

    ``failures`` and ``login_failures`` hold (count, time of the last failure); each keeps
    at most ``max_addresses`` entries (the stalest are forgotten).
    """

    def __init__(
        self,
        first: float = 1.0,
        most: float = 16.0,
        forget_after: float = 600.0,
        max_addresses: int = 10_000,
        per_address: int = 2,
        max_pending: int = 100,
        max_pending_total: int = 10_000,
    ) -> None:
        self.first = first
        self.most = most
        self.forget_after = forget_after
        self.per_address = per_address
        self.max_addresses = max_addresses
        self.max_pending = max_pending
        self.max_pending_total = max_pending_total
        #: Recent failures by address, and by login: (count, time of the last one).
        self.failures: dict[str, tuple[int, float]] = {}
        self.login_failures: dict[str, tuple[int, float]] = {}
        #: Checks admitted and not yet released, by address.
        self.admitted: dict[str, int] = {}
        #: Checks not yet released (admitted or not), by address, and in all.
        self.pending: dict[str, int] = {}
        self.pending_total = 0
        self._queues: dict[str, deque[tuple[Deferred[None], str | None, Clock]]] = {}

    def configure(self, first: float, most: float, forget_after: float, per_address: int) -> None:
        """Take new numbers (a reload); the failures on record stay."""
        self.first, self.most, self.forget_after = first, most, forget_after
        self.per_address = per_address

    # -- penalties ---------------------------------------------------------------

    def failed(self, address: str, now: float, login: str | None = None) -> float:
        """Count a failure of ``address`` (and ``login``) at ``now``; return the penalty."""
        delay = self._count(self.failures, address, now)
        if login is not None:
            delay = max(delay, self._count(self.login_failures, login, now))
        return delay

    def succeeded(self, address: str, login: str | None = None) -> None:
        """A good password: the address's penalty is cleared, and the login's."""
        self.failures.pop(address, None)
        if login is not None:
            self.login_failures.pop(login, None)

    def waiting(self, address: str, now: float, login: str | None = None) -> bool:
        """Whether ``address`` (or ``login``) is still within the penalty of its last failure."""
        return now < self.until(address, login, now)

    def until(self, address: str, login: str | None, now: float) -> float:
        """When the penalties of ``address`` and ``login`` end (0.0: none)."""
        end = self._end(self.failures.get(address), now)
        if login is not None:
            end = max(end, self._end(self.login_failures.get(login), now))
        return end

    def _count(self, table: dict[str, tuple[int, float]], key: str, now: float) -> float:
        count, last = table.pop(key, (0, now))
        if now - last > self.forget_after:
            count = 0
        count += 1
        if len(table) >= self.max_addresses:
            del table[next(iter(table))]  # the least recently failed
        table[key] = (count, now)
        return self._delay(count)

    def _end(self, entry: tuple[int, float] | None, now: float) -> float:
        if entry is None or now - entry[1] > self.forget_after:
            return 0.0
        return entry[1] + self._delay(entry[0])

    def _delay(self, count: int) -> float:
        return float(min(self.first * 2 ** (count - 1), max(self.most, self.first)))

    # -- admission ---------------------------------------------------------------

    def admit(self, address: str, login: str | None, clock: Clock) -> Deferred[None] | None:
        """A Deferred that fires when a check for ``login`` from ``address`` may start;
        None when too many checks wait already. Each admission is ended by ``release``."""
        if self.pending.get(address, 0) >= self.max_pending:
            return None
        if self.pending_total >= self.max_pending_total:
            return None
        self.pending[address] = self.pending.get(address, 0) + 1
        self.pending_total += 1
        admitted: Deferred[None] = Deferred()
        self._queues.setdefault(address, deque()).append((admitted, login, clock))
        self._next(address, clock.seconds())
        return admitted

    def release(self, address: str, clock: Clock) -> None:
        """A check admitted for ``address`` is done (counted): let the next one in."""
        self.pending_total -= 1
        left = self.pending[address] - 1
        if left:
            self.pending[address] = left
        else:
            del self.pending[address]
        running = self.admitted[address] - 1
        if running:
            self.admitted[address] = running
        else:
            del self.admitted[address]
        self._next(address, clock.seconds())

    def _next(self, address: str, now: float) -> None:
        queue = self._queues.get(address)
        limit = 1 if self._end(self.failures.get(address), now) else self.per_address
        while queue and self.admitted.get(address, 0) < limit:
            admitted, login, clock = queue.popleft()
            self.admitted[address] = self.admitted.get(address, 0) + 1
            self._wait(admitted, address, login, clock)
        if queue is not None and not queue:
            del self._queues[address]

    def _wait(
        self, admitted: Deferred[None], address: str, login: str | None, clock: Clock
    ) -> None:
        """Fire ``admitted`` once the penalties are over (looked at again when the wait ends:
        another check may have failed meanwhile)."""
        now = clock.seconds()
        end = self.until(address, login, now)
        if now >= end:
            admitted.callback(None)
        else:
            clock.callLater(end - now, self._wait, admitted, address, login, clock)


class FairScheduler:
    """Runs checks with ``run``, ``at_once`` at a time; waiting ones by address, the
    address served longest ago first (one that was never served before all others)."""

    def __init__(self, run: Runner, at_once: int = CHECKS_AT_ONCE) -> None:
        self.run = run
        self.at_once = at_once
        self.running = 0
        self._waiting: dict[str, deque[tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]]]
        self._waiting = {}
        #: (when the address was last served, address) for each address with checks waiting.
        self._turns: list[tuple[int, str]] = []
        #: When each address with checks running or waiting was last served.
        self._served: dict[str, int] = {}
        self._busy: dict[str, int] = {}
        self._ticks = itertools.count(1)

    def submit(self, address: str, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``function(*args)`` in ``address``'s turn; fires with its result."""
        done: Deferred[Any] = Deferred()
        queue = self._waiting.get(address)
        if queue is None:
            queue = self._waiting[address] = deque()
            heapq.heappush(self._turns, (self._served.get(address, 0), address))
        queue.append((done, function, args))
        self._start()
        return done

    def _start(self) -> None:
        while self.running < self.at_once and self._turns:
            _, address = heapq.heappop(self._turns)
            queue = self._waiting[address]
            done, function, args = queue.popleft()
            tick = self._served[address] = next(self._ticks)
            if queue:
                heapq.heappush(self._turns, (tick, address))
            else:
                del self._waiting[address]
            self.running += 1
            self._busy[address] = self._busy.get(address, 0) + 1
            ran = maybeDeferred(self.run, function, *args)
            ran.addBoth(self._finished, address, done)

    def _finished(self, result: Any, address: str, done: Deferred[Any]) -> None:
        self.running -= 1
        busy = self._busy[address] - 1
        if busy:
            self._busy[address] = busy
        else:
            del self._busy[address]
            if address not in self._waiting:
                del self._served[address]  # nothing left of it: it starts fresh next time
        self._start()
        done.callback(result)  # a Failure result fires the errbacks

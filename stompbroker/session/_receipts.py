"""RECEIPT frames: one for every frame that asks, in the order the frames came, each sent only
once what its frame did is as durable as it will be.

* A receipt with nothing to wait for goes at once, unless earlier ones still wait: then it
  queues behind them.
* A receipt that waits (a persistent SEND's write, a COMMIT's, a durable SUBSCRIBE's
  definition) queues until its Deferred fires; then every ready receipt at the head goes.
* More than ``MAX_UNWRITTEN`` waiting: the connection is not read until half of them are
  written (its socket fills, TCP slows the producer down, memory stays bounded).
* A failed write ends the queue: the session answers with an ERROR.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

#: Messages of one connection accepted but not yet written by the store: beyond this
#: many, the connection is not read until half of them are written.
MAX_UNWRITTEN = 10_000


class Receipts:
    """A connection's receipts, in order.

    ``write`` sends one RECEIPT; ``hold`` stops (True) or resumes (False) reading from the
    connection; ``failed`` is told the failure and the receipt id of a write that failed;
    ``drained`` is called when the last waiting receipt went.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        hold: Callable[[bool], None],
        failed: Callable[[Any, str | None], None],
        drained: Callable[[], None],
    ) -> None:
        self._write = write
        self._hold = hold
        self._failed = failed
        self._drained = drained
        #: [receipt id or None, ready]
        self._queue: deque[list[Any]] = deque()
        self._held = False

    def __len__(self) -> int:
        return len(self._queue)

    def answer(self, receipt_id: str | None, waiting: Deferred[Any] | None = None) -> None:
        """Send RECEIPT ``receipt_id`` (if any) after ``waiting`` and after earlier receipts."""
        queue = self._queue
        if waiting is None:
            if not queue:
                if receipt_id is not None:
                    self._write(receipt_id)
                return
            if receipt_id is None:
                return
        entry: list[Any] = [receipt_id, waiting is None]
        queue.append(entry)
        if waiting is not None:
            waiting.addCallbacks(self._ready, self._failure, (entry,), {}, (entry,))
            if len(queue) >= MAX_UNWRITTEN and not self._held:
                self._held = True
                self._hold(True)

    def _ready(self, _: object, entry: list[Any]) -> None:
        entry[1] = True
        queue = self._queue
        while queue and queue[0][1]:
            receipt_id = queue.popleft()[0]
            if receipt_id is not None:
                self._write(receipt_id)
        if self._held and len(queue) <= MAX_UNWRITTEN // 2:
            self._held = False
            self._hold(False)
        if not queue:
            self._drained()

    def _failure(self, failure: Any, entry: list[Any]) -> None:
        self._queue.clear()
        self._failed(failure, entry[0])

"""Duplicate detection: the ids of messages a queue has taken, so that a resent one is not
delivered twice.

A SEND may carry ``_AMQ_DUPL_ID`` (Artemis' spelling). Each queue remembers the ids it
took, oldest first, in a ``DuplicateWindow``:

* at most ``duplicate_window`` ids (the policy's; 0: no detection); a new one pushes the
  oldest out;
* each for ``duplicate_ttl_ms`` (0: until pushed out), measured with the broker's clock;
* a send whose id is remembered is a *duplicate*: it gets its receipt, is not delivered,
  and is counted (``duplicates``);
* the ids of persistent messages go to the store with the message's row, in the same batch
  (``IMessageStore.remember``), and leave it when pushed out (``forget``): after a crash
  an id is remembered exactly when its message was kept. An ACK does not forget an id.

The windows belong to the ``Router`` by queue address, not to the ``Queue``: a queue the
broker forgets when it is empty keeps its window.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ._send_headers import MessageError

#: The header naming a message's id for duplicate detection.
DUPLICATE_HEADER = "_AMQ_DUPL_ID"
#: The longest id accepted, in characters.
MAX_DUPLICATE_ID = 256


def check_duplicate_id(value: str) -> None:
    """Raise the MessageError an unusable ``_AMQ_DUPL_ID`` value meets."""
    if not value or len(value) > MAX_DUPLICATE_ID:
        raise MessageError(
            f"invalid {DUPLICATE_HEADER} {value[:40]!r}: expected 1 to"
            f" {MAX_DUPLICATE_ID} characters"
        )


class DuplicateWindow:
    """The ids one queue took lately: id -> expiry in epoch ms (0: none), oldest first."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: OrderedDict[str, float] = OrderedDict()

    def seen(self, dupl_id: str, now_ms: float) -> bool:
        """Whether ``dupl_id`` is remembered and not expired (an expired one is forgotten)."""
        expires = self.ids.get(dupl_id)
        if expires is None:
            return False
        if expires and expires <= now_ms:
            del self.ids[dupl_id]
            return False
        return True

    def add(self, dupl_id: str, expires: float, size: int) -> list[str]:
        """Remember ``dupl_id`` until ``expires``; return the ids pushed out (``size``: most)."""
        ids = self.ids
        ids[dupl_id] = expires
        ids.move_to_end(dupl_id)
        pushed = []
        while len(ids) > size:
            pushed.append(ids.popitem(last=False)[0])
        return pushed


class Duplicates:
    """The windows of every queue, by address; ``persist(address, id, expires)`` and
    ``forget(address, id)`` tell the store (None: no store)."""

    def __init__(self, now_ms: Callable[[], float]) -> None:
        self._now_ms = now_ms
        self.windows: dict[str, DuplicateWindow] = {}
        self.persist: Callable[[str, str, float], None] | None = None
        self.forget: Callable[[str, str], None] | None = None

    def seen(self, address: str, dupl_id: str) -> bool:
        """Whether queue ``address`` took a message with ``dupl_id`` within its window."""
        window = self.windows.get(address)
        if window is None:
            return False
        if dupl_id not in window.ids:
            return False
        if window.seen(dupl_id, self._now_ms()):
            return True
        if self.forget is not None:
            self.forget(address, dupl_id)  # it expired: the store lets it go too
        return False

    def took(self, address: str, dupl_id: str, size: int, ttl_ms: int, persistent: bool) -> None:
        """Queue ``address`` took a message with ``dupl_id``: remember it (and store it)."""
        window = self.windows.get(address)
        if window is None:
            window = self.windows[address] = DuplicateWindow()
        expires = self._now_ms() + ttl_ms if ttl_ms else 0.0
        pushed = window.add(dupl_id, expires, size)
        if persistent and self.persist is not None:
            self.persist(address, dupl_id, expires)
        if pushed and self.forget is not None:
            for old in pushed:
                self.forget(address, old)

    def restore(self, address: str, dupl_id: str, expires: float) -> None:
        """At start: a remembered id from the store (oldest first)."""
        if expires and expires <= self._now_ms():
            if self.forget is not None:
                self.forget(address, dupl_id)
            return
        window = self.windows.get(address)
        if window is None:
            window = self.windows[address] = DuplicateWindow()
        window.ids[dupl_id] = expires

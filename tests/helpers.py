"""Small shared helpers of the tests (in-memory clients are in ``stompbroker.testing``)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from stompbroker.core import Broker


def wait_until(condition: Callable[[], bool], what: str, timeout: float, pause: float) -> None:
    """Return once ``condition()`` is true, looking every ``pause`` seconds; fail naming
    ``what`` after ``timeout`` seconds (a bounded wait, for tests across processes)."""
    deadline = time.monotonic() + timeout
    waiting = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        waiting.wait(pause)


class RecordingObserver:
    """A ``SessionObserver`` that records what its session tells it, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, ...]] = []

    def connected(self, user: str | None, version: str) -> None:
        """Record that the session sent CONNECTED."""
        self.calls.append(("connected", user, version))

    def closed(self, reason: str) -> None:
        """Record that the session closed the connection, and why."""
        self.calls.append(("closed", reason))


def broker_is_empty(broker: Broker) -> bool:
    """No destination (so no subscription and no message) is left in ``broker``."""
    return not broker.destinations.queues and not broker.destinations.topics


def doc_section(text: str, heading: str, end: str = "\n## ") -> str:
    """The part of a markdown page from ``heading`` up to the next ``end``; fails if the page
    has no such heading."""
    assert heading in text, f"{heading!r} is missing"
    return text.split(heading, 1)[1].split(end, 1)[0]


def doc_default(section: str, key: str) -> str | None:
    """The second cell (the default) of the table row for ``key`` in ``section``; None if
    there is no row for it."""
    row = re.search(rf"^\| `{re.escape(key)}` \| (.+?) \|", section, re.MULTILINE)
    return None if row is None else row.group(1).strip()


def pending_runner() -> tuple[Callable[..., Deferred[Any]], list[Any]]:
    """A password-check runner that holds each check until the test fires it:
    ``held`` gets (deferred, function, args) per check."""
    held: list[Any] = []

    def run(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        waiting: Deferred[Any] = Deferred()
        held.append((waiting, function, args))
        return waiting

    return run, held


def fired(deferred: Deferred[Any]) -> Any:
    """The result ``deferred`` already has (it must have fired, and not with a failure)."""
    box: list[Any] = []
    deferred.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]

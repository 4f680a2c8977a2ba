"""Test-wide settings, and the guard that fails a test during which the broker logged an
unhandled failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import implementer

# A throw-away PostgreSQL server for the tests that need one (tests/_postgres.py).
from tests._postgres import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server"]

# In CI the property tests run the same examples every time, so that main stays
# green or red for a reason; locally they explore new examples on every run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@implementer(ILogObserver)
class FailureLog:
    """The events carrying ``log_failure`` (what ``Logger.failure`` emits) logged during one
    test; ``expected`` once the test took them with the ``logged_failures`` fixture."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []
        self.expected = False

    def __call__(self, event: LogEvent) -> None:
        if "log_failure" in event:
            self.events.append(event)

    def report(self) -> str:
        """Each failure's log message and traceback."""
        return "\n".join(
            f"{formatEvent(event)}\n{event['log_failure'].getTraceback()}" for event in self.events
        )


@pytest.fixture(autouse=True)
def _failure_log() -> Iterator[FailureLog]:
    """Fail the test if a failure was logged while it ran, unless it took them with
    ``logged_failures`` (then it must have provoked at least one)."""
    log = FailureLog()
    globalLogPublisher.addObserver(log)
    try:
        yield log
    finally:
        globalLogPublisher.removeObserver(log)
    if log.expected:
        if not log.events:
            pytest.fail("the test took logged_failures, but no failure was logged")
    elif log.events:
        pytest.fail(f"{len(log.events)} unhandled failure(s) logged:\n{log.report()}")


@pytest.fixture
def logged_failures(_failure_log: FailureLog) -> list[Any]:
    """The failures logged during the test (events with ``log_failure``), for a test that
    provokes them on purpose and asserts on them; taking them is what makes them handled."""
    _failure_log.expected = True
    return _failure_log.events

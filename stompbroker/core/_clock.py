"""The clock the broker and sessions are given (the reactor, or a test's Clock).

Structural types for what we use of Twisted's IReactorTime and IDelayedCall, so
that type checking needs no zope plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class DelayedCall(Protocol):
    """A scheduled call that can be cancelled."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What we use of ``IReactorTime``."""

    def seconds(self) -> float: ...

    def callLater(  # noqa: N802 (Twisted's name)
        self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any
    ) -> DelayedCall: ...

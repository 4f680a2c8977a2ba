"""What a session sees of the world outside: the transport it writes to, the observer it tells.

And ``refuse_connection``, for a connection turned away before any session is made for it.
"""

from __future__ import annotations

from typing import Protocol

from . import _wire


class Transport(Protocol):
    """What a session needs of its connection (a Twisted ITransport has it)."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...  # noqa: N802 (Twisted's name)


class SessionObserver(Protocol):
    """Who hears that a session let its client in, and that it closed the connection itself.

    The transport's connection registry is one, to log both; a session may have none.
    """

    def connected(self, user: str | None, version: str) -> None:
        """CONNECTED was sent: the client is in as ``user`` (None: anonymous)."""

    def closed(self, reason: str) -> None:
        """The session closed the connection: "ERROR sent: MESSAGE" or "DISCONNECT"."""


def refuse_connection(transport: Transport, message: str, detail: str) -> None:
    """Turn a connection away before any session is made for it: ERROR, then close."""
    transport.write(_wire.error(message, detail, "1.0"))
    transport.loseConnection()

"""What a session sees of the world outside: the transport it writes to.

And ``refuse_connection``, for a connection turned away before any session is made for it.
"""

from __future__ import annotations

from typing import Protocol

from . import _wire


class Transport(Protocol):
    """What a session needs of its connection (a Twisted ITransport has it)."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...  # noqa: N802 (Twisted's name)


def refuse_connection(transport: Transport, message: str, detail: str) -> None:
    """Turn a connection away before any session is made for it: ERROR, then close."""
    transport.write(_wire.error(message, detail, "1.0"))
    transport.loseConnection()

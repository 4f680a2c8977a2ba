"""The STOMP frame value, protocol versions and protocol errors."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Protocol versions we speak, lowest first.
VERSIONS: tuple[str, ...] = ("1.0", "1.1", "1.2")

#: Commands a client may send.
CLIENT_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
    }
)

#: Commands the server sends.
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})


@dataclass(frozen=True, slots=True)
class Frame:
    """One STOMP frame: a command, headers (first occurrence wins) and a body of bytes."""

    command: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class ProtocolError(Exception):
    """The peer broke the STOMP grammar or a limit; the connection must end with an ERROR.

    ``message`` is short and safe to send in an ERROR frame's ``message`` header;
    ``detail`` (optional) goes in its body. ``receipt`` is the offending frame's
    ``receipt`` header when it was readable, so the ERROR can carry ``receipt-id``.
    """

    def __init__(self, message: str, detail: str = "", receipt: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.receipt = receipt


class FrameTooLarge(ProtocolError):
    """A frame exceeded one of the parser's limits."""

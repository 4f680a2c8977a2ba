"""The STOMP frame value, protocol versions and protocol errors."""

from __future__ import annotations

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


class Frame:
    """One STOMP frame: a command, headers (first occurrence wins) and a body of bytes.

    A plain class, not a dataclass: one is made per frame on the hot path.
    """

    __slots__ = ("body", "command", "headers")

    def __init__(self, command: str, headers: dict[str, str] | None = None, body: bytes = b""):
        self.command = command
        self.headers = {} if headers is None else headers
        self.body = body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.command, self.headers, self.body) == (
            other.command,
            other.headers,
            other.body,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Frame(command={self.command!r}, headers={self.headers!r}, body={self.body!r})"


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

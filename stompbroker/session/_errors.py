"""Errors a client's frame can cause."""

from __future__ import annotations


class ClientError(Exception):
    """The client's frame broke a rule; ends the connection with an ERROR."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


def required(headers: dict[str, str], name: str, command: str) -> str:
    """The value of a header the frame must carry; ClientError naming it if absent."""
    value = headers.get(name)
    if not value:
        raise ClientError(f"missing header '{name}'", f"{command} needs a '{name}' header")
    return value

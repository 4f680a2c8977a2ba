"""A stored message as a flat row, and back."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from stompbroker.core import Message

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


class Row(NamedTuple):
    """The columns of one stored message (its queue's key aside)."""

    priority: int
    seq: int
    message_id: str
    destination: str
    headers: str
    body: bytes
    expires: int
    delivery_count: int
    persistent: bool
    group: str | None


def row_from_message(message: Message) -> Row:
    """The row that stores ``message``."""
    return Row(
        message.priority,
        message.seq,
        message.message_id,
        message.destination,
        _dumps(message.headers),
        message.body,
        message.expires,
        message.delivery_count,
        message.persistent,
        message.group,
    )


def message_from_row(store_key: str, row: Row | tuple[Any, ...]) -> Message:
    """A Message, held by ``store_key``'s row, from a stored row."""
    (priority, seq, message_id, destination, headers, body, expires, count, persistent, group) = row
    message = Message(
        message_id,
        destination,
        _loads(headers),
        bytes(body),
        bool(persistent),
        seq,
        priority,
        expires,
        group,
    )
    message.delivery_count = count
    message.store_key = store_key
    return message

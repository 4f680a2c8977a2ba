"""A stored message as a flat row, and back; a page of rows as SQLite packs it."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from stompbroker.core import Message, ScheduledRecord

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


def pack_rows(adds: list[tuple[tuple[str, int, int], Message]]) -> tuple[str, bytes]:
    """The rows of ``adds`` ((store key, priority, seq), message) for ``_database._INSERT``
    and ``_pg_database._INSERT``:
    a JSON array of ``[store key, priority, seq, message_id, destination, headers, body
    offset (from 1), body length, expires, delivery_count, persistent, group]``, and the
    bodies concatenated."""
    rows = []
    bodies = []
    at = 1
    for (store_key, _, _), m in adds:
        size = len(m.body)
        rows.append(
            (
                store_key,
                m.priority,
                m.seq,
                m.message_id,
                m.destination,
                m.headers,
                at,
                size,
                m.expires,
                m.delivery_count,
                m.persistent,
                m.group,
            )
        )
        bodies.append(m.body)
        at += size
    return _dumps(rows), b"".join(bodies)


def messages_from_page(
    store_key: str, priority: int, meta: str | None, bodies: bytes | None
) -> list[Message]:
    """The Messages of one page that SQLite packed into two values (see ``_sqlite._LOAD``).

    ``meta`` is a JSON array with one ``[seq, message_id, destination, headers, body
    length, expires, delivery_count, persistent, group]`` per row; ``bodies`` is every
    body, concatenated in the same order. Returned oldest first.
    """
    if meta is None:
        return []
    bodies = bodies or b""  # NULL when no row, or every body empty
    messages = []
    at = 0
    last = -1
    ordered = True
    for seq, message_id, destination, headers, length, expires, count, persistent, group in _loads(
        meta
    ):
        end = at + length
        message = Message(
            message_id,
            destination,
            headers,
            bodies[at:end],
            persistent == 1,
            seq,
            priority,
            expires,
            group,
        )
        at = end
        message.delivery_count = count
        message.store_key = store_key
        messages.append(message)
        ordered = ordered and seq > last
        last = seq
    if at != len(bodies):
        raise ValueError(f"a page of {store_key} has {len(bodies)} body bytes, its rows {at}")
    if not ordered:
        messages.sort(key=lambda m: m.seq)
    return messages


def scheduled_row(record: ScheduledRecord) -> tuple[Any, ...]:
    """The columns that store ``record`` (``_database._SCHEDULE``'s order)."""
    m = record.message
    return (
        m.seq,
        record.due,
        _dumps(list(record.target)),
        record.repeats,
        record.period,
        m.priority,
        m.message_id,
        m.destination,
        _dumps(m.headers),
        m.body,
        m.expires,
        m.persistent,
        m.group,
    )


def scheduled_from_row(row: tuple[Any, ...]) -> ScheduledRecord:
    """A ScheduledRecord from the columns of ``scheduled_row``."""
    seq, due, target, repeats, period, priority, message_id, destination, headers, body = row[:10]
    expires, persistent, group = row[10:]
    columns = (priority, seq, message_id, destination, headers, body, expires, 0, persistent, group)
    message = message_from_row("", columns)
    message.store_key = None  # held by no queue's row until released
    return ScheduledRecord(tuple(_loads(target)), message, due, repeats, period)

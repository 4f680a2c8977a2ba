"""Topics across the nodes of a cluster, through PostgreSQL's NOTIFY (``PgTopicBus``).

What a node publishes to a topic is handed to the bus, which sends it to every node on one
channel (``stompbroker_topics``); each other node delivers it to its own subscribers
(``Broker.published_elsewhere``). Nothing is stored: a node that is not listening at that
moment never gets it (at most once, as a topic promises).

The publishes of one reactor turn go together: their records as one JSON array (ASCII, the
bodies base64), cut into payloads of at most ``PAYLOAD_CHARS`` characters (PostgreSQL
refuses one of 8000 bytes or more), all sent in one statement, so in one transaction: they
arrive together, in order, after any other notification of the same sender. A payload is::

    payload = VERSION " " sender " " batch " " index " " count " " piece
    batch   = the sender's number for one turn's publishes (1, 2, ...)
    index   = this piece's place, 0 .. count - 1; the pieces joined are the JSON array
    record  = [destination, message id, headers, body (base64), persistent, priority, expires]

A receiver keeps, per sender, the pieces of the batch it is reading; a piece that does not
continue it (its connection dropped meanwhile) ends it unread. It skips its own sender's
payloads: the node delivered those itself.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from stompbroker.core import ITopicBus, Message

log = Logger(namespace="stompbroker.store.bus")

#: The channel every node listens on and publishes to.
CHANNEL = "stompbroker_topics"
#: A payload's longest length, its header included (it is ASCII: characters are bytes).
PAYLOAD_CHARS = 7900
#: The payloads' layout (the first field): a node drops those of another layout.
VERSION = "1"

UNKNOWN = "dropped a topic notification of an unknown layout: {start!r}"

#: (destination, message id, headers, body in base64, persistent, priority, expires)
Record = list[Any]


class Channel(Protocol):
    """What the bus needs of its listener (``PgListener``)."""

    def listen(self, channel: str, received: Callable[[str], None]) -> None: ...

    def notify(self, channel: str, payload: str) -> None: ...

    def start(self) -> Deferred[None]: ...

    def stop(self) -> Deferred[None]: ...


@implementer(ITopicBus)
class PgTopicBus:
    """The topic bus over ``listener`` (a ``PgListener``), calling ``clock`` back once per
    turn that published; ``sender`` names this node in what it sends (unique in the
    cluster: the node's random id)."""

    def __init__(
        self,
        listener: Channel,
        clock: Any,
        sender: str,
        channel: str = CHANNEL,
        payload_chars: int = PAYLOAD_CHARS,
    ) -> None:
        if " " in sender or not sender:
            raise ValueError(f"sender {sender!r} must be a word")
        self.listener = listener
        self._clock = clock
        self.sender = sender
        self.channel = channel
        self._payload_chars = payload_chars
        self._deliver: Any = None
        self._pending: list[Message] = []
        self._flush: Any = None
        self._batches = itertools.count(1)
        #: sender -> (batch, the pieces read so far)
        self._partial: dict[str, tuple[str, list[str]]] = {}
        #: Counts: messages sent and received, payloads sent and received, batches lost.
        self.sent = self.received = self.payloads_sent = self.payloads_received = 0
        self.lost = 0
        listener.listen(channel, self._received)

    # -- ITopicBus -------------------------------------------------------------------

    def attach(self, deliver: Any) -> None:
        self._deliver = deliver

    def publish(self, topic: str, message: Message) -> None:
        self._pending.append(message)
        if self._flush is None:
            self._flush = self._clock.callLater(0, self._send)

    def start(self) -> Deferred[None]:
        return self.listener.start()

    def stop(self) -> Deferred[None]:
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        self._pending.clear()
        return self.listener.stop()

    # -- sending ---------------------------------------------------------------------

    def _send(self) -> None:
        """This turn's publishes, in as few payloads as they fit in."""
        self._flush = None
        messages, self._pending = self._pending, []
        payloads = encode(messages, self.sender, str(next(self._batches)), self._payload_chars)
        for payload in payloads:
            self.listener.notify(self.channel, payload)
        self.sent += len(messages)
        self.payloads_sent += len(payloads)

    # -- receiving -------------------------------------------------------------------

    def _received(self, payload: str) -> None:
        parts = payload.split(" ", 5)
        if len(parts) != 6 or parts[0] != VERSION or not (parts[3] + parts[4]).isdigit():
            log.warn(UNKNOWN, start=payload[:40])
            return
        _, sender, batch, index, count, piece = parts
        if sender == self.sender:
            return
        self.payloads_received += 1
        text = self._joined(sender, batch, int(index), int(count), piece)
        if text is not None:
            self._deliver_all(text)

    def _joined(self, sender: str, batch: str, index: int, count: int, piece: str) -> str | None:
        """The batch's whole text once its last piece is in (None until then)."""
        if index == 0:
            if sender in self._partial:
                self.lost += 1
                del self._partial[sender]
            if count == 1:
                return piece
            self._partial[sender] = (batch, [piece])
            return None
        known = self._partial.get(sender)
        if known is None or known[0] != batch or len(known[1]) != index:
            if known is not None:
                del self._partial[sender]
                self.lost += 1
            return None
        known[1].append(piece)
        if len(known[1]) < count:
            return None
        del self._partial[sender]
        return "".join(known[1])

    def _deliver_all(self, text: str) -> None:
        try:
            records = json.loads(text)
            messages = [decode(record) for record in records]
        except (ValueError, TypeError, IndexError, binascii.Error) as exc:
            log.warn("dropped a batch of topic messages that does not decode: {why}", why=exc)
            return
        deliver = self._deliver
        for message in messages:
            self.received += 1
            if deliver is not None and message.destination.startswith("/topic/"):
                deliver(message.destination[7:], message)


def record(message: Message) -> Record:
    """What crosses of ``message``."""
    return [
        message.destination,
        message.message_id,
        dict(message.headers),
        base64.b64encode(message.body).decode("ascii"),
        1 if message.persistent else 0,
        message.priority,
        message.expires,
    ]


def decode(fields: Record) -> Message:
    """The message a record describes (``seq`` 0: the receiver numbers it)."""
    destination, message_id, headers, body, persistent, priority, expires = fields
    if not isinstance(headers, dict):
        raise TypeError("the headers are not an object")
    return Message(
        str(message_id),
        str(destination),
        headers,
        base64.b64decode(body, validate=True),
        bool(persistent),
        0,
        int(priority),
        int(expires),
        headers.get("JMSXGroupID"),
    )


def encode(messages: list[Message], sender: str, batch: str, payload_chars: int) -> list[str]:
    """The payloads of one batch of ``messages``: their records as one JSON array, in pieces."""
    text = json.dumps([record(m) for m in messages], separators=(",", ":"), ensure_ascii=True)
    # The header's longest form: the count is at most as long as the text.
    room = payload_chars - len(f"{VERSION} {sender} {batch} {len(text)} {len(text)} ")
    if room < 1:
        raise ValueError(f"payloads of {payload_chars} characters leave no room for a piece")
    pieces = [text[i : i + room] for i in range(0, len(text), room)]
    count = len(pieces)
    return [f"{VERSION} {sender} {batch} {i} {count} {piece}" for i, piece in enumerate(pieces)]

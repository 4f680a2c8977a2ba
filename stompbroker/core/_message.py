"""Messages and the in-memory buffer a destination keeps them in."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from heapq import heappop, heappush
from typing import Any

#: JMS priorities run 0..9; 4 is the default.
DEFAULT_PRIORITY = 4
PRIORITIES = 10


class Message:
    """One message as the broker holds it.

    ``headers`` are the producer's own headers, without the ones the broker owns
    (destination, message-id, content-length, ...) or the SEND frame's (receipt,
    transaction); never changed once the message is made (copies share them).
    ``seq`` orders messages broker-wide: a message returned to its queue goes back
    to its place by priority, then ``seq``. ``expires`` is an absolute time in
    epoch milliseconds, 0 for never. ``group`` is the JMSXGroupID, if any.
    ``wire`` is an opaque cache the delivering side may fill with the encoded
    form of the message (one entry per encoding). ``store_key`` names the queue
    whose store row holds the message, while one does. ``born`` is when it arrived, in
    clock seconds, for the one message in ``SAMPLE_EVERY`` whose latency is measured (0:
    not measured).
    """

    __slots__ = (
        "body",
        "born",
        "delivery_count",
        "destination",
        "expires",
        "group",
        "headers",
        "message_id",
        "persistent",
        "priority",
        "seq",
        "store_key",
        "wire",
    )

    def __init__(
        self,
        message_id: str,
        destination: str,
        headers: Mapping[str, str],
        body: bytes,
        persistent: bool,
        seq: int,
        priority: int = DEFAULT_PRIORITY,
        expires: int = 0,
        group: str | None = None,
    ) -> None:
        self.message_id = message_id
        self.destination = destination
        self.headers = headers
        self.body = body
        self.persistent = persistent
        self.seq = seq
        self.priority = priority
        self.expires = expires
        self.group = group
        self.delivery_count = 0
        self.wire: dict[Any, bytes] | None = None
        #: The queue whose stored row this is, or None while the message is in memory only.
        self.store_key: str | None = None
        self.born = 0.0

    @property
    def redelivered(self) -> bool:
        """True once the message has been delivered before."""
        return self.delivery_count > 1

    def expired(self, now_ms: float) -> bool:
        """Whether the message's time to live has run out at ``now_ms``."""
        return 0 < self.expires <= now_ms

    def copy(self) -> Message:
        """A copy with its own delivery count and no store row (a topic subscriber's copy)."""
        other = Message(
            self.message_id,
            self.destination,
            self.headers,
            self.body,
            self.persistent,
            self.seq,
            self.priority,
            self.expires,
            self.group,
        )
        other.delivery_count = self.delivery_count
        other.wire = self.wire
        return other

    def renumbered(self, message_id: str, seq: int) -> Message:
        """A copy under another id and ``seq``, never delivered, with no store row."""
        other = self.copy()
        other.message_id = message_id
        other.seq = seq
        other.delivery_count = 0
        other.wire = None  # the encoded form names the old id
        return other

    def __repr__(self) -> str:
        return f"<Message {self.message_id} to {self.destination} ({len(self.body)} bytes)>"


class MessageBuffer:
    """Messages waiting for a consumer: highest priority first, then oldest first.

    New messages arrive in ``seq`` order and are appended to their priority's
    line; messages given back (a NACK, a closed consumer) return to their place
    by (priority, ``seq``).
    """

    __slots__ = ("_fresh", "_levels", "_returned", "_size", "bytes")

    def __init__(self) -> None:
        self._fresh: list[deque[Message]] = [deque() for _ in range(PRIORITIES)]
        #: Bit p set when ``_fresh[p]`` is not empty.
        self._levels = 0
        self._returned: list[tuple[int, int, Message]] = []
        self._size = 0
        #: The bodies' total size.
        self.bytes = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def append(self, message: Message) -> None:
        """Add a new message behind those of its priority."""
        priority = message.priority
        self._fresh[priority].append(message)
        self._levels |= 1 << priority
        self._size += 1
        self.bytes += len(message.body)

    def put_back(self, message: Message) -> None:
        """Return a message to its place by priority and ``seq``."""
        heappush(self._returned, (-message.priority, message.seq, message))
        self._size += 1
        self.bytes += len(message.body)

    def popleft(self) -> Message:
        """Take the first message."""
        returned = self._returned
        levels = self._levels
        if levels:
            priority = levels.bit_length() - 1
            line = self._fresh[priority]
            fresh = line[0]
            if not returned or (-priority, fresh.seq) < returned[0][:2]:
                line.popleft()
                if not line:
                    self._levels = levels & ~(1 << priority)
                self._size -= 1
                self.bytes -= len(fresh.body)
                return fresh
        self._size -= 1
        message = heappop(returned)[2]
        self.bytes -= len(message.body)
        return message

    def __iter__(self) -> Iterator[Message]:
        """Every message in delivery order (a snapshot; the buffer may change after)."""
        everything = [m for line in self._fresh for m in line]
        everything.extend(entry[2] for entry in self._returned)
        everything.sort(key=lambda m: (-m.priority, m.seq))
        return iter(everything)

    def remove(self, message: Message) -> None:
        """Take out one message wherever it is (a selector or a group picked it)."""
        line = self._fresh[message.priority]
        try:
            line.remove(message)
        except ValueError:
            self._returned = [e for e in self._returned if e[2] is not message]
            self._returned.sort(key=lambda e: e[:2])
        else:
            if not line:
                self._levels &= ~(1 << message.priority)
        self._size -= 1
        self.bytes -= len(message.body)

    def oldest(self) -> Message:
        """The message that arrived first (whatever its priority); the buffer is not empty."""
        heads = [line[0] for line in self._fresh if line]
        heads.extend(entry[2] for entry in self._returned)
        return min(heads, key=lambda m: m.seq)

    def clear(self) -> list[Message]:
        """Remove and return everything, in delivery order."""
        out = list(self)
        for line in self._fresh:
            line.clear()
        self._levels = 0
        self._returned.clear()
        self._size = 0
        self.bytes = 0
        return out

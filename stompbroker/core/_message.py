"""Messages and the in-memory buffer a destination keeps them in."""

from __future__ import annotations

from collections import deque
from heapq import heappop, heappush
from typing import Any


class Message:
    """One message as the broker holds it.

    ``headers`` are the producer's own headers, without the ones the broker owns
    (destination, message-id, content-length, receipt, transaction).
    ``seq`` orders messages broker-wide: a message returned to its queue goes back
    to its place by ``seq``. ``wire`` is an opaque cache the delivering side may
    fill with the encoded form of the message (one entry per encoding).
    """

    __slots__ = (
        "body",
        "delivery_count",
        "destination",
        "headers",
        "message_id",
        "persistent",
        "seq",
        "wire",
    )

    def __init__(
        self,
        message_id: str,
        destination: str,
        headers: dict[str, str],
        body: bytes,
        persistent: bool,
        seq: int,
    ) -> None:
        self.message_id = message_id
        self.destination = destination
        self.headers = headers
        self.body = body
        self.persistent = persistent
        self.seq = seq
        self.delivery_count = 0
        self.wire: dict[Any, bytes] | None = None

    @property
    def redelivered(self) -> bool:
        """True once the message has been delivered before."""
        return self.delivery_count > 1

    def copy(self) -> Message:
        """A copy with its own delivery count (a topic subscriber's copy)."""
        other = Message(
            self.message_id, self.destination, self.headers, self.body, self.persistent, self.seq
        )
        other.delivery_count = self.delivery_count
        return other

    def __repr__(self) -> str:
        return f"<Message {self.message_id} to {self.destination} ({len(self.body)} bytes)>"


class MessageBuffer:
    """Messages waiting for a consumer, oldest first.

    New messages arrive in ``seq`` order and are appended; messages given back
    (a NACK, a closed consumer) return to their place by ``seq``.
    """

    __slots__ = ("_fresh", "_returned")

    def __init__(self) -> None:
        self._fresh: deque[Message] = deque()
        self._returned: list[tuple[int, Message]] = []

    def __len__(self) -> int:
        return len(self._fresh) + len(self._returned)

    def __bool__(self) -> bool:
        return bool(self._fresh) or bool(self._returned)

    def append(self, message: Message) -> None:
        """Add a new message at the end."""
        self._fresh.append(message)

    def put_back(self, message: Message) -> None:
        """Return a message to its place by ``seq``."""
        heappush(self._returned, (message.seq, message))

    def popleft(self) -> Message:
        """Take the oldest message."""
        returned = self._returned
        if returned and (not self._fresh or returned[0][0] < self._fresh[0].seq):
            return heappop(returned)[1]
        return self._fresh.popleft()

    def clear(self) -> list[Message]:
        """Remove and return everything, oldest first."""
        out = []
        while self:
            out.append(self.popleft())
        return out

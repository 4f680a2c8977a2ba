"""The TCP writes of one reactor turn, sent when it ends: one ``send()`` per connection written
to, straight to its socket when Twisted holds nothing for it.

Why: Twisted's ``write`` only buffers; the bytes go out on a later turn, once epoll says the
socket is writable, and each such turn costs two ``epoll_ctl`` calls (start and stop watching
for writability) beside the wait. A producer's read of 100 SENDs makes 100 MESSAGE writes to a
consumer; gathered, they leave in one ``send()`` before the reactor waits again: fewer system
calls, no extra turn, and Twisted's buffer stays empty, so the consumer's session is not
paused and resumed (a push producer) for bytes the kernel would have taken at once.

* A write to a ``Gathered`` writer waits in it; the first one of a turn asks the outbox for a
  ``callLater(0)``, which the reactor runs once it has handled every event of the turn
  (reads, timers, the store's answers), before it waits again. Then each writer written to
  sends what it holds, in the order it was written.
* A writer sends straight to the socket only when that is what Twisted would do next:
  Twisted's own TCP connection (not a wrapper: TLS is written through Twisted, which
  encrypts), connected, not closing, with nothing in Twisted's buffer (else its bytes queue
  behind). The socket taking part of them, or none (its buffer is full), leaves the rest to
  Twisted's ``write``, which buffers it and applies back-pressure as before. Any other error
  is left to Twisted's write to find.
* A writer closing sends what it holds first (an ERROR frame before the close); a writer
  holding ``HOLD_BYTES`` sends at once, so what a turn holds stays bounded.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

from stompbroker.core import Clock, DelayedCall

#: A writer holding this many bytes (Twisted's own ``bufferSize``) sends them at once,
#: mid-turn: to the socket, or to Twisted's buffer, which pauses the session once full as
#: without the outbox; so a turn that delivers a whole backlog does not hold all of it first.
HOLD_BYTES = 65_536


class Outbox:
    """The writers written to during this reactor turn (one per process: one reactor)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._dirty: list[Gathered] = []
        self._due: DelayedCall | None = None

    def add(self, writer: Gathered) -> None:
        """``writer`` holds bytes: it sends them at the end of this turn."""
        self._dirty.append(writer)
        if self._due is None:
            self._due = self._clock.callLater(0, self.send)

    def send(self) -> None:
        """End of the turn: every writer written to sends what it holds."""
        self._due = None
        dirty, self._dirty = self._dirty, []
        for writer in dirty:
            writer.send()


class Gathered:
    """Writes to one TCP ``transport``, held until ``outbox`` ends the turn."""

    def __init__(self, transport: Any, outbox: Outbox) -> None:
        self._transport = transport
        self._write = transport.write
        self._outbox = outbox
        self._pending: list[bytes] = []
        self._held = 0
        # Only Twisted's own TCP connection itself (a wrapper such as TLS's hands unknown
        # attributes to the TCP connection beneath, whose socket must not see clear text),
        # TLS not started on it. ``send`` reads its socket and its buffer (dataBuffer,
        # offset, _tempDataBuffer: internal to twisted.internet.abstract.FileDescriptor,
        # hence checked for here).
        self._direct = (
            isinstance(transport, tcp.Connection)
            and transport.TLS is False
            and all(hasattr(transport, name) for name in ("dataBuffer", "_tempDataBuffer"))
        )

    def write(self, data: bytes) -> None:
        pending = self._pending
        if not pending:
            self._outbox.add(self)
        pending.append(data)
        self._held += len(data)
        if self._held >= HOLD_BYTES:
            self.send()

    def send(self) -> None:
        """Send what is held: to the socket if Twisted holds nothing, the rest to Twisted."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._held = 0
        transport = self._transport
        if (
            self._direct
            and transport.connected
            and not transport.disconnecting
            and not getattr(transport, "_writeDisconnected", False)
            and not transport._tempDataBuffer
            and transport.offset == len(transport.dataBuffer)
        ):
            try:
                sent = transport.socket.send(data)
            except OSError:  # full (EAGAIN), reset, broken pipe: Twisted's write sees to it
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self._write(data)

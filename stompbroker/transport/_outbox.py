"""The writes made while the broker handles one read, sent when it ends: one ``send()`` per
connection written to, straight to its socket when Twisted holds nothing for it.

Why: Twisted's ``write`` only buffers; the bytes go out on the reactor's next turn, once epoll
says the socket is writable, and each such turn costs two ``epoll_ctl`` calls (start and stop
watching for writability). A producer's read of 100 SENDs makes 100 MESSAGE writes to a
consumer; gathered, they leave in one ``send()`` before the reactor polls again: fewer system
calls, no extra turn, and Twisted's buffer stays empty, so the session is not paused and
resumed (its producer) for data the kernel would have taken at once.

* ``Outbox.gathering`` brackets the handling of one read (or a session's deliveries once
  Twisted resumes it); writes to a ``Gathered`` writer meanwhile wait in it; at the end every writer
  written to sends its bytes, in the order they were written. Brackets nest; the outermost
  one sends.
* A writer sends straight to the socket only when that is what Twisted would do next: a
  plain TCP connection (not TLS, whose bytes Twisted encrypts first), connected, not closing,
  with nothing in Twisted's buffer (else its bytes queue behind). The socket taking part of
  them, or none (its buffer is full), leaves the rest to Twisted's ``write``, which buffers
  it and applies back-pressure as before. Any other error is left to Twisted to find.
* Outside a bracket (timers, the store's answers, heart-beats) a write goes to Twisted's
  ``write`` at once, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp


class Outbox:
    """The writers written to during the current bracket (one per process: one reactor)."""

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list[Gathered] = []

    def gathering(self, call: Callable[..., None], *args: Any) -> None:
        """``call(*args)`` with writes gathered; the writers written to send at its end."""
        self.depth += 1
        try:
            call(*args)
        finally:
            self.depth -= 1
            if not self.depth:
                self.send()

    def send(self) -> None:
        dirty = self.dirty
        while dirty:  # sending may call a producer that writes again
            self.dirty = []
            for writer in dirty:
                writer.send()
            dirty = self.dirty


class Gathered:
    """Writes to one TCP ``transport``: gathered while ``outbox`` is in a bracket."""

    def __init__(self, transport: Any, outbox: Outbox) -> None:
        self._transport = transport
        self._write = transport.write
        self._outbox = outbox
        self._pending: list[bytes] = []
        # Only Twisted's own TCP connection itself (not a wrapper: TLS's delegates the
        # attributes to the TCP connection beneath), with TLS not started on it. ``send``
        # reads its socket, and its buffer (dataBuffer, offset, _tempDataBuffer: internal to
        # twisted.internet.abstract.FileDescriptor, hence checked here).
        self._direct = (
            isinstance(transport, tcp.Connection)
            and transport.TLS is False
            and all(hasattr(transport, name) for name in ("dataBuffer", "_tempDataBuffer"))
        )

    def write(self, data: bytes) -> None:
        outbox = self._outbox
        if not outbox.depth:
            self._write(data)
            return
        pending = self._pending
        if not pending:
            outbox.dirty.append(self)
        pending.append(data)

    def send(self) -> None:
        """Send what was gathered: to the socket if Twisted holds nothing, the rest to it."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
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
            except BlockingIOError:
                sent = 0
            except OSError:  # reset, broken pipe: Twisted's own write finds it and closes
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self._write(data)

    def close(self) -> None:
        """Before the transport closes: send what waits (an ERROR frame, say) first."""
        self.send()

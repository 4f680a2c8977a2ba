"""Heart-beat negotiation and timers (STOMP 1.1+).

The client's CONNECT says ``heart-beat:cx,cy`` (it can send every cx ms, wants
to receive every cy ms); we offer ``sx,sy`` the same way. Then, as the spec says:

* we send every ``max(sx, cy)`` ms, or never if either is 0;
* the client sends every ``max(cx, sy)`` ms, or never if either is 0.

We send a little ahead of the agreed interval so a beat is never late, and end
the connection when the client has been silent for ``tolerance`` times its
interval.

A transport that can probe the peer below STOMP (WebSocket Ping) is given as
``ping``: it is sent every client interval (every half timeout if that is shorter)
while the client's silence is watched, and the transport reports the answer (or any
frame) through ``received``.
"""

from __future__ import annotations

from collections.abc import Callable

from stompbroker.core import Clock, DelayedCall

#: Beats are sent this fraction of the agreed interval apart, so none is late.
SEND_AHEAD = 0.9

#: A longer interval (about 24 days) is taken as this one: timers need finite floats.
MAX_INTERVAL_MS = 2**31 - 1


class HeartbeatError(ValueError):
    """A malformed heart-beat header."""


def parse_heartbeat(value: str) -> tuple[int, int]:
    """Parse ``"cx,cy"`` into two non-negative integers (milliseconds, at most
    ``MAX_INTERVAL_MS``: a longer interval is as good as never)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise HeartbeatError(f"expected two non-negative integers 'cx,cy', got {value[:40]!r}")
    return min(int(parts[0]), MAX_INTERVAL_MS), min(int(parts[1]), MAX_INTERVAL_MS)


def negotiate(client: tuple[int, int], server: tuple[int, int]) -> tuple[int, int]:
    """Return (server-to-client, client-to-server) intervals in ms; 0 means none."""
    cx, cy = client
    sx, sy = server
    outgoing = max(sx, cy) if sx and cy else 0
    incoming = max(cx, sy) if cx and sy else 0
    return outgoing, incoming


class Heartbeat:
    """Sends beats and watches for the peer's, on an injected clock."""

    def __init__(
        self,
        clock: Clock,
        outgoing_ms: int,
        incoming_ms: int,
        tolerance: float,
        send_beat: Callable[[], None],
        on_silence: Callable[[float], None],
        ping: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self._send_every = outgoing_ms * SEND_AHEAD / 1000.0
        self._timeout = incoming_ms * tolerance / 1000.0
        self._send_beat = send_beat
        self._on_silence = on_silence
        self._send_call: DelayedCall | None = None
        self._check_call: DelayedCall | None = None
        #: A transport-level probe the peer answers without its own timers (a WebSocket
        #: Ping): sent once per client interval, and at least twice per timeout, so its
        #: answer lands inside the timeout (with tolerance 1 a ping per interval would be
        #: answered just after the deadline).
        self._ping = ping if self._timeout > 0 else None
        self._ping_every = min(incoming_ms / 1000.0, self._timeout / 2)
        self._ping_call: DelayedCall | None = None
        self.last_received = clock.seconds()
        #: True while we do not read from the peer: its silence is then ours.
        self.held = False

    @property
    def watching(self) -> bool:
        """Whether the peer's silence is being watched (so ``received`` matters)."""
        return self._timeout > 0

    def start(self) -> None:
        """Start both timers (those negotiated)."""
        if self._send_every > 0:
            self._send_call = self._clock.callLater(self._send_every, self._beat)
        if self._timeout > 0:
            self.last_received = self._clock.seconds()
            self._check_call = self._clock.callLater(self._timeout, self._check)
        if self._ping is not None:
            self._ping_call = self._clock.callLater(self._ping_every, self._send_ping)

    def stop(self) -> None:
        """Cancel the timers."""
        for call in (self._send_call, self._check_call, self._ping_call):
            if call is not None and call.active():
                call.cancel()
        self._send_call = self._check_call = self._ping_call = None

    def received(self) -> None:
        """The peer sent something (any bytes count as a beat)."""
        self.last_received = self._clock.seconds()

    def _beat(self) -> None:
        self._send_call = self._clock.callLater(self._send_every, self._beat)
        self._send_beat()

    def _send_ping(self) -> None:
        assert self._ping is not None
        self._ping_call = self._clock.callLater(self._ping_every, self._send_ping)
        self._ping()

    def _check(self) -> None:
        if self.held:
            self.last_received = self._clock.seconds()
        silent = self._clock.seconds() - self.last_received
        if silent >= self._timeout:
            self._check_call = None
            self._on_silence(silent)
            return
        self._check_call = self._clock.callLater(self._timeout - silent, self._check)

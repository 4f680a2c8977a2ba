"""CONNECT: version and heart-beat negotiation, the login, CONNECTED; part of StompSession.

``Connecting`` is a mixin of ``StompSession``: it holds the steps from the first frame
to CONNECTED (or to the ERROR that refuses the client), and the connection timers.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from stompbroker.codec import Frame, FrameParser
from stompbroker.core import Clock, DelayedCall

from . import _wire
from ._auth import Guard, Verdict, check_login
from ._errors import ClientError
from ._heartbeat import Heartbeat, HeartbeatError, negotiate, parse_heartbeat
from ._settings import SessionSettings

log = Logger(namespace="stompbroker.session")


class Connecting:
    """The CONNECT steps of a session (the attributes below are StompSession's)."""

    settings: SessionSettings
    clock: Clock
    transport: Any
    peer: str
    session_id: str
    versions: tuple[str, ...]
    version: str | None
    escaping: str
    connected: bool
    closed: bool
    client_id: str
    guard: Guard
    _parser: FrameParser
    _heartbeat: Heartbeat | None
    _holds: set[str]
    _logging_in: bool
    _stash: bytearray
    _connect_timer: DelayedCall | None

    def _fail(
        self,
        message: str,
        detail: str,
        receipt_id: str | None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        raise NotImplementedError

    def _hold_reading(self, reason: str, hold: bool) -> None:
        raise NotImplementedError

    def _consume(self, data: bytes) -> None:
        raise NotImplementedError

    def _on_connect(self, frame: Frame) -> None:
        if frame.command not in ("CONNECT", "STOMP"):
            raise ClientError("expected CONNECT", f"got {frame.command} before CONNECT")
        headers = frame.headers
        version = self._choose_version(headers.get("accept-version"))
        client_beat = (0, 0)  # STOMP 1.0 has no heart-beats: its header means nothing
        if version != "1.0":
            try:
                client_beat = parse_heartbeat(headers.get("heart-beat", "0,0"))
            except HeartbeatError as exc:
                raise ClientError("invalid heart-beat header", str(exc)) from None
        self._stop_connect_timer()
        self._logging_in = True
        verdict = check_login(self.settings.access, headers, self.peer, self.clock)
        verdict.addCallback(self._logged_in, version, client_beat)
        verdict.addErrback(self._login_broke)
        if self._logging_in and not self.closed:
            self._hold_reading("login", True)  # the answer comes later: read nothing meanwhile

    def _logged_in(self, verdict: Verdict, version: str, client_beat: tuple[int, int]) -> None:
        if self.closed:
            return
        if verdict.refusal is not None:
            if verdict.delay <= 0:
                self._fail(verdict.refusal, verdict.detail, None)
            else:  # the timer is cancelled like the CONNECT timer if the client leaves
                self._connect_timer = self.clock.callLater(
                    verdict.delay, self._fail, verdict.refusal, verdict.detail, None
                )
            return
        self._logging_in = False
        self._accept(verdict, version, client_beat)
        if "login" in self._holds:  # it waited for a thread: go on with what came meanwhile
            self._hold_reading("login", False)
            stash, self._stash = bytes(self._stash), bytearray()
            self._consume(stash)

    def _login_broke(self, failure: Any) -> None:
        log.failure("checking the login of {peer} failed", failure, peer=self.peer)
        self._fail("internal error", "the broker failed; the failure is logged", None)

    def _stash_input(self, data: bytes) -> None:
        """Keep what arrives while CONNECT awaits its answer (reading is paused: little)."""
        self._stash += data
        limits = self.settings.limits
        if len(self._stash) > limits.max_header_bytes + limits.max_body_bytes:
            self._fail("too much before CONNECTED", "wait for CONNECTED before sending", None)

    def _accept(self, verdict: Verdict, version: str, client_beat: tuple[int, int]) -> None:
        """Let the client in: CONNECTED, the limits after CONNECT, heart-beats."""
        outgoing, incoming = negotiate(client_beat, self.settings.heartbeat)
        self.guard.user = verdict.user
        self.client_id = verdict.client_id
        self.version = version
        self.escaping = version
        self.connected = True
        parser = self._parser
        parser.version = version
        parser.limits = self.settings.limits
        parser.stop_after_frame = False
        offer = self.settings.heartbeat if version != "1.0" else (0, 0)
        self.transport.write(
            _wire.encode_frame(
                "CONNECTED",
                [
                    ("version", version),
                    ("session", self.session_id),
                    ("server", self.settings.server),
                    ("heart-beat", f"{offer[0]},{offer[1]}"),
                ],
            )
        )
        if outgoing or incoming:
            self._start_heartbeat(outgoing, incoming)
        log.debug("{peer} connected with STOMP {version}", peer=self.peer, version=version)

    def _start_heartbeat(self, outgoing: int, incoming: int) -> None:
        self._heartbeat = Heartbeat(
            self.clock,
            outgoing,
            incoming,
            self.settings.heartbeat_tolerance,
            self._send_beat,
            self._client_silent,
        )
        self._heartbeat.start()

    def _choose_version(self, accept: str | None) -> str:
        if accept is None:
            return "1.0"  # and every subprotocol allows 1.0
        offered = {v.strip() for v in accept.split(",")}
        common = [v for v in self.versions if v in offered]
        if not common:
            supported = ",".join(self.versions)
            self._fail(
                "unsupported protocol version",
                f"this broker supports STOMP {supported}; the client accepts {accept[:80]}",
                None,
                [("version", supported)],
            )
            raise _Stop
        return common[-1]

    def _no_connect(self) -> None:
        self._connect_timer = None
        timeout = self.settings.connect_timeout_ms
        self._fail(
            f"no CONNECT within {timeout} ms",
            f"a connection must send CONNECT or STOMP within {timeout} ms of opening",
            None,
        )

    def _stop_connect_timer(self) -> None:
        timer, self._connect_timer = self._connect_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _on_connect_again(self, frame: Frame) -> None:
        raise ClientError(
            "already connected", f"{frame.command} after the connection was established"
        )

    def _send_beat(self) -> None:
        if not self.closed:
            self.transport.write(b"\n")

    def _client_silent(self, silent: float) -> None:
        self._fail(
            "heart-beat timeout",
            f"nothing received from the client for {silent * 1000:.0f} ms",
            None,
        )


class _Stop(ClientError):
    """Raised after the session already answered with its own ERROR."""

    def __init__(self) -> None:
        super().__init__("")

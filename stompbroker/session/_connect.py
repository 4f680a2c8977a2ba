"""CONNECT as a handshake: the CONNECT frame in, a value out, the h11 way.

A ``Handshake`` decides on one CONNECT (or STOMP) frame::

    frame --not CONNECT/STOMP, bad heart-beat header------> ClientError (a bad frame)
      |
      +--no version both sides accept---------------------> Refused, version header, at once
      +--login checked (check_login: after the throttle's penalty, maybe in a thread)
            +--refused------------------------------------> Refused, after the throttle's delay
            +--let in-------------------------------------> Accepted: version, heart-beats,
                                                            user, client-id, CONNECTED headers

It writes nothing and holds no timer: the session feeds it the frame and applies the
value (the parser's limits and version, CONNECTED or the ERROR, heart-beats, the delay).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed

from stompbroker.codec import VERSIONS, Frame
from stompbroker.core import Clock

from ._auth import Verdict, check_login
from ._errors import ClientError
from ._heartbeat import HeartbeatError, negotiate, parse_heartbeat
from ._settings import SessionSettings


@dataclass(frozen=True)
class Accepted:
    """The client is let in: what the session switches to, and the CONNECTED it writes."""

    version: str
    #: (server-to-client, client-to-server) intervals in ms; 0: none that way.
    heartbeat: tuple[int, int]
    #: The login it connected with (None: anonymous).
    user: str | None
    client_id: str
    #: The CONNECTED frame's headers, in order.
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Refused:
    """The client is turned away: the ERROR's ``message``, its body, and when to send it."""

    message: str
    detail: str
    #: Headers the ERROR carries besides ``message`` (``version`` for no common version).
    extra: tuple[tuple[str, str], ...] = ()
    #: Seconds before the ERROR is sent (a wrong password's throttle); 0: at once.
    delay: float = 0.0


class Handshake:
    """The CONNECT steps of one connection: version, heart-beats, login.

    ``versions`` are those this connection may negotiate (a WebSocket subprotocol
    may narrow them).
    """

    def __init__(
        self,
        settings: SessionSettings,
        clock: Clock,
        session_id: str,
        peer: str,
        versions: tuple[str, ...] = VERSIONS,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.session_id = session_id
        self.peer = peer
        self.versions = versions

    def receive(self, frame: Frame) -> Deferred[Accepted | Refused]:
        """Decide on the first frame; fires at once unless a password must be checked.

        ClientError when the frame is not a CONNECT one can read (the session answers
        it as any bad frame); the Deferred fails only on our own fault.
        """
        if frame.command not in ("CONNECT", "STOMP"):
            raise ClientError("expected CONNECT", f"got {frame.command} before CONNECT")
        headers = frame.headers
        accept = headers.get("accept-version")
        version = self.choose_version(accept)
        if version is None:
            supported = ",".join(self.versions)
            return succeed(
                Refused(
                    "unsupported protocol version",
                    f"this broker supports STOMP {supported};"
                    f" the client accepts {(accept or '')[:80]}",
                    (("version", supported),),
                )
            )
        client_beat = (0, 0)  # STOMP 1.0 has no heart-beats: its header means nothing
        if version != "1.0":
            try:
                client_beat = parse_heartbeat(headers.get("heart-beat", "0,0"))
            except HeartbeatError as exc:
                raise ClientError("invalid heart-beat header", str(exc)) from None
        verdict = check_login(self.settings.access, headers, self.peer, self.clock)
        return verdict.addCallback(self._decide, version, client_beat)

    def choose_version(self, accept: str | None) -> str | None:
        """The highest version both sides accept (no ``accept-version``: 1.0); None: none."""
        if accept is None:
            return "1.0"  # and every subprotocol allows 1.0
        offered = {v.strip() for v in accept.split(",")}
        common = [v for v in self.versions if v in offered]
        return common[-1] if common else None

    def _decide(
        self, verdict: Verdict, version: str, client_beat: tuple[int, int]
    ) -> Accepted | Refused:
        if verdict.refusal is not None:
            return Refused(verdict.refusal, verdict.detail, delay=verdict.delay)
        settings = self.settings
        offer = settings.heartbeat if version != "1.0" else (0, 0)
        return Accepted(
            version,
            negotiate(client_beat, settings.heartbeat),
            verdict.user,
            verdict.client_id,
            (
                ("version", version),
                ("session", self.session_id),
                ("server", settings.server),
                ("heart-beat", f"{offer[0]},{offer[1]}"),
            ),
        )

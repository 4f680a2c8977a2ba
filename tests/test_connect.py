"""The CONNECT handshake on its own: a frame in, an Accepted or a Refused value out."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from stompbroker.codec import Frame
from stompbroker.core import AccessControl
from stompbroker.session import Accepted, ClientError, Handshake, Refused, SessionSettings
from tests.helpers import pending_runner
from tests.test_auth import USERS

PEER = "192.0.2.7:5000"

#: For ``successResultOf``: the value a Deferred already fired with.
_TRIAL = SynchronousTestCase()


def _handshake(
    settings: SessionSettings | None = None,
    clock: Clock | None = None,
    versions: tuple[str, ...] = ("1.0", "1.1", "1.2"),
) -> Handshake:
    return Handshake(settings or SessionSettings(), clock or Clock(), "s1", PEER, versions)


def _answer(handshake: Handshake, command: str = "CONNECT", **headers: str) -> Any:
    """The value ``handshake`` answers a frame with (it must answer at once)."""
    frame = Frame(command, {k.replace("_", "-"): v for k, v in headers.items()})
    return _TRIAL.successResultOf(handshake.receive(frame))


def test_a_version_nobody_shares_is_refused_with_the_version_header() -> None:
    """No common version: Refused at once, with ``version`` listing ours, and no delay."""
    assert _answer(_handshake(), accept_version="2.0,1.3") == Refused(
        "unsupported protocol version",
        "this broker supports STOMP 1.0,1.1,1.2; the client accepts 2.0,1.3",
        (("version", "1.0,1.1,1.2"),),
        0.0,
    )


def test_the_versions_header_lists_only_those_this_connection_may_use() -> None:
    """Narrowed versions (a WebSocket subprotocol's) are the ones a refusal lists."""
    refused = _answer(_handshake(versions=("1.0", "1.1")), accept_version="1.2")
    assert refused == Refused(
        "unsupported protocol version",
        "this broker supports STOMP 1.0,1.1; the client accepts 1.2",
        (("version", "1.0,1.1"),),
    )


def test_accepted_carries_the_negotiated_heartbeats_and_the_connected_headers() -> None:
    """Let in: the highest common version, (outgoing, incoming) per spec, CONNECTED headers."""
    settings = SessionSettings(server="stompbroker/9", heartbeat=(4000, 5000))
    answer = _answer(_handshake(settings), accept_version="1.1,1.2", heart_beat="3000,7000")
    assert answer == Accepted(
        "1.2",
        (7000, 5000),
        None,
        "",
        (
            ("version", "1.2"),
            ("session", "s1"),
            ("server", "stompbroker/9"),
            ("heart-beat", "4000,5000"),
        ),
    )


def test_a_10_client_gets_no_heartbeats_whatever_it_says() -> None:
    """STOMP 1.0: no heart-beats either way, 0,0 offered, its header (even malformed) ignored."""
    answer = _answer(_handshake(), heart_beat="whenever")
    assert answer == Accepted(
        "1.0",
        (0, 0),
        None,
        "",
        (
            ("version", "1.0"),
            ("session", "s1"),
            ("server", "stompbroker"),
            ("heart-beat", "0,0"),
        ),
    )


def test_a_good_login_is_accepted_as_its_user_with_its_client_id() -> None:
    """The right passcode: Accepted as that user, client-id defaulting to the login."""
    settings = SessionSettings(access=AccessControl(USERS))
    answer = _answer(_handshake(settings), accept_version="1.2", login="alice", passcode="a-pass")
    assert isinstance(answer, Accepted)
    assert (answer.user, answer.client_id) == ("alice", "alice")


def test_a_wrong_password_is_refused_after_the_throttles_delay() -> None:
    """A wrong passcode: Refused "login failed", delayed 1 s, then 2 s for the next failure
    (made once the first one's penalty is over)."""
    settings = SessionSettings(access=AccessControl(USERS))
    clock = Clock()
    for delay in (1.0, 2.0):
        answer = _answer(
            _handshake(settings, clock), accept_version="1.2", login="alice", passcode="nope"
        )
        assert answer == Refused("login failed", "the login or the passcode is wrong", (), delay)
        clock.advance(delay)


def test_a_check_under_penalty_waits_before_the_password_is_checked() -> None:
    """Within the penalty of a failure, a CONNECT (even with the right passcode) is not
    checked until the penalty is over: then it is let in."""
    run, held = pending_runner()
    settings = SessionSettings(access=AccessControl(USERS, run=run))
    clock = Clock()
    first = _handshake(settings, clock).receive(
        Frame("CONNECT", {"accept-version": "1.2", "login": "alice", "passcode": "nope"})
    )
    ((waiting, function, args),) = held
    waiting.callback(function(*args))
    refused = _TRIAL.successResultOf(first)
    assert isinstance(refused, Refused) and refused.delay == 1.0
    second = _handshake(settings, clock).receive(
        Frame("CONNECT", {"accept-version": "1.2", "login": "alice", "passcode": "a-pass"})
    )
    clock.advance(0.999)
    assert len(held) == 1 and not second.called
    clock.advance(0.001)
    (_, (waiting, function, args)) = held
    waiting.callback(function(*args))
    accepted = _TRIAL.successResultOf(second)
    assert isinstance(accepted, Accepted) and accepted.user == "alice"


def test_an_anonymous_client_is_refused_at_once_when_users_are_required() -> None:
    """No login where one is required: Refused "login required", without delay."""
    settings = SessionSettings(access=AccessControl(USERS))
    assert _answer(_handshake(settings), accept_version="1.2") == Refused(
        "login required", "this broker lets in only clients that send a login and passcode"
    )


def test_a_refused_version_checks_no_password() -> None:
    """The version is decided first: a refused one neither checks nor counts the password."""
    access = AccessControl(USERS)
    settings = SessionSettings(access=access)
    refused = _answer(_handshake(settings), accept_version="2.0", login="alice", passcode="x")
    assert refused.message == "unsupported protocol version"
    assert access.throttle.failures == {}


def test_the_answer_waits_for_a_password_check_in_a_thread() -> None:
    """A password checked off the reactor thread: the value comes when the check returns."""
    run, held = pending_runner()
    handshake = _handshake(SessionSettings(access=AccessControl(USERS, run=run)))
    frame = Frame("CONNECT", {"accept-version": "1.2", "login": "bob", "passcode": "b-pass"})
    answers: list[Any] = []
    handshake.receive(frame).addCallback(answers.append)
    assert answers == []
    ((waiting, function, args),) = held
    waiting.callback(function(*args))
    (accepted,) = answers
    assert isinstance(accepted, Accepted) and accepted.user == "bob"


@pytest.mark.parametrize(
    ("command", "headers", "message"),
    [
        ("SEND", {"destination": "/queue/q"}, "expected CONNECT"),
        ("CONNECT", {"accept-version": "1.2", "heart-beat": "soon"}, "invalid heart-beat header"),
    ],
)
def test_a_frame_that_is_no_readable_connect_is_a_client_error(
    command: str, headers: dict[str, str], message: str
) -> None:
    """Not CONNECT, or a malformed heart-beat: ClientError, answered like any bad frame."""
    with pytest.raises(ClientError) as raised:
        _handshake().receive(Frame(command, headers))
    assert raised.value.message == message


def test_the_values_are_frozen() -> None:
    """Accepted and Refused are values: they cannot be changed once made."""
    refused = Refused("login failed", "the login or the passcode is wrong")
    with pytest.raises(dataclasses.FrozenInstanceError):
        refused.delay = 0.0  # type: ignore[misc]
    accepted = Accepted("1.2", (0, 0), None, "", ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        accepted.user = "mallory"  # type: ignore[misc]

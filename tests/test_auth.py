"""Logging in at CONNECT and access rules on SEND and SUBSCRIBE, through a session's bytes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent

from stompbroker.codec import Frame, encode_frame
from stompbroker.core import AccessControl, Broker, DestinationPolicy, PolicyMap, User
from stompbroker.testing import QUIET, Client
from tests.helpers import RecordingObserver, pending_runner
from tests.test_access import cheap_hash, rule

USERS = [
    User("alice", cheap_hash("a-pass"), frozenset({"producers"})),
    User("bob", cheap_hash("b-pass"), frozenset({"consumers"})),
]


def _client(
    access: AccessControl,
    broker: Broker | None = None,
    clock: Clock | None = None,
    session_id: str = "s1",
) -> Client:
    settings = replace(QUIET, access=access)
    if broker is None:
        broker = Broker(clock=clock or Clock())
    return Client(broker, clock, session_id, settings)


def _login(client: Client, login: str | None, passcode: str = "", **headers: str) -> list[Frame]:
    """CONNECT (1.2) with ``login`` and ``passcode`` if given; the frames written at once."""
    pairs = {"accept-version": "1.2", "host": "h", **headers}
    if login is not None:
        pairs.update(login=login, passcode=passcode)
    client.send_raw(encode_frame("CONNECT", pairs))
    return client.frames()


def _logged_in(access: AccessControl, login: str, passcode: str, **kwargs: Any) -> Client:
    client = _client(access, **kwargs)
    (answer,) = _login(client, login, passcode)
    assert answer.command == "CONNECTED", answer
    return client


# -- CONNECT -----------------------------------------------------------------------------


def test_a_good_login_gets_connected() -> None:
    """The right login and passcode get CONNECTED; the session knows its user."""
    client = _logged_in(AccessControl(USERS), "alice", "a-pass")
    assert client.session.user == "alice"
    assert not client.closing


def test_wrong_login_and_wrong_passcode_get_the_same_delayed_error() -> None:
    """An unknown login and a wrong passcode get identical ERRORs, each after 1 s, then close."""
    access = AccessControl(USERS)
    answers: list[tuple[str, dict[str, str], bytes]] = []
    for login, passcode in (("mallory", "a-pass"), ("alice", "wrong")):
        clock = Clock()
        client = _client(access, clock=clock)
        client.session.peer = f"192.0.2.{len(answers) + 1}:5000"
        client.session.guard.peer = client.session.peer
        assert _login(client, login, passcode) == []
        clock.advance(0.999)
        assert client.frames() == [] and not client.closing
        clock.advance(0.001)
        error = client.error("login failed")
        answers.append((error.command, error.headers, error.body))
    assert answers[0] == answers[1]


def test_repeated_failures_from_one_address_wait_longer() -> None:
    """The second failure from an address waits 2 s, the third 4 s."""
    access = AccessControl(USERS)
    clock = Clock()  # the throttle's penalties are times on this clock
    for expected in (1.0, 2.0, 4.0):
        client = _client(access, clock=clock)
        _login(client, "alice", "nope")
        clock.advance(expected - 0.01)
        assert not client.closing
        clock.advance(0.01)
        client.error("login failed")


def test_a_failed_login_is_logged_with_peer_and_login() -> None:
    """The log names the login and the peer of a failed login (never the passcode)."""
    client = _client(AccessControl(USERS))
    with capturedLogs() as events:
        _login(client, "alice", "hunter2")
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1
    text = warnings[0]["log_format"].format(**warnings[0])
    assert "'alice'" in text and "test:s1" in text and "hunter2" not in text


def test_a_client_that_leaves_during_the_delay_gets_nothing() -> None:
    """The delayed ERROR is not written once the connection is gone, nor told to the observer."""
    clock = Clock()
    client = _client(AccessControl(USERS), clock=clock)
    observer = client.session.observer = RecordingObserver()
    _login(client, "alice", "nope")
    client.lose()
    clock.advance(30)
    assert client.frames() == []
    assert clock.getDelayedCalls() == []
    assert observer.calls == []


def test_closing_while_under_penalty_frees_no_wait() -> None:
    """A CONNECT made under penalty and closed before its check is still checked in its
    turn and counted: the next login from that address waits for the doubled penalty."""
    access = AccessControl(USERS)
    clock = Clock()
    _login(_client(access, clock=clock), "alice", "nope")  # failure 1 at t=0: until t=1
    clock.advance(0.1)
    early = _client(access, clock=clock)
    assert _login(early, "alice", "guess") == []
    early.lose()
    clock.advance(0.9)  # t=1: the closed connection's guess is checked: until t=3
    assert access.throttle.failures["test"][0] == 2
    clock.advance(0.5)
    right = _client(access, clock=clock)
    assert _login(right, "alice", "a-pass") == []
    clock.advance(1.49)
    assert right.frames() == []
    clock.advance(0.01)
    (answer,) = right.frames()
    assert answer.command == "CONNECTED"
    assert access.throttle.failures == {}


def test_a_login_beyond_the_waiting_bound_is_refused_at_once_unchecked() -> None:
    """With max_pending checks of its address waiting, a CONNECT gets ERROR "too many logins
    waiting" at once; its password is not checked and nothing is counted."""
    run, held = pending_runner()
    access = AccessControl(USERS, run=run)
    access.throttle.max_pending = 1
    assert _login(_client(access), "alice", "a-pass") == []
    refused = _client(access)
    (error,) = _login(refused, "alice", "nope")
    assert (error.command, error.headers["message"]) == ("ERROR", "too many logins waiting")
    assert (
        error.body == b"too many logins from this address wait for their check; try again later\n"
    )
    assert refused.closing
    assert len(held) == 1 and access.throttle.failures == {}


def test_a_refused_login_is_told_to_the_observer_when_its_error_is_sent() -> None:
    """A wrong passcode: nothing is told during the delay, then "ERROR sent: login failed"."""
    clock = Clock()
    client = _client(AccessControl(USERS), clock=clock)
    observer = client.session.observer = RecordingObserver()
    _login(client, "alice", "nope")
    clock.advance(0.999)
    assert observer.calls == []
    clock.advance(0.001)
    client.error("login failed")
    assert observer.calls == [("closed", "ERROR sent: login failed")]


def test_anonymous_clients_are_let_in_without_users() -> None:
    """With no users (the default) a CONNECT without login, or with any, is let in."""
    for login in (None, "whoever"):
        client = _client(AccessControl())
        (answer,) = _login(client, login, "x")
        assert answer.command == "CONNECTED"
        assert client.session.user is None


def test_anonymous_clients_are_refused_once_there_are_users() -> None:
    """With users, a CONNECT without login gets ERROR 'login required' at once."""
    client = _client(AccessControl(USERS))
    frames = _login(client, None)
    assert [f.headers["message"] for f in frames] == ["login required"]
    assert client.closing


def test_allow_anonymous_lets_them_in_beside_users() -> None:
    """allow_anonymous: true lets a client without login in, as nobody in particular."""
    client = _client(AccessControl(USERS, allow_anonymous=True))
    (answer,) = _login(client, None)
    assert answer.command == "CONNECTED"
    assert client.session.user is None


def test_no_users_and_no_anonymous_refuses_everyone() -> None:
    """allow_anonymous: false without users lets nobody in."""
    access = AccessControl(allow_anonymous=False)
    assert _login(_client(access), None)[0].headers["message"] == "login required"
    clock = Clock()
    client = _client(access, clock=clock)
    _login(client, "alice", "a-pass")
    clock.advance(1)
    client.error("login failed")


def test_frames_after_connect_wait_for_the_password_check() -> None:
    """During the password check nothing is read or answered; then CONNECTED, then the rest."""
    run, held = pending_runner()
    broker = Broker(clock=Clock())
    client = _client(AccessControl(USERS, run=run), broker)
    observer = client.session.observer = RecordingObserver()
    connect = encode_frame(
        "CONNECT", {"accept-version": "1.2", "host": "h", "login": "alice", "passcode": "a-pass"}
    )
    subscribe = encode_frame("SUBSCRIBE", {"destination": "/queue/q", "id": "1"})
    client.send_raw(connect + subscribe)
    client.send_raw(encode_frame("SEND", {"destination": "/queue/q", "receipt": "r"}, b"hi"))
    assert client.written() == b""
    assert client.transport.producerState == "paused"
    assert observer.calls == []
    ((waiting, function, args),) = held
    waiting.callback(function(*args))
    assert observer.calls == [("connected", "alice", "1.2")]
    frames = client.frames()
    assert [f.command for f in frames] == ["CONNECTED", "MESSAGE", "RECEIPT"]
    assert frames[1].body == b"hi"
    assert client.transport.producerState == "producing"


def test_a_client_that_leaves_during_the_check_gets_nothing() -> None:
    """If the connection ends before the password check returns, nothing is written."""
    run, held = pending_runner()
    client = _client(AccessControl(USERS, run=run))
    observer = client.session.observer = RecordingObserver()
    _login(client, "alice", "a-pass")
    client.lose()
    ((waiting, function, args),) = held
    waiting.callback(function(*args))
    assert client.written() == b""
    assert observer.calls == []


def test_a_failing_check_is_an_internal_error(logged_failures: list[LogEvent]) -> None:
    """A check that raises is logged; the client sees only 'internal error'."""
    run, held = pending_runner()
    client = _client(AccessControl(USERS, run=run))
    _login(client, "alice", "a-pass")
    held[0][0].errback(RuntimeError("boom"))
    client.error("internal error")
    (failure,) = logged_failures
    assert formatEvent(failure) == "checking the login of test:s1 failed"
    assert failure["log_failure"].check(RuntimeError)


@pytest.mark.parametrize(
    ("login", "passcode", "client_id", "expected"),
    [
        ("alice", "a-pass", None, "alice"),
        ("alice", "a-pass", "alice", "alice"),
        ("alice", "a-pass", "alice.eu", "alice.eu"),
        (None, "", "archiver", "archiver"),
    ],
)
def test_client_ids_of_ones_own(
    login: str | None, passcode: str, client_id: str | None, expected: str
) -> None:
    """A user's client-id is its login (the default) or login.*; anonymous ones, no user's."""
    client = _client(AccessControl(USERS, allow_anonymous=True))
    headers = {"client-id": client_id} if client_id is not None else {}
    (answer,) = _login(client, login, passcode, **headers)
    assert answer.command == "CONNECTED"
    assert client.session.client_id == expected


@pytest.mark.parametrize(("login", "client_id"), [("alice", "bob"), (None, "bob.archive")])
def test_another_users_client_id_is_refused(login: str | None, client_id: str) -> None:
    """A client-id that belongs to another user gets ERROR 'client-id not allowed'."""
    client = _client(AccessControl(USERS, allow_anonymous=True))
    frames = _login(client, login, "a-pass", **{"client-id": client_id})
    assert [f.headers["message"] for f in frames] == ["client-id not allowed"]
    assert client.closing


# -- access rules ------------------------------------------------------------------------

RULES = [
    rule("producers", "/queue/orders.>", "write", "create"),
    rule("consumers", "/queue/orders.>", "read"),
    rule("consumers", "/topic/prices.>", "read", "create"),
    rule("*", "/topic/public", "read", "write", "create"),
]


def _policies(*declared: str) -> PolicyMap:
    return PolicyMap({name: DestinationPolicy() for name in declared})


def test_send_needs_write() -> None:
    """A SEND the rules allow is accepted; one they do not gets ERROR naming the destination."""
    broker = Broker(clock=Clock())
    alice = _logged_in(AccessControl(USERS, RULES), "alice", "a-pass", broker=broker)
    alice.publish("/queue/orders.eu", b"ok", receipt="r1")
    assert [f.command for f in alice.frames()] == ["RECEIPT"]
    assert broker.queue_depth("orders.eu") == 1
    alice.publish("/queue/payroll", b"no", receipt="r2")
    error = alice.error("access denied to /queue/payroll")
    assert error.headers["receipt-id"] == "r2"
    assert "user 'alice' has no write permission" in error.body.decode()
    assert broker.queue_depth("payroll") == 0


def test_subscribe_needs_read() -> None:
    """SUBSCRIBE needs read: bob may read orders, alice may not."""
    access = AccessControl(USERS, RULES)
    broker = Broker(clock=Clock(), policies=_policies("/queue/orders.>"))
    bob = _logged_in(access, "bob", "b-pass", broker=broker)
    bob.subscribe("/queue/orders.eu", receipt="r")
    assert [f.command for f in bob.frames()] == ["RECEIPT"]
    alice = _logged_in(access, "alice", "a-pass", broker=broker)
    alice.subscribe("/queue/orders.eu")
    alice.error("access denied to /queue/orders.eu")


def test_create_is_needed_for_undeclared_destinations_only() -> None:
    """Using a destination no policy declares needs create; a declared one does not."""
    access = AccessControl(USERS, [rule("*", "/queue/>", "read")])
    broker = Broker(clock=Clock(), policies=_policies("/queue/declared"))
    client = _logged_in(access, "bob", "b-pass", broker=broker)
    client.subscribe("/queue/declared", receipt="r")
    assert [f.command for f in client.frames()] == ["RECEIPT"]
    client.subscribe("/queue/other", "2")
    error = client.error("access denied to /queue/other")
    assert "no create permission" in error.body.decode()


def test_browsing_and_wildcards_need_read_only() -> None:
    """Browsing a queue and a wildcard subscription create nothing: read is enough."""
    access = AccessControl(
        USERS, [rule("bob", "/queue/>", "read"), rule("bob", "/topic/>", "read")]
    )
    client = _logged_in(access, "bob", "b-pass")
    client.subscribe("/queue/jobs", "1", browser="true", receipt="r1")
    client.subscribe("/topic/prices.>", "2", receipt="r2")
    assert [f.command for f in client.frames()] == ["RECEIPT", "MESSAGE", "RECEIPT"]


def test_a_wildcard_subscription_must_be_covered() -> None:
    """Subscribing to /topic/> with read on /topic/prices.> only is denied."""
    client = _logged_in(AccessControl(USERS, RULES), "bob", "b-pass")
    client.subscribe("/topic/>")
    client.error("access denied to /topic/>")


def test_anonymous_clients_get_the_everyone_rules() -> None:
    """An anonymous client may do what '*' rules grant, and nothing more."""
    access = AccessControl(USERS, RULES, allow_anonymous=True)
    client = _client(access)
    assert _login(client, None)[0].command == "CONNECTED"
    client.subscribe("/topic/public", receipt="r")
    client.publish("/topic/public", b"hello")
    assert [f.command for f in client.frames()] == ["RECEIPT", "MESSAGE"]
    client.publish("/queue/orders.eu", b"no")
    error = client.error("access denied to /queue/orders.eu")
    assert "an anonymous client has no write" in error.body.decode()


def test_a_transactions_sends_are_checked_when_staged() -> None:
    """A denied SEND in a transaction gets its ERROR when staged; nothing is delivered."""
    broker = Broker(clock=Clock())
    alice = _logged_in(AccessControl(USERS, RULES), "alice", "a-pass", broker=broker)
    alice.send("BEGIN", {"transaction": "t"})
    alice.publish("/queue/orders.eu", b"staged", transaction="t", receipt="r1")
    assert [f.command for f in alice.frames()] == ["RECEIPT"]
    alice.publish("/queue/payroll", b"no", transaction="t")
    alice.error("access denied to /queue/payroll")
    assert broker.queue_depth("orders.eu") == 0


def test_a_committed_transaction_of_allowed_sends_is_delivered() -> None:
    """BEGIN, allowed SENDs, COMMIT: the messages arrive as without rules."""
    broker = Broker(clock=Clock())
    alice = _logged_in(AccessControl(USERS, RULES), "alice", "a-pass", broker=broker)
    alice.send("BEGIN", {"transaction": "t"})
    alice.publish("/queue/orders.eu", b"1", transaction="t")
    alice.publish("/queue/orders.us", b"2", transaction="t")
    alice.send("COMMIT", {"transaction": "t", "receipt": "c"})
    assert [f.command for f in alice.frames()] == ["RECEIPT"]
    assert broker.queue_depth("orders.eu") == broker.queue_depth("orders.us") == 1


def test_temporary_destinations_are_outside_the_rules() -> None:
    """A client with no permission at all still has its own temporary queue."""
    access = AccessControl(USERS, [rule("bob", "/queue/x", "read")])
    alice = _logged_in(access, "alice", "a-pass")
    alice.subscribe("/temp-queue/replies", receipt="r")
    alice.publish("/temp-queue/replies", b"to myself")
    assert [f.command for f in alice.frames()] == ["RECEIPT", "MESSAGE"]


def test_durable_subscriptions_need_read_on_their_topic() -> None:
    """A durable SUBSCRIBE needs read on the topic; attaching by /dsub/ checks the same topic."""
    broker = Broker(clock=Clock())
    access = AccessControl(USERS, RULES)
    bob = _logged_in(access, "bob", "b-pass", broker=broker)
    bob.subscribe("/topic/prices.eu", "s1", durable="true", receipt="r")
    assert [f.command for f in bob.frames()] == ["RECEIPT"]
    assert broker.durables.get("bob", "s1") is not None
    bob.lose()
    again = _logged_in(access, "bob", "b-pass", broker=broker, session_id="s2")
    again.subscribe("/dsub/s1", "s1", receipt="r")
    assert [f.command for f in again.frames()] == ["RECEIPT"]
    access.configure(USERS, [rule("bob", "/topic/other", "read")])
    again.subscribe("/dsub/s1", "s9")
    again.error("access denied to /dsub/s1")


def test_new_rules_apply_to_connected_clients() -> None:
    """configure (a reload) changes what an already connected client may do at once."""
    access = AccessControl(USERS, RULES)
    alice = _logged_in(access, "alice", "a-pass")
    alice.publish("/queue/orders.eu", b"1", receipt="r")
    assert [f.command for f in alice.frames()] == ["RECEIPT"]
    access.configure(USERS, [rule("bob", "/queue/>", "write", "create")])
    alice.publish("/queue/orders.eu", b"2")
    alice.error("access denied to /queue/orders.eu")


def test_a_denial_is_logged() -> None:
    """A denied frame is logged with the user, the peer, the permission and the destination."""
    alice = _logged_in(AccessControl(USERS, RULES), "alice", "a-pass")
    with capturedLogs() as events:
        alice.publish("/queue/payroll", b"no")
    texts = [e["log_format"].format(**e) for e in events if "access denied" in e["log_format"]]
    assert texts == [
        "access denied: user 'alice' from test:s1 has no write permission on /queue/payroll"
    ]

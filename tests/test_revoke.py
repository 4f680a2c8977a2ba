"""Revocation on reload: a session says whether the users and rules now in force still let
it be connected and read what it subscribed to; a reload closes those they do not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from stompbroker.config import Config, parse
from stompbroker.core import AccessControl, Broker
from stompbroker.reloading import reload
from stompbroker.service import BrokerService
from stompbroker.testing import Client
from stompbroker.transport import CountingTransport
from tests.helpers import pending_runner
from tests.test_access import cheap_hash, rule
from tests.test_auth import USERS, _client, _logged_in, _login

RULES = [
    rule("producers", "/queue/orders.>", "write", "create"),
    rule("consumers", "/queue/orders.>", "read", "create"),
    rule("consumers", "/topic/prices.>", "read", "create"),
]


def _bob(access: AccessControl, broker: Broker | None = None) -> Client:
    return _logged_in(access, "bob", "b-pass", broker=broker)


# -- credentials -------------------------------------------------------------------------


def test_unchanged_credentials_are_not_revoked() -> None:
    """The same users again (a reload that changes nothing else): the session goes on."""
    access = AccessControl(USERS, RULES)
    bob = _bob(access)
    access.configure(list(USERS), RULES)
    assert bob.session.revoked() is None


def test_a_removed_user_is_revoked() -> None:
    """A session whose user is gone from the configuration: 'credentials revoked'."""
    access = AccessControl(USERS, RULES)
    bob = _bob(access)
    access.configure(USERS[:1], RULES)
    assert bob.session.revoked() == ("credentials revoked", "user 'bob' was removed")


def test_a_changed_password_is_revoked() -> None:
    """A session whose user's password hash changed: 'credentials revoked'."""
    access = AccessControl(USERS, RULES)
    bob = _bob(access)
    access.configure([USERS[0], replace(USERS[1], password_hash=cheap_hash("new"))], RULES)
    assert bob.session.revoked() == (
        "credentials revoked",
        "the password of user 'bob' changed",
    )


def test_anonymous_sessions_are_revoked_when_no_longer_let_in() -> None:
    """An anonymous session, once anonymous clients are refused: 'credentials revoked'."""
    access = AccessControl(USERS, allow_anonymous=True)
    anonymous = _client(access)
    assert _login(anonymous, None)[0].command == "CONNECTED"
    access.configure(USERS, [], allow_anonymous=True)
    assert anonymous.session.revoked() is None
    access.configure(USERS, [], allow_anonymous=False)
    assert anonymous.session.revoked() == (
        "credentials revoked",
        "anonymous clients are no longer let in",
    )


def test_a_session_not_yet_connected_is_not_revoked() -> None:
    """Before CONNECTED there is nothing to revoke: the login answers for itself."""
    access = AccessControl(USERS, RULES)
    client = _client(access)
    access.configure([], RULES, allow_anonymous=False)
    assert client.session.revoked() is None


def test_a_password_changed_during_the_login_check_refuses_the_login() -> None:
    """A reload that changes the user while its password is checked: ERROR, no CONNECTED."""
    run, held = pending_runner()
    access = AccessControl(USERS, RULES, run=run)
    client = _client(access)
    assert _login(client, "bob", "b-pass") == []
    waiting, function, args = held[0]
    good = function(*args)  # checked in a thread against the old hash ...
    access.configure([USERS[0], replace(USERS[1], password_hash=cheap_hash("new"))], RULES)
    waiting.callback(good)  # ... answered in the reactor after the reload
    error = client.error("credentials revoked")
    assert error.body == b"the password of user 'bob' changed\n"


# -- subscriptions -----------------------------------------------------------------------


def test_a_subscription_still_allowed_is_not_revoked() -> None:
    """Rules that still grant read on every subscription: the session goes on."""
    access = AccessControl(USERS, RULES)
    bob = _bob(access)
    bob.subscribe("/queue/orders.eu", "1")
    access.configure(USERS, [rule("bob", "/queue/>", "read")])
    assert bob.session.revoked() is None


def test_a_subscription_whose_read_is_revoked_names_its_destination() -> None:
    """A subscription the new rules do not let its user read: 'access revoked to DEST'."""
    access = AccessControl(USERS, RULES)
    bob = _bob(access)
    bob.subscribe("/queue/orders.eu", "1")
    bob.subscribe("/topic/prices.eu", "2")
    access.configure(USERS, [rule("consumers", "/queue/>", "read")])
    assert bob.session.revoked() == (
        "access revoked to /topic/prices.eu",
        "user 'bob' no longer has read permission on /topic/prices.eu",
    )


def test_leaving_a_group_revokes_what_the_group_granted() -> None:
    """Read granted through a group ends with the user's membership."""
    access = AccessControl(USERS, RULES)
    bob = _bob(access)
    bob.subscribe("/queue/orders.eu", "1")
    access.configure([USERS[0], replace(USERS[1], groups=frozenset())], RULES)
    assert bob.session.revoked() == (
        "access revoked to /queue/orders.eu",
        "user 'bob' no longer has read permission on /queue/orders.eu",
    )


def test_an_unsubscribed_or_browsed_destination_is_not_checked() -> None:
    """Only live subscriptions count: neither a finished browse nor an UNSUBSCRIBEd one."""
    access = AccessControl(USERS, RULES)
    bob = _bob(access)
    bob.subscribe("/queue/orders.eu", "1")
    bob.subscribe("/queue/orders.us", "2", browser="true")
    bob.send("UNSUBSCRIBE", {"id": "1"})
    access.configure(USERS, [rule("bob", "/topic/>", "read")])
    assert bob.session.revoked() is None


def test_a_durable_subscription_is_checked_on_its_topic() -> None:
    """/dsub/NAME is checked as SUBSCRIBE checks it: read on its topic pattern."""
    access = AccessControl(USERS, RULES)
    broker = Broker(clock=Clock())
    broker.declare_durable("bob", "s1", "prices.>", None)
    bob = _bob(access, broker)
    bob.subscribe("/dsub/s1", "1")
    access.configure(USERS, [rule("consumers", "/topic/prices.>", "read")])
    assert bob.session.revoked() is None
    access.configure(USERS, [rule("consumers", "/topic/prices.eu", "read")])
    assert bob.session.revoked() == (
        "access revoked to /dsub/s1",
        "user 'bob' no longer has read permission on /dsub/s1",
    )


# -- through a reload of the service -----------------------------------------------------

HASHES = {name: cheap_hash(f"{name}-pw") for name in ("alice", "bob", "carol")}


def _config(path: Path, users: str, rules: str) -> Config:
    listed = "".join(
        f"    - {{name: {name}, password_hash: '{HASHES[name]}', groups: [g]}}\n"
        for name in users.split()
    )
    text = (
        "broker: {store: memory}\nlisteners: {stomp: []}\n"
        "destinations:\n  - {name: /queue/work}\n"
        f"security:\n  users:\n{listed}  rules:\n{rules}"
    )
    return parse(text, str(path))


def _open(service: BrokerService, clock: Clock, login: str) -> Client:
    """A session of ``service`` registered as an open connection, logged in as ``login``."""
    client = Client(service.broker, clock, login, service.settings)
    service.monitoring.connections.add(
        client.session, f"test:{login}", "tcp", CountingTransport(client.transport)
    )
    (answer,) = _login(client, login, f"{login}-pw")
    assert answer.command == "CONNECTED", answer
    return client


def test_a_reload_closes_revoked_connections_and_counts_them(tmp_path: Path) -> None:
    """After a reload: the removed user's connection and the one whose read was revoked get
    their ERROR and close (one log line each, counted); the unacknowledged message goes back
    to the queue; a declared durable stays defined; an unaffected connection goes on."""
    everyone = "    - {principal: g, destinations: '/queue/>', permissions: [read, write]}\n"
    clock = Clock()
    service = BrokerService(_config(tmp_path / "a", "alice bob carol", everyone), clock, [])
    service.access.scheduler.run = maybeDeferred  # password checks at once, not in threads
    service.broker.declare_durable("carol", "d", "news", None)
    alice, bob, carol = (_open(service, clock, name) for name in ("alice", "bob", "carol"))
    bob.subscribe("/queue/work", "1", ack="client")
    alice.publish("/queue/work", b"job")
    assert bob.bodies() == [b"job"]
    carol.subscribe("/queue/work", "2")
    only_carol = (
        "    - {principal: carol, destinations: '/queue/>', permissions: [read, write]}\n"
        "    - {principal: bob, destinations: '/queue/other', permissions: [read]}\n"
    )
    with capturedLogs() as events:
        assert reload(service, lambda: _config(tmp_path / "b", "bob carol", only_carol), str)
    assert alice.error("credentials revoked").body == b"user 'alice' was removed\n"
    error = bob.error("access revoked to /queue/work")
    assert error.body == b"user 'bob' no longer has read permission on /queue/work\n"
    lines = [e["log_format"].format(**e) for e in events if "closed on reload" in e["log_format"]]
    assert lines == [
        "connection alice from test:alice (user alice) closed on reload: credentials revoked:"
        " user 'alice' was removed",
        "connection bob from test:bob (user bob) closed on reload: access revoked to"
        " /queue/work: user 'bob' no longer has read permission on /queue/work",
    ]
    assert service.monitoring.connections.revoked == 2
    bob.lose()
    [back] = carol.messages()
    assert (back.body, back.headers.get("redelivered")) == (b"job", "true")
    assert service.broker.durables.get("carol", "d") is not None
    carol.publish("/queue/work", b"more", receipt="r")
    assert [f.command for f in carol.frames()] == ["MESSAGE", "RECEIPT"]
    assert not carol.closing

"""Users, password hashes, access rules and the login throttle: the core's pure logic."""

from __future__ import annotations

import io

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from stompbroker import passwd
from stompbroker.config import ConfigError, parse
from stompbroker.core import (
    SCRYPT_N,
    AccessControl,
    LoginCheck,
    LoginThrottle,
    Rule,
    User,
    covers,
    hash_password,
    verify_password,
)

#: A cheap scrypt cost, so that the tests stay fast (the format is the same).
CHEAP = 16


def cheap_hash(password: str) -> str:
    """A hash of ``password`` that takes no time to check."""
    return hash_password(password, n=CHEAP)


def rule(principal: str, destination: str, *permissions: str) -> Rule:
    """A rule granting ``permissions`` on ``destination`` to ``principal``."""
    return Rule(principal, destination, frozenset(permissions))


# -- password hashes ---------------------------------------------------------------------


def test_a_hash_verifies_its_password_only() -> None:
    """verify_password accepts the hashed password and refuses any other."""
    encoded = cheap_hash("s3cret")
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert not verify_password("", encoded)


def test_hashes_are_salted() -> None:
    """Two hashes of one password differ (random salt) and both verify."""
    first, second = cheap_hash("same"), cheap_hash("same")
    assert first != second
    assert verify_password("same", first) and verify_password("same", second)


def test_default_hash_uses_the_documented_cost() -> None:
    """A hash made with the defaults says scrypt, N=2^14, r=8, p=1, and verifies."""
    encoded = hash_password("pw")
    assert encoded.startswith(f"scrypt${SCRYPT_N}$8$1$")
    assert SCRYPT_N == 2**14
    assert verify_password("pw", encoded)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain text",
        "scrypt$16$8$1$c2FsdA",
        "bcrypt$16$8$1$c2FsdHNhbHRzYWx0$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        "scrypt$15$8$1$c2FsdHNhbHRzYWx0$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        "scrypt$16$0$1$c2FsdHNhbHRzYWx0$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        "scrypt$16$8$1$c2FsdHNhbHRzYWx0$AAEC",
        "scrypt$16$8$1$!!!$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        f"scrypt${2**21}$8$1$c2FsdHNhbHRzYWx0$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    ],
)
def test_a_malformed_hash_verifies_nothing(encoded: str) -> None:
    """A hash that is not scrypt$N$r$p$SALT$KEY within bounds never verifies (no exception)."""
    assert not verify_password("", encoded)
    assert not verify_password("anything", encoded)


def test_the_configuration_accepts_what_the_core_makes() -> None:
    """A hash from hash_password passes the configuration's check; a malformed one does not."""
    good = f"security:\n  users:\n    - {{name: a, password_hash: '{cheap_hash('x')}'}}\n"
    assert parse(good).security.users[0].name == "a"
    bad = "security:\n  users:\n    - {name: a, password_hash: 'scrypt$15$8$1$c2Fsd$AAEC'}\n"
    with pytest.raises(ConfigError, match="expected a hash printed by stompbroker-passwd"):
        parse(bad)


# -- stompbroker-passwd ----------------------------------------------------------------


def test_passwd_reads_stdin_and_prints_a_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal, stompbroker-passwd hashes the first line of standard input."""
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\nignored\n"))
    assert passwd.main([]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", printed)


def test_passwd_work_factor_raises_the_cost(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--work-factor 15 makes a hash with N = 2^15."""
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert passwd.main(["--work-factor", "15"]) == 0
    assert capsys.readouterr().out.startswith(f"scrypt${2**15}$8$1$")


def test_passwd_refuses_an_empty_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty line is no password: exit status 2, nothing on standard output."""
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert passwd.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no password" in captured.err


def test_passwd_prompts_twice_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal the password is asked twice; answers that differ print no hash."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["one", "two"])
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert passwd.main([]) == 2
    assert capsys.readouterr().out == ""


def test_passwd_takes_no_password_argument() -> None:
    """A password given as an argument is refused (it would show in the process list)."""
    with pytest.raises(SystemExit) as exited:
        passwd.main(["hunter2"])
    assert exited.value.code == 2


# -- patterns --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("orders", "orders", True),
        ("orders", "orders.eu", False),
        ("orders.*", "orders.eu", True),
        ("orders.*", "orders.eu.new", False),
        ("orders.>", "orders.eu.new", True),
        ("orders.>", "orders", False),
        (">", "anything.at.all", True),
        ("orders.>", "orders.*.new", True),
        ("orders.>", "orders.>", True),
        ("orders.*", "orders.>", False),
        ("orders.*", "orders.*", True),
        ("orders.eu", "orders.*", False),
        ("*.eu", "orders.eu", True),
        ("orders.*.new", "orders.>", False),
    ],
)
def test_covers(pattern: str, name: str, expected: bool) -> None:
    """A rule pattern covers a name, or a subscription pattern, when it matches all it matches."""
    assert covers(pattern, name) is expected


# -- rules -----------------------------------------------------------------------------


def _access(*rules: Rule, anonymous: bool | None = None) -> AccessControl:
    users = [
        User("alice", cheap_hash("a-pass"), frozenset({"producers"})),
        User("bob", cheap_hash("b-pass"), frozenset({"consumers", "producers"})),
        User("carol", cheap_hash("c-pass")),
    ]
    return AccessControl(users, rules, anonymous)


def test_without_rules_everything_is_permitted() -> None:
    """No rule at all: every client, anonymous ones too, may do everything, admin included."""
    access = _access()
    for user in ("alice", None):
        for permission in ("read", "write", "create", "admin"):
            assert access.permits(user, permission, "/queue/anything")
        assert access.is_admin(user)


def test_rules_grant_by_user_group_and_everyone() -> None:
    """Permissions add up over rules for the user, its groups and '*'; nothing else is granted."""
    access = _access(
        rule("producers", "/queue/orders.>", "write"),
        rule("bob", "/queue/orders.>", "read"),
        rule("*", "/topic/public.>", "read"),
    )
    assert access.permits("alice", "write", "/queue/orders.eu")
    assert not access.permits("alice", "read", "/queue/orders.eu")
    assert access.permits("bob", "read", "/queue/orders.eu")
    assert not access.permits("carol", "write", "/queue/orders.eu")
    assert access.permits("carol", "read", "/topic/public.news")
    assert access.permits(None, "read", "/topic/public.news")
    assert not access.permits(None, "write", "/topic/public.news")


def test_a_queue_rule_does_not_cover_a_topic_of_that_name() -> None:
    """A rule for /queue/x says nothing about /topic/x."""
    access = _access(rule("*", "/queue/x", "read", "write"))
    assert access.permits("alice", "read", "/queue/x")
    assert not access.permits("alice", "read", "/topic/x")


def test_a_wildcard_subscription_needs_a_covering_rule() -> None:
    """Reading /topic/prices.> needs a rule covering all of it, not a narrower one."""
    access = _access(rule("*", "/topic/prices.eu", "read"), rule("bob", "/topic/prices.>", "read"))
    assert not access.permits("alice", "read", "/topic/prices.>")
    assert access.permits("alice", "read", "/topic/prices.eu")
    assert access.permits("bob", "read", "/topic/prices.*")


def test_configure_replaces_users_and_rules_in_place() -> None:
    """After configure, checks follow the new rules and the users' new groups at once."""
    access = _access(rule("producers", "/queue/q", "write"))
    assert access.permits("carol", "write", "/queue/q") is False
    carol = User("carol", cheap_hash("c"), frozenset({"producers"}))
    access.configure([carol], [rule("producers", "/queue/q", "write")])
    assert access.permits("carol", "write", "/queue/q")
    assert not access.permits("alice", "write", "/queue/q")  # alice is gone


def test_is_admin_needs_an_admin_rule_once_there_are_rules() -> None:
    """With rules, only a principal granted admin on some pattern is an administrator."""
    access = _access(rule("consumers", "/queue/>", "admin"), rule("*", "/queue/>", "read"))
    assert access.is_admin("bob")
    assert not access.is_admin("alice")
    assert not access.is_admin(None)


@pytest.mark.parametrize(
    ("anonymous", "with_users", "expected"),
    [(None, True, False), (None, False, True), (True, True, True), (False, False, False)],
)
def test_anonymous_default_follows_the_users(
    anonymous: bool | None, with_users: bool, expected: bool
) -> None:
    """allow_anonymous None lets anonymous clients in exactly when there are no users."""
    users = [User("u", cheap_hash("p"))] if with_users else []
    assert AccessControl(users, [], anonymous).allow_anonymous is expected


def test_client_ids_belong_to_users() -> None:
    """A user owns its login and login.* as client-ids; anonymous clients own the rest."""
    access = _access()
    assert access.owns_client_id("alice", "alice")
    assert access.owns_client_id("alice", "alice.eu")
    assert not access.owns_client_id("alice", "bob")
    assert not access.owns_client_id("alice", "alicex")
    assert access.owns_client_id(None, "archiver")
    assert not access.owns_client_id(None, "bob.1")
    assert AccessControl().owns_client_id(None, "bob")  # no users: no owners


# -- logging in ------------------------------------------------------------------------


def test_authenticate_knows_good_and_bad_credentials() -> None:
    """authenticate is true for a user's password only; an unknown login is false."""
    access = _access()
    assert access.authenticate("alice", "a-pass")
    assert not access.authenticate("alice", "b-pass")
    assert not access.authenticate("nobody", "a-pass")


def test_login_runs_the_check_with_the_injected_runner() -> None:
    """login hands the slow check to the runner and fires with its answer."""
    calls: list[tuple[object, ...]] = []
    pending: Deferred[bool] = Deferred()

    def run(function: object, *args: object) -> Deferred[bool]:
        calls.append((function, *args))
        return pending

    access = AccessControl([User("alice", cheap_hash("pw"))], run=run)
    answer = access.login("alice", "pw", "10.0.0.1", Clock())
    assert calls == [(access.authenticate, "alice", "pw")]
    results: list[LoginCheck] = []
    answer.addCallback(results.append)
    pending.callback(True)
    assert results == [LoginCheck(True)]


def test_throttle_doubles_the_delay_up_to_a_bound() -> None:
    """Failures from one address wait 1, 2, 4, 8, 16, 16 s; another address starts at 1 s."""
    throttle = LoginThrottle()
    delays = [throttle.failed("10.0.0.1", float(t)) for t in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0]
    assert throttle.failed("10.0.0.2", 6.0) == 1.0


def test_throttle_forgets_an_address_that_stopped_failing() -> None:
    """Ten quiet minutes after its last failure, an address starts again at 1 s."""
    throttle = LoginThrottle()
    throttle.failed("h", 0.0)
    throttle.failed("h", 1.0)
    assert throttle.failed("h", 2.0) == 4.0
    assert throttle.failed("h", 603.0) == 1.0


def test_throttle_remembers_a_bounded_number_of_addresses() -> None:
    """Beyond max_addresses, the address whose last failure is oldest is forgotten."""
    throttle = LoginThrottle(max_addresses=2)
    throttle.failed("a", 0.0)
    throttle.failed("b", 1.0)
    throttle.failed("a", 2.0)
    throttle.failed("c", 3.0)
    assert set(throttle.failures) == {"a", "c"}


def test_portal_hands_out_the_login_as_identity() -> None:
    """A good password through the portal earns an Identity naming the login."""
    from twisted.internet.task import Clock as TaskClock

    from stompbroker.core import Identity, IIdentity, PeerCredentials, User, hash_password

    access = AccessControl([User("ann", hash_password("pw", n=2**4))])
    portal = access.portal(TaskClock())
    done = portal.login(PeerCredentials("ann", "pw", "10.0.0.1"), None, IIdentity)
    results: list[object] = []
    done.addCallback(results.append)
    assert results[0][:2] == (IIdentity, Identity("ann"))  # type: ignore[index]


def test_portal_refusal_carries_the_throttle_penalty() -> None:
    """A wrong password through the portal fails with LoginRefused and the delay earned."""
    from twisted.internet.task import Clock as TaskClock

    from stompbroker.core import IIdentity, LoginRefused, PeerCredentials, User, hash_password

    access = AccessControl([User("ann", hash_password("pw", n=2**4))])
    done = access.portal(TaskClock()).login(
        PeerCredentials("ann", "no", "10.0.0.1"), None, IIdentity
    )
    failures: list[object] = []
    done.addErrback(failures.append)
    refused = failures[0].value  # type: ignore[attr-defined]
    assert isinstance(refused, LoginRefused) and refused.check.delay == 1.0

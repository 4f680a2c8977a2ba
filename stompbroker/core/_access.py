"""Who may connect, and what they may do: users, groups, password hashes, access rules.

A password hash, as ``stompbroker-passwd`` prints it::

    scrypt$N$r$p$SALT$KEY     N (a power of 2), r, p: the scrypt cost;
                              SALT (16 bytes), KEY (32 bytes): base64 without padding

Access rules grant permissions on destinations to principals:

* a principal is a user name, a group name, or ``*`` (every client, anonymous too);
* a rule names a destination pattern (``/queue/orders.>``, same wildcards as
  destinations: ``*`` one name part, ``>`` the rest) and permissions among ``read``
  (SUBSCRIBE, browse), ``write`` (SEND), ``create`` (use a destination that no
  configured policy declares) and ``admin`` (the management API);
* permissions add up over every rule that names the client or one of its groups;
  no rule denies. With no rule at all, every admitted client may do everything.

Checking a password is slow by design (about 50 ms of CPU): ``login`` asks the
throttle (``_throttle.py``) when it may start, runs it with the injected ``run`` (a
thread, in the broker) through the fair scheduler, counts the outcome, and answers
with a Deferred.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, maybeDeferred, succeed

from ._clock import Clock
from ._throttle import CHECKS_AT_ONCE, FairScheduler, LoginThrottle, Runner

#: What a rule may grant.
PERMISSIONS = ("read", "write", "create", "admin")
#: The principal that names every client, anonymous ones included.
EVERYONE = "*"
#: scrypt's cost for new hashes: 16 MiB of memory and about 50 ms per check (Django's choice).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
#: Bounds on the cost a stored hash may ask for (a check must stay affordable).
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16


def hash_password(
    password: str,
    salt: bytes | None = None,
    n: int = SCRYPT_N,
    r: int = SCRYPT_R,
    p: int = SCRYPT_P,
) -> str:
    """The salted scrypt hash of ``password``, in the format ``verify_password`` reads."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` is the one ``encoded`` was made from (False if malformed)."""
    decoded = _decode(encoded)
    if decoded is None:
        return False
    n, r, p, salt, key = decoded
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), key)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    memory = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _decode(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if not (1 < n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= MAX_SCRYPT_R):
        return None
    if not 0 < p <= MAX_SCRYPT_P:
        return None
    try:
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    return (n, r, p, salt, key) if salt and len(key) == KEY_BYTES else None


#: Checked against when the login is unknown, so that it costs what a wrong passcode does.
_UNKNOWN_USER_HASH = (
    f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$c3RvbXBicm9rZXI6dW5rbm93bi11c2Vy$"
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
)


def covers(pattern: str, name: str) -> bool:
    """Whether every destination name ``name`` matches also matches ``pattern``.

    ``name`` may itself be a pattern (a wildcard subscription): ``orders.>`` covers
    ``orders.*.new`` but ``orders.*`` does not cover ``orders.>``.
    """
    want = pattern.split(".")
    have = name.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have) or have[index] == ">":
            return False
        if part != "*" and part != have[index]:
            return False
    return len(have) == len(want)


@dataclass(frozen=True)
class User:
    """A login: its name, its password hash and the groups it belongs to."""

    name: str
    password_hash: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LoginCheck:
    """What ``AccessControl.login`` found: a good password, or not (and the penalty owed);
    ``checked`` False: too many checks were waiting, this one was not made."""

    good: bool
    delay: float = 0.0
    checked: bool = True


@dataclass(frozen=True)
class Rule:
    """``permissions`` on destinations matching ``destination`` for ``principal``."""

    principal: str
    #: ``/queue/PATTERN`` or ``/topic/PATTERN``.
    destination: str
    permissions: frozenset[str]


def plugin_check(checker: Any, login: str, passcode: str) -> Deferred[bool]:
    """Whether ``checker`` (an ``ICredentialsChecker``) accepts ``login``/``passcode``,
    asked on the reactor thread (an async checker's Deferred is waited for); a refusal
    is any ``UnauthorizedLogin``, any other failure is the checker's fault."""
    credentials = UsernamePassword(login.encode(), passcode.encode())

    def refused(failure: Any) -> bool:
        failure.trap(UnauthorizedLogin)
        return False

    asked: Deferred[Any] = maybeDeferred(checker.requestAvatarId, credentials)
    return asked.addCallbacks(lambda _: True, refused)


class AccessControl:
    """The users, groups and rules of a broker; changed in place when the file is reloaded.

    ``allow_anonymous`` None means: anonymous clients are let in when there are no
    users. ``run`` runs password checks off the reactor thread (default: at once),
    ``checks_at_once`` at a time.
    """

    def __init__(
        self,
        users: Iterable[User] = (),
        rules: Iterable[Rule] = (),
        allow_anonymous: bool | None = None,
        run: Runner | None = None,
        checks_at_once: int = CHECKS_AT_ONCE,
        checker: Any = None,
    ) -> None:
        self.throttle = LoginThrottle()
        #: Runs the password checks (its ``run``: the runner), fairly by address.
        self.scheduler = FairScheduler(run if run is not None else maybeDeferred, checks_at_once)
        self.users: dict[str, User] = {}
        self.rules: tuple[Rule, ...] = ()
        self.allow_anonymous = True
        self._cache: dict[tuple[str | None, str, str], bool] = {}
        #: A twisted.cred ``ICredentialsChecker`` (``security.checker``) that decides logins
        #: instead of the users' password hashes; the users still give groups.
        self.checker: Any = None
        self.configure(users, rules, allow_anonymous, checker)

    def configure(
        self,
        users: Iterable[User],
        rules: Iterable[Rule],
        allow_anonymous: bool | None = None,
        checker: Any = None,
    ) -> None:
        """Take new users, rules and checker: rules apply from the next check, users and
        the checker to new logins."""
        self.users = {user.name: user for user in users}
        self.rules = tuple(rules)
        self.checker = checker
        configured = self.logins_configured
        self.allow_anonymous = not configured if allow_anonymous is None else allow_anonymous
        self._cache = {}

    @property
    def logins_configured(self) -> bool:
        """Whether logins are checked: users are configured, or a checker is named."""
        return bool(self.users) or self.checker is not None

    # -- who -------------------------------------------------------------------

    def authenticate(self, login: str, passcode: str) -> bool:
        """Whether ``passcode`` is ``login``'s password; slow (run it with ``run``)."""
        user = self.users.get(login)
        if user is None:
            verify_password(passcode, _UNKNOWN_USER_HASH)  # as slow as a wrong passcode
            return False
        return verify_password(passcode, user.password_hash)

    def login(self, login: str, passcode: str, address: str, clock: Clock) -> Deferred[LoginCheck]:
        """Check ``login``'s ``passcode`` for a client at ``address``, in the throttle's time
        and the scheduler's turn; the outcome is counted by the throttle whether or not the
        caller is still there. Fails only on our own fault."""
        throttle = self.throttle
        admitted = throttle.admit(address, login, clock)
        if admitted is None:
            return succeed(LoginCheck(False, 0.0, checked=False))
        outcome: Deferred[LoginCheck] = Deferred()

        def counted(good: bool) -> None:
            if good:
                throttle.succeeded(address, login)
                found = LoginCheck(True)
            else:
                found = LoginCheck(False, throttle.failed(address, clock.seconds(), login))
            throttle.release(address, clock)
            outcome.callback(found)

        def broke(failure: Any) -> None:
            throttle.release(address, clock)
            outcome.errback(failure)

        checker = self.checker

        def start(_: None) -> None:
            if checker is not None:
                ran = plugin_check(checker, login, passcode)
            else:
                ran = self.scheduler.submit(address, self.authenticate, login, passcode)
            ran.addCallbacks(counted, broke)

        admitted.addCallback(start)
        return outcome

    def portal(self, clock: Clock) -> Any:
        """The twisted.cred ``Portal`` for logins timed by ``clock`` (``_cred.py``)."""
        from ._cred import login_portal

        return login_portal(self, clock)

    def groups_of(self, user: str | None) -> frozenset[str]:
        """The groups ``user`` belongs to now (none for anonymous or unknown users)."""
        found = self.users.get(user) if user is not None else None
        return found.groups if found is not None else frozenset()

    def owns_client_id(self, user: str | None, client_id: str) -> bool:
        """Whether a client logged in as ``user`` may use ``client_id`` (durable names).

        With users configured, a user's client-ids are its login and those that start
        with its login and a dot; anonymous clients get those of no user.
        """
        if not self.logins_configured or not client_id:
            return True
        if user is not None:
            return client_id == user or client_id.startswith(user + ".")
        return not any(client_id == name or client_id.startswith(name + ".") for name in self.users)

    # -- what ------------------------------------------------------------------

    def permits(self, user: str | None, permission: str, destination: str) -> bool:
        """Whether ``user`` (None: anonymous) has ``permission`` on ``destination``.

        ``destination`` is ``/queue/NAME`` or ``/topic/NAME``; NAME may be a
        wildcard pattern, which is permitted when a rule covers all it matches.
        """
        if not self.rules:
            return True
        key = (user, permission, destination)
        allowed = self._cache.get(key)
        if allowed is None:
            allowed = self._evaluate(user, permission, destination)
            if len(self._cache) >= 100_000:
                self._cache.clear()
            self._cache[key] = allowed
        return allowed

    def _evaluate(self, user: str | None, permission: str, destination: str) -> bool:
        principals = self._principals(user)
        # Both kinds a rule may name have 7-character prefixes: /queue/, /topic/.
        prefix, name = destination[:7], destination[7:]
        for rule in self.rules:
            if rule.principal not in principals or permission not in rule.permissions:
                continue
            if rule.destination[:7] == prefix and covers(rule.destination[7:], name):
                return True
        return False

    def _principals(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset((EVERYONE,))
        return self.groups_of(user) | {EVERYONE, user}

    def is_admin(self, user: str | None) -> bool:
        """Whether ``user`` may use the management API: some rule grants it ``admin``
        (or there are no rules, so everyone admitted may do everything)."""
        if not self.rules:
            return True
        principals = self._principals(user)
        return any(r.principal in principals and "admin" in r.permissions for r in self.rules)

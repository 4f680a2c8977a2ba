"""Logging in, and what a logged-in connection may do.

At CONNECT, ``check_login`` decides::

    no users configured ............ let in anonymously (login and passcode ignored),
                                     unless allow_anonymous is false (then as below)
    no login ....................... let in anonymously if allowed, else
                                     ERROR "login required" at once
    login and passcode ............. checked off the reactor thread, once the throttle
                                     admits it (the penalty of the address and of the
                                     login is over); good: let in as that user; an
                                     unknown login or a wrong passcode, alike: ERROR
                                     "login failed", delayed by the penalty it earned
    too many checks waiting ........ ERROR "too many logins waiting" at once, unchecked
    client-id of another user ...... ERROR "client-id not allowed"

With users configured, a client's client-id (which names its durable subscriptions)
is its login, or begins with its login and a dot; a client that sends none gets its
login. Then ``Guard`` checks each SEND (``write``), transactional SENDs when staged,
and each SUBSCRIBE (``read``) against the rules, plus ``create`` when the frame would
create a queue or topic that no destination policy declares. Temporary destinations
are left to the broker (only their owner may consume them).

After a reload, ``Guard.revoked`` and ``Guard.read_revoked`` say whether a connected client's
credentials and subscriptions still hold: ERROR "credentials revoked" (its user removed, its
password changed, anonymous clients no longer let in) or "access revoked to DESTINATION".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from stompbroker.core import (
    AccessControl,
    Broker,
    Clock,
    IIdentity,
    LoginCheck,
    LoginRefused,
    PeerCredentials,
    is_pattern,
)

from ._errors import ClientError

log = Logger(namespace="stompbroker.session")

#: The ERROR for an unknown login and for a wrong passcode: the same, so as not to tell.
LOGIN_FAILED = ("login failed", "the login or the passcode is wrong")
#: The ERROR's message when a reload revokes a connected client's credentials.
REVOKED = "credentials revoked"

#: The ERROR when so many logins from one address wait already that this one is not checked.
TOO_MANY_WAITING = (
    "too many logins waiting",
    "too many logins from this address wait for their check; try again later",
)


@dataclass(frozen=True)
class Verdict:
    """What CONNECT's credentials earn: a user (None: anonymous), or a refusal."""

    user: str | None = None
    client_id: str = ""
    #: The ERROR's message when refused (None: let in) ...
    refusal: str | None = None
    detail: str = ""
    #: ... and how many seconds it waits.
    delay: float = 0.0


def check_login(
    access: AccessControl | None, headers: dict[str, str], peer: str, clock: Clock
) -> Deferred[Verdict]:
    """Decide on a CONNECT's ``login``, ``passcode`` and ``client-id``; fires with a Verdict.

    Fires at once unless a password must be checked.
    """
    client_id = headers.get("client-id", "")
    login = headers.get("login", "")
    if access is None or (not access.logins_configured and access.allow_anonymous):
        return succeed(Verdict(None, client_id))
    if not login:
        if not access.allow_anonymous:
            log.warn("refused an anonymous client from {peer}", peer=peer)
            detail = "this broker lets in only clients that send a login and passcode"
            return succeed(Verdict(refusal="login required", detail=detail))
        return succeed(_client_id(access, None, client_id))

    def decided(check: LoginCheck) -> Verdict:
        if check.good:
            log.debug("{peer} logged in as {login!r}", peer=peer, login=login)
            return _client_id(access, login, client_id)
        if not check.checked:
            log.warn(
                "refused a login for {login!r} from {peer}: too many logins wait from there",
                login=login[:100],
                peer=peer,
            )
            return Verdict(refusal=TOO_MANY_WAITING[0], detail=TOO_MANY_WAITING[1])
        log.warn(
            "login failed for {login!r} from {peer} (ERROR in {delay:g} s)",
            login=login[:100],
            peer=peer,
            delay=check.delay,
        )
        return Verdict(refusal=LOGIN_FAILED[0], detail=LOGIN_FAILED[1], delay=check.delay)

    credentials = PeerCredentials(login, headers.get("passcode", ""), host_of(peer))
    checking = access.portal(clock).login(credentials, None, IIdentity)

    def refused(failure: Any) -> LoginCheck:
        failure.trap(LoginRefused)
        return failure.value.check

    return checking.addCallbacks(lambda _: LoginCheck(True), refused).addCallback(decided)


def _client_id(access: AccessControl, user: str | None, client_id: str) -> Verdict:
    if user is not None and not client_id:
        client_id = user
    if access.owns_client_id(user, client_id):
        return Verdict(user, client_id)
    owner = "its login" if user is not None else "no user's login"
    return Verdict(
        refusal="client-id not allowed",
        detail=f"client-id {client_id[:100]!r} is not {owner} (or {owner} followed by a dot)",
    )


def host_of(peer: str) -> str:
    """The address part of a peer description ``HOST:PORT`` (``... (websocket)``)."""
    return peer.split(" ", 1)[0].rpartition(":")[0] or peer


class Guard:
    """Checks one connection's frames against the access rules (``access`` is shared)."""

    def __init__(self, access: AccessControl | None, broker: Broker, peer: str) -> None:
        self.access = access
        self.broker = broker
        self.peer = peer
        #: Who the connection logged in as (None: anonymous).
        self.user: str | None = None
        #: The password hash of the CONNECT's login when its check began (None: no such
        #: user): a reload that removes the user or changes it revokes the connection.
        self.login_hash: str | None = None

    def begin_login(self, login: str | None) -> None:
        """CONNECT names ``login``: remember its password hash now, before it is checked."""
        found = self.access.users.get(login) if self.access and login else None
        self.login_hash = found.password_hash if found is not None else None

    def revoked(self) -> tuple[str, str] | None:
        """The ERROR (message, detail) ending a logged-in connection whose credentials no
        longer hold (its user removed, its password changed, anonymous clients no longer
        let in); None while they hold."""
        access = self.access
        if access is None:
            return None
        if self.user is None:
            if access.allow_anonymous:
                return None
            return REVOKED, "anonymous clients are no longer let in"
        found = access.users.get(self.user)
        if found is None and access.checker is not None:
            return None  # the checker vouched for this login; security.users only adds groups
        if found is None:
            return REVOKED, f"user {self.user!r} was removed"
        if found.password_hash != self.login_hash:
            return REVOKED, f"the password of user {self.user!r} changed"
        return None

    def read_revoked(self, destination: str, client_id: str) -> tuple[str, str] | None:
        """The ERROR (message, detail) ending a connection whose subscription to
        ``destination`` (as SUBSCRIBE named it) the rules no longer allow; None if allowed.

        The check is SUBSCRIBE's ``read`` (``create`` was needed once, to make it)."""
        if not self.active or not destination.startswith(("/queue/", "/topic/", "/dsub/")):
            return None
        checked = destination
        if destination.startswith("/dsub/"):
            durable = self.broker.durables.get(client_id, destination[6:])
            if durable is None:
                return None
            checked = f"/topic/{durable.pattern}"
        assert self.access is not None
        if self.access.permits(self.user, "read", checked):
            return None
        who = f"user {self.user!r}" if self.user is not None else "an anonymous client"
        return (
            f"access revoked to {destination}",
            f"{who} no longer has read permission on {destination}",
        )

    @property
    def active(self) -> bool:
        """Whether any rule is in force (else everything is allowed)."""
        return self.access is not None and bool(self.access.rules)

    def check_send(self, destination: str) -> None:
        """ClientError unless the user may SEND to ``destination``."""
        access = self.access  # on every SEND: as cheap as can be when there are no rules
        if access is not None and access.rules and destination.startswith(("/queue/", "/topic/")):
            self._require("write", destination)
            self._require_create(destination)

    def check_subscribe(self, destination: str, client_id: str, browse: bool = False) -> None:
        """ClientError unless the user may SUBSCRIBE to (or browse) ``destination``."""
        if not self.active:
            return
        if destination.startswith("/dsub/"):
            durable = self.broker.durables.get(client_id, destination[6:])
            if durable is not None:
                self._require("read", f"/topic/{durable.pattern}", destination)
            return
        if destination.startswith(("/queue/", "/topic/")):
            self._require("read", destination)
            # A wildcard topic subscription makes nothing; a wildcard consumer queue is made.
            if not browse and not (destination[1] == "t" and is_pattern(destination[7:])):
                self._require_create(destination)

    def _require_create(self, destination: str) -> None:
        """A destination no policy declares is created by its use: that needs ``create``."""
        assert self.access is not None
        if self.access.permits(self.user, "create", destination):
            return
        if not self.broker.policies.declares(destination):
            self._require("create", destination)

    def _require(self, permission: str, destination: str, named: str | None = None) -> None:
        assert self.access is not None
        if self.access.permits(self.user, permission, destination):
            return
        named = named or destination
        who = f"user {self.user!r}" if self.user is not None else "an anonymous client"
        log.info(
            "access denied: {who} from {peer} has no {permission} permission on {destination}",
            who=who,
            peer=self.peer,
            permission=permission,
            destination=named,
        )
        raise ClientError(
            f"access denied to {named}", f"{who} has no {permission} permission on {named}"
        )

"""The one login path: a twisted.cred ``Portal`` for STOMP CONNECT and HTTP Basic.

    PeerCredentials(login, passcode, address)
      └► Portal.login ─► ThrottledChecker   the login throttle, in front of any checker
                            └► AccessControl.login ─► scrypt (off the reactor thread)
      └► LoginRealm ─► Identity(name)       the avatar the access rules use

A refused login fails with ``LoginRefused`` (an ``UnauthorizedLogin``) carrying the
``LoginCheck``: the penalty it earned, or that it was not checked at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from zope.interface import Interface, implementer

from ._clock import Clock

if TYPE_CHECKING:
    from ._access import AccessControl, LoginCheck


class IIdentity(Interface):
    """The avatar a login earns: who the access rules see (``name``)."""


@dataclass(frozen=True)
@implementer(IIdentity)
class Identity:
    """A logged-in user, by login name."""

    name: str


class PeerCredentials(UsernamePassword):
    """A login and password, and the address they came from (the throttle's key)."""

    def __init__(self, username: str, password: str, address: str) -> None:
        super().__init__(username.encode(), password.encode())
        self.address = address
        self.login = username
        self.passcode = password


class LoginRefused(UnauthorizedLogin):
    """A refused login, with what the throttle found (``check``)."""

    def __init__(self, check: LoginCheck) -> None:
        super().__init__("login refused")
        self.check = check


@implementer(ICredentialsChecker)
class ThrottledChecker:
    """Every login through the throttle, then the access control's check."""

    credentialInterfaces = (IUsernamePassword,)  # noqa: N815 (Twisted names it)

    def __init__(self, access: AccessControl, clock: Clock) -> None:
        self.access = access
        self.clock = clock

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:  # noqa: N802
        if isinstance(credentials, PeerCredentials):
            login, passcode, address = credentials.login, credentials.passcode, credentials.address
        else:
            login = credentials.username.decode("utf-8", "replace")
            passcode = credentials.password.decode("utf-8", "replace")
            address = getattr(credentials, "address", "")

        def decided(check: LoginCheck) -> str:
            if not check.good:
                raise LoginRefused(check)
            return login

        return self.access.login(login, passcode, address, self.clock).addCallback(decided)


@implementer(IRealm)
class LoginRealm:
    """Hands out an ``Identity`` for a checked login."""

    def requestAvatar(  # noqa: N802 (Twisted calls it)
        self,
        avatarId: Any,  # noqa: N803
        mind: Any,
        *interfaces: Any,
    ) -> tuple[Any, Any, Any]:
        name = avatarId.decode() if isinstance(avatarId, bytes) else avatarId
        return IIdentity, Identity(name), lambda: None


def login_portal(access: AccessControl, clock: Clock) -> Portal:
    """The portal every login goes through: the throttle, then the password check."""
    return Portal(LoginRealm(), [ThrottledChecker(access, clock)])

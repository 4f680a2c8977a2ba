"""An example ``security.checker``: a twisted.cred checker reading a dict of users."""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer


@implementer(ICredentialsChecker)
class DictChecker:
    """Accepts a login whose password is ``users[login]``."""

    credentialInterfaces = (IUsernamePassword,)  # noqa: N815 (Twisted names it)

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:  # noqa: N802
        name = credentials.username.decode()
        if self.users.get(name) == credentials.password.decode():
            return succeed(name)
        return fail(UnauthorizedLogin("bad login"))

"""Wiring the management API into a running broker: who may use it, and what only the
process knows (its memory).

Who may use the API (``/api/...`` and ``/metrics``) is decided per request (``ApiGate``):

* once logins are configured (``security.users`` or ``security.checker``): HTTP Basic
  credentials of a user that an access rule grants ``admin`` (with no rules at all, every
  user), through twisted.cred: ``HTTPAuthSessionWrapper`` and ``BasicCredentialFactory`` in
  front of the broker's own login portal (``AccessControl.portal``: the login throttle, then
  the password check off the reactor thread, about 50 ms of CPU). A login is refused at once,
  unchecked, while its address or login is within a penalty. Good credentials are remembered
  for ``CREDENTIALS_TTL`` seconds (the request is answered when the check is done).
* while no logins are configured: only on a listener bound to a loopback interface
  (``interface=127.0.0.1``, ``::1``, ``localhost``, or a UNIX socket), and only for requests
  whose ``Host`` is a loopback name (a page elsewhere cannot reach it by DNS rebinding).
  On any other listener every request gets ``401``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.logger import Logger
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.resource import IResource, Resource

from stompbroker import __version__
from stompbroker.config import Config, WebSocketListener
from stompbroker.core import (
    AccessControl,
    Broker,
    Clock,
    IIdentity,
    IMessageStore,
    LoginRefused,
    PeerCredentials,
    StatsPublisher,
)
from stompbroker.transport import (
    NOT_FOUND,
    Connections,
    Console,
    Management,
    ManagementApi,
    Metrics,
    gzipped,
)

log = Logger(namespace="stompbroker.management")

#: How long good API credentials are remembered, in seconds, and how many at most.
CREDENTIALS_TTL = 300.0
MAX_REMEMBERED = 100

_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def rss_bytes(path: str = "/proc/self/status") -> int | None:
    """The process's resident memory (VmRSS), or None where /proc has no such file."""
    try:
        with open(path, encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def is_loopback_endpoint(spec: str) -> bool:
    """Whether a Twisted server endpoint string listens on a loopback interface only."""
    parts = [p.replace("\\:", ":").strip() for p in re.split(r"(?<!\\):", spec)]
    kind = parts[0].lower()
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    interfaces = [p.split("=", 1)[1].lower() for p in parts if p.startswith("interface=")]
    if not interfaces:
        return False  # every interface
    return interfaces[0] in _LOOPBACK_HOSTS or interfaces[0].startswith("127.")


def _loopback_host(request: Any) -> bool:
    host = request.getHeader(b"host")
    if host is None:
        return True  # HTTP/1.0 without Host: not a browser
    name = host.decode("latin-1").strip().lower()
    name = name.rsplit(":", 1)[0] if not name.endswith("]") else name
    return name in _LOOPBACK_HOSTS or name.startswith("127.")


class ApiCredentials(BasicCredentialFactory):
    """HTTP Basic (RFC 7617, UTF-8): the login and password, and the client's address (the
    throttle's key), as the ``PeerCredentials`` a STOMP CONNECT gives the portal too."""

    def __init__(self) -> None:
        super().__init__(b"stompbroker")

    def getChallenge(self, request: Any) -> dict[str, str]:  # noqa: N802 (Twisted's name)
        return {"realm": "stompbroker", "charset": "UTF-8"}

    def decode(self, response: bytes, request: Any) -> PeerCredentials:
        pair = super().decode(response, request)
        try:
            login, password = pair.username.decode("utf-8"), pair.password.decode("utf-8")
        except UnicodeDecodeError:
            raise LoginFailed("credentials are not UTF-8") from None
        address = getattr(request.getClientAddress(), "host", "")
        return PeerCredentials(login, password, address)


class RememberedLogins:
    """Good (user, password) pairs, as keyed digests, trusted for ``CREDENTIALS_TTL`` seconds
    (at most ``MAX_REMEMBERED``, the oldest forgotten first)."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        #: digest -> when it stops being trusted.
        self._until: dict[bytes, float] = {}

    def digest(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()

    def knows(self, digest: bytes, now: float) -> bool:
        return self._until.get(digest, 0.0) > now

    def remember(self, digest: bytes, now: float) -> None:
        self._until[digest] = now + CREDENTIALS_TTL
        while len(self._until) > MAX_REMEMBERED:
            self._until.pop(next(iter(self._until)))


class ApiPortal:
    """The portal ``HTTPAuthSessionWrapper`` asks: the broker's login portal
    (``AccessControl.portal``); an admin's login gets ``tree`` as its avatar."""

    def __init__(
        self, access: AccessControl, clock: Clock, tree: IResource, remembered: RememberedLogins
    ) -> None:
        self.access = access
        self.clock = clock
        self.tree = tree
        self.remembered = remembered

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> Deferred[Any]:
        """(IResource, the tree, logout) for an admin's good password; else a failure."""
        if not isinstance(credentials, PeerCredentials) or not self.access.logins_configured:
            return fail(UnauthorizedLogin("an admin user's credentials are needed"))
        user, address = credentials.login, credentials.address
        now = self.clock.seconds()
        remembered = self.remembered
        digest = remembered.digest(user, credentials.passcode)
        if remembered.knows(digest, now):
            return maybeDeferred(self._avatar, user)
        if self.access.throttle.waiting(address, now, user):
            # still within the penalty of a wrong password: refused without a check
            return fail(UnauthorizedLogin("login refused"))

        def good(_: Any) -> Any:
            remembered.remember(digest, self.clock.seconds())
            return self._avatar(user)

        def refused(failure: Any) -> Any:
            failure.trap(LoginRefused)
            log.info(
                "management API: login failed for {user!r} from {address}",
                user=user,
                address=address,
            )
            return failure

        portal = self.access.portal(self.clock)
        checked: Deferred[Any] = portal.login(credentials, mind, IIdentity)
        return checked.addCallbacks(good, refused)

    def _avatar(self, user: str) -> tuple[Any, Any, Callable[[], None]]:
        if not self.access.is_admin(user):
            raise UnauthorizedLogin(f"{user!r} may not administer the broker")
        return IResource, self.tree, lambda: None


class ApiGate(Resource):
    """``tree`` (the API, or ``/metrics``) to whoever may use it (see the module); 401 with a
    Basic challenge to others; 404 while ``enabled()`` says the API is off."""

    def __init__(
        self,
        tree: IResource,
        access: AccessControl,
        clock: Clock,
        loopback: bool,
        enabled: Callable[[], bool],
        remembered: RememberedLogins | None = None,
    ) -> None:
        super().__init__()
        self.tree = tree
        self.access = access
        self.loopback = loopback
        self.enabled = enabled
        portal = ApiPortal(access, clock, tree, remembered or RememberedLogins())
        #: HTTP Basic through the portal: the tree, or 401 with a Basic challenge.
        self.guarded = HTTPAuthSessionWrapper(portal, [ApiCredentials()])

    def _choose(self, request: Any) -> Any:
        if not self.enabled():
            return NOT_FOUND
        open_here = self.loopback and _loopback_host(request)
        if not self.access.logins_configured and open_here:
            return self.tree
        return self.guarded  # without logins the portal refuses all: 401

    def getChildWithDefault(self, path: bytes, request: Any) -> Any:  # noqa: N802
        return self._choose(request).getChildWithDefault(path, request)

    def render(self, request: Any) -> Any:
        return self._choose(request).render(request)


def describe_access(spec: str, access: AccessControl, enabled: bool) -> str:
    """Who may use the API on the listener at ``spec`` (for the log)."""
    if not enabled:
        return "off (management.api: false)"
    if access.logins_configured:
        return "admin users (HTTP Basic)"
    if is_loopback_endpoint(spec):
        return "open to this machine (no users configured)"
    return "refuses every request: configure security.users, or bind the listener to 127.0.0.1"


class Monitoring:
    """A broker service's connections registry, statistics and management API.

    ``timer`` (a child service of the broker's) closes a statistics interval every
    ``management.stats_interval_ms`` and publishes the statistics topic's snapshot.
    """

    def __init__(
        self,
        config: Config,
        broker: Broker,
        store: IMessageStore | None,
        access: AccessControl,
        reactor: Any,
    ) -> None:
        self.reactor = reactor
        self.access = access
        self.api_enabled = config.management.api
        interval = config.management.stats_interval_ms / 1000.0
        self.connections = Connections(reactor)
        self.management = Management(
            broker,
            self.connections,
            store,
            rss_bytes,
            config.broker.name,
            __version__,
            interval,
        )
        #: API credentials found good, shared by every listener's /api/ and /metrics.
        self.remembered = RememberedLogins()
        self.publisher = StatsPublisher(broker, self.management.snapshot)
        self.timer = TimerService(interval, self.publisher.tick)
        self.timer.clock = reactor

    def reconfigure(self, config: Config) -> None:
        """A reload: ``management.api`` applies at once (the interval at the next start)."""
        self.api_enabled = config.management.api

    def http_resource(self, entry: WebSocketListener) -> IResource:
        """What the WebSocket listener of ``entry`` serves over plain HTTP: the web console at
        ``/`` (with or without the API), the API under ``/api/``, ``/metrics``; all gzip."""
        loopback = is_loopback_endpoint(entry.endpoint)
        root = Console(entry.path)
        for name, tree in (
            (b"api", ManagementApi(self.management)),
            (b"metrics", Metrics(self.management)),
        ):
            gate = ApiGate(
                tree, self.access, self.reactor, loopback, self._api_enabled, self.remembered
            )
            root.putChild(name, gzipped(gate))
        log.info(
            "management API on {endpoint}: {access}",
            endpoint=entry.endpoint,
            access=describe_access(entry.endpoint, self.access, self.api_enabled),
        )
        return root

    def _api_enabled(self) -> bool:
        return self.api_enabled

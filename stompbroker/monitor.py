"""Wiring the management API into a running broker: who may use it, and what only the
process knows (its memory).

Who may use the API (``/api/...`` and ``/metrics``) is decided per request:

* once users are configured (``security.users``): HTTP Basic credentials of a user that an
  access rule grants ``admin`` (with no rules at all, every user). Good credentials are
  remembered for ``CREDENTIALS_TTL`` seconds (a password check costs about 50 ms of CPU,
  spent in the thread pool: the request is answered when it is done);
  the check goes through the same throttle as a STOMP login's (``core._throttle``: penalties
  by address and login, checks in flight per address, the fair scheduler); while the
  address or the login is within a penalty, a request is refused at once, unchecked.
* while no users are configured: only on a listener bound to a loopback interface
  (``interface=127.0.0.1``, ``::1``, ``localhost``, or a UNIX socket), and only for requests
  whose ``Host`` is a loopback name (a page elsewhere cannot reach it by DNS rebinding).
  On any other listener every request gets ``401``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from stompbroker import __version__
from stompbroker.config import Config, WebSocketListener
from stompbroker.core import (
    AccessControl,
    Broker,
    Clock,
    IIdentity,
    IMessageStore,
    LoginCheck,
    LoginRefused,
    PeerCredentials,
    StatsPublisher,
)
from stompbroker.transport import (
    Connections,
    Console,
    HttpHandler,
    HttpRequest,
    HttpResponse,
    Management,
    ManagementApi,
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


def _loopback_host(request: HttpRequest) -> bool:
    host = request.header(b"host")
    if host is None:
        return True  # HTTP/1.0 without Host: not a browser
    name = host.strip().lower()
    name = name.rsplit(":", 1)[0] if not name.endswith("]") else name
    return name in _LOOPBACK_HOSTS or name.startswith("127.")


def basic_credentials(request: HttpRequest) -> tuple[str, str] | None:
    """The (user, password) of an ``Authorization: Basic`` header, or None."""
    value = request.header(b"authorization")
    if value is None:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


class ApiAuthorizer:
    """``authorize(request) -> bool`` for one listener (see the module's docstring)."""

    def __init__(self, access: AccessControl, clock: Clock, loopback: bool) -> None:
        self.access = access
        self.clock = clock
        self.loopback = loopback
        #: Digests of good (user, password) pairs -> when they stop being trusted.
        self._good: dict[bytes, float] = {}
        self._key = os.urandom(32)

    def __call__(self, request: HttpRequest) -> bool | Deferred[bool]:
        if not self.access.logins_configured:
            return self.loopback and _loopback_host(request)
        credentials = basic_credentials(request)
        if credentials is None:
            return False
        user, password = credentials
        checked = self._check(request.peer.rsplit(":", 1)[0], user, password)
        if isinstance(checked, Deferred):
            return checked.addCallback(lambda good: good and self.access.is_admin(user))
        return checked and self.access.is_admin(user)

    def _check(self, address: str, user: str, password: str) -> bool | Deferred[bool]:
        """Whether the password is right: at once when known or refused, else a Deferred
        (the check, scrypt, runs in the thread pool as a STOMP login's does)."""
        now = self.clock.seconds()
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        if self._good.get(digest, 0.0) > now:
            return True
        if self.access.throttle.waiting(address, now, user):
            return False  # still within the penalty of a wrong password: no check at all

        def checked(check: LoginCheck) -> bool:
            if not check.good:
                log.info(
                    "management API: login failed for {user!r} from {address}",
                    user=user,
                    address=address,
                )
                return False
            now = self.clock.seconds()
            self._good[digest] = now + CREDENTIALS_TTL
            while len(self._good) > MAX_REMEMBERED:
                self._good.pop(next(iter(self._good)))
            return True

        credentials = PeerCredentials(user, password, address)
        portal = self.access.portal(self.clock)
        return portal.login(credentials, None, IIdentity).addCallbacks(
            lambda _: checked(LoginCheck(True)),
            lambda failure: checked(failure.trap(LoginRefused) and failure.value.check),
        )


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
        self.publisher = StatsPublisher(broker, self.management.snapshot)
        self.timer = TimerService(interval, self.publisher.tick)
        self.timer.clock = reactor

    def reconfigure(self, config: Config) -> None:
        """A reload: ``management.api`` applies at once (the interval at the next start)."""
        self.api_enabled = config.management.api

    def http_handler(self, entry: WebSocketListener) -> HttpHandler:
        """What the WebSocket listener of ``entry`` answers plain HTTP requests with."""
        loopback = is_loopback_endpoint(entry.endpoint)
        authorize = ApiAuthorizer(self.access, self.reactor, loopback)
        console = Console(entry.path)  # the web console at /, served with or without the API
        api = ManagementApi(self.management, authorize, fallback=console)
        log.info(
            "management API on {endpoint}: {access}",
            endpoint=entry.endpoint,
            access=describe_access(entry.endpoint, self.access, self.api_enabled),
        )

        def handle(request: HttpRequest) -> HttpResponse | Deferred[HttpResponse]:
            return api(request) if self.api_enabled else console(request)

        return handle

"""The broker's access control, built from the configuration's ``security`` section.

One ``AccessControl`` lives as long as the broker: every session holds it, and a
reload changes it in place (``configure_access``), so that new users and passwords
apply to new logins and new rules to every connection's next SEND or SUBSCRIBE.
Password checks run in the reactor's thread pool, at most ``CHECKS_AT_ONCE`` at once
(the core's fair scheduler: round robin by address), so that a flood of logins leaves
threads (and CPU) to the store; the throttle's numbers come from ``security.login_*``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from stompbroker.config import Config, ConfigError, import_dotted
from stompbroker.core import AccessControl, Rule, User


def users(config: Config) -> list[User]:
    """The configured users (the users file's included) as the core's."""
    return [
        User(entry.name, entry.password_hash, frozenset(entry.groups))
        for entry in config.security.users
    ]


def rules(config: Config) -> list[Rule]:
    """The configured rules, one per destination pattern."""
    return [
        Rule(entry.principal, destination, frozenset(entry.permissions))
        for entry in config.security.rules
        for destination in entry.destinations
    ]


def checker(config: Config) -> Any:
    """The credentials checker ``security.checker`` names, made with ``checker_options``
    (None when none is named). A class is called with the options; so is a factory."""
    named = config.security.checker
    if named is None:
        return None
    made = import_dotted(named)(**(config.security.checker_options or {}))
    if not ICredentialsChecker.providedBy(made) and not callable(
        getattr(made, "requestAvatarId", None)
    ):
        raise ConfigError(f"security.checker: {named!r} made {made!r}, not an ICredentialsChecker")
    return made


def access_control(config: Config, reactor: Any = None) -> AccessControl:
    """The access control ``config`` describes; password checks in threads of ``reactor``."""
    run = login_runner(reactor) if reactor is not None else None
    access = AccessControl(
        users(config), rules(config), config.security.allow_anonymous, run, checker=checker(config)
    )
    configure_throttle(access, config)
    return access


def configure_access(access: AccessControl, config: Config) -> None:
    """Give a running broker's access control the users, rules and checker of a new
    configuration (a changed checker applies to new logins)."""
    access.configure(users(config), rules(config), config.security.allow_anonymous, checker(config))
    configure_throttle(access, config)


def configure_throttle(access: AccessControl, config: Config) -> None:
    """The login throttle's numbers from ``security.login_*`` (the failures on record stay)."""
    security = config.security
    access.throttle.configure(
        security.login_delay_ms / 1000,
        security.max_login_delay_ms / 1000,
        security.login_failures_kept_ms / 1000,
        security.login_checks_per_address,
    )


def login_runner(reactor: Any) -> Callable[..., Deferred[Any]]:
    """Runs a password check in the reactor's thread pool (the core's scheduler decides
    how many at once, and in which order)."""

    def run(function: Any, *args: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

    return run

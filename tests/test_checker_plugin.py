"""``security.checker``: a twisted.cred checker named in the YAML decides logins."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from stompbroker.config import ConfigError, parse
from stompbroker.security import access_control
from stompbroker.session._auth import Verdict, check_login

YAML = (
    "security:\n"
    "  checker: tests._example_checker.DictChecker\n"
    "  checker_options: {users: {alice: secret}}\n"
)


def test_named_checker_accepts_refuses_and_throttles() -> None:
    """The plug-in's password is accepted, another refused with the throttle's delay,
    and an anonymous CONNECT is refused."""
    access = access_control(parse(YAML, "b.yaml"))
    clock = Clock()
    good = check_login(access, {"login": "alice", "passcode": "secret"}, "1.2.3.4:5", clock)
    results: list[Verdict] = []
    for d in (good,):
        d.addCallback(results.append)
    assert results[0].user == "alice"
    bad = check_login(access, {"login": "alice", "passcode": "nope"}, "1.2.3.4:5", clock)
    bad.addCallback(results.append)
    assert results[1].refusal and results[1].delay > 0
    anonymous = check_login(access, {}, "1.2.3.4:5", clock)
    anonymous.addCallback(results.append)
    assert results[2].refusal == "login required"


def test_checker_that_cannot_be_imported_is_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("security:\n  checker: no_such_pkg.Checker\n", "b.yaml")
    assert str(caught.value).startswith(
        "b.yaml:2: security.checker: cannot import 'no_such_pkg.Checker': No module named"
    )
    assert "\n" not in str(caught.value)


def test_the_management_api_asks_the_named_checker() -> None:
    """With a checker and no security.users, the API wants HTTP Basic credentials the
    checker accepts (no rules: every login may administer), even on a loopback listener."""
    from tests.test_monitor import _basic, api, get

    web = api(access_control(parse(YAML, "b.yaml")), Clock(), loopback=True)
    assert get(web).status == 401
    assert get(web, authorization=_basic("alice", "secret")).status == 200
    assert get(web, authorization=_basic("alice", "nope")).status == 401

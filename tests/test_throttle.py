"""The login throttle and the fair scheduler: penalties by address and login, admission,
checks in flight per address, round robin by address, all on a test clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock

from stompbroker.config import ConfigError, parse
from stompbroker.core import AccessControl, FairScheduler, LoginCheck, LoginThrottle, User
from stompbroker.security import access_control, configure_access
from tests.helpers import pending_runner
from tests.test_access import cheap_hash


def _fired(deferred: Deferred[Any] | None) -> bool:
    assert deferred is not None
    return deferred.called


# -- penalties -----------------------------------------------------------------------------


def test_a_check_for_an_address_under_penalty_waits_until_it_is_over() -> None:
    """After a failure at t=0 (1 s penalty), a check from that address is admitted at t=1."""
    clock = Clock()
    throttle = LoginThrottle()
    throttle.failed("10.0.0.1", 0.0, "alice")
    admitted = throttle.admit("10.0.0.1", "bob", clock)
    clock.advance(0.999)
    assert not _fired(admitted)
    clock.advance(0.001)
    assert _fired(admitted)


def test_the_login_owes_the_penalty_from_every_address() -> None:
    """A failure for a login delays that login's checks from another address, not others'."""
    clock = Clock()
    throttle = LoginThrottle()
    throttle.failed("10.0.0.1", 0.0, "alice")
    for_alice = throttle.admit("10.0.0.2", "alice", clock)
    for_bob = throttle.admit("10.0.0.2", "bob", clock)
    assert not _fired(for_alice) and _fired(for_bob)
    clock.advance(1.0)
    assert _fired(for_alice)


def test_a_success_clears_the_address_and_the_login() -> None:
    """A good password clears its address's penalty and its login's (not another login's)."""
    throttle = LoginThrottle()
    throttle.failed("10.0.0.1", 0.0, "alice")
    throttle.failed("10.0.0.1", 0.0, "bob")
    throttle.succeeded("10.0.0.1", "alice")
    assert throttle.failures == {}
    assert set(throttle.login_failures) == {"bob"}
    assert not throttle.waiting("10.0.0.1", 0.5, "alice")
    assert throttle.waiting("10.0.0.1", 0.5, "bob")


def test_a_penalty_earned_during_a_wait_is_waited_for_too() -> None:
    """A check waiting for a penalty looks again when it ends: a newer failure extends it."""
    clock = Clock()
    throttle = LoginThrottle(per_address=1)
    throttle.failed("h", 0.0, "alice")
    admitted = throttle.admit("h", "alice", clock)
    clock.advance(0.5)
    throttle.failed("other", clock.seconds(), "alice")  # alice's 2nd failure: until 2.5 s
    clock.advance(0.5)
    assert not _fired(admitted)
    clock.advance(1.5)
    assert _fired(admitted)


# -- in flight per address -----------------------------------------------------------------


def test_a_clean_address_has_two_checks_admitted_then_one_under_penalty() -> None:
    """Without failures, two checks of one address are admitted at once and the third waits
    for a release; once a failure is on record, only one at a time."""
    clock = Clock()
    throttle = LoginThrottle()
    checks = [throttle.admit("h", "alice", clock) for _ in range(4)]
    assert [_fired(d) for d in checks] == [True, True, False, False]
    throttle.failed("h", 0.0, "alice")
    throttle.release("h", clock)
    throttle.failed("h", 0.0, "alice")  # count 2: penalty until t=2
    throttle.release("h", clock)
    assert throttle.admitted == {"h": 1}  # the third is admitted (waiting out the penalty)
    clock.advance(2.0)
    assert [_fired(d) for d in checks] == [True, True, True, False]


def test_pending_checks_are_bounded_per_address_and_in_all() -> None:
    """Beyond max_pending checks of one address, or max_pending_total in all, admit is None."""
    clock = Clock()
    throttle = LoginThrottle(max_pending=2, max_pending_total=3)
    assert throttle.admit("a", None, clock) is not None
    assert throttle.admit("a", None, clock) is not None
    assert throttle.admit("a", None, clock) is None
    assert throttle.admit("b", None, clock) is not None
    assert throttle.admit("c", None, clock) is None
    throttle.release("a", clock)
    assert throttle.admit("c", None, clock) is not None


# -- the fair scheduler --------------------------------------------------------------------


def test_with_one_address_flooding_another_address_check_runs_next() -> None:
    """One slot busy with A's check, A has four more waiting: B's check is the next started."""
    run, held = pending_runner()
    scheduler = FairScheduler(run, at_once=1)
    for n in range(5):
        scheduler.submit("A", str, f"a{n}")
    scheduler.submit("B", str, "b0")
    assert [args for _, _, args in held] == [("a0",)]
    held[0][0].callback("a0")
    assert [args for _, _, args in held] == [("a0",), ("b0",)]
    held[1][0].callback("b0")
    assert held[-1][2] == ("a1",)


def test_the_scheduler_alternates_between_flooding_addresses() -> None:
    """Two addresses with many checks waiting take turns, at most at_once running."""
    run, held = pending_runner()
    scheduler = FairScheduler(run, at_once=2)
    for n in range(3):
        scheduler.submit("A", str, f"a{n}")
        scheduler.submit("B", str, f"b{n}")
    assert len(held) == 2 and scheduler.running == 2
    for index in range(6):
        held[index][0].callback(None)
    assert [args[0] for _, _, args in held] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert scheduler.running == 0


def test_the_scheduler_hands_on_results_and_failures() -> None:
    """Each submitted Deferred fires with its function's result, or fails with its error."""
    scheduler = FairScheduler(maybeDeferred)
    results: list[Any] = []
    scheduler.submit("A", int, "7").addCallback(results.append)
    scheduler.submit("A", int, "x").addErrback(lambda f: results.append(f.type))
    assert results == [7, ValueError]
    assert scheduler.running == 0


# -- the access control's login, end to end on the clock -----------------------------------


def _penalties(first: float, most: float, count: int) -> float:
    return sum(min(first * 2 ** (n - 1), most) for n in range(2, count))


def test_sixty_guesses_queued_at_once_take_the_documented_minimum() -> None:
    """60 wrong guesses from one address made at once (their connections closed at once):
    the 60th check starts no earlier than the sum of the penalties of failures 2 to 59,
    894 s with the defaults; the right password after them waits for all of them."""
    clock = Clock()
    access = AccessControl([User("alice", cheap_hash("pw"))])
    started: list[float] = []
    real = access.authenticate

    def timed(login: str, passcode: str) -> bool:
        started.append(clock.seconds())
        return real(login, passcode)

    access.authenticate = timed  # type: ignore[method-assign]
    outcomes = [access.login("alice", f"guess{n}", "h", clock) for n in range(60)]
    good = access.login("alice", "pw", "h", clock)
    for _ in range(2000):
        clock.advance(0.5)
    assert all(o.called for o in outcomes) and good.called
    assert started[59] >= _penalties(1.0, 16.0, 60) == 894.0
    assert started[60] >= _penalties(1.0, 16.0, 61)
    results: list[LoginCheck] = []
    good.addCallback(results.append)
    assert results == [LoginCheck(True)]
    assert access.throttle.failures == {} and access.throttle.pending == {}


def test_a_flooding_address_does_not_hold_up_another_addresss_login() -> None:
    """With checks running in threads (held) and one address flooding, another address's
    check is the next one run."""
    run, held = pending_runner()
    clock = Clock()
    access = AccessControl([User("alice", cheap_hash("pw"))], run=run, checks_at_once=1)
    for n in range(10):
        access.login("mallory", f"guess{n}", "10.0.0.2", clock)
    good = access.login("alice", "pw", "10.0.0.1", clock)
    first, function, args = held[0]
    first.callback(function(*args))
    assert held[1][2] == ("alice", "pw")
    held[1][0].callback(held[1][1](*held[1][2]))
    assert good.called


# -- configuration -------------------------------------------------------------------------


def test_the_throttle_takes_its_numbers_from_the_security_section() -> None:
    """security.login_* set the throttle's first and most penalty, memory and checks per
    address, at start and on reload."""
    text = (
        "security:\n  login_delay_ms: 50\n  max_login_delay_ms: 200\n"
        "  login_failures_kept_ms: 60000\n  login_checks_per_address: 1\n"
    )
    access = access_control(parse(text, "f.yaml"))
    throttle = access.throttle
    assert (throttle.first, throttle.most, throttle.forget_after) == (0.05, 0.2, 60.0)
    assert throttle.per_address == 1
    configure_access(access, parse("security: {login_delay_ms: 10}\n", "g.yaml"))
    assert (throttle.first, throttle.most, throttle.per_address) == (0.01, 16.0, 2)


@pytest.mark.parametrize(
    "key",
    ["login_delay_ms", "max_login_delay_ms", "login_failures_kept_ms", "login_checks_per_address"],
)
def test_the_throttle_numbers_must_be_positive_integers(key: str) -> None:
    """A throttle number that is no positive integer is refused naming file, line and key."""
    with pytest.raises(ConfigError) as raised:
        parse(f"security:\n  {key}: 0\n", "f.yaml")
    assert str(raised.value) == f"f.yaml:2: security.{key}: expected a positive integer, got 0"

"""The guard in conftest.py: a failure the broker logs fails the test, unless it is taken."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py").read_text()

TESTS = '''
from twisted.logger import Logger

log = Logger(namespace="probe")


def _fail():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.failure("the probe failed")


def test_unhandled():
    """A failure nobody takes."""
    _fail()


def test_taken(logged_failures):
    """A failure the test takes and checks."""
    _fail()
    assert len(logged_failures) == 1


def test_taken_but_none(logged_failures):
    """The test takes failures that never come."""


def test_quiet():
    """Nothing logged."""
'''


def test_logged_failures_fail_the_test_unless_taken(pytester: pytest.Pytester) -> None:
    """A logged failure errors its test unless taken; taking none that comes errors too."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_probe=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unhandled*",
            "*1 unhandled failure(s) logged:*",
            "*the probe failed*",
            "*ERROR at teardown of test_taken_but_none*",
            "*the test took logged_failures, but no failure was logged*",
        ]
    )

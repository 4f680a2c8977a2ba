"""The examples of docs/testing.md and of stompbroker.testing's docstring run as written."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import stompbroker.testing
from tests.helpers import doc_section

pytest_plugins = ["pytester"]

DOC = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()


def _python_blocks(text: str) -> list[str]:
    """The ```python blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_the_pytest_example_passes(pytester: pytest.Pytester) -> None:
    """The pytest example of docs/testing.md, saved as a file, passes every one of its tests."""
    (example,) = _python_blocks(doc_section(DOC, "## A pytest example"))
    count = len(re.findall(r"^def test_", example, re.MULTILINE))
    assert count >= 5
    pytester.makepyfile(test_orders=example)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=count)


def test_the_first_example_runs() -> None:
    """The short example at the top of docs/testing.md runs without failing."""
    exec(_python_blocks(DOC)[0], {})


def test_the_module_docstring_example_runs() -> None:
    """The example in stompbroker.testing's docstring runs without failing."""
    doc = stompbroker.testing.__doc__ or ""
    example = doc.split("Example::\n", 1)[1].split("\nMore in", 1)[0]
    assert "connected_clients" in example
    exec(textwrap.dedent(example), {})

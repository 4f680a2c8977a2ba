"""Small shared helpers of the tests (in-memory clients are in ``stompbroker.testing``)."""

from __future__ import annotations

import re

from stompbroker.core import Broker


def broker_is_empty(broker: Broker) -> bool:
    """No destination (so no subscription and no message) is left in ``broker``."""
    return not broker.queues and not broker.topics


def doc_section(text: str, heading: str, end: str = "\n## ") -> str:
    """The part of a markdown page from ``heading`` up to the next ``end``; fails if the page
    has no such heading."""
    assert heading in text, f"{heading!r} is missing"
    return text.split(heading, 1)[1].split(end, 1)[0]


def doc_default(section: str, key: str) -> str | None:
    """The second cell (the default) of the table row for ``key`` in ``section``; None if
    there is no row for it."""
    row = re.search(rf"^\| `{re.escape(key)}` \| (.+?) \|", section, re.MULTILINE)
    return None if row is None else row.group(1).strip()

"""JSON logs for log shippers: one JSON object per line.

Use it as twistd's log observer::

    twistd --logger stompbroker.logs.json_observer -n stompbroker

It writes to standard output, or appends to the file named by ``STOMPBROKER_LOG_FILE``
(twistd's ``--logfile`` does not apply once ``--logger`` is given). Each line holds
``time`` (ISO 8601, UTC, milliseconds), ``level``, ``namespace``, ``message`` (the
formatted text), the event's own fields (``peer``, ``version``, ``reason``, ...: scalars
as they are, anything else as text), and ``traceback`` when a failure was logged.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

#: The environment variable naming the file to append JSON lines to (else stdout).
FILE_VARIABLE = "STOMPBROKER_LOG_FILE"

#: Keys every line has; an event field of the same name is left out.
FIXED = ("time", "level", "namespace", "message", "traceback")
#: Twisted's own bookkeeping in events (besides every ``log_*`` key).
_SKIPPED = frozenset({"format", "message", "isError", "system", "time", "why", "failure"})
#: Longest text kept for a non-scalar field.
MAX_FIELD_CHARS = 2000


@implementer(ILogObserver)
class JsonLogObserver:
    """Writes each log event to ``stream`` as one line of JSON, flushed at once."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record(event), ensure_ascii=False) + "\n")
        self.stream.flush()


def record(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready form of one twisted.logger event."""
    level = event.get("log_level")
    if not isinstance(level, type(LogLevel.info)):
        level = LogLevel.error if event.get("isError") else LogLevel.info
    when = datetime.fromtimestamp(float(event.get("log_time", 0.0)), UTC)
    out: dict[str, Any] = {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level.name,
        "namespace": event.get("log_namespace", ""),
        "message": _message(event),
    }
    failure = event.get("log_failure") or event.get("failure")
    if failure is not None:
        out["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_") or key in _SKIPPED or key in FIXED:
            continue
        if value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
        else:
            out[key] = str(value)[:MAX_FIELD_CHARS]
    return out


def _message(event: dict[str, Any]) -> str:
    text = formatEvent(event)
    if not text and event.get("message"):
        text = " ".join(str(part) for part in event["message"])  # a legacy log.msg
    return text


def json_observer() -> JsonLogObserver:
    """twistd's ``--logger`` factory: JSON lines to stdout or to ``$STOMPBROKER_LOG_FILE``."""
    path = os.environ.get(FILE_VARIABLE)
    if path:
        return JsonLogObserver(open(path, "a", encoding="utf-8"))  # open for the process's life
    # twistd calls us before it redirects sys.stdout into the log: keep the real one.
    return JsonLogObserver(sys.__stdout__ or sys.stdout)

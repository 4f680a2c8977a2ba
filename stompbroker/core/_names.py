"""Destination names as clients write them, and what each kind means.

* ``/queue/NAME``: a queue.
* ``/topic/NAME``: a topic (NAME may be a wildcard pattern when subscribing).
* ``/temp-queue/NAME``, ``/temp-topic/NAME``: the connection's own temporary
  destination NAME.
* ``/remote-temp-queue/ID``, ``/remote-temp-topic/ID``: a temporary destination
  by its broker-wide name (anyone may SEND; only its owner may SUBSCRIBE).
* ``/dsub/NAME``: an existing durable subscription, to attach to (Apollo).
"""

from __future__ import annotations

from ._policy import is_pattern, valid_pattern

PREFIXES = {
    "/queue/": "queue",
    "/topic/": "topic",
    "/temp-queue/": "temp-queue",
    "/temp-topic/": "temp-topic",
    "/remote-temp-queue/": "remote-temp-queue",
    "/remote-temp-topic/": "remote-temp-topic",
    "/dsub/": "dsub",
}

#: Where the global name of a temporary destination lives, by kind.
GLOBAL_TEMP_PREFIX = {"temp-queue": "/remote-temp-queue/", "temp-topic": "/remote-temp-topic/"}


class DestinationError(Exception):
    """A destination the client may not use as it tried to; the message is for the client."""


class DestinationFull(DestinationError):
    """A SEND to a full queue whose policy is ``on_full: reject``."""


def parse_destination(destination: str) -> tuple[str, str]:
    """Split ``/queue/NAME`` into ``("queue", "NAME")``; DestinationError if unsupported."""
    if destination.startswith("/queue/"):  # the common case first
        kind, name = "queue", destination[7:]
    elif destination.startswith("/topic/"):
        kind, name = "topic", destination[7:]
    else:
        for prefix, candidate in PREFIXES.items():
            if destination.startswith(prefix):
                kind, name = candidate, destination[len(prefix) :]
                break
        else:
            raise DestinationError(
                f"unsupported destination {destination!r}: use /queue/NAME, /topic/NAME,"
                " /temp-queue/NAME or /temp-topic/NAME"
            )
    if not name:
        raise DestinationError(f"destination {destination!r} has no name")
    return kind, name


def check_send_name(kind: str, name: str, destination: str) -> None:
    """A SEND names one destination: no wildcards."""
    if kind in ("queue", "topic") and is_pattern(name):
        raise DestinationError(f"cannot send to the wildcard destination {destination!r}")


def check_subscribe_name(
    kind: str, name: str, destination: str, consumer_queue: bool = False
) -> None:
    """Wildcards are for topics only (and a virtual topic's ``consumer_queue``, whose own
    check is ``VirtualTopics.topic_of``), and ``>`` only last."""
    if not is_pattern(name):
        return
    if kind != "topic" and not (kind == "queue" and consumer_queue):
        raise DestinationError(f"wildcards are supported on topics only, not in {destination!r}")
    if not valid_pattern(name):
        raise DestinationError(f"invalid wildcard pattern {destination!r}: '>' must come last")

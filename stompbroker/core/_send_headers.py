"""What the broker makes of a SEND's headers: those it owns, priority, and expiry."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._message import DEFAULT_PRIORITY
from ._policy import DestinationPolicy

#: Headers the broker owns in a MESSAGE: never taken from what a producer sent, so that it
#: cannot forge them (the session leaves out the SEND frame's own headers, ``receipt``,
#: ``transaction``, ...; these are dropped here whoever sends).
BROKER_HEADERS = frozenset(
    {
        "destination",
        "message-id",
        "content-length",
        "subscription",
        "ack",
        "redelivered",
        "delivery-count",
        "JMSXUserID",  # stamped by the broker with the sender's login, never forged
    }
)

#: The header naming the login of a message's sender.
USER_HEADER = "JMSXUserID"


def producer_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` without those the broker owns (the same mapping when there are none)."""
    if BROKER_HEADERS.isdisjoint(headers):
        return headers
    return {name: value for name, value in headers.items() if name not in BROKER_HEADERS}


#: Times in headers (``expires``, ``ttl``) are at most this many digits of ms (about
#: 30,000 years), so that they fit the store's 64-bit integers.
MAX_MS_DIGITS = 15


class MessageError(Exception):
    """A SEND header the broker cannot accept (priority, expiry); the message is for the client."""


def check_headers(headers: Mapping[str, str]) -> None:
    """Raise the MessageError a SEND with ``headers`` would raise (priority, times)."""
    message_priority(headers)
    for header in ("expires", "ttl", "expiration"):
        raw = headers.get(header)
        if raw is not None:
            _non_negative(raw, header)


def message_expiry(
    headers: Mapping[str, str], policy: DestinationPolicy, now_ms: Callable[[], float]
) -> tuple[int, Mapping[str, str]]:
    """Absolute expiry in epoch ms from ``expires``, ``ttl`` or ``expiration`` (0: never), and
    the headers the message keeps: with ``expires`` added when a time to live set it."""
    raw = headers.get("expires")
    if raw is not None:
        return _non_negative(raw, "expires"), headers
    for name in ("ttl", "expiration"):
        raw = headers.get(name)
        if raw is not None:
            ttl = _non_negative(raw, name)
            break
    else:
        ttl = policy.message_ttl_ms
    if not ttl:
        return 0, headers
    expires = int(now_ms()) + ttl
    return expires, {**headers, "expires": str(expires)}


def message_priority(headers: Mapping[str, str]) -> int:
    """The ``priority`` header's priority (the default without one)."""
    raw = headers.get("priority")
    if raw is None:
        return DEFAULT_PRIORITY
    text = raw.strip()
    if len(text) != 1 or text not in "0123456789":
        raise MessageError(f"invalid priority {raw[:40]!r}: expected an integer from 0 to 9")
    return int(text)


def _non_negative(raw: str, name: str) -> int:
    text = raw.strip()
    if not (text.isdigit() and text.isascii()) or len(text) > MAX_MS_DIGITS:
        raise MessageError(
            f"invalid {name} {raw[:40]!r}: expected a non-negative integer (ms)"
            f" of at most {MAX_MS_DIGITS} digits"
        )
    return int(text)

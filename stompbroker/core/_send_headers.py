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


#: The SEND headers that ask for a delivery delay, as ActiveMQ, Artemis and RabbitMQ's
#: delayed-message plugin spell them; one of the first three at most.
DELAY_HEADER = "AMQ_SCHEDULED_DELAY"
TIME_HEADER = "AMQ_SCHEDULED_TIME"
X_DELAY_HEADER = "x-delay"
PERIOD_HEADER = "AMQ_SCHEDULED_PERIOD"
REPEAT_HEADER = "AMQ_SCHEDULED_REPEAT"
SCHEDULE_HEADERS = frozenset(
    {DELAY_HEADER, TIME_HEADER, X_DELAY_HEADER, PERIOD_HEADER, REPEAT_HEADER}
)


class Schedule:
    """When a SEND's message is due (epoch ms), and its repeats: ``repeats`` more deliveries,
    every ``period`` ms. ``delay`` is how far ahead ``due`` was when asked, and ``asked``
    the header that said so (to name it in an ERROR)."""

    __slots__ = ("asked", "delay", "due", "period", "repeats")

    def __init__(self, due: int, delay: int, asked: str, repeats: int, period: int) -> None:
        self.due = due
        self.delay = delay
        self.asked = asked
        self.repeats = repeats
        self.period = period

    def check(self, policy: DestinationPolicy, destination: str) -> None:
        """Raise the MessageError of a delay or period beyond ``policy``'s limit."""
        limit = policy.max_delivery_delay_ms
        if not limit:
            return
        if self.delay > limit:
            raise MessageError(
                f"{self.asked} asks a delay of {self.delay} ms, beyond the"
                f" max_delivery_delay_ms of {destination} ({limit} ms)"
            )
        if self.repeats and self.period > limit:
            raise MessageError(
                f"{PERIOD_HEADER} {self.period} ms is beyond the"
                f" max_delivery_delay_ms of {destination} ({limit} ms)"
            )


def message_schedule(headers: Mapping[str, str], now_ms: float) -> Schedule | None:
    """The delivery schedule a SEND's headers ask (None: deliver now), or MessageError."""
    asked = [name for name in (DELAY_HEADER, TIME_HEADER, X_DELAY_HEADER) if name in headers]
    if len(asked) > 1:
        raise MessageError(f"{' and '.join(asked)} are both set: give one delivery time")
    now = int(now_ms)
    delay = 0
    name = asked[0] if asked else DELAY_HEADER
    if asked:
        value = _non_negative(headers[name], name)
        delay = max(0, value - now) if name == TIME_HEADER else value
    repeats = period = 0
    raw = headers.get(REPEAT_HEADER)
    if raw is not None:
        repeats = _non_negative(raw, REPEAT_HEADER)
    raw = headers.get(PERIOD_HEADER)
    if raw is not None:
        period = _non_negative(raw, PERIOD_HEADER)
    if repeats and not period:
        raise MessageError(f"{REPEAT_HEADER} needs an {PERIOD_HEADER} of at least 1 ms")
    if not delay and not repeats:
        return None
    return Schedule(now + delay, delay, name, repeats, period)

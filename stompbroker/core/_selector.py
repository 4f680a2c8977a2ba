"""JMS message selectors: which messages a subscription wants.

``compile_selector(text)`` parses a SUBSCRIBE ``selector`` (grammar, limits and
error positions: see ``_selector_parse``) into a ``Selector``, or raises
``SelectorError``. ``Selector.matches(headers)`` evaluates it against a
message's STOMP headers, all strings; it never raises.

Semantics:

- SQL three-valued logic. A missing header is NULL; comparing, computing with
  or matching NULL gives *unknown*; ``NOT unknown`` is unknown, ``unknown AND
  FALSE`` is FALSE, ``unknown OR TRUE`` is TRUE. A message matches only when
  the selector is TRUE.
- Headers are strings that take the type of what they meet. Against a number
  (a numeric literal, arithmetic) a header that looks like a number (optional
  sign, decimal digits, optional fraction and exponent: ``10``, ``-2.5``,
  ``1e3``) is that number, so ``priority > 5`` holds for ``priority:10``;
  any other header value makes the comparison unknown. Against a string
  literal it is a string (``x = '10'`` is false for ``x:10.0``). Against TRUE
  or FALSE, ``true``/``false`` in any case are booleans, anything else is
  unknown; a bare header used as a condition (``redelivered AND ...``) is read
  the same way. Two headers compare as numbers when both look like numbers,
  else as strings.
- Strings order by code point with ``<`` etc. (as ActiveMQ does; JMS itself
  allows only ``=`` and ``<>`` on strings). ``a BETWEEN b AND c`` is
  ``a >= b AND a <= c``. ``x IN (...)`` is a chain of ``=``. LIKE is
  case-sensitive; ``%`` matches any run of characters, ``_`` exactly one.
- Arithmetic follows Java longs and doubles: integer ``/`` truncates toward
  zero; a result outside the 64-bit range becomes a double; division by zero
  is unknown.

JMS header names map onto the STOMP headers that carry them (a quoted
identifier, ``"JMSType"``, names a header verbatim and is never mapped):

================  =====================================================
JMSMessageID      ``message-id``
JMSCorrelationID  ``correlation-id``
JMSType           ``type``
JMSTimestamp      ``timestamp``
JMSDestination    ``destination``
JMSReplyTo        ``reply-to``
JMSExpiration     ``expires``
JMSPriority       ``priority``; 4 (the JMS default) when absent
JMSDeliveryMode   ``'PERSISTENT'`` when ``persistent`` is ``true``,
                  else ``'NON_PERSISTENT'``
================  =====================================================

The caller passes the headers the message is delivered with, including the
ones the broker owns (``destination``, ``message-id``) and the ``persistent``
flag it resolved. Any other identifier (``JMSXGroupID``, ``color``) is the
header of that name.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._selector_parse import (
    MAX_DEPTH,
    MAX_LENGTH,
    Arithmetic,
    Compare,
    Identifier,
    In,
    IsNull,
    Like,
    Literal,
    Logic,
    Node,
    Not,
    Number,
    SelectorError,
    Unary,
    Value,
    fit,
    kind,
    parse,
    parse_number,
)

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Selector", "SelectorError", "compile_selector"]

Headers = Mapping[str, str]
Evaluator = Callable[[Headers], Any]  # returns a Value; True/False/None for conditions

JMS_HEADERS = {
    "JMSMessageID": "message-id",
    "JMSCorrelationID": "correlation-id",
    "JMSType": "type",
    "JMSTimestamp": "timestamp",
    "JMSDestination": "destination",
    "JMSReplyTo": "reply-to",
    "JMSExpiration": "expires",
}

_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


class Selector:
    """A compiled selector; ``text`` is its source."""

    __slots__ = ("_evaluate", "text")

    def __init__(self, text: str, evaluate: Evaluator) -> None:
        self.text = text
        self._evaluate = evaluate

    def matches(self, headers: Headers) -> bool:
        """True when the selector is TRUE for a message with ``headers``."""
        return self._evaluate(headers) is True

    def __repr__(self) -> str:
        return f"<Selector {self.text!r}>"


def compile_selector(text: str) -> Selector:
    """The ``Selector`` for ``text``; SelectorError when ``text`` is not one."""
    try:
        return Selector(text, _condition(parse(text)))
    except RecursionError:  # a safety net: MAX_DEPTH keeps the stack far shallower
        raise SelectorError("selector nests too deeply", 0) from None


# -- values ------------------------------------------------------------------------


def _to_number(value: Value) -> Number | None:
    if isinstance(value, str):
        return parse_number(value)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


_BOOLEANS = {"true": True, "false": False}


def _to_bool(value: Value) -> bool | None:
    if isinstance(value, str):
        return _BOOLEANS.get(value.lower())
    return value if isinstance(value, bool) else None


def _same(value: Value) -> Value:
    return value


_COERCE: dict[str, Callable[[Value], Value]] = {
    "number": _to_number,
    "condition": _to_bool,
    "string": _same,
}


# -- building evaluators -------------------------------------------------------------


def _build(node: Node) -> Evaluator:
    return _BUILDERS[type(node)](node)


def _condition(node: Node) -> Evaluator:
    """An evaluator for ``node`` in a place that needs TRUE, FALSE or unknown."""
    evaluate = _BUILDERS[type(node)](node)
    if kind(node) == "condition":
        return evaluate
    return lambda headers: _to_bool(evaluate(headers))


def _identifier(node: Identifier) -> Evaluator:
    name = node.name
    if node.quoted:
        return lambda headers: headers.get(name)
    if name == "JMSPriority":
        return lambda headers: headers.get("priority", "4")
    if name == "JMSDeliveryMode":
        return lambda headers: (
            "PERSISTENT" if headers.get("persistent", "").lower() == "true" else "NON_PERSISTENT"
        )
    header = JMS_HEADERS.get(name, name)
    return lambda headers: headers.get(header)


def _literal(node: Literal) -> Evaluator:
    value = node.value
    return lambda headers: value


def _unary(node: Unary) -> Evaluator:
    operand = _build(node.operand)
    sign = -1 if node.op == "-" else 1

    def evaluate(headers: Headers) -> Value:
        number = _to_number(operand(headers))
        return None if number is None else fit(sign * number)

    return evaluate


def _divide(left: Number, right: Number) -> Number | None:
    if right == 0:
        return None
    if isinstance(left, int) and isinstance(right, int):
        quotient = abs(left) // abs(right)
        return -quotient if (left < 0) != (right < 0) else quotient
    return left / right


_ARITHMETIC: dict[str, Callable[[Number, Number], Number | None]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
}


def _arithmetic(node: Arithmetic) -> Evaluator:
    first = _build(node.first)
    rest = [(_ARITHMETIC[op], _build(operand)) for op, operand in node.rest]

    def evaluate(headers: Headers) -> Value:
        result = _to_number(first(headers))
        for apply, operand in rest:
            right = _to_number(operand(headers))
            if result is None or right is None:
                return None
            result = apply(result, right)
            result = None if result is None else fit(result)
        return result

    return evaluate


def _compare(node: Compare) -> Evaluator:
    test = _TESTS[node.op]
    left, right = _build(node.left), _build(node.right)
    left_kind, right_kind = kind(node.left), kind(node.right)
    if left_kind == right_kind == "value":

        def headers_pair(headers: Headers) -> bool | None:
            a, b = left(headers), right(headers)
            if a is None or b is None:
                return None
            x, y = parse_number(a), parse_number(b)
            return test(a, b) if x is None or y is None else test(x, y)

        return headers_pair
    target = right_kind if left_kind == "value" else left_kind
    coerce_left = _COERCE[target] if left_kind == "value" else _same
    coerce_right = _COERCE[target] if right_kind == "value" else _same

    def typed(headers: Headers) -> bool | None:
        a = coerce_left(left(headers))
        if a is None:
            return None
        b = coerce_right(right(headers))
        return None if b is None else test(a, b)

    return typed


def _in(node: In) -> Evaluator:
    operand = _build(node.operand)
    strings = frozenset(item for item in node.items if isinstance(item, str))
    numbers = frozenset(item for item in node.items if not isinstance(item, str))
    operand_kind = kind(node.operand)

    def evaluate(headers: Headers) -> bool | None:
        value = operand(headers)
        if value is None:
            return None
        if operand_kind == "number":
            return value in numbers
        if value in strings:
            return True
        if not numbers:
            return False
        number = parse_number(value)
        return None if number is None else number in numbers

    return evaluate


def _like(node: Like) -> Evaluator:
    operand = _build(node.operand)
    match = like_matcher(node.segments)

    def evaluate(headers: Headers) -> bool | None:
        value = operand(headers)
        return None if value is None else match(value)

    return evaluate


def like_matcher(segments: tuple[tuple[str | None, ...], ...]) -> Callable[[str], bool]:
    """A test for a LIKE pattern split at ``%`` (None stands for ``_``).

    Each segment has a fixed length, so a regex per segment never backtracks
    beyond it; the segments between the first and the last are found leftmost
    first, which is optimal: O(len(text) * len(pattern)) at worst.
    """
    parts = [
        (re.compile("".join("." if c is None else re.escape(c) for c in seg), re.DOTALL), len(seg))
        for seg in segments
    ]
    (first, first_len), (last, last_len) = parts[0], parts[-1]
    middle = [regex for regex, _ in parts[1:-1]]

    def match(text: str) -> bool:
        if len(parts) == 1:
            return first.fullmatch(text) is not None
        end = len(text) - last_len
        if end < first_len or not first.match(text) or not last.match(text, end):
            return False
        pos = first_len
        for regex in middle:
            found = regex.search(text, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    return match


def _is_null(node: IsNull) -> Evaluator:
    operand = _build(node.operand)
    return lambda headers: operand(headers) is None


def _not(node: Not) -> Evaluator:
    operand = _condition(node.operand)

    def evaluate(headers: Headers) -> bool | None:
        value = operand(headers)
        return None if value is None else not value

    return evaluate


def _logic(node: Logic) -> Evaluator:
    operands = []
    for operand in node.operands:  # a loop, not a comprehension: one frame fewer
        operands.append(_condition(operand))
    decisive = node.op == "OR"  # the value that settles the result: TRUE for OR

    def evaluate(headers: Headers) -> bool | None:
        result: bool | None = not decisive
        for operand in operands:
            value = operand(headers)
            if value is decisive:
                return decisive
            if value is None:
                result = None
        return result

    return evaluate


_BUILDERS: dict[type, Callable[[Any], Evaluator]] = {
    Identifier: _identifier,
    Literal: _literal,
    Unary: _unary,
    Arithmetic: _arithmetic,
    Compare: _compare,
    In: _in,
    Like: _like,
    IsNull: _is_null,
    Not: _not,
    Logic: _logic,
}

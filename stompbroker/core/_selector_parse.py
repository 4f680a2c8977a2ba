"""The syntax of JMS message selectors: tokenizer, parser and AST.

The grammar we accept (the JMS 1.1 section 3.8 subset listed in COMPAT.md)::

    selector    = condition END                 ; whitespace: SP HTAB CR LF FF
    condition   = conjunction *( OR conjunction )
    conjunction = negation *( AND negation )
    negation    = NOT negation / predicate
    predicate   = sum [ compare-op sum
                      / [NOT] BETWEEN sum AND sum
                      / [NOT] IN "(" literal *( "," literal ) ")"
                      / [NOT] LIKE string [ESCAPE string]   ; ESCAPE: one character
                      / IS [NOT] NULL ]
    compare-op  = "=" / "<>" / "<" / ">" / "<=" / ">="
    sum         = product *( ("+" / "-") product )
    product     = unary *( ("*" / "/") unary )
    unary       = ("+" / "-") unary / primary
    primary     = "(" condition ")" / identifier / string / number
                / TRUE / FALSE / NULL
    literal     = string / ["+" / "-"] number       ; IN lists: strings (JMS) or numbers
    identifier  = bare / quoted                     ; a bare one must not be a keyword
    bare        = (ALPHA / "_" / "$") *(ALPHA / DIGIT / "_" / "$" / ".")   ; ASCII only
    quoted      = DQUOTE 1*(<any char but DQUOTE> / DQUOTE DQUOTE) DQUOTE
    string      = "'" *(<any char but "'"> / "''") "'"
    number      = (1*DIGIT ["." *DIGIT] / "." 1*DIGIT) [("e" / "E") ["+" / "-"] 1*DIGIT]
    keywords    = AND OR NOT BETWEEN IN LIKE ESCAPE IS NULL TRUE FALSE  ; any letter case

Decisions beyond JMS: ``-`` never belongs to a bare identifier (``a-b`` is
``a`` minus ``b``), so STOMP header names such as ``content-type`` are written
as SQL-92 delimited identifiers, ``"content-type"`` (``""`` for a double quote
inside). ``.`` may appear inside a bare identifier (``activemq.group``). A
number directly followed by a name character (``12abc``, ``1e``) is malformed.
Integer literals beyond the signed 64-bit range become floats.

Each operand has a static kind: a condition (comparisons, AND/OR/NOT, TRUE,
FALSE), a number (numeric literals, arithmetic), a string (string literals) or
a value (identifiers, NULL: a header, typed when compared). The parser rejects
what can never make sense: a number or string where a condition is expected,
arithmetic on strings or conditions, comparing a number with a string, ordering
conditions. Nesting (parentheses, NOT, unary signs) is limited to ``MAX_DEPTH``
and the text to ``MAX_LENGTH`` characters. Positions are 0-based offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

MAX_LENGTH = 4096
MAX_DEPTH = 64
KEYWORDS = frozenset(
    ["AND", "OR", "NOT", "BETWEEN", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE"]
)
COMPARE_OPS = ("=", "<>", "<", ">", "<=", ">=")
_OPS = ("<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",")

_SPACE = frozenset(" \t\r\n\f")
_BARE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]*")
_NUMBER_TOKEN = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME_RUN = re.compile(r"[A-Za-z0-9_$.]*")
_STRING = re.compile(r"'(?:[^']|'')*+'")  # possessive: 'it''s is unterminated, not 'it' 's
_QUOTED = re.compile(r'"(?:[^"]|"")*+"')
_NUMBER_TEXT = re.compile(r"[+-]?" + _NUMBER_TOKEN.pattern)  # a header that looks numeric
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

Number = int | float
Value = bool | int | float | str | None


class SelectorError(ValueError):
    """A selector that does not follow the grammar; says what is wrong and where."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} at position {position}")
        self.reason = reason
        self.position = position


def fit(number: Number) -> Number:
    """``number``, as a float when it is an integer outside the signed 64-bit range."""
    if isinstance(number, int) and not _LONG_MIN <= number <= _LONG_MAX:
        return float(number)
    return number


def parse_number(text: str) -> Number | None:
    """The number ``text`` spells (optional sign, decimal, exponent), else None."""
    if _NUMBER_TEXT.fullmatch(text) is None:
        return None
    if _INTEGER.fullmatch(text) and len(text) <= 20:
        return fit(int(text))
    return float(text)  # long digit strings too: int() refuses >4300 digits


# -- tokens ----------------------------------------------------------------------


class Token(NamedTuple):
    kind: str  # "name", "quoted", "string", "number", "keyword", "op", "end"
    text: str  # the name, the string's content, the keyword (upper case), the op
    pos: int
    number: Number = 0


def describe(token: Token) -> str:
    """How an error message names ``token``."""
    shown = token.text if len(token.text) <= 20 else token.text[:20] + "..."
    return {
        "name": f"identifier {shown!r}",
        "quoted": f'identifier "{shown}"',
        "string": f"string {shown!r}",
        "number": f"number {shown}",
        "keyword": shown,
        "op": f"'{shown}'",
        "end": "end of selector",
    }[token.kind]


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token."""
    tokens: list[Token] = []
    pos = _skip_space(text, 0)
    while pos < len(text):
        token, end = _token_at(text, pos)
        tokens.append(token)
        pos = _skip_space(text, end)
    tokens.append(Token("end", "", len(text)))
    return tokens


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _SPACE:
        pos += 1
    return pos


def _token_at(text: str, pos: int) -> tuple[Token, int]:
    """The token starting at ``pos`` and the position after it."""
    char = text[pos]
    if char in "'\"":
        quoted = _STRING if char == "'" else _QUOTED
        if (match := quoted.match(text, pos)) is None:
            what = "string" if char == "'" else "quoted identifier"
            raise SelectorError(f"unterminated {what}", pos)
        content = match.group()[1:-1].replace(char * 2, char)
        if char == '"' and not content:
            raise SelectorError("empty quoted identifier", pos)
        return Token("string" if char == "'" else "quoted", content, pos), match.end()
    if match := _NUMBER_TOKEN.match(text, pos):
        end = _NAME_RUN.match(text, match.end()).end()  # type: ignore[union-attr]
        if end != match.end():
            raise SelectorError(f"malformed number {text[pos:end][:24]!r}", pos)
        number = parse_number(match.group())
        assert number is not None
        return Token("number", match.group(), pos, number), end
    if match := _BARE.match(text, pos):
        word = match.group()
        kind = "keyword" if word.upper() in KEYWORDS else "name"
        return Token(kind, word.upper() if kind == "keyword" else word, pos), match.end()
    for op in _OPS:
        if text.startswith(op, pos):
            return Token("op", op, pos), pos + len(op)
    raise SelectorError(f"unexpected character {char!r}", pos)


# -- the AST -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identifier:
    name: str
    quoted: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Literal:
    value: Value
    pos: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "+" or "-"
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Arithmetic:
    """``first`` followed by (op, operand) pairs of one precedence level."""

    first: Node
    rest: tuple[tuple[str, Node], ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class In:
    operand: Node
    items: tuple[str | Number, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Like:
    """``segments`` are the pattern split at ``%``; None in a segment is ``_``."""

    operand: Node
    segments: tuple[tuple[str | None, ...], ...]
    pos: int


@dataclass(frozen=True, slots=True)
class IsNull:
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # "AND" or "OR"
    operands: tuple[Node, ...]
    pos: int


Node = Identifier | Literal | Unary | Arithmetic | Compare | In | Like | IsNull | Not | Logic


def kind(node: Node) -> str:
    """The static kind of ``node``: "condition", "number", "string" or "value"."""
    if isinstance(node, Literal):
        value = node.value
        if value is None:
            return "value"
        if isinstance(value, bool):
            return "condition"
        return "string" if isinstance(value, str) else "number"
    if isinstance(node, Identifier):
        return "value"
    return "number" if isinstance(node, Unary | Arithmetic) else "condition"


def _require(node: Node, kinds: tuple[str, ...], what: str) -> Node:
    found = kind(node)
    if found not in kinds:
        raise SelectorError(f"expected {what}, found a {found}", node.pos)
    return node


def _comparable(op: str, left: Node, right: Node, pos: int) -> None:
    kinds = (kind(left), kind(right))
    if op not in ("=", "<>") and "condition" in kinds:
        raise SelectorError(f"cannot order conditions with '{op}'", pos)
    if "value" not in kinds and kinds[0] != kinds[1]:
        raise SelectorError(f"cannot compare a {kinds[0]} with a {kinds[1]}", pos)


# -- the parser --------------------------------------------------------------------


def parse(text: str) -> Node:
    """The AST of ``text``, which must be a condition; SelectorError otherwise."""
    if len(text) > MAX_LENGTH:
        raise SelectorError(f"selector is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    return _Parser(tokenize(text)).selector()


class _Parser:
    """Precedence climbing over ``_PRECEDENCE``; NOT, signs and predicates by hand."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def at(self, kind: str, *texts: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == kind and (not texts or token.text in texts)

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            raise SelectorError(f"expected {what}, found {describe(self.peek())}", self.peek().pos)
        return self.advance()

    def unexpected(self) -> SelectorError:
        return SelectorError(f"unexpected {describe(self.peek())}", self.peek().pos)

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SelectorError(f"selector nests deeper than {MAX_DEPTH}", pos)

    def selector(self) -> Node:
        if self.at("end"):
            raise SelectorError("empty selector", self.peek().pos)
        node = _require(self.expression(_OR), _CONDITION, "a condition")
        if not self.at("end"):
            raise self.unexpected()
        return node

    def precedence(self) -> int:
        """The binding power of the operator at hand; 0 when there is none."""
        token = self.peek()
        if token.kind == "op" and token.text in COMPARE_OPS:
            return _PREDICATE
        if self.at("keyword", "NOT"):
            return _PREDICATE if self.at("keyword", *_NEGATABLE, ahead=1) else 0
        if token.kind == "keyword" and token.text in _PREDICATE_WORDS:
            return _PREDICATE
        return _PRECEDENCE.get(token.text, 0) if token.kind in ("op", "keyword") else 0

    def expression(self, min_precedence: int) -> Node:
        """Operators binding at least ``min_precedence``, same-level chains flattened."""
        left = self.prefix(min_precedence)
        while (precedence := self.precedence()) >= min_precedence and precedence:
            if precedence == _PREDICATE:
                left = self.predicate(left)
                if self.precedence() == _PREDICATE:  # comparisons do not chain
                    raise self.unexpected()
                continue
            rest: list[tuple[str, Node]] = []
            while self.precedence() == precedence:
                op = self.advance().text
                if precedence == _PRODUCT:  # only signs bind tighter: skip a frame
                    rest.append((op, self.prefix(_SIGN)))
                else:
                    rest.append((op, self.expression(precedence + 1)))
            left = _combine(precedence, left, rest)
        return left

    def prefix(self, min_precedence: int) -> Node:
        """NOT (where a condition may start), a sign, or a primary."""
        token = self.peek()
        if self.at("keyword", "NOT") and min_precedence <= _NOT:
            self.advance()
            self.enter(token.pos)
            operand = _require(self.expression(_NOT), _CONDITION, "a condition")
            self.depth -= 1
            return Not(operand, token.pos)
        if self.at("op", "+", "-"):
            self.advance()
            self.enter(token.pos)
            operand = _require(self.prefix(_SIGN), _NUMERIC, "a number")
            self.depth -= 1
            if isinstance(operand, Literal) and isinstance(operand.value, int | float):
                return Literal(
                    operand.value if token.text == "+" else fit(-operand.value), token.pos
                )
            return Unary(token.text, operand, token.pos)
        return self.primary()

    def primary(self) -> Node:
        token = self.peek()
        if self.at("op", "("):
            self.advance()
            self.enter(token.pos)
            node = self.expression(_OR)
            self.expect("op", ")", "')'")
            self.depth -= 1
            return node
        if token.kind in ("name", "quoted", "string", "number"):
            self.advance()
            if token.kind in ("string", "number"):
                return Literal(token.text if token.kind == "string" else token.number, token.pos)
            return Identifier(token.text, token.kind == "quoted", token.pos)
        if self.at("keyword", "TRUE", "FALSE", "NULL"):
            self.advance()
            return Literal({"TRUE": True, "FALSE": False}.get(token.text), token.pos)
        raise self.unexpected()

    def predicate(self, left: Node) -> Node:
        """What follows ``left`` at comparison level: an operator, BETWEEN, IN, LIKE or IS."""
        negated = self.at("keyword", "NOT")
        if negated:
            self.advance()
        token = self.advance()
        if token.kind == "op":
            right = self.expression(_SUM)
            _comparable(token.text, left, right, token.pos)
            return Compare(token.text, left, right, token.pos)
        parse = {"BETWEEN": self.between, "IN": self.in_list, "LIKE": self.like}.get(token.text)
        if parse is not None:
            node = parse(left, token.pos)
        else:  # IS
            negated = self.at("keyword", "NOT")
            if negated:
                self.advance()
            self.expect("keyword", "NULL", "NULL")
            node = IsNull(left, token.pos)
        return Not(node, token.pos) if negated else node

    def between(self, operand: Node, pos: int) -> Node:
        low = self.expression(_SUM)
        self.expect("keyword", "AND", "AND")
        high = self.expression(_SUM)
        _comparable(">=", operand, low, pos)
        _comparable("<=", operand, high, pos)
        return Logic(
            "AND", (Compare(">=", operand, low, pos), Compare("<=", operand, high, pos)), pos
        )

    def in_list(self, operand: Node, pos: int) -> Node:
        _require(operand, ("string", "number", "value"), "a value before IN")
        self.expect("op", "(", "'(' after IN")
        items = [self.literal()]
        while self.at("op", ","):
            self.advance()
            items.append(self.literal())
        self.expect("op", ")", "',' or ')'")
        for item in items:
            _comparable("=", operand, Literal(item, pos), pos)
        return In(operand, tuple(items), pos)

    def literal(self) -> str | Number:
        if self.at("string"):
            return self.advance().text
        sign = self.advance().text if self.at("op", "+", "-") else "+"
        if not self.at("number"):
            raise SelectorError(
                f"expected a literal, found {describe(self.peek())}", self.peek().pos
            )
        number = self.advance().number
        return fit(-number) if sign == "-" else number

    def like(self, operand: Node, pos: int) -> Node:
        _require(operand, ("string", "value"), "a string before LIKE")
        if not self.at("string"):
            found = self.peek()
            raise SelectorError(f"expected a string pattern, found {describe(found)}", found.pos)
        pattern = self.advance()
        escape = None
        if self.at("keyword", "ESCAPE"):
            self.advance()
            if not self.at("string") or len(self.peek().text) != 1:
                raise SelectorError("ESCAPE needs a one-character string", self.peek().pos)
            escape = self.advance().text
        return Like(operand, _like_segments(pattern, escape), pos)


def _combine(precedence: int, first: Node, rest: list[tuple[str, Node]]) -> Node:
    """One node for a chain of same-precedence operators (n-ary keeps the AST shallow)."""
    if precedence in (_OR, _AND):
        operands = (first, *(node for _, node in rest))
        for node in operands:
            _require(node, _CONDITION, "a condition")
        return Logic(rest[0][0], operands, first.pos)
    for node in (first, *(node for _, node in rest)):
        _require(node, _NUMERIC, "a number")
    return Arithmetic(first, tuple(rest), first.pos)


# Binding powers, loosest first. NOT binds looser than a comparison: NOT a = 1 is NOT (a = 1).
_OR, _AND, _NOT, _PREDICATE, _SUM, _PRODUCT, _SIGN = 1, 2, 3, 4, 5, 6, 7
_PRECEDENCE = {"OR": _OR, "AND": _AND, "+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT}
_PREDICATE_WORDS = ("IN", "LIKE", "BETWEEN", "IS")
_NEGATABLE = ("IN", "LIKE", "BETWEEN")  # NOT IN, NOT LIKE, NOT BETWEEN
_CONDITION = ("condition", "value")
_NUMERIC = ("number", "value")


def _like_segments(pattern: Token, escape: str | None) -> tuple[tuple[str | None, ...], ...]:
    """``pattern`` split at its unescaped ``%``, with None for each unescaped ``_``."""
    segments: list[tuple[str | None, ...]] = []
    current: list[str | None] = []
    chars = iter(pattern.text)
    for char in chars:
        if char == escape:
            literal = next(chars, None)
            if literal is None:
                raise SelectorError("LIKE pattern ends with its escape character", pattern.pos)
            current.append(literal)
        elif char == "%":
            segments.append(tuple(current))
            current = []
        else:
            current.append(None if char == "_" else char)
    segments.append(tuple(current))
    return tuple(segments)

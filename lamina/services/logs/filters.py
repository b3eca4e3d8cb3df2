"""CloudWatch Logs' JSON filter patterns: `{ $.level = "ERROR" && $.attempt > 2 }`.

A pattern matches a log event whose message is a JSON object for which its expression
holds. Supported, as CloudWatch Logs documents them: selectors `$.a.b[0]` (and `$.*`-free
paths), `=` and `!=` against strings ("quoted", with `*` wildcards, or bare words) and
numbers, `<` `<=` `>` `>=` against numbers, `IS TRUE`, `IS FALSE`, `IS NULL`,
`NOT EXISTS`, `&&`, `||` and parentheses. A missing field never equals anything.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from typing import Any

TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>&&|\|\||<=|>=|!=|=|<|>|\(|\))
      | (?P<selector>\$(?:\.[A-Za-z0-9_@$-]+|\[\d+\])*)
      | (?P<word>[^\s()=<>!&|"]+)
    )""",
    re.VERBOSE,
)
MISSING = object()
Predicate = Callable[[Any], bool]


class FilterError(ValueError):
    """The pattern is not a JSON filter pattern CloudWatch Logs would accept."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        found = TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise FilterError(f"Invalid character(s) in term '{text[position:].strip()}'")
        kind = found.lastgroup or "word"
        out.append((kind, found.group(kind)))
        position = found.end()
    return out


def _select(document: Any, selector: str) -> Any:
    value = document
    for name, index in re.findall(r"\.([A-Za-z0-9_@$-]+)|\[(\d+)\]", selector[1:]):
        if name:
            if not isinstance(value, dict) or name not in value:
                return MISSING
            value = value[name]
        else:
            position = int(index)
            if not isinstance(value, list) or position >= len(value):
                return MISSING
            value = value[position]
    return value


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("Unexpected end of filter pattern")
        self.at += 1
        return token

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda doc: a(doc) or b(doc))(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.term()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.term()
            left = (lambda a, b: lambda doc: a(doc) and b(doc))(left, right)
        return left

    def term(self) -> Predicate:
        kind, value = self.take()
        if (kind, value) == ("op", "("):
            inner = self.expression()
            if self.take() != ("op", ")"):
                raise FilterError("Missing closing parenthesis")
            return inner
        if kind != "selector":
            raise FilterError(f"Expected a selector such as $.field, found '{value}'")
        return self.comparison(value)

    def comparison(self, selector: str) -> Predicate:
        kind, word = self.take()
        if kind == "word" and word.upper() in ("IS", "NOT"):
            rest = self.take()[1].upper()
            if word.upper() == "NOT" and rest == "EXISTS":
                return lambda doc: _select(doc, selector) is MISSING
            expected = {"TRUE": True, "FALSE": False, "NULL": None}.get(rest, MISSING)
            if expected is MISSING:
                raise FilterError(f"Unexpected '{rest}' after IS")
            return lambda doc: _select(doc, selector) is expected
        if kind != "op" or word not in ("=", "!=", "<", "<=", ">", ">="):
            raise FilterError(f"Expected a comparison after {selector}, found '{word}'")
        operator = word
        value_kind, raw = self.take()
        if value_kind == "string":
            target: Any = json.loads(raw)
        elif value_kind == "word":
            target = raw
        else:
            raise FilterError(f"Expected a value after {operator}, found '{raw}'")
        return _compare(selector, operator, target, value_kind == "string")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _compare(selector: str, operator: str, target: Any, quoted: bool) -> Predicate:
    number = None if quoted else _number(target)
    if operator in ("<", "<=", ">", ">="):
        if number is None:
            raise FilterError(f"Numeric comparison {operator} needs a number, found '{target}'")
        bound = number

        def numeric(doc: Any) -> bool:
            value = _number(_select(doc, selector))
            if value is None:
                return False
            return {
                "<": value < bound,
                "<=": value <= bound,
                ">": value > bound,
                ">=": value >= bound,
            }[operator]

        return numeric

    def equal(doc: Any) -> bool:
        value = _select(doc, selector)
        if value is MISSING or isinstance(value, dict | list):
            return False
        if number is not None and _number(value) is not None:
            return _number(value) == number
        text = json.dumps(value) if isinstance(value, bool) or value is None else str(value)
        pattern = str(target)
        return fnmatch.fnmatchcase(text, pattern) if "*" in pattern else text == pattern

    if operator == "=":
        return equal
    return lambda doc: _select(doc, selector) is not MISSING and not equal(doc)


def json_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate over log messages for a `{ ... }` pattern; FilterError if it is bad."""
    body = pattern.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise FilterError("A JSON filter pattern is enclosed in { }")
    parser = _Parser(_tokens(body[1:-1]))
    predicate = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"Unexpected '{parser.peek()[1]}' in filter pattern")  # type: ignore[index]

    def match(text: str) -> bool:
        start = text.find("{")
        if start < 0:
            return False
        try:
            document = json.loads(text[start:])
        except ValueError:
            return False
        return isinstance(document, dict) and predicate(document)

    return match

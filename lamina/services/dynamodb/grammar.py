"""The grammar of DynamoDB's expressions (condition, filter, key condition, update,
projection), parsed with lark (LALR) into plain tuples, and AWS's syntax errors:
`Invalid UpdateExpression: Syntax error; token: "=", near: "a = = b"`.

    path       ("path", [("name", "a") | ("name", "#n") | ("index", 2), ...])
    operand    path | ("value", ":v") | ("call", "size", [args]) | ("+", x, y) | ("-", x, y)
    condition  ("compare", op, x, y) | ("between", x, low, high) | ("in", x, [y, ...])
               | ("and", c, d) | ("or", c, d) | ("not", c) | ("call", name, [args])
    update     [("SET", [(path, operand), ...]), ("REMOVE", [path, ...]),
                ("ADD", [(path, value), ...]), ("DELETE", [(path, value), ...])]

Names are checked later (expressions.py): which functions exist, reserved words, the
#names and :values a request defines.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from lark import Lark, Token, Transformer, UnexpectedInput, UnexpectedToken

from lamina.services.dynamodb.values import validation

COMMON = r"""
    path: element ("." element | "[" INDEX "]")*
    element: NAME | ATTR_NAME
    call: NAME "(" [operand ("," operand)*] ")"
    value: VALUE

    _AND.5: /AND\b/i
    _OR.5: /OR\b/i
    _NOT.5: /NOT\b/i
    _BETWEEN.5: /BETWEEN\b/i
    _IN.5: /IN\b/i
    _SET.5: /SET\b/i
    _REMOVE.5: /REMOVE\b/i
    _ADD.5: /ADD\b/i
    _DELETE.5: /DELETE\b/i
    COMPARATOR.4: "<>" | "<=" | ">=" | "=" | "<" | ">"
    NAME.3: /[a-zA-Z_][a-zA-Z0-9_]*/
    ATTR_NAME.3: /#[a-zA-Z0-9_]+/
    VALUE.3: /:[a-zA-Z0-9_]+/
    INDEX.3: /[0-9]+/
    %ignore /\s+/
"""

CONDITION = (
    r"""
    start: disjunction
    ?disjunction: conjunction | disjunction _OR conjunction -> or_
    ?conjunction: negation | conjunction _AND negation -> and_
    ?negation: predicate | _NOT negation -> not_
    ?predicate: operand COMPARATOR operand -> compare
        | operand _BETWEEN operand _AND operand -> between
        | operand _IN "(" operand ("," operand)* ")" -> in_
        | call
        | "(" disjunction ")" -> group
    ?operand: path | value | call
"""
    + COMMON
)

UPDATE = (
    r"""
    start: section+
    section: _SET assignment ("," assignment)* -> set_
        | _REMOVE path ("," path)* -> remove
        | _ADD path value ("," path value)* -> add
        | _DELETE path value ("," path value)* -> delete
    assignment: path "=" sum
    ?sum: operand | operand "+" operand -> plus | operand "-" operand -> minus
    ?operand: path | value | call
"""
    + COMMON
)

PROJECTION = (
    r"""
    start: path ("," path)*
    ?operand: path | value | call
"""
    + COMMON
)


class _Tree(Transformer[Token, Any]):
    def start(self, items: list[Any]) -> Any:
        return items

    def path(self, items: list[Any]) -> Any:
        return ("path", items)

    def element(self, items: list[Token]) -> Any:
        return ("name", str(items[0]))

    def INDEX(self, token: Token) -> Any:
        return ("index", int(token))

    def value(self, items: list[Token]) -> Any:
        return ("value", str(items[0]))

    def call(self, items: list[Any]) -> Any:
        return ("call", str(items[0]), [i for i in items[1:] if i is not None])

    def compare(self, items: list[Any]) -> Any:
        return ("compare", str(items[1]), items[0], items[2])

    def between(self, items: list[Any]) -> Any:
        return ("between", items[0], items[1], items[2])

    def in_(self, items: list[Any]) -> Any:
        return ("in", items[0], items[1:])

    def group(self, items: list[Any]) -> Any:
        return ("group", items[0])

    def and_(self, items: list[Any]) -> Any:
        return ("and", items[0], items[1])

    def or_(self, items: list[Any]) -> Any:
        return ("or", items[0], items[1])

    def not_(self, items: list[Any]) -> Any:
        return ("not", items[0])

    def plus(self, items: list[Any]) -> Any:
        return ("+", items[0], items[1])

    def minus(self, items: list[Any]) -> Any:
        return ("-", items[0], items[1])

    def assignment(self, items: list[Any]) -> Any:
        return (items[0], items[1])

    def set_(self, items: list[Any]) -> Any:
        return ("SET", items)

    def remove(self, items: list[Any]) -> Any:
        return ("REMOVE", items)

    def add(self, items: list[Any]) -> Any:
        return ("ADD", list(zip(items[::2], items[1::2], strict=True)))

    def delete(self, items: list[Any]) -> Any:
        return ("DELETE", list(zip(items[::2], items[1::2], strict=True)))


@cache
def _parser(kind: str) -> Lark:
    grammar = {"condition": CONDITION, "update": UPDATE, "projection": PROJECTION}[kind]
    return Lark(grammar, parser="lalr", lexer="basic", maybe_placeholders=False)


def expression_error(label: str, detail: str) -> Exception:
    return validation(f"Invalid {label}: {detail}")


def parse(kind: str, text: str, label: str) -> Any:
    """Parse `text` as a `kind` (condition, update, projection) expression; `label` names
    it in errors (ConditionExpression, FilterExpression, KeyConditionExpression, ...)."""
    if not text.strip():
        raise expression_error(label, "The expression can not be empty;")
    parser = _parser(kind)
    try:
        tree = parser.parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(text, error, label) from None
    items = _Tree().transform(tree)
    return items[0] if kind == "condition" else items


# AWS's tokens, for the `near` of a syntax error: the text from the token before the
# unexpected one to the token after it.
TOKENS = re.compile(
    r"<>|<=|>=|[=<>]|#[a-zA-Z0-9_]+|:[a-zA-Z0-9_]+|[a-zA-Z_][a-zA-Z0-9_]*|[0-9]+|\S"
)


def _syntax_error(text: str, error: UnexpectedInput, label: str) -> Exception:
    tokens = [(m.start(), m.end()) for m in TOKENS.finditer(text)]
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        near = text[tokens[-1][0] :] if tokens else ""
        return expression_error(label, f'Syntax error; token: "<EOF>", near: "{near}"')
    position = error.pos_in_stream or 0
    at = next((i for i, (start, _) in enumerate(tokens) if start >= position), len(tokens) - 1)
    start = tokens[at - 1][0] if at > 0 else tokens[at][0]
    end = tokens[at + 1][1] if at + 1 < len(tokens) else tokens[at][1]
    token = text[tokens[at][0] : tokens[at][1]]
    return expression_error(label, f'Syntax error; token: "{token}", near: "{text[start:end]}"')

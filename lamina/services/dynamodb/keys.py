"""A Query's KeyConditionExpression, turned into a range of the table's key: the
partition key's value, and bounds on the sort key's bytes (values.key_bytes), with AWS's
messages for conditions a key cannot answer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.grammar import expression_error
from lamina.services.dynamodb.tables import Table

SORT_OPERATORS = ("=", "<", "<=", ">", ">=")
FLIPPED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

KeyRange = tuple[v.Value, bytes | None, bytes | None, Callable[[v.Item], bool]]


def key_range(table: Table, condition: Any) -> KeyRange:
    """(partition key value, low, high, check): items of that partition key whose sort key
    bytes lie in [low, high] (None: open) and pass `check` (strict bounds, begins_with)."""
    parts = _conjuncts(condition)
    if len(parts) > 2:
        raise _error("Conditions can be of length 1 or 2 only")
    hash_value: v.Value | None = None
    low: bytes | None = None
    high: bytes | None = None
    checks: list[Callable[[v.Item], bool]] = []
    for part in parts:
        name, op, operands = _key_condition(part)
        if name == table.hash_key:
            if op != "=":
                raise v.validation("Query key condition not supported")
            hash_value = _typed(table, name, operands[0])
        elif name == table.range_key:
            values = [_typed(table, name, o) for o in operands]
            if op == "begins_with":
                if v.kind_of(values[0]) not in ("S", "B"):
                    raise expression_error(
                        "KeyConditionExpression",
                        "Incorrect operand type for operator or function; operator or "
                        f"function: begins_with, operand type: {v.kind_of(values[0])}",
                    )
                low = v.key_bytes(values[0])
                prefix = values[0]
                checks.append(functools.partial(_item_begins, name, prefix))
            elif op == "between":
                low, high = v.key_bytes(values[0]), v.key_bytes(values[1])
                if low > high:
                    raise v.validation(
                        "Invalid KeyConditionExpression: The BETWEEN operator requires upper "
                        "bound to be greater than or equal to lower bound; lower bound operand: "
                        f"AttributeValue: {_shown(values[0])}, upper bound operand: "
                        f"AttributeValue: {_shown(values[1])}"
                    )
            else:
                bound = v.key_bytes(values[0])
                if op in ("=", ">=", ">"):
                    low = bound
                if op in ("=", "<=", "<"):
                    high = bound
                if op in ("<", ">"):
                    checks.append(functools.partial(_not_at, name, bound))
        else:
            raise v.validation("Query condition missed key schema element: " + table.hash_key)
    if hash_value is None:
        raise v.validation(f"Query condition missed key schema element: {table.hash_key}")
    return hash_value, low, high, lambda item: all(check(item) for check in checks)


def _conjuncts(condition: Any) -> list[Any]:
    if condition[0] == "and":
        return _conjuncts(condition[1]) + _conjuncts(condition[2])
    if condition[0] in ("or", "not"):
        raise _error(f"Invalid operator used in KeyConditionExpression: {condition[0].upper()}")
    return [condition]


def _key_condition(part: Any) -> tuple[str, str, list[Any]]:
    kind = part[0]
    if kind == "compare":
        op, left, right = part[1], part[2], part[3]
        if op == "<>":
            raise _error(f"Unsupported operator in KeyConditionExpression: {op}")
        if (left[0] == "path" and right[0] == "path") or (left[0] != "path" and right[0] != "path"):
            raise _error(
                "Invalid condition in KeyConditionExpression: Multiple attribute names used in "
                "one condition"
                if left[0] == "path"
                else "Invalid condition in KeyConditionExpression: No key attribute specified"
            )
        if right[0] == "path":
            left, right, op = right, left, FLIPPED[op]
        return _top_name(left), op, [right]
    if kind == "between":
        return _top_name(part[1]), "between", [part[2], part[3]]
    if kind == "begins_with":
        return _top_name(part[1]), "begins_with", [part[2]]
    name = {"exists": "attribute_exists", "not_exists": "attribute_not_exists"}.get(kind, kind)
    raise _error(f"Unsupported function in KeyConditionExpression: {name}")


def _top_name(operand: Any) -> str:
    if operand[0] != "path" or len(operand[1]) != 1 or not isinstance(operand[1][0], str):
        raise _error("Invalid condition in KeyConditionExpression: a key must be a top-level name")
    return str(operand[1][0])


def _typed(table: Table, name: str, operand: Any) -> v.Value:
    if operand[0] != "value":
        raise _error(
            "Invalid condition in KeyConditionExpression: Multiple attribute names used in "
            "one condition"
        )
    value: v.Value = operand[1]
    if v.kind_of(value) != table.key_type(name):
        raise v.invalid("Condition parameter type does not match schema type")
    return value


def _item_begins(name: str, prefix: v.Value, item: v.Item) -> bool:
    return _begins(item.get(name), prefix)


def _not_at(name: str, bound: bytes, item: v.Item) -> bool:
    return v.key_bytes(item[name]) != bound


def _begins(value: v.Value | None, prefix: v.Value) -> bool:
    if value is None or v.kind_of(value) != v.kind_of(prefix):
        return False
    if "S" in value:
        return bool(value["S"].startswith(prefix["S"]))
    return bytes(value["B"]).startswith(bytes(prefix["B"]))


def _shown(value: v.Value) -> str:
    ((kind, inner),) = value.items()
    return "{" + f"{kind}:{inner}" + "}"


def _error(detail: str) -> Exception:
    return expression_error("KeyConditionExpression", detail)

"""DynamoDB's expressions, checked and evaluated: conditions (ConditionExpression,
FilterExpression, KeyConditionExpression), update expressions and projections, over one
request's ExpressionAttributeNames and ExpressionAttributeValues.

`Expressions` resolves what grammar.py parsed: #names and :values (each must be defined,
each defined one must be used), reserved words, function names, numbers of operands and
the operand types it can know before reading an item, with AWS's messages. Resolved:

    path       a tuple of names and list indexes: ("a", 0, "b")
    operand    ("path", path) | ("value", v) | ("size", o) | ("if_not_exists", path, o)
               | ("list_append", o, o) | ("+", o, o) | ("-", o, o)
    condition  ("compare", op, o, o) | ("between", o, o, o) | ("in", o, [o, ...])
               | ("and", c, c) | ("or", c, c) | ("not", c) | ("exists", path)
               | ("not_exists", path) | ("type", path, v) | ("begins_with", o, o)
               | ("contains", o, o)

`holds(condition, item)` evaluates a condition; updates.py applies updates.
"""

from __future__ import annotations

import decimal
from typing import Any

from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.grammar import expression_error, parse
from lamina.services.dynamodb.reserved import is_reserved

Path = tuple[str | int, ...]
CONDITION_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
}
OPERAND_FUNCTIONS = {"size": 1}
UPDATE_FUNCTIONS = {"if_not_exists": 2, "list_append": 2}
FUNCTIONS = {**CONDITION_FUNCTIONS, **OPERAND_FUNCTIONS, **UPDATE_FUNCTIONS}
TYPE_NAMES = ("S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M")
LONG_TYPES = {
    "S": "STRING",
    "N": "NUMBER",
    "B": "BINARY",
    "SS": "STRING_SET",
    "NS": "NUMBER_SET",
    "BS": "BINARY_SET",
    "M": "MAP",
    "L": "LIST",
    "NULL": "NULL",
    "BOOL": "BOOLEAN",
}
MAX_IN = 100
SIZED = ("S", "B", "SS", "NS", "BS", "L", "M")


def one_error(message: str) -> Exception:
    return v.validation(f"1 validation error detected: {message}")


class Expressions:
    """The expressions of one request."""

    def __init__(self, names: dict[str, str] | None, values: dict[str, Any] | None) -> None:
        if names is not None and not names:
            raise v.validation("ExpressionAttributeNames must not be empty")
        if values is not None and not values:
            raise v.validation("ExpressionAttributeValues must not be empty")
        self.names = dict(names or {})
        self.values = {name: v.check_value(value) for name, value in (values or {}).items()}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()
        self.label = ""

    # Parsing and resolving ------------------------------------------------------------
    def condition(self, text: str, label: str) -> Any:
        self.label = label
        return self._condition(parse("condition", text, label))

    def update(self, text: str) -> list[tuple[str, list[Any]]]:
        self.label = "UpdateExpression"
        sections = parse("update", text, self.label)
        seen: set[str] = set()
        out: list[tuple[str, list[Any]]] = []
        targets: list[Path] = []
        for kind, actions in sections:
            if kind in seen:
                raise one_error(
                    f'Invalid UpdateExpression: The "{kind}" section can only be used once in '
                    "an update expression;"
                )
            seen.add(kind)
            if kind == "SET":
                assignments = [(self._path(p), self._operand(o, "update")) for p, o in actions]
                out.append((kind, assignments))
                targets.extend(path for path, _ in assignments)
            elif kind == "REMOVE":
                removed = [self._path(p) for p in actions]
                out.append((kind, removed))
                targets.extend(removed)
            else:
                resolved = []
                for path, raw in actions:
                    value = self._value(raw[1])
                    allowed = ("N", "SS", "NS", "BS") if kind == "ADD" else ("SS", "NS", "BS")
                    if v.kind_of(value) not in allowed:
                        raise self._error(
                            "Incorrect operand type for operator or function; operator or "
                            f"function: operator: {kind}, operand type: "
                            f"{LONG_TYPES[v.kind_of(value)]}"
                        )
                    resolved.append((self._path(path), value))
                out.append((kind, resolved))
                targets.extend(path for path, _ in resolved)
        _check_overlaps(targets)
        return out

    def projection(self, text: str) -> list[Path]:
        self.label = "ProjectionExpression"
        parsed = parse("projection", text, self.label)
        paths = [self._path(p) for p in parsed]
        _check_overlaps(paths, "ProjectionExpression")
        return paths

    def finish(self) -> None:
        """After every expression of the request: each #name and :value was used."""
        unused = sorted(set(self.names) - self.used_names)
        if unused:
            raise v.validation(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: "
                "{" + ", ".join(unused) + "}"
            )
        unused = sorted(set(self.values) - self.used_values)
        if unused:
            raise v.validation(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: "
                "{" + ", ".join(unused) + "}"
            )

    def _error(self, detail: str) -> Exception:
        return expression_error(self.label, detail)

    def _path(self, node: Any) -> Path:
        out: list[str | int] = []
        for kind, raw in node[1]:
            if kind == "index":
                out.append(raw)
            elif raw.startswith("#"):
                if raw not in self.names:
                    raise self._error(
                        "An expression attribute name used in the document path is not "
                        f"defined; attribute name: {raw}"
                    )
                self.used_names.add(raw)
                out.append(self.names[raw])
            else:
                if is_reserved(raw):
                    raise self._error(
                        f"Attribute name is a reserved keyword; reserved keyword: {raw}"
                    )
                out.append(raw)
        return tuple(out)

    def _value(self, name: str) -> v.Value:
        if name not in self.values:
            raise self._error(
                "An expression attribute value used in expression is not defined; attribute "
                f"value: {name}"
            )
        self.used_values.add(name)
        return self.values[name]

    def _function(self, node: Any, allowed: dict[str, int], where: str) -> tuple[str, list[Any]]:
        _, name, args = node
        if name not in FUNCTIONS:
            raise self._error(f"Invalid function name; function: {name}")
        if name not in allowed:
            raise self._error(
                f"The function is not allowed to be used this way in an expression; "
                f"function: {name}"
                if where != "update"
                else f"The function is not allowed in an update expression; function: {name}"
            )
        if len(args) != FUNCTIONS[name]:
            raise self._error(
                "Incorrect number of operands for operator or function; operator or function: "
                f"{name}, number of operands: {len(args)}"
            )
        return name, args

    def _document_path(self, node: Any, name: str) -> Path:
        if node[0] != "path":
            raise self._error(
                f"Operator or function requires a document path; operator or function: {name}"
            )
        return self._path(node)

    def _operand(self, node: Any, where: str) -> Any:
        kind = node[0]
        if kind == "path":
            return ("path", self._path(node))
        if kind == "value":
            return ("value", self._value(node[1]))
        if kind in ("+", "-"):
            left, right = self._operand(node[1], where), self._operand(node[2], where)
            for side in (left, right):
                if side[0] == "value" and v.kind_of(side[1]) != "N":
                    raise self._type_error(kind, side[1])
            return (kind, left, right)
        allowed = UPDATE_FUNCTIONS if where == "update" else OPERAND_FUNCTIONS
        name, args = self._function(node, allowed, where)
        if name == "size":  # of a path, or (undocumented, as DynamoDB allows) of a value
            inner = self._operand(args[0], where)
            if inner[0] == "value" and v.kind_of(inner[1]) not in SIZED:
                raise self._type_error(name, inner[1])
            if inner[0] == "size":
                raise self._type_error(name, {"N": "0"})
            return ("size", inner)
        if name == "if_not_exists":
            return (name, self._document_path(args[0], name), self._operand(args[1], where))
        parts = [self._operand(a, where) for a in args]  # list_append
        for part in parts:
            if part[0] == "value" and v.kind_of(part[1]) != "L":
                raise self._type_error(name, part[1])
        return (name, *parts)

    def _type_error(self, name: str, value: v.Value) -> Exception:
        return self._error(
            "Incorrect operand type for operator or function; operator or function: "
            f"{name}, operand type: {v.kind_of(value)}"
        )

    def _condition(self, node: Any) -> Any:
        kind = node[0]
        if kind == "group":
            if node[1][0] == "group":
                raise self._error("The expression has redundant parentheses;")
            return self._condition(node[1])
        if kind in ("and", "or"):
            return (kind, self._condition(node[1]), self._condition(node[2]))
        if kind == "not":
            return ("not", self._condition(node[1]))
        if kind == "compare":
            return ("compare", node[1], self._operand(node[2], ""), self._operand(node[3], ""))
        if kind == "between":
            operands = [self._operand(n, "") for n in node[1:]]
            low, high = operands[1], operands[2]
            if low[0] == high[0] == "value" and _order(low[1], high[1]) == 1:
                raise self._error(
                    "The BETWEEN operator requires upper bound to be greater than or equal to "
                    f"lower bound; lower bound operand: AttributeValue: {_shown(low[1])}, upper "
                    f"bound operand: AttributeValue: {_shown(high[1])}"
                )
            return ("between", *operands)
        if kind == "in":
            if len(node[2]) > MAX_IN:
                raise self._error(
                    "The IN operator is provided with too many operands; number of operands: "
                    f"{len(node[2])}"
                )
            return ("in", self._operand(node[1], ""), [self._operand(n, "") for n in node[2]])
        if kind in ("path", "value"):  # an operand alone is not a condition
            raise self._error('Syntax error; token: "<EOF>", near: ""')
        name, args = self._function(node, CONDITION_FUNCTIONS, "")
        if name in ("attribute_exists", "attribute_not_exists"):
            path = self._document_path(args[0], name)
            return ("exists" if name == "attribute_exists" else "not_exists", path)
        if name == "attribute_type":
            path = self._document_path(args[0], name)
            wanted = self._operand(args[1], "")
            if wanted[0] == "value":
                type_name = wanted[1].get("S")
                if type_name not in TYPE_NAMES:
                    raise self._error(
                        f"Invalid attribute type name found in type: {type_name}, valid types: "
                        "{B,NULL,SS,BOOL,L,BS,N,NS,S,M}"
                    )
            return ("type", path, wanted)
        first, second = self._operand(args[0], ""), self._operand(args[1], "")
        if name == "contains" and first == second and first[0] == "path":
            raise self._error(
                "The first operand must be distinct from the remaining operands for this "
                f"operator or function; operator: contains, first operand: "
                f"[{_path_text(first[1])}]"
            )
        if name == "begins_with" and second[0] == "value" and v.kind_of(second[1]) not in "SB":
            raise self._type_error(name, second[1])
        return (name, first, second)


# Evaluating -------------------------------------------------------------------------------
def get_path(item: v.Item, path: Path) -> v.Value | None:
    current: Any = {"M": item}
    for step in path:
        if isinstance(step, int):
            if "L" not in current or step >= len(current["L"]):
                return None
            current = current["L"][step]
        else:
            if "M" not in current or step not in current["M"]:
                return None
            current = current["M"][step]
    return current


def operand_value(node: Any, item: v.Item) -> v.Value | None:
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "path":
        return get_path(item, node[1])
    if kind == "size":
        found = operand_value(node[1], item)
        if found is None:
            return None
        ((type_name, inner),) = found.items()
        if type_name in ("S",):
            return {"N": str(len(inner))}
        if type_name in ("B", "SS", "NS", "BS", "L", "M"):
            return {"N": str(len(inner))}
        return None
    raise AssertionError(f"not a condition operand: {kind}")


def _order(a: v.Value, b: v.Value) -> int | None:
    """-1, 0, 1 comparing two values of the same scalar type; None otherwise."""
    (kind_a, x), (kind_b, y) = v.comparable(a), v.comparable(b)
    if kind_a != kind_b or kind_a not in ("S", "N", "B"):
        return None
    return (x > y) - (x < y)


def _shown(value: v.Value) -> str:
    ((kind, inner),) = value.items()
    return "{" + f"{kind}:{inner}" + "}"


def holds(condition: Any, item: v.Item) -> bool:
    kind = condition[0]
    if kind == "and":
        return holds(condition[1], item) and holds(condition[2], item)
    if kind == "or":
        return holds(condition[1], item) or holds(condition[2], item)
    if kind == "not":
        return not holds(condition[1], item)
    if kind == "exists":
        return get_path(item, condition[1]) is not None
    if kind == "not_exists":
        return get_path(item, condition[1]) is None
    if kind == "type":
        found = get_path(item, condition[1])
        wanted = operand_value(condition[2], item)
        return found is not None and wanted is not None and v.kind_of(found) == wanted.get("S")
    if kind == "compare":
        left, right = operand_value(condition[2], item), operand_value(condition[3], item)
        return _compare(condition[1], left, right)
    if kind == "between":
        value = operand_value(condition[1], item)
        low, high = operand_value(condition[2], item), operand_value(condition[3], item)
        if value is None or low is None or high is None:
            return False
        return _order(value, low) in (0, 1) and _order(value, high) in (-1, 0)
    if kind == "in":
        value = operand_value(condition[1], item)
        if value is None:
            return False
        return any(
            (o := operand_value(option, item)) is not None and v.equal(value, o)
            for option in condition[2]
        )
    if kind == "begins_with":
        value, prefix = operand_value(condition[1], item), operand_value(condition[2], item)
        if value is None or prefix is None or v.kind_of(value) != v.kind_of(prefix):
            return False
        ((type_name, inner),) = value.items()
        if type_name == "S":
            return bool(inner.startswith(prefix["S"]))
        return type_name == "B" and bytes(inner).startswith(bytes(prefix["B"]))
    if kind == "contains":
        return _contains(operand_value(condition[1], item), operand_value(condition[2], item))
    raise AssertionError(f"not a condition: {kind}")


def _compare(op: str, left: v.Value | None, right: v.Value | None) -> bool:
    if left is None or right is None:
        return op == "<>" and not (left is None and right is None)
    if op in ("=", "<>"):
        same = v.equal(left, right)
        return same if op == "=" else not same
    order = _order(left, right)
    if order is None:
        return False
    return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0}[op]


def _contains(value: v.Value | None, part: v.Value | None) -> bool:
    if value is None or part is None:
        return False
    ((kind, inner),) = value.items()
    ((part_kind, part_inner),) = part.items()
    if kind == "S" and part_kind == "S":
        return bool(part_inner in inner)
    if kind == "B" and part_kind == "B":
        return bytes(part_inner) in bytes(inner)
    if kind == "SS" and part_kind == "S":
        return part_inner in inner
    if kind == "NS" and part_kind == "N":
        return decimal.Decimal(part_inner) in {decimal.Decimal(n) for n in inner}
    if kind == "BS" and part_kind == "B":
        return bytes(part_inner) in {bytes(b) for b in inner}
    if kind == "L":
        return any(v.equal(element, part) for element in inner)
    return False


# Paths that overlap ------------------------------------------------------------------------
def _targets(actions: list[Any]) -> list[Path]:
    return [
        a if isinstance(a, tuple) and a and not isinstance(a[0], tuple) else a[0] for a in actions
    ]


def _check_overlaps(paths: list[Path], label: str = "UpdateExpression") -> None:
    for index, one in enumerate(paths):
        for other in paths[index + 1 :]:
            shorter = min(len(one), len(other))
            if one[:shorter] == other[:shorter]:
                raise one_error(
                    f"Invalid {label}: Two document paths overlap with each other; must remove "
                    f"or rewrite one of these paths; path one: [{_path_text(one)}], path two: "
                    f"[{_path_text(other)}]"
                )


def _path_text(path: Path) -> str:
    return ", ".join(f"[{p}]" if isinstance(p, int) else p for p in path)

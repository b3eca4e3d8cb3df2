"""Applying an update expression (resolved by expressions.py) to an item, as DynamoDB
does: every value is computed from the item as it was, then SET, REMOVE, ADD and DELETE
change a copy; AWS's messages when a path or a type does not fit."""

from __future__ import annotations

import copy
import decimal
from typing import Any

from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.expressions import Path, get_path

INVALID_PATH = "The document path provided in the update expression is invalid for update"
WRONG_TYPE = "An operand in the update expression has an incorrect data type"
MISSING = "The provided expression refers to an attribute that does not exist in the item"


def apply(actions: list[tuple[str, list[Any]]], item: v.Item, keys: tuple[str, ...]) -> v.Item:
    """The item after the update; `keys` are the table's key attributes (not updatable)."""
    for _, entries in actions:
        for entry in entries:
            path = entry if isinstance(entry[0], str | int) else entry[0]
            if path[0] in keys:
                raise v.invalid(
                    f"Cannot update attribute {path[0]}. This attribute is part of the key"
                )
    new = copy.deepcopy(item)
    for kind, entries in actions:
        if kind == "SET":
            computed = [(path, _evaluate(operand, item)) for path, operand in entries]
            for path, value in computed:
                _set(new, path, value)
        elif kind == "REMOVE":
            # Indexes name the list as it was: remove from the highest down.
            for path in sorted(entries, key=_removal_order, reverse=True):
                _remove(new, path)
        elif kind == "ADD":
            for path, value in entries:
                _add(new, path, value)
        else:
            for path, value in entries:
                _delete(new, path, value)
    return new


def _removal_order(path: Path) -> tuple[Any, ...]:
    return tuple((1, step) if isinstance(step, int) else (0, step) for step in path)


def _evaluate(node: Any, item: v.Item) -> v.Value:
    kind = node[0]
    if kind == "value":
        return node[1]
    if kind == "path":
        found = get_path(item, node[1])
        if found is None:
            raise v.validation(MISSING)
        return found
    if kind == "if_not_exists":
        found = get_path(item, node[1])
        return found if found is not None else _evaluate(node[2], item)
    if kind == "list_append":
        first, second = _evaluate(node[1], item), _evaluate(node[2], item)
        if "L" not in first or "L" not in second:
            raise v.validation(WRONG_TYPE)
        return {"L": [*first["L"], *second["L"]]}
    left, right = _evaluate(node[1], item), _evaluate(node[2], item)  # + or -
    if "N" not in left or "N" not in right:
        raise v.validation(WRONG_TYPE)
    return {"N": _arithmetic(left["N"], right["N"], kind)}


def _arithmetic(a: str, b: str, op: str) -> str:
    with decimal.localcontext(v.NUMBERS):
        result = decimal.Decimal(a) + decimal.Decimal(b) * (1 if op == "+" else -1)
    return v.number_text(v.to_number(str(result)))


def _parent(item: v.Item, path: Path) -> Any:
    """The container that holds the last step of `path`; None if it is not there."""
    current: Any = {"M": item}
    for step in path[:-1]:
        if isinstance(step, int):
            if "L" not in current or step >= len(current["L"]):
                return None
            current = current["L"][step]
        else:
            if "M" not in current or step not in current["M"]:
                return None
            current = current["M"][step]
    return current


def _set(item: v.Item, path: Path, value: v.Value) -> None:
    parent = _parent(item, path)
    last = path[-1]
    if isinstance(last, int):
        if parent is None or "L" not in parent:
            raise v.validation(INVALID_PATH)
        elements = parent["L"]
        if last < len(elements):
            elements[last] = copy.deepcopy(value)
        else:
            elements.append(copy.deepcopy(value))
        return
    if parent is None or "M" not in parent:
        raise v.validation(INVALID_PATH)
    parent["M"][last] = copy.deepcopy(value)


def _remove(item: v.Item, path: Path) -> None:
    parent = _parent(item, path)
    last = path[-1]
    if parent is None:
        if len(path) > 1:
            raise v.validation(INVALID_PATH)
        return
    if isinstance(last, int):
        if "L" not in parent:
            raise v.validation(INVALID_PATH)
        if last < len(parent["L"]):
            del parent["L"][last]
    else:
        if "M" not in parent:
            raise v.validation(INVALID_PATH)
        parent["M"].pop(last, None)


def _add(item: v.Item, path: Path, value: v.Value) -> None:
    existing = get_path(item, path)
    if existing is None:
        _set(item, path, value)
        return
    kind = v.kind_of(value)
    if v.kind_of(existing) != kind:
        raise v.validation(WRONG_TYPE)
    if kind == "N":
        _set(item, path, {"N": _arithmetic(existing["N"], value["N"], "+")})
        return
    members = list(existing[kind])
    present = {_member(kind, m) for m in members}
    for member in value[kind]:
        if _member(kind, member) not in present:
            members.append(member)
            present.add(_member(kind, member))
    _set(item, path, {kind: members})


def _delete(item: v.Item, path: Path, value: v.Value) -> None:
    existing = get_path(item, path)
    if existing is None:
        return
    kind = v.kind_of(value)
    if v.kind_of(existing) != kind:
        raise v.validation(WRONG_TYPE)
    gone = {_member(kind, m) for m in value[kind]}
    left = [m for m in existing[kind] if _member(kind, m) not in gone]
    if left:
        _set(item, path, {kind: left})
    else:
        _remove(item, path)


def _member(kind: str, member: Any) -> Any:
    if kind == "NS":
        return decimal.Decimal(member)
    if kind == "BS":
        return bytes(member)
    return member


def project(item: v.Item, paths: list[Path]) -> v.Item:
    """The parts of `item` that `paths` name, nested as they are in the item."""
    out: v.Item = {}
    for path in paths:
        found = get_path(item, path)
        if found is None:
            continue
        _place(out, item, path, found)
    return out


def _place(out: v.Item, item: v.Item, path: Path, found: v.Value) -> None:
    target: Any = {"M": out}
    source: Any = {"M": item}
    for index, step in enumerate(path):
        last = index == len(path) - 1
        if isinstance(step, int):
            source = source["L"][step]
            elements = target.setdefault("L", [])
            # List elements a projection names keep their order, not their indexes.
            if last:
                elements.append(copy.deepcopy(found))
                return
            holder: dict[str, Any] = {"M": {}} if "M" in source else {"L": []}
            elements.append(holder)
            target = holder
        else:
            source = source["M"][step]
            if last:
                target["M"][step] = copy.deepcopy(found)
                return
            target = target["M"].setdefault(step, {"M": {}} if "M" in source else {"L": []})

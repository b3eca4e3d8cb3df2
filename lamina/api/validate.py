"""Validation of parsed input against the model's constraints, with AWS's messages.

Required members, numeric ranges, lengths, patterns and enums, reported together the
way AWS does: "2 validation errors detected: Value ... at 'memorySize' ...; ...".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from botocore.model import Shape

from lamina.errors import AwsError, constraint, validation_error


@cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    # Model patterns are Java regexes matched whole; nearly all are valid Python too.
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


Check = Callable[[Any, str, list[str]], None]
# Checkers compiled from the model, once per shape and set of extra constraints: the shape
# (kept so its id is not reused) and its checker.
_checkers: dict[tuple[int, int], tuple[Shape, Check]] = {}


def validate(shape: Shape, params: dict[str, Any], extra: dict[str, dict[str, Any]]) -> None:
    problems: list[str] = []
    checker(shape, extra)(params, "", problems)
    if problems:
        raise validation_error(problems)


def checker(shape: Shape, extra: dict[str, dict[str, Any]]) -> Check:
    """The checks of `shape` (and everything in it) as one function, made from the model
    the first time it is asked for: a request then costs no walk of the model."""
    found = _checkers.get((id(shape), id(extra)))
    if found is not None:
        return found[1]
    compiled = _compile(shape, extra, {})
    _checkers[(id(shape), id(extra))] = (shape, compiled)
    return compiled


def _compile(shape: Shape, extra: dict[str, dict[str, Any]], seen: dict[str, list[Check]]) -> Check:
    """`seen` breaks recursion (DynamoDB's AttributeValue holds AttributeValues): a shape
    being compiled is reached through a slot filled when it is done. Shapes are known by
    name (botocore makes a new object each time a member is resolved)."""
    pending = seen.get(shape.name)
    if pending is not None:
        return lambda value, path, out: pending[0](value, path, out)
    slot: list[Check] = []
    seen[shape.name] = slot
    compiled = _compile_shape(shape, extra, seen)
    slot.append(compiled)
    return compiled


def _compile_shape(
    shape: Shape, extra: dict[str, dict[str, Any]], seen: dict[str, list[Check]]
) -> Check:
    meta = {**shape.metadata, **extra.get(shape.name, {})}
    kind = shape.type_name
    if kind == "structure":
        return _compile_structure(shape, extra, seen)
    if kind in ("integer", "long", "double", "float"):
        return _compile_number(meta)
    if kind == "string":
        return _compile_string(shape, meta)
    if kind in ("list", "map"):
        return _compile_collection(shape, meta, extra, seen)
    if kind == "blob" and "max" in meta:
        limit = meta["max"]

        def check_blob(value: Any, path: str, out: list[str]) -> None:
            if isinstance(value, bytes | bytearray) and len(value) > limit:
                out.append(
                    constraint(
                        "<blob>", path, f"Member must have length less than or equal to {limit}"
                    )
                )

        return check_blob
    return _nothing


def _nothing(value: Any, path: str, out: list[str]) -> None:
    return None


def _compile_structure(
    shape: Shape, extra: dict[str, dict[str, Any]], seen: dict[str, list[Check]]
) -> Check:
    required = tuple((name, name[:1].lower() + name[1:]) for name in shape.required_members)
    members: list[tuple[str, str, Check]] = []
    for name, member in shape.members.items():  # the model's order, whatever the request's
        check = _compile(member, extra, seen)
        if check is not _nothing:
            members.append((name, name[:1].lower() + name[1:], check))

    def check_structure(value: Any, path: str, out: list[str]) -> None:
        if not isinstance(value, dict):
            return
        for name, camel in required:
            if value.get(name) is None:
                where = f"{path}.{camel}" if path else camel
                out.append(constraint(None, where, "Member must not be null"))
        for name, camel, check in members:
            member_value = value.get(name)
            if member_value is not None:
                check(member_value, f"{path}.{camel}" if path else camel, out)

    return check_structure


def _compile_number(meta: dict[str, Any]) -> Check:
    low, high = meta.get("min"), meta.get("max")
    if low is None and high is None:
        return _nothing

    def check_number(value: Any, path: str, out: list[str]) -> None:
        if low is not None and value < low:
            out.append(
                constraint(value, path, f"Member must have value greater than or equal to {low}")
            )
        if high is not None and value > high:
            out.append(
                constraint(value, path, f"Member must have value less than or equal to {high}")
            )

    return check_number


def _check_length(value: Any, path: str, low: int | None, high: int | None, out: list[str]) -> None:
    """A string's or a list's or map's length against the model's min and max."""
    if low is not None and len(value) < low:
        out.append(
            constraint(value, path, f"Member must have length greater than or equal to {low}")
        )
    if high is not None and len(value) > high:
        out.append(constraint(value, path, f"Member must have length less than or equal to {high}"))


def _compile_string(shape: Shape, meta: dict[str, Any]) -> Check:
    low, high = meta.get("min"), meta.get("max")
    enum = meta.get("enum", shape.enum)
    allowed = frozenset(enum) if enum else None
    pattern = meta.get("pattern")
    compiled = _compiled(pattern) if pattern else None
    if low is None and high is None and allowed is None and compiled is None:
        return _nothing

    def check_string(value: Any, path: str, out: list[str]) -> None:
        _check_length(value, path, low, high, out)
        if allowed is not None and value not in allowed:
            out.append(
                constraint(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
            )
        if compiled is not None and compiled.fullmatch(value) is None:
            out.append(
                constraint(
                    value, path, f"Member must satisfy regular expression pattern: {pattern}"
                )
            )

    return check_string


def _compile_collection(
    shape: Shape,
    meta: dict[str, Any],
    extra: dict[str, dict[str, Any]],
    seen: dict[str, list[Check]],
) -> Check:
    low, high = meta.get("min"), meta.get("max")
    is_list = shape.type_name == "list"
    item = _compile(shape.member, extra, seen) if is_list else None
    key = None if is_list else _compile(shape.key, extra, seen)
    value_check = None if is_list else _compile(shape.value, extra, seen)

    def check_collection(value: Any, path: str, out: list[str]) -> None:
        _check_length(value, path, low, high, out)
        if item is not None:
            where = f"{path}.member"
            for element in value:
                if element is None:  # JSON null inside a list: nothing downstream can use it
                    out.append(constraint(None, where, "Member must not be null"))
                else:
                    item(element, where, out)
            return
        assert key is not None and value_check is not None
        bad_keys: list[str] = []
        for name in value:
            key(name, path, bad_keys)
        if bad_keys:
            out.append(_map_keys_problem(shape, value, path, extra))
        where = f"{path}.value"
        for element in value.values():
            if element is None:
                out.append(constraint(None, where, "Member must not be null"))
            else:
                value_check(element, where, out)

    return check_collection


def _map_keys_problem(
    shape: Shape, value: dict[str, Any], path: str, extra: dict[str, dict[str, Any]]
) -> str:
    """AWS reports bad map keys once, on the map, listing every rule of the key shape."""
    key: Shape = shape.key
    meta = {**key.metadata, **extra.get(key.name, {})}
    rules = []
    if "max" in meta:
        rules.append(f"Member must have length less than or equal to {meta['max']}")
    if "min" in meta:
        rules.append(f"Member must have length greater than or equal to {meta['min']}")
    if meta.get("pattern"):
        rules.append(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    enum = meta.get("enum", key.enum)
    if enum:
        rules.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
    rule = f"Map keys must satisfy constraint: [{', '.join(rules)}]"
    if shape.metadata.get("sensitive") or meta.get("sensitive"):
        return f"Value at '{path}' failed to satisfy constraint: {rule}"  # the value stays secret
    shown = "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    return constraint(shown, path, rule)


def type_error(path: str, expected: str, value: Any) -> AwsError:
    return AwsError(
        "InvalidRequestContentException",
        f"Could not parse request body into json: Could not parse payload into json: "
        f"Cannot deserialize value of type `{expected}` from {type(value).__name__} "
        f"at '{path}'",
        400,
        user=True,
    )

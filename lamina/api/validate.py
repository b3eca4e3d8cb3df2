"""Validation of parsed input against the model's constraints, with AWS's messages.

Required members, numeric ranges, lengths, patterns and enums, reported together the
way AWS does: "2 validation errors detected: Value ... at 'memorySize' ...; ...".
"""

from __future__ import annotations

import re
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


def _member_path(parent: str, name: str) -> str:
    camel = name[:1].lower() + name[1:]
    return f"{parent}.{camel}" if parent else camel


def validate(shape: Shape, params: dict[str, Any], extra: dict[str, dict[str, Any]]) -> None:
    problems: list[str] = []
    _check_structure(shape, params, "", extra, problems)
    if problems:
        raise validation_error(problems)


def _check_structure(
    shape: Shape, value: dict[str, Any], path: str, extra: dict[str, dict[str, Any]], out: list[str]
) -> None:
    members = shape.members
    for name in shape.required_members:
        if value.get(name) is None:
            out.append(constraint(None, _member_path(path, name), "Member must not be null"))
    for name, member in members.items():  # the model's order, whatever the request's
        member_value = value.get(name)
        if member_value is not None:
            _check(member, member_value, _member_path(path, name), extra, out)


def _check(
    shape: Shape, value: Any, path: str, extra: dict[str, dict[str, Any]], out: list[str]
) -> None:
    meta = {**shape.metadata, **extra.get(shape.name, {})}
    kind = shape.type_name
    if kind == "structure":
        if isinstance(value, dict):
            _check_structure(shape, value, path, extra, out)
        return
    if kind in ("integer", "long", "double", "float"):
        if "min" in meta and value < meta["min"]:
            out.append(
                constraint(
                    value, path, f"Member must have value greater than or equal to {meta['min']}"
                )
            )
        if "max" in meta and value > meta["max"]:
            out.append(
                constraint(
                    value, path, f"Member must have value less than or equal to {meta['max']}"
                )
            )
        return
    if kind == "string":
        if "min" in meta and len(value) < meta["min"]:
            out.append(
                constraint(
                    value, path, f"Member must have length greater than or equal to {meta['min']}"
                )
            )
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                constraint(
                    value, path, f"Member must have length less than or equal to {meta['max']}"
                )
            )
        enum = meta.get("enum", shape.enum)
        if enum and value not in enum:
            out.append(
                constraint(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
            )
        pattern = meta.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and compiled.fullmatch(value) is None:
            out.append(
                constraint(
                    value, path, f"Member must satisfy regular expression pattern: {pattern}"
                )
            )
        return
    if kind in ("list", "map"):
        shown = value
        if "min" in meta and len(value) < meta["min"]:
            out.append(
                constraint(
                    shown, path, f"Member must have length greater than or equal to {meta['min']}"
                )
            )
        if "max" in meta and len(value) > meta["max"]:
            out.append(
                constraint(
                    shown, path, f"Member must have length less than or equal to {meta['max']}"
                )
            )
        if kind == "list":
            for item in value:
                if item is None:  # JSON null inside a list: nothing downstream can use it
                    out.append(constraint(None, f"{path}.member", "Member must not be null"))
                else:
                    _check(shape.member, item, f"{path}.member", extra, out)
        else:
            bad_keys: list[str] = []
            for key in value:
                _check(shape.key, key, path, extra, bad_keys)
            if bad_keys:
                out.append(_map_keys_problem(shape, value, path, extra))
            for item in value.values():
                if item is None:
                    out.append(constraint(None, f"{path}.value", "Member must not be null"))
                else:
                    _check(shape.value, item, f"{path}.value", extra, out)
        return
    if (
        kind == "blob"
        and isinstance(value, bytes | bytearray)
        and len(value) > meta.get("max", len(value))
    ):
        out.append(
            constraint(
                "<blob>", path, f"Member must have length less than or equal to {meta['max']}"
            )
        )


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

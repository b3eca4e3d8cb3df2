"""Converting between JSON documents and Python values, shape by shape.

Shared by every JSON-based protocol (rest-json, json 1.0, json 1.1).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from botocore.model import Shape

from lamina.api.validate import type_error
from lamina.errors import AwsError

_JAVA_TYPES = {
    "integer": "java.lang.Integer",
    "long": "java.lang.Long",
    "boolean": "java.lang.Boolean",
    "string": "java.lang.String",
    "double": "java.lang.Double",
    "float": "java.lang.Float",
}


NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


def parse_json_body(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: too deep
        raise AwsError(
            "InvalidRequestContentException",
            f"Could not parse request body into json: Could not parse payload into json: {exc}",
            400,
            user=True,
        ) from exc


B64_PIECE = 4 * 1024 * 1024  # characters decoded at once (a multiple of 4)


def _b64decode(value: str) -> bytes:
    """base64 of any size, in pieces: decoding holds the interpreter's lock, and a 70 MB
    upload decoded at once would hold it (and every other request) for a third of a
    second; between pieces other threads run. The last 8 characters or more are decoded
    as one piece with whatever padding they have, as b64decode would."""
    if len(value) <= B64_PIECE:
        return base64.b64decode(value, validate=True)
    try:
        raw = memoryview(value.encode("ascii"))
    except UnicodeEncodeError:
        raise binascii.Error("Non-base64 character") from None
    cut = (len(raw) - 8) // 4 * 4
    pieces = [
        binascii.a2b_base64(raw[start : min(start + B64_PIECE, cut)], strict_mode=True)
        for start in range(0, cut, B64_PIECE)
    ]
    pieces.append(base64.b64decode(raw[cut:], validate=True))
    return b"".join(pieces)


def from_json(shape: Shape, value: Any, path: str) -> Any:
    """A JSON value → the Python value for `shape`, raising AWS's error on a wrong type."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise type_error(path, "structure", value)
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            key = member.serialization.get("name", name)
            if key in value:
                out[name] = from_json(member, value[key], f"{path}.{name}" if path else name)
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise type_error(path, "list", value)
        return [from_json(shape.member, item, path) for item in value]
    if kind == "map":
        if not isinstance(value, dict):
            raise type_error(path, "map", value)
        return {str(k): from_json(shape.value, v, path) for k, v in value.items()}
    if kind == "blob":
        if not isinstance(value, str):
            raise type_error(path, "blob", value)
        try:
            return _b64decode(value)
        except (binascii.Error, ValueError) as exc:
            raise type_error(path, "blob", value) from exc
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise type_error(path, _JAVA_TYPES[kind], value)
        return value
    if kind in ("double", "float"):
        if isinstance(value, str) and value in NON_FINITE:
            return float(value)  # the JSON protocols write these as strings
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise type_error(path, _JAVA_TYPES[kind], value)
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise type_error(path, _JAVA_TYPES[kind], value)
        return value
    if kind == "timestamp":
        return parse_timestamp(value, path)
    if kind == "string":
        if not isinstance(value, str):
            raise type_error(path, _JAVA_TYPES[kind], value)
        return value
    return value


def members_from_json(shape: Shape, body: bytes) -> dict[str, Any]:
    """A body that must be a JSON object, as the members of the structure `shape`."""
    document = parse_json_body(body)
    if not isinstance(document, dict):
        raise type_error("", "structure", document)
    members: dict[str, Any] = from_json(shape, document, "")
    return members


def parse_timestamp(value: Any, path: str) -> dt.datetime:
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dt.datetime.fromtimestamp(value, dt.UTC)
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise type_error(path, "java.util.Date", value) from exc


def to_json(shape: Shape, value: Any) -> Any:
    """A Python value → the JSON value for `shape` (members that are None are left out)."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            if member.serialization.get("location"):
                continue
            item = value.get(name)
            if item is not None:
                out[member.serialization.get("name", name)] = to_json(member, item)
        return out
    if kind == "list":
        return [to_json(shape.member, item) for item in value]
    if kind == "map":
        return {k: to_json(shape.value, v) for k, v in value.items()}
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode()
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            return value.timestamp()
        return value
    return value


TEXT_SCALARS = frozenset({"integer", "long", "double", "float", "boolean", "timestamp"})


def text_scalar(shape: Shape, raw: str, path: str) -> Any:
    """A number, boolean or timestamp written as text (headers, query strings, forms)."""
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            return int(raw)
        if kind in ("double", "float"):
            return float(raw)
    except ValueError as exc:
        raise type_error(path, kind, raw) from exc
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise type_error(path, "java.lang.Boolean", raw)
        return raw.lower() == "true"
    if kind == "timestamp":
        return parse_timestamp(raw, path)
    return raw

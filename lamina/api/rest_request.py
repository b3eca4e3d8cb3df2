"""A rest request's members, bound from where the model says each travels: a uri label,
the query string, a header, a header prefix or the payload.

rest-json and rest-xml bind alike and differ only in how text becomes a member's value
and how a structured payload is read; each protocol passes its own Rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from botocore.model import Shape

from lamina.api.wire import HttpRequest

# (member, text, path) → the member's value
Text = Callable[[Shape, str, str], Any]
# (member, body, path) → the payload member's value, or UNSET to leave it out
Document = Callable[[Shape, bytes, str], Any]

UNSET: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class Rules:
    label: Text  # a uri label, percent-decoded
    scalar: Text  # a query-string or header value
    document: Document  # a payload that is not a blob


def bind(
    shape: Shape, match: Any, request: HttpRequest, body: bytes, rules: Rules
) -> tuple[dict[str, Any], bool]:
    """The input members found in `request`, in model order, and whether the body is a
    document holding the members that have no location (no payload member is named)."""
    params: dict[str, Any] = {}
    payload_name = shape.serialization.get("payload")
    loose = False
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "uri":
            params[name] = rules.label(member, unquote(match[wire.rstrip("+")]), name)
        elif location == "querystring":
            values = request.query.get(wire)
            if values:
                if member.type_name == "list":
                    params[name] = [rules.scalar(member.member, v, name) for v in values]
                else:
                    params[name] = rules.scalar(member, values[0], name)
        elif location == "header":
            raw = request.headers.get(wire.lower())
            if raw is not None:
                params[name] = rules.scalar(member, raw, name)
        elif location == "headers":
            prefix = wire.lower()
            found = {
                k[len(prefix) :]: v for k, v in request.headers.items() if k.startswith(prefix)
            }
            if found:
                params[name] = found
        elif name == payload_name:
            if member.type_name == "blob":
                params[name] = body
            else:
                value = rules.document(member, body, name)
                if value is not UNSET:
                    params[name] = value
        else:
            loose = True
    return params, loose and payload_name is None

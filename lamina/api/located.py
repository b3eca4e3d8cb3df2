"""Members of rest requests and responses, where the model says each travels: a uri
label, the query string, a header, a header prefix, the status code or the payload.

rest-json and rest-xml place members alike and differ only in how text becomes a
member's value (and a value a header), and how a structured payload is read and
written; each protocol passes its own rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from botocore.model import Shape

from lamina.api.wire import HttpRequest, HttpResponse

# (member, text, path) → the member's value
Text = Callable[[Shape, str, str], Any]
# (member, body, path) → the payload member's value, or UNSET to leave it out
Document = Callable[[Shape, bytes, str], Any]
# (member, value) → the header's text
Header = Callable[[Shape, Any], str]

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


def place(
    shape: Shape, result: dict[str, Any], response: HttpResponse, header: Header
) -> Iterator[tuple[str, Shape, Any]]:
    """Put the output members that travel in the status code and headers on `response`,
    and yield the others that have a value to the protocol's body as they come in model
    order (so the headers a body sets keep their place among the members')."""
    for name, member in shape.members.items():
        value = result.get(name)
        if value is None:
            continue
        location = member.serialization.get("location")
        if location == "statusCode":
            response.status = int(value)
        elif location == "header":
            response.headers[member.serialization.get("name", name)] = header(member, value)
        elif location == "headers":
            prefix = member.serialization.get("name", "")
            for key, item in value.items():
                response.headers[prefix + key] = str(item)
        else:
            yield name, member, value

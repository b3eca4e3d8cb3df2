"""One operation's wire binding, compiled from the model once: the gateway's endpoints.

An Endpoint holds everything a request of one operation needs (its provider method, its
body limit, its request parser, its input checks, its response serializer), made the
first time the operation is called, so that serving it walks no model. For rest-json the
parser and serializer are compiled from the operation's member locations (what
`RestJson.parse` / `serialize` read from the model on every call); other protocols use
their own parse and serialize.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from botocore.model import OperationModel, Shape

from lamina.api.protocols import RestJson, WireProtocol, _dump, _scalar
from lamina.api.shapes import from_json, members_from_json, parse_json_body, to_json
from lamina.api.spec import Service
from lamina.api.validate import Check, checker
from lamina.api.wire import HttpRequest, HttpResponse

Parse = Callable[[Any, HttpRequest], dict[str, Any]]
Serialize = Callable[[dict[str, Any]], HttpResponse]
Handler = Callable[[Any, dict[str, Any]], Any]


@dataclass(slots=True)
class Endpoint:
    service: Service
    protocol: WireProtocol
    operation: OperationModel
    handler: Handler | None  # None: in the model, not built
    limit: int
    limit_code: str
    label: str  # the operation's name in a size error
    parse: Parse
    check: Check | None
    serialize: Serialize
    signing_name: str = ""  # the service in a SigV4 credential scope


def endpoint(
    service: Service,
    protocol: WireProtocol,
    operation: OperationModel,
    provider: object,
    limit: tuple[int, str],
    label: str,
    signing_name: str = "",
) -> Endpoint:
    handler = getattr(provider, operation.name, None)
    shape = operation.input_shape
    check = checker(shape, service.extra_constraints) if shape is not None else None
    if isinstance(protocol, RestJson):
        parse = _rest_parser(operation)
        serialize = _rest_serializer(operation)
    else:
        parse = _generic_parser(protocol, service, operation)
        serialize = _generic_serializer(protocol, service, operation)
    return Endpoint(
        service,
        protocol,
        operation,
        handler,
        limit[0],
        limit[1],
        label,
        parse,
        check,
        serialize,
        signing_name,
    )


def _generic_parser(protocol: WireProtocol, service: Service, operation: OperationModel) -> Parse:
    def parse(match: Any, request: HttpRequest) -> dict[str, Any]:
        return protocol.parse(service, operation, match, request)

    return parse


def _generic_serializer(
    protocol: WireProtocol, service: Service, operation: OperationModel
) -> Serialize:
    def serialize(result: dict[str, Any]) -> HttpResponse:
        return protocol.serialize(service, operation, result)

    return serialize


# rest-json, compiled ----------------------------------------------------------------------
Reader = Callable[[dict[str, Any], Any, HttpRequest], None]


def _rest_parser(operation: OperationModel) -> Parse:
    """What RestJson.parse does, with the model read once."""
    shape = operation.input_shape
    if shape is None:
        return lambda match, request: {}
    payload_name = shape.serialization.get("payload")
    readers: list[Reader] = []
    body_members = False
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            readers.append(_uri_reader(name, member, wire_name))
        elif location == "querystring":
            readers.append(_query_reader(name, member, wire_name))
        elif location == "header":
            readers.append(_header_reader(name, member, wire_name.lower()))
        elif location == "headers":
            readers.append(_prefix_reader(name, wire_name.lower()))
        elif name == payload_name:
            readers.append(_payload_reader(name, member))
        else:
            body_members = True
    body_reader = _body_reader(shape) if body_members and payload_name is None else None

    def parse(match: Any, request: HttpRequest) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for reader in readers:
            reader(params, match, request)
        if body_reader is not None:
            body_reader(params, match, request)
        return params

    return parse


def _uri_reader(name: str, member: Shape, wire_name: str) -> Reader:
    plain = member.type_name == "string" and not member.serialization.get("jsonvalue")

    def read(params: dict[str, Any], match: Any, request: HttpRequest) -> None:
        raw = match[wire_name]
        text = unquote(raw) if "%" in raw else raw
        params[name] = text if plain else _scalar(member, text, name)

    return read


def _query_reader(name: str, member: Shape, wire_name: str) -> Reader:
    listed = member.type_name == "list"

    def read(params: dict[str, Any], match: Any, request: HttpRequest) -> None:
        values = request.query.get(wire_name)
        if values:
            if listed:
                params[name] = [_scalar(member.member, v, name) for v in values]
            else:
                params[name] = _scalar(member, values[0], name)

    return read


def _header_reader(name: str, member: Shape, header: str) -> Reader:
    plain = member.type_name == "string" and not member.serialization.get("jsonvalue")

    def read(params: dict[str, Any], match: Any, request: HttpRequest) -> None:
        raw = request.headers.get(header)
        if raw is not None:
            params[name] = raw if plain else _scalar(member, raw, name)

    return read


def _prefix_reader(name: str, prefix: str) -> Reader:
    def read(params: dict[str, Any], match: Any, request: HttpRequest) -> None:
        found = {k[len(prefix) :]: v for k, v in request.headers.items() if k.startswith(prefix)}
        if found:
            params[name] = found

    return read


def _payload_reader(name: str, member: Shape) -> Reader:
    if member.type_name == "blob":

        def read_blob(params: dict[str, Any], match: Any, request: HttpRequest) -> None:
            params[name] = request.body

        return read_blob

    def read(params: dict[str, Any], match: Any, request: HttpRequest) -> None:
        params[name] = from_json(member, parse_json_body(request.body), name)

    return read


def _body_reader(shape: Shape) -> Reader:
    located = {n for n, m in shape.members.items() if m.serialization.get("location")}

    def read(params: dict[str, Any], match: Any, request: HttpRequest) -> None:
        for name, value in members_from_json(shape, request.body).items():
            if name not in located:
                params[name] = value

    return read


def _rest_serializer(operation: OperationModel) -> Serialize:
    """What RestJson.serialize does, with the model read once."""
    status = operation.http.get("responseCode", 200)
    shape = operation.output_shape
    if shape is None:
        return lambda result: HttpResponse(status)
    payload_name = shape.serialization.get("payload")
    status_member: str | None = None
    headers: list[tuple[str, str, bool]] = []  # member, header, jsonvalue
    prefixed: list[tuple[str, str]] = []
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location == "statusCode":
            status_member = name
        elif location == "header":
            wire = member.serialization.get("name", name)
            headers.append((name, wire, bool(member.serialization.get("jsonvalue"))))
        elif location == "headers":
            prefixed.append((name, member.serialization.get("name", "")))
    payload = shape.members[payload_name] if payload_name is not None else None
    blob = payload is not None and payload.type_name == "blob"

    def serialize(result: dict[str, Any]) -> HttpResponse:
        response = HttpResponse(status)
        if status_member is not None and result.get(status_member) is not None:
            response.status = int(result[status_member])
        out = response.headers
        for name, wire, jsonvalue in headers:
            value = result.get(name)
            if value is not None:
                if jsonvalue:
                    value = base64.b64encode(_dump(value)).decode()
                out[wire] = str(value)
        for name, prefix in prefixed:
            value = result.get(name)
            if value is not None:
                for key, item in value.items():
                    out[prefix + key] = str(item)
        if payload is not None:
            value = result.get(payload_name)
            if blob:
                response.body = value if type(value) is bytes else bytes(value or b"")
            elif value is not None:
                response.body = _dump(to_json(payload, value))
            out.setdefault("Content-Type", "application/json")
        elif response.status != 204:
            response.body = _dump(to_json(shape, result))
            out["Content-Type"] = "application/json"
        return response

    return serialize

"""AWS's query protocol (CloudWatch before botocore moved it to json): form-encoded
requests naming `Action` and `Version`, XML responses.

Members are flattened into dotted keys (`Dimensions.member.1.Name`); lists as
`<name>.member.<n>` (or `<name>.<n>` when the model flattens them), maps as
`<name>.entry.<n>.key` / `.value`; an empty list is sent as `<name>=`. The answer is
`<Op>Response><Op>Result>...</...>` in the service's XML namespace, lists as `<member>`
elements; errors are `<ErrorResponse><Error><Type/><Code/><Message/></Error>`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from botocore.model import OperationModel, Shape

from lamina.api.shapes import TEXT_SCALARS, text_scalar
from lamina.api.spec import Service
from lamina.api.validate import type_error
from lamina.api.wire import HttpRequest, HttpResponse, current_request_id
from lamina.errors import AwsError

FORM = "application/x-www-form-urlencoded"
CONTENT_TYPE = "text/xml"


def _fields(request: HttpRequest) -> dict[str, str]:
    fields = {name: values[0] for name, values in request.query.items() if values}
    if request.body:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AwsError("MalformedQueryString", "The body is not UTF-8.", 400) from exc
        for name, values in parse_qs(text, keep_blank_values=True).items():
            fields[name] = values[0]
    return fields


def _has_prefix(fields: dict[str, str], prefix: str) -> bool:
    dotted = prefix + "."
    return any(name.startswith(dotted) for name in fields)


def _scalar(shape: Shape, raw: str, path: str) -> Any:
    kind = shape.type_name
    if kind in TEXT_SCALARS:
        return text_scalar(shape, raw, path)
    if kind == "blob":
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise type_error(path, "blob", raw) from exc
    return raw


def from_query(shape: Shape, fields: dict[str, str], prefix: str, path: str) -> Any:
    """The value of `shape` at `prefix` in the flattened `fields`, or None if absent."""
    kind = shape.type_name
    if kind == "structure":
        if prefix and not _has_prefix(fields, prefix):
            return None
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            wire = member.serialization.get("name", name)
            value = from_query(
                member,
                fields,
                f"{prefix}.{wire}" if prefix else wire,
                f"{path}.{name}" if path else name,
            )
            if value is not None:
                out[name] = value
        return out
    if kind == "list":
        if fields.get(prefix) == "" and not _has_prefix(fields, prefix):
            return []
        if shape.serialization.get("flattened"):
            base = prefix
        else:
            base = f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        items = []
        index = 1
        while True:
            item = from_query(shape.member, fields, f"{base}.{index}", path)
            if item is None:
                break
            items.append(item)
            index += 1
        return items or None
    if kind == "map":
        base = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        mapping: dict[str, Any] = {}
        index = 1
        while f"{base}.{index}.{key_name}" in fields:
            key = fields[f"{base}.{index}.{key_name}"]
            mapping[key] = from_query(shape.value, fields, f"{base}.{index}.{value_name}", path)
            index += 1
        return mapping or None
    raw = fields.get(prefix)
    return None if raw is None else _scalar(shape, raw, path)


def _text(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "timestamp":
        if isinstance(value, int | float):
            value = dt.datetime.fromtimestamp(value, dt.UTC)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC)
            return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        return escape(str(value))
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode()
    if kind in ("double", "float"):
        return repr(float(value))
    return escape(str(value))


def to_xml(shape: Shape, value: Any, name: str) -> str:
    """`value` as the XML element `name` (members that are None are left out)."""
    if value is None:
        return ""
    kind = shape.type_name
    if kind == "structure":
        inner = "".join(
            to_xml(member, value.get(member_name), member.serialization.get("name", member_name))
            for member_name, member in shape.members.items()
        )
        return f"<{name}>{inner}</{name}>"
    if kind == "list":
        member_name = shape.member.serialization.get("name", "member")
        if shape.serialization.get("flattened"):
            return "".join(to_xml(shape.member, item, name) for item in value)
        inner = "".join(to_xml(shape.member, item, member_name) for item in value)
        return f"<{name}>{inner}</{name}>"
    if kind == "map":
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        entries = "".join(
            f"<entry><{key_name}>{escape(str(k))}</{key_name}>"
            f"{to_xml(shape.value, v, value_name)}</entry>"
            for k, v in value.items()
        )
        return f"<{name}>{entries}</{name}>"
    return f"<{name}>{_text(shape, value)}</{name}>"


class Query:
    """The query protocol: `Action` and `Version` select the operation."""

    def route(self, service: Service, request: HttpRequest) -> tuple[OperationModel, Any] | None:
        if request.method == "POST":
            if not request.headers.get("content-type", "").startswith(FORM):
                return None
        elif request.method != "GET" or "Action" not in request.query:
            return None
        try:
            fields = _fields(request)
        except AwsError:
            return None
        action = fields.get("Action", "")
        if fields.get("Version") != service.model.metadata.get("apiVersion"):
            return None
        if action not in service.model.operation_names:
            return None
        return service.model.operation_model(action), fields

    def parse(
        self, service: Service, operation: OperationModel, match: Any, request: HttpRequest
    ) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None:
            return {}
        fields = match if isinstance(match, dict) else _fields(request)
        parsed: dict[str, Any] = from_query(shape, fields, "", "")
        return parsed

    def _namespace(self, service: Service) -> str:
        return str(service.model.metadata.get("xmlNamespace", ""))

    def serialize(
        self, service: Service, operation: OperationModel, result: dict[str, Any]
    ) -> HttpResponse:
        name = operation.name
        shape = operation.output_shape
        inner = ""
        if shape is not None:
            wrapper = shape.serialization.get("resultWrapper", f"{name}Result")
            inner = to_xml(shape, result, wrapper)
        body = (
            f'<{name}Response xmlns="{self._namespace(service)}">{inner}'
            f"<ResponseMetadata><RequestId>{current_request_id.get()}</RequestId>"
            "</ResponseMetadata>"
            f"</{name}Response>"
        )
        return HttpResponse(200, body.encode(), {"Content-Type": CONTENT_TYPE})

    def serialize_error(self, service: Service, error: AwsError) -> HttpResponse:
        shape = service.error_shape(error.code)
        status = error.status
        code = error.code
        if shape is not None:
            meta = shape.metadata.get("error", {})
            status = meta.get("httpStatusCode", status)
            code = meta.get("code", code)
        kind = "Sender" if status < 500 else "Receiver"
        body = (
            f'<ErrorResponse xmlns="{self._namespace(service)}"><Error><Type>{kind}</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(error.message)}</Message></Error>"
            f"<RequestId>{current_request_id.get()}</RequestId></ErrorResponse>"
        )
        return HttpResponse(status, body.encode(), {"Content-Type": CONTENT_TYPE})

"""The wire protocols: rest-json (Lambda), json 1.0 / 1.1 (SQS, Kinesis), query and
rest-xml (S3).

A protocol turns an HttpRequest into (operation, params) and a result or an AwsError
into an HttpResponse, reading every binding from the service model.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

from botocore.model import OperationModel, Shape

from lamina.api.located import Rules, bind, place
from lamina.api.query import Query
from lamina.api.rest_xml import RestXml
from lamina.api.shapes import (
    TEXT_SCALARS,
    from_json,
    members_from_json,
    parse_json_body,
    text_scalar,
    to_json,
)
from lamina.api.spec import Service
from lamina.api.wire import HttpRequest, HttpResponse
from lamina.errors import AwsError


class WireProtocol(Protocol):
    def route(
        self, service: Service, request: HttpRequest
    ) -> tuple[OperationModel, Any] | None: ...

    def parse(
        self, service: Service, operation: OperationModel, match: Any, request: HttpRequest
    ) -> dict[str, Any]: ...

    def serialize(
        self, service: Service, operation: OperationModel, result: dict[str, Any]
    ) -> HttpResponse: ...

    def serialize_error(self, service: Service, error: AwsError) -> HttpResponse: ...


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _scalar(shape: Shape, raw: str, path: str) -> Any:
    """A header or query-string value → the Python value for `shape`."""
    kind = shape.type_name
    if kind in TEXT_SCALARS:
        return text_scalar(shape, raw, path)
    if kind == "string" and shape.serialization.get("jsonvalue"):
        return json.loads(base64.b64decode(raw))
    return raw


def _payload(shape: Shape, body: bytes, path: str) -> Any:
    return from_json(shape, parse_json_body(body), path)


_JSON_RULES = Rules(label=_scalar, scalar=_scalar, document=_payload)


def _header(shape: Shape, value: Any) -> str:
    if shape.serialization.get("jsonvalue"):
        value = base64.b64encode(_dump(value)).decode()
    return str(value)


def _error_body(
    service: Service, error: AwsError
) -> tuple[Shape | None, int, dict[str, Any], dict[str, str]]:
    """The error's shape in the model, its status, and its fields as JSON body members and
    headers, as the model places them."""
    shape = service.error_shape(error.code)
    status = error.status
    if shape is not None:
        status = shape.metadata.get("error", {}).get("httpStatusCode", status)
    body: dict[str, Any] = {}
    headers = dict(error.headers)
    members = shape.members if shape is not None else {}
    for name, value in error.fields.items():
        member = members.get(name)
        if member is not None and member.serialization.get("location") == "header":
            headers[member.serialization["name"]] = str(value)
        else:
            body[name] = value
    body["message"] = error.message
    return shape, status, body, headers


class RestJson:
    """AWS's rest-json protocol: HTTP method and path select the operation."""

    def route(self, service: Service, request: HttpRequest) -> tuple[OperationModel, Any] | None:
        for route in service.routes:
            labels = route.match(request.method, request.path, request.query)
            if labels is not None:
                return route.operation, labels
        return None

    def parse(
        self, service: Service, operation: OperationModel, match: Any, request: HttpRequest
    ) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None:
            return {}
        params, loose = bind(shape, match, request, request.body, _JSON_RULES)
        if loose:
            for name, value in members_from_json(shape, request.body).items():
                if not shape.members[name].serialization.get("location"):
                    params[name] = value
        return params

    def serialize(
        self, service: Service, operation: OperationModel, result: dict[str, Any]
    ) -> HttpResponse:
        response = HttpResponse(operation.http.get("responseCode", 200))
        shape = operation.output_shape
        if shape is None:
            return response
        payload_name = shape.serialization.get("payload")
        for _ in place(shape, result, response, _header):
            pass  # the body is written below, from the payload or the whole result
        if payload_name is not None:
            member = shape.members[payload_name]
            value = result.get(payload_name)
            if member.type_name == "blob":
                response.body = bytes(value or b"")
            elif value is not None:
                response.body = _dump(to_json(member, value))
            response.headers.setdefault("Content-Type", "application/json")
        elif response.status != 204:
            response.body = _dump(to_json(shape, result))
            response.headers["Content-Type"] = "application/json"
        return response

    def serialize_error(self, service: Service, error: AwsError) -> HttpResponse:
        _, status, body, headers = _error_body(service, error)
        headers["X-Amzn-ErrorType"] = error.code
        headers["Content-Type"] = "application/json"
        return HttpResponse(status, _dump(body), headers)


class JsonRpc:
    """AWS's json 1.0 / 1.1 protocols: the X-Amz-Target header selects the operation."""

    def route(self, service: Service, request: HttpRequest) -> tuple[OperationModel, Any] | None:
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        if request.method != "POST" or prefix != service.target_prefix:
            return None
        if name not in service.model.operation_names:
            return None
        return service.model.operation_model(name), None

    def parse(
        self, service: Service, operation: OperationModel, match: Any, request: HttpRequest
    ) -> dict[str, Any]:
        shape = operation.input_shape
        if shape is None:
            return {}
        return members_from_json(shape, request.body)

    def _content_type(self, service: Service) -> str:
        return f"application/x-amz-json-{service.model.metadata.get('jsonVersion', '1.0')}"

    def serialize(
        self, service: Service, operation: OperationModel, result: dict[str, Any]
    ) -> HttpResponse:
        shape = operation.output_shape
        document = to_json(shape, result) if shape is not None else {}
        return HttpResponse(200, _dump(document), {"Content-Type": self._content_type(service)})

    def serialize_error(self, service: Service, error: AwsError) -> HttpResponse:
        shape, status, body, headers = _error_body(service, error)
        body["__type"] = error.code
        if "awsQueryCompatible" in service.model.metadata:
            # Services that moved from query (CloudWatch) keep their query error codes here.
            code = shape.metadata.get("error", {}).get("code", error.code) if shape else error.code
            body["__type"] = shape.name if shape is not None else error.code
            sender = "Sender" if status < 500 else "Receiver"
            headers.setdefault("x-amzn-query-error", f"{code};{sender}")  # SQS sets its own
        headers["Content-Type"] = self._content_type(service)
        return HttpResponse(status, _dump(body), headers)


PROTOCOLS: dict[str, WireProtocol] = {
    "rest-json": RestJson(),
    "json": JsonRpc(),
    "query": Query(),
    "rest-xml": RestXml(),
}

"""The gateway's compiled endpoints (lamina/api/bindings.py) against the model-walking
protocol: for every Lambda request and result of the round-trip tests, the compiled parser,
checks and serializer give exactly what RestJson.parse, validate and serialize give; and
the direct route of Invoke finds what the model's routes find."""

from __future__ import annotations

from typing import Any

import pytest

from lamina.api.app import Gateway
from lamina.api.bindings import endpoint
from lamina.api.spec import service
from lamina.api.validate import checker, validate
from lamina.api.wire import HttpRequest
from lamina.errors import AwsError
from tests.unit.test_protocol_roundtrip import (
    BUILT,
    LAMBDA,
    REQUESTS,
    REST_JSON,
    RESULTS,
    create_shape,
    wire_request,
)


def compiled(name: str) -> Any:
    operation = LAMBDA.model.operation_model(name)
    return endpoint(LAMBDA, REST_JSON, operation, object(), (1, "x"), name)


@pytest.mark.parametrize(
    ("name", "params"),
    [(name, params) for name in BUILT for params in REQUESTS[name]],
    ids=[f"{name}-{i}" for name in BUILT for i in range(len(REQUESTS[name]))],
)
def test_compiled_parser_is_the_protocols(name: str, params: dict[str, Any]) -> None:
    operation = LAMBDA.model.operation_model(name)
    request = wire_request(operation, params)
    found = REST_JSON.route(LAMBDA, request)
    assert found is not None
    generic = REST_JSON.parse(LAMBDA, operation, found[1], request)
    assert compiled(name).parse(found[1], request) == generic == params


@pytest.mark.parametrize("name", [name for name in BUILT if name != "InvokeWithResponseStream"])
def test_compiled_serializer_is_the_protocols(name: str) -> None:
    operation = LAMBDA.model.operation_model(name)
    generic = REST_JSON.serialize(LAMBDA, operation, RESULTS[name])
    mine = compiled(name).serialize(RESULTS[name])
    assert (mine.status, mine.headers, mine.body) == (generic.status, generic.headers, generic.body)


def problems_of(check: Any, params: dict[str, Any]) -> list[str]:
    out: list[str] = []
    check(params, "", out)
    return out


@pytest.mark.parametrize(
    "params",
    [
        {"FunctionName": "", "Runtime": "cobol", "MemorySize": 64, "Timeout": 0},
        {
            "FunctionName": "x" * 200,
            "Role": "not-a-role",
            "Code": {},
            "Environment": {"Variables": {"1bad": "v", "ok": "v"}},
            "Layers": [None, "arn"],
            "VpcConfig": {"SubnetIds": ["s"] * 20},
            "Tags": {"": "v"},
        },
        {"FunctionName": "f", "Role": "r", "Code": {"ZipFile": b"z"}, "EphemeralStorage": {}},
    ],
)
def test_compiled_checks_report_what_the_walk_reported(params: dict[str, Any]) -> None:
    shape = create_shape()
    with pytest.raises(AwsError) as walked:
        validate(shape, params, LAMBDA.extra_constraints)
    check = compiled("CreateFunction").check
    assert check is not None
    found = problems_of(check, params)
    assert found and walked.value.message.endswith("; ".join(found))


def test_direct_invoke_route_finds_what_the_model_finds() -> None:
    gateway = Gateway()
    gateway.mount(LAMBDA, object())
    for path in (
        "/2015-03-31/functions/f/invocations",
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations",
        "/2015-03-31/functions/my-function:prod/invocations",
    ):
        request = HttpRequest("POST", path, {}, {})
        direct = gateway._direct(request)
        routed = gateway._route(request)
        assert direct is not None and routed is not None
        assert direct[0] is routed[0] and direct[0].operation.name == "Invoke"
        assert direct[1] == routed[1]
    for method, path in (
        ("GET", "/2015-03-31/functions/f/invocations"),
        ("POST", "/2015-03-31/functions/f/invocations/"),  # the model's route takes it
        ("POST", "/2015-03-31/functions/a/b/invocations"),
        ("POST", "/2015-03-31/functions//invocations"),
    ):
        assert gateway._direct(HttpRequest(method, path, {}, {})) is None


def test_recursive_shapes_compile() -> None:
    """DynamoDB's AttributeValue holds maps and lists of AttributeValues."""
    dynamodb = service("dynamodb")
    shape = dynamodb.model.operation_model("PutItem").input_shape
    item = {"k": {"M": {"a": {"L": [{"M": {"b": {"S": "deep"}}}, {"N": "1"}]}}}}
    check = checker(shape, dynamodb.extra_constraints)
    assert problems_of(check, {"TableName": "t", "Item": item}) == []
    found = problems_of(check, {"TableName": "t" * 1025, "Item": item})
    assert len(found) == 1 and "tableName" in found[0]

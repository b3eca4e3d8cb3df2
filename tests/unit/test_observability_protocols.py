"""CloudWatch's two wire forms and the X-Ray / Logs models, against botocore's own
serializer and parser: json (what the installed botocore sends) and query (what older
botocore and AWS CLI v2 send). Requests serialized by botocore come out of Lamina's parser
equal; Lamina's answers come out of botocore's parser equal; errors keep their codes."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import botocore.loaders
import botocore.parsers
import botocore.serialize
import pytest
from botocore.awsrequest import HTTPHeaders
from botocore.model import ServiceModel

from lamina.api.protocols import PROTOCOLS
from lamina.api.spec import Service, service
from lamina.api.wire import HttpRequest, current_request_id
from lamina.errors import AwsError

START = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
END = dt.datetime(2026, 1, 2, 4, 4, tzinfo=dt.UTC)

REQUESTS: dict[str, dict[str, Any]] = {
    "GetMetricStatistics": {
        "Namespace": "AWS/Lambda",
        "MetricName": "Invocations",
        "Dimensions": [
            {"Name": "FunctionName", "Value": "f"},
            {"Name": "Resource", "Value": "f:live"},
        ],
        "StartTime": START,
        "EndTime": END,
        "Period": 60,
        "Statistics": ["Sum", "Maximum"],
    },
    "GetMetricData": {
        "MetricDataQueries": [
            {
                "Id": "a",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Throttles",
                        "Dimensions": [{"Name": "FunctionName", "Value": "f"}],
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
                "ReturnData": True,
            },
            {"Id": "b", "Expression": "a * 2", "Label": "twice"},
        ],
        "StartTime": START,
        "EndTime": END,
        "ScanBy": "TimestampAscending",
    },
    "ListMetrics": {"Namespace": "AWS/Lambda", "Dimensions": [{"Name": "FunctionName"}]},
    "PutMetricData": {
        "Namespace": "App",
        "MetricData": [
            {
                "MetricName": "Latency",
                "Dimensions": [{"Name": "Stage", "Value": "prod"}],
                "Values": [1.5, 2.0],
                "Counts": [2.0, 1.0],
                "Unit": "Milliseconds",
            },
            {"MetricName": "Empty", "Dimensions": [], "Value": 0.0},
        ],
    },
}

RESPONSES: dict[str, dict[str, Any]] = {
    "GetMetricStatistics": {
        "Label": "Invocations",
        "Datapoints": [
            {"Timestamp": START, "Sum": 5.0, "Maximum": 1.0, "Unit": "Count"},
            {"Timestamp": END, "Sum": 0.5, "Maximum": 0.25, "Unit": "Count"},
        ],
    },
    "GetMetricData": {
        "MetricDataResults": [
            {
                "Id": "a",
                "Label": "Throttles",
                "Timestamps": [START, END],
                "Values": [3.0, 4.0],
                "StatusCode": "Complete",
            },
            {"Id": "b", "Label": "empty", "Timestamps": [], "Values": [], "StatusCode": "Complete"},
        ],
        "Messages": [],
    },
    "ListMetrics": {
        "Metrics": [
            {
                "Namespace": "AWS/Lambda",
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "FunctionName", "Value": "f"}],
            }
        ],
        "NextToken": "500",
    },
}


def _model(protocol: str) -> Service:
    """The cloudwatch model as a client speaking `protocol` sees it."""
    raw = copy.deepcopy(botocore.loaders.Loader().load_service_model("cloudwatch", "service-2"))
    raw["metadata"]["protocol"] = protocol
    raw["metadata"]["protocols"] = [protocol]
    if protocol == "query":
        raw["metadata"].pop("awsQueryCompatible", None)
    base = service("cloudwatch")
    return Service(base.name, ServiceModel(raw, "cloudwatch"), [], {})


def _request(protocol: str, operation: str, params: dict[str, Any]) -> HttpRequest:
    model = _model(protocol)
    op = model.model.operation_model(operation)
    wire = botocore.serialize.create_serializer(protocol).serialize_to_request(params, op)
    body = wire["body"]
    if isinstance(body, dict):  # query: botocore encodes the form later
        from urllib.parse import urlencode

        body = urlencode(body).encode()
    headers = {k.lower(): v for k, v in wire["headers"].items()}
    if protocol == "query":
        headers["content-type"] = "application/x-www-form-urlencoded; charset=utf-8"
    return HttpRequest("POST", "/", {}, headers, body if isinstance(body, bytes) else body.encode())


@pytest.mark.parametrize("protocol", ["json", "query"])
@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_requests_round_trip(protocol: str, operation: str) -> None:
    wire = PROTOCOLS[protocol]
    model = _model(protocol)
    request = _request(protocol, operation, REQUESTS[operation])
    routed = wire.route(model, request)
    assert routed is not None and routed[0].name == operation
    params = wire.parse(model, routed[0], routed[1], request)
    assert params == REQUESTS[operation]


@pytest.mark.parametrize("protocol", ["json", "query"])
@pytest.mark.parametrize("operation", sorted(RESPONSES))
def test_responses_round_trip(protocol: str, operation: str) -> None:
    wire = PROTOCOLS[protocol]
    model = _model(protocol)
    op = model.model.operation_model(operation)
    token = current_request_id.set("req-1")
    try:
        response = wire.serialize(model, op, RESPONSES[operation])
    finally:
        current_request_id.reset(token)
    parsed = botocore.parsers.create_parser(protocol).parse(
        {
            "status_code": response.status,
            "headers": HTTPHeaders.from_dict(response.headers),
            "body": response.body,
        },
        op.output_shape,
    )
    metadata = parsed.pop("ResponseMetadata", {})
    assert parsed == RESPONSES[operation]
    if protocol == "query":
        assert metadata.get("RequestId") == "req-1"


@pytest.mark.parametrize("protocol", ["json", "query"])
def test_errors_keep_their_query_codes(protocol: str) -> None:
    wire = PROTOCOLS[protocol]
    model = _model(protocol) if protocol == "query" else service("cloudwatch")
    error = AwsError("InvalidParameterValue", "The parameter Period must be a multiple of 60.")
    response = wire.serialize_error(model, error)
    assert response.status == 400
    parsed = botocore.parsers.create_parser(protocol).parse(
        {
            "status_code": response.status,
            "headers": HTTPHeaders.from_dict(response.headers),
            "body": response.body,
        },
        None,
    )
    assert parsed["Error"]["Code"] == "InvalidParameterValue"
    assert parsed["Error"]["Message"] == "The parameter Period must be a multiple of 60."


def test_query_route_needs_its_version_and_a_known_action() -> None:
    wire = PROTOCOLS["query"]
    model = _model("query")
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert wire.route(model, HttpRequest("POST", "/", {}, form, b"Action=ListMetrics")) is None
    other = b"Action=ListMetrics&Version=2012-11-05"
    assert wire.route(model, HttpRequest("POST", "/", {}, form, other)) is None
    unknown = b"Action=Nope&Version=2010-08-01"
    assert wire.route(model, HttpRequest("POST", "/", {}, form, unknown)) is None
    good = b"Action=ListMetrics&Version=2010-08-01"
    assert wire.route(model, HttpRequest("POST", "/", {}, form, good)) is not None
    # A form-encoded body is not a query request for rest-json services: nothing breaks.
    assert wire.route(model, HttpRequest("POST", "/", {}, {}, good)) is None

"""Lamina's rest-json layer against botocore's own serializer and parser.

Requests: botocore serializes (as boto3 would put them on the wire), Lamina routes and
parses, and the parameters come back equal. Responses: Lamina serializes, botocore parses,
and the result comes back equal. Then the validator, directly.
"""

from __future__ import annotations

import datetime
import datetime as dt
import io
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.parsers
import botocore.serialize
import pytest
from botocore.awsrequest import HTTPHeaders, prepare_request_dict
from botocore.model import OperationModel
from botocore.response import StreamingBody

from lamina.api.protocols import PROTOCOLS
from lamina.api.spec import service
from lamina.api.validate import validate
from lamina.api.wire import HttpRequest
from lamina.control.providers import LambdaProvider
from lamina.errors import AwsError

LAMBDA = service("lambda")
REST_JSON = PROTOCOLS["rest-json"]
ROLE = "arn:aws:iam::000000000000:role/lamina-test"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:my-function"
ZIP = b"PK\x03\x04" + bytes(range(256)) + b"\x00\xff binary, not utf-8 \xc3\x28"

QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:my-queue"
STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/my-stream"
MAPPING_ID = "a1b2c3d4-5678-90ab-cdef-11111EXAMPLE"
LAYER_ARN = "arn:aws:lambda:us-east-1:000000000000:layer:deps"
REQUESTS: dict[str, list[dict[str, Any]]] = {
    "CreateFunction": [
        {
            "FunctionName": "my-function",
            "Runtime": "python3.12",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": ZIP},
            "Description": 'déscription with ünïcode and "quotes"',
            "Timeout": 900,
            "MemorySize": 10240,
            "Publish": False,
            "VpcConfig": {
                "SubnetIds": ["subnet-1", "subnet-2"],
                "SecurityGroupIds": ["sg-1"],
                "Ipv6AllowedForDualStack": True,
            },
            "PackageType": "Zip",
            "DeadLetterConfig": {"TargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq"},
            "Environment": {"Variables": {"STAGE": "test", "EMPTY": "", "JSON": '{"a": [1]}'}},
            "KMSKeyArn": "",
            "TracingConfig": {"Mode": "Active"},
            "Tags": {"team": "lamina", "cost-center": "42"},
            "Architectures": ["arm64"],
            "EphemeralStorage": {"Size": 10240},
            "SnapStart": {"ApplyOn": "None"},
            "LoggingConfig": {
                "LogFormat": "JSON",
                "ApplicationLogLevel": "DEBUG",
                "SystemLogLevel": "WARN",
                "LogGroup": "/custom/group",
            },
        },
        {
            "FunctionName": "provided-fn",
            "Runtime": "provided.al2023",
            "Role": ROLE,
            "Handler": "bootstrap",
            "Code": {"ZipFile": b""},
        },
    ],
    "GetFunction": [
        {"FunctionName": "my-function"},
        {"FunctionName": ARN, "Qualifier": "$LATEST"},
        {"FunctionName": "000000000000:function:my-function:live"},
    ],
    "GetFunctionConfiguration": [
        {"FunctionName": "my-function", "Qualifier": "7"},
        {"FunctionName": ARN + ":$LATEST"},
    ],
    "ListFunctions": [
        {},
        {"MaxItems": 3, "Marker": "page-2"},
        {
            "MasterRegion": "ALL",
            "FunctionVersion": "ALL",
            "MaxItems": 10000,
            "Marker": "a marker/with?odd&chars=+%",
        },
    ],
    "UpdateFunctionCode": [
        {"FunctionName": "my-function", "ZipFile": ZIP},
        {
            "FunctionName": ARN,
            "ZipFile": ZIP,
            "Publish": True,
            "DryRun": True,
            "RevisionId": "6b8f9f5c-0c1e-4b43-9c5e-2f1d0b0c7a11",
            "Architectures": ["x86_64"],
        },
    ],
    "UpdateFunctionConfiguration": [
        {"FunctionName": "my-function", "MemorySize": 256},
        {
            "FunctionName": ARN,
            "Role": ROLE,
            "Handler": "app.other",
            "Description": "",
            "Timeout": 1,
            "MemorySize": 128,
            "VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []},
            "Environment": {"Variables": {}},
            "Runtime": "python3.11",
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": "6b8f9f5c-0c1e-4b43-9c5e-2f1d0b0c7a11",
            "EphemeralStorage": {"Size": 512},
            "LoggingConfig": {"LogFormat": "Text"},
        },
    ],
    "DeleteFunction": [
        {"FunctionName": "my-function"},
        {"FunctionName": ARN, "Qualifier": "3"},
    ],
    "GetAccountSettings": [{}],
    "Invoke": [
        {"FunctionName": "my-function", "Payload": b'{"key": "value", "n": [1, 2.5, null]}'},
        {
            "FunctionName": ARN,
            "InvocationType": "Event",
            "LogType": "Tail",
            "ClientContext": "eyJjdXN0b20iOiB7ImEiOiAiYiJ9fQ==",
            "Payload": b"\x00\x01 raw bytes \xff",
            "Qualifier": "$LATEST",
        },
        {"FunctionName": "my-function", "InvocationType": "DryRun", "Payload": b"[]"},
    ],
    "PutFunctionConcurrency": [
        {"FunctionName": "my-function", "ReservedConcurrentExecutions": 0},
        {"FunctionName": ARN, "ReservedConcurrentExecutions": 900},
    ],
    "GetFunctionConcurrency": [{"FunctionName": "my-function"}, {"FunctionName": ARN}],
    "DeleteFunctionConcurrency": [{"FunctionName": ARN}],
    "PublishVersion": [
        {"FunctionName": "my-function"},
        {
            "FunctionName": ARN,
            "CodeSha256": "abc=",
            "Description": "v",
            "RevisionId": "6b8f9f5c-0c1e-4b43-9c5e-2f1d0b0c7a11",
        },
    ],
    "ListVersionsByFunction": [
        {"FunctionName": "my-function"},
        {"FunctionName": ARN, "Marker": "50", "MaxItems": 2},
    ],
    "CreateAlias": [
        {"FunctionName": "my-function", "Name": "live", "FunctionVersion": "1"},
        {
            "FunctionName": ARN,
            "Name": "canary",
            "FunctionVersion": "2",
            "Description": "d",
            "RoutingConfig": {"AdditionalVersionWeights": {"3": 0.25}},
        },
    ],
    "GetAlias": [{"FunctionName": "my-function", "Name": "live"}],
    "UpdateAlias": [
        {"FunctionName": ARN, "Name": "live", "FunctionVersion": "4", "RevisionId": "r"},
        {"FunctionName": "my-function", "Name": "live", "RoutingConfig": {}},
    ],
    "DeleteAlias": [{"FunctionName": "my-function", "Name": "live"}],
    "ListAliases": [
        {"FunctionName": "my-function"},
        {"FunctionName": ARN, "FunctionVersion": "3", "Marker": "1", "MaxItems": 5},
    ],
    "PutProvisionedConcurrencyConfig": [
        {"FunctionName": "my-function", "Qualifier": "live", "ProvisionedConcurrentExecutions": 3}
    ],
    "GetProvisionedConcurrencyConfig": [{"FunctionName": ARN, "Qualifier": "1"}],
    "DeleteProvisionedConcurrencyConfig": [{"FunctionName": "my-function", "Qualifier": "2"}],
    "ListProvisionedConcurrencyConfigs": [
        {"FunctionName": "my-function"},
        {"FunctionName": ARN, "Marker": "50", "MaxItems": 10},
    ],
    "InvokeAsync": [{"FunctionName": "my-function", "InvokeArgs": b'{"a": 1}'}],
    "PutFunctionEventInvokeConfig": [
        {"FunctionName": "my-function", "MaximumRetryAttempts": 0},
        {
            "FunctionName": ARN,
            "Qualifier": "live",
            "MaximumEventAgeInSeconds": 60,
            "DestinationConfig": {
                "OnSuccess": {"Destination": "arn:aws:sqs:us-east-1:000000000000:ok"},
                "OnFailure": {"Destination": ARN + "-dlq"},
            },
        },
    ],
    "GetFunctionEventInvokeConfig": [{"FunctionName": "my-function", "Qualifier": "1"}],
    "UpdateFunctionEventInvokeConfig": [{"FunctionName": ARN, "MaximumRetryAttempts": 2}],
    "DeleteFunctionEventInvokeConfig": [{"FunctionName": "my-function"}],
    "ListFunctionEventInvokeConfigs": [{"FunctionName": "my-function", "MaxItems": 5}],
    "CreateEventSourceMapping": [
        {"EventSourceArn": QUEUE_ARN, "FunctionName": "my-function"},
        {
            "EventSourceArn": QUEUE_ARN,
            "FunctionName": ARN,
            "Enabled": False,
            "BatchSize": 100,
            "MaximumBatchingWindowInSeconds": 5,
            "ScalingConfig": {"MaximumConcurrency": 3},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
        {
            "EventSourceArn": STREAM_ARN,
            "FunctionName": "my-function",
            "StartingPosition": "AT_TIMESTAMP",
            "StartingPositionTimestamp": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            "ParallelizationFactor": 10,
            "MaximumRecordAgeInSeconds": -1,
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 10000,
            "DestinationConfig": {"OnFailure": {"Destination": QUEUE_ARN}},
        },
    ],
    "GetEventSourceMapping": [{"UUID": MAPPING_ID}],
    "ListEventSourceMappings": [
        {},
        {"EventSourceArn": STREAM_ARN, "FunctionName": ARN, "Marker": MAPPING_ID, "MaxItems": 7},
    ],
    "UpdateEventSourceMapping": [
        {"UUID": MAPPING_ID, "Enabled": True},
        {
            "UUID": MAPPING_ID,
            "FunctionName": "other",
            "BatchSize": 10,
            "ParallelizationFactor": 2,
            "MaximumRetryAttempts": -1,
            "DestinationConfig": {"OnFailure": {}},
        },
    ],
    "DeleteEventSourceMapping": [{"UUID": MAPPING_ID}],
    "InvokeWithResponseStream": [
        {"FunctionName": "my-function", "Payload": b'{"stream": true}'},
        {
            "FunctionName": ARN,
            "InvocationType": "DryRun",
            "LogType": "Tail",
            "ClientContext": "eyJjdXN0b20iOiB7ImEiOiAiYiJ9fQ==",
            "Qualifier": "live",
            "Payload": b"{}",
        },
    ],
    "PublishLayerVersion": [
        {
            "LayerName": "deps",
            "Description": "shared dependencies",
            "Content": {"ZipFile": ZIP},
            "CompatibleRuntimes": ["python3.12", "nodejs22.x"],
            "LicenseInfo": "MIT",
            "CompatibleArchitectures": ["x86_64", "arm64"],
        }
    ],
    "GetLayerVersion": [{"LayerName": "deps", "VersionNumber": 3}],
    "GetLayerVersionByArn": [{"Arn": LAYER_ARN + ":3"}],
    "ListLayers": [
        {},
        {
            "CompatibleRuntime": "python3.12",
            "Marker": "50",
            "MaxItems": 10,
            "CompatibleArchitecture": "x86_64",
        },
    ],
    "ListLayerVersions": [
        {"LayerName": LAYER_ARN, "CompatibleRuntime": "nodejs22.x", "MaxItems": 5},
    ],
    "DeleteLayerVersion": [{"LayerName": "deps", "VersionNumber": 1}],
    "AddLayerVersionPermission": [
        {
            "LayerName": "deps",
            "VersionNumber": 2,
            "StatementId": "everyone",
            "Action": "lambda:GetLayerVersion",
            "Principal": "*",
            "OrganizationId": "o-abcdef1234",
            "RevisionId": "rev",
        }
    ],
    "RemoveLayerVersionPermission": [
        {"LayerName": "deps", "VersionNumber": 2, "StatementId": "everyone", "RevisionId": "r"}
    ],
    "GetLayerVersionPolicy": [{"LayerName": "deps", "VersionNumber": 2}],
}
BUILT = sorted(REQUESTS)


def wire_request(operation: OperationModel, params: dict[str, Any]) -> HttpRequest:
    """What Lamina's gateway would build from the request boto3 sends for `params`."""
    serialized = botocore.serialize.create_serializer("rest-json").serialize_to_request(
        params, operation
    )
    prepare_request_dict(serialized, "http://127.0.0.1:9700")
    url = urlsplit(serialized["url"])
    body = serialized["body"]
    if isinstance(body, str):
        body = body.encode()
    headers = {k.lower(): str(v) for k, v in serialized["headers"].items()}
    return HttpRequest(
        serialized["method"],
        url.path,
        parse_qs(url.query, keep_blank_values=True),
        headers,
        bytes(body),
    )


def route_and_parse(request: HttpRequest) -> tuple[str, dict[str, Any]]:
    found = REST_JSON.route(LAMBDA, request)
    assert found is not None, f"no route for {request.method} {request.path}"
    operation, match = found
    return operation.name, REST_JSON.parse(LAMBDA, operation, match, request)


class _Anything:
    def __getattr__(self, name: str) -> str:
        return name


def test_every_built_operation_is_covered() -> None:
    provider = LambdaProvider(
        _Anything(),  # type: ignore[arg-type]
        _Anything(),  # type: ignore[arg-type]
        _Anything(),  # type: ignore[arg-type]
        _Anything(),  # type: ignore[arg-type]
        _Anything(),  # type: ignore[arg-type]
        _Anything(),  # type: ignore[arg-type]
        mappings=_Anything(),  # type: ignore[arg-type]
        layers=_Anything(),  # type: ignore[arg-type]
    )
    built = sorted(name for name in LAMBDA.model.operation_names if hasattr(provider, name))
    assert built == BUILT


@pytest.mark.parametrize(
    ("name", "params"),
    [(name, params) for name in BUILT for params in REQUESTS[name]],
    ids=[f"{name}-{i}" for name in BUILT for i in range(len(REQUESTS[name]))],
)
def test_request_round_trip(name: str, params: dict[str, Any]) -> None:
    operation = LAMBDA.model.operation_model(name)
    routed, parsed = route_and_parse(wire_request(operation, params))
    assert routed == name
    assert parsed == params
    if operation.input_shape is not None:
        validate(operation.input_shape, parsed, LAMBDA.extra_constraints)


def test_invoke_without_payload_parses_an_empty_body() -> None:
    operation = LAMBDA.model.operation_model("Invoke")
    _, parsed = route_and_parse(wire_request(operation, {"FunctionName": "f"}))
    assert parsed == {"FunctionName": "f", "Payload": b""}


def test_routes_are_specific() -> None:
    def routed(method: str, path: str, query: dict[str, list[str]] | None = None) -> str | None:
        found = REST_JSON.route(LAMBDA, HttpRequest(method, path, query or {}, {}))
        return found[0].name if found else None

    assert routed("GET", "/2015-03-31/functions") == "ListFunctions"
    assert routed("GET", "/2015-03-31/functions/") == "ListFunctions"
    assert routed("GET", "/2015-03-31/functions/f") == "GetFunction"
    assert routed("GET", "/2015-03-31/functions/f/configuration") == "GetFunctionConfiguration"
    assert routed("PUT", "/2015-03-31/functions/f/configuration") == "UpdateFunctionConfiguration"
    assert routed("PUT", "/2015-03-31/functions/f/code") == "UpdateFunctionCode"
    assert routed("DELETE", "/2015-03-31/functions/f") == "DeleteFunction"
    assert routed("POST", "/2015-03-31/functions/f/invocations") == "Invoke"
    assert routed("GET", "/2016-08-19/account-settings") == "GetAccountSettings"
    assert routed("GET", "/2018-10-31/layers") == "ListLayers"
    assert routed("GET", "/nowhere") is None
    assert routed("PATCH", "/2015-03-31/functions") is None


# Responses ----------------------------------------------------------------------------
CONFIGURATION: dict[str, Any] = {
    "FunctionName": "my-function",
    "FunctionArn": ARN,
    "Runtime": "python3.12",
    "Role": ROLE,
    "Handler": "app.handler",
    "CodeSize": 1234,
    "Description": "ünïcode",
    "Timeout": 3,
    "MemorySize": 128,
    "LastModified": "2026-01-02T03:04:05.678+0000",
    "CodeSha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "Version": "$LATEST",
    "VpcConfig": {
        "SubnetIds": ["subnet-1"],
        "SecurityGroupIds": ["sg-1"],
        "VpcId": "vpc-lamina",
        "Ipv6AllowedForDualStack": False,
    },
    "Environment": {"Variables": {"STAGE": "test"}},
    "TracingConfig": {"Mode": "Active"},
    "RevisionId": "6b8f9f5c-0c1e-4b43-9c5e-2f1d0b0c7a11",
    "State": "Active",
    "LastUpdateStatus": "Successful",
    "PackageType": "Zip",
    "Architectures": ["x86_64"],
    "EphemeralStorage": {"Size": 512},
    "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
    "LoggingConfig": {"LogFormat": "Text", "LogGroup": "/aws/lambda/my-function"},
}
ALIAS = {
    "AliasArn": ARN + ":live",
    "Name": "live",
    "FunctionVersion": "2",
    "Description": "",
    "RoutingConfig": {"AdditionalVersionWeights": {"3": 0.5}},
    "RevisionId": "6b8f9f5c-0c1e-4b43-9c5e-2f1d0b0c7a11",
}
PROVISIONED = {
    "RequestedProvisionedConcurrentExecutions": 3,
    "AvailableProvisionedConcurrentExecutions": 2,
    "AllocatedProvisionedConcurrentExecutions": 2,
    "Status": "READY",
    "LastModified": "2026-11-23T10:00:00.000+0000",
}
EVENT_CONFIG = {
    "LastModified": datetime.datetime(2026, 11, 23, 10, 0, tzinfo=datetime.UTC),
    "FunctionArn": ARN + ":$LATEST",
    "MaximumRetryAttempts": 1,
    "MaximumEventAgeInSeconds": 120,
    "DestinationConfig": {"OnSuccess": {}, "OnFailure": {"Destination": ARN + "-dlq"}},
}
QUEUE_MAPPING: dict[str, Any] = {
    "UUID": MAPPING_ID,
    "BatchSize": 10,
    "MaximumBatchingWindowInSeconds": 0,
    "EventSourceArn": QUEUE_ARN,
    "FunctionArn": ARN,
    "LastModified": dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
    "State": "Enabled",
    "StateTransitionReason": "USER_INITIATED",
    "FunctionResponseTypes": ["ReportBatchItemFailures"],
    "ScalingConfig": {"MaximumConcurrency": 3},
    "EventSourceMappingArn": "arn:aws:lambda:us-east-1:000000000000:event-source-mapping:"
    + MAPPING_ID,
}
STREAM_MAPPING: dict[str, Any] = {
    "UUID": MAPPING_ID,
    "StartingPosition": "TRIM_HORIZON",
    "BatchSize": 100,
    "MaximumBatchingWindowInSeconds": 0,
    "ParallelizationFactor": 2,
    "EventSourceArn": STREAM_ARN,
    "FunctionArn": ARN,
    "LastModified": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    "LastProcessingResult": "OK",
    "State": "Enabled",
    "StateTransitionReason": "USER_INITIATED",
    "DestinationConfig": {"OnFailure": {"Destination": QUEUE_ARN}},
    "MaximumRecordAgeInSeconds": -1,
    "BisectBatchOnFunctionError": False,
    "MaximumRetryAttempts": -1,
    "TumblingWindowInSeconds": 0,
    "FunctionResponseTypes": [],
}
LAYER_VERSION: dict[str, Any] = {
    "Content": {
        "Location": "http://127.0.0.1:9700/_lamina/code/abc.zip",
        "CodeSha256": "c2hh",
        "CodeSize": 1234,
    },
    "LayerArn": LAYER_ARN,
    "LayerVersionArn": LAYER_ARN + ":3",
    "Description": "shared dependencies",
    "CreatedDate": "2026-12-01T12:00:00.000+0000",
    "Version": 3,
    "CompatibleRuntimes": ["python3.12"],
    "LicenseInfo": "MIT",
    "CompatibleArchitectures": ["x86_64"],
}
RESULTS: dict[str, dict[str, Any]] = {
    "CreateFunction": CONFIGURATION,
    "GetFunction": {
        "Configuration": CONFIGURATION,
        "Code": {
            "RepositoryType": "S3",
            "Location": "http://127.0.0.1:9700/_lamina/code/" + "ab" * 32 + ".zip",
        },
        "Tags": {"team": "lamina"},
        "Concurrency": {"ReservedConcurrentExecutions": 7},
    },
    "GetFunctionConfiguration": CONFIGURATION,
    "ListFunctions": {
        "Functions": [CONFIGURATION, {**CONFIGURATION, "FunctionName": "other"}],
        "NextMarker": "other",
    },
    "UpdateFunctionCode": CONFIGURATION,
    "UpdateFunctionConfiguration": CONFIGURATION,
    "DeleteFunction": {"StatusCode": 204},
    "GetAccountSettings": {
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800,
            "CodeSizeUnzipped": 262_144_000,
            "CodeSizeZipped": 52_428_800,
            "ConcurrentExecutions": 1000,
            "UnreservedConcurrentExecutions": 1000,
        },
        "AccountUsage": {"TotalCodeSize": 4321, "FunctionCount": 2},
    },
    "Invoke": {
        "StatusCode": 200,
        "FunctionError": "Unhandled",
        "LogResult": "U1RBUlQ=",
        "ExecutedVersion": "$LATEST",
        "Payload": b'{"errorMessage": "boom"}\xff',
    },
    "PutFunctionConcurrency": {"ReservedConcurrentExecutions": 0},
    "GetFunctionConcurrency": {"ReservedConcurrentExecutions": 900},
    "DeleteFunctionConcurrency": {},
    "PublishVersion": {**CONFIGURATION, "Version": "1", "FunctionArn": ARN + ":1"},
    "ListVersionsByFunction": {"Versions": [CONFIGURATION], "NextMarker": "1"},
    "CreateAlias": ALIAS,
    "GetAlias": ALIAS,
    "UpdateAlias": ALIAS,
    "DeleteAlias": {},
    "ListAliases": {"Aliases": [ALIAS], "NextMarker": "1"},
    "PutProvisionedConcurrencyConfig": {**PROVISIONED, "Status": "IN_PROGRESS"},
    "GetProvisionedConcurrencyConfig": {
        **PROVISIONED,
        "StatusReason": "FUNCTION_ERROR_INIT_FAILURE",
    },
    "DeleteProvisionedConcurrencyConfig": {},
    "InvokeAsync": {"Status": 202},
    "PutFunctionEventInvokeConfig": EVENT_CONFIG,
    "GetFunctionEventInvokeConfig": EVENT_CONFIG,
    "UpdateFunctionEventInvokeConfig": EVENT_CONFIG,
    "DeleteFunctionEventInvokeConfig": {},
    "ListFunctionEventInvokeConfigs": {"FunctionEventInvokeConfigs": [EVENT_CONFIG]},
    "ListProvisionedConcurrencyConfigs": {
        "ProvisionedConcurrencyConfigs": [{"FunctionArn": ARN + ":live", **PROVISIONED}],
        "NextMarker": "1",
    },
    "CreateEventSourceMapping": {**QUEUE_MAPPING, "State": "Creating"},
    "GetEventSourceMapping": STREAM_MAPPING,
    "ListEventSourceMappings": {
        "EventSourceMappings": [QUEUE_MAPPING, STREAM_MAPPING],
        "NextMarker": MAPPING_ID,
    },
    "UpdateEventSourceMapping": {**STREAM_MAPPING, "State": "Updating"},
    "DeleteEventSourceMapping": {**QUEUE_MAPPING, "State": "Deleting"},
    "InvokeWithResponseStream": {"StatusCode": 204, "ExecutedVersion": "7"},
    "PublishLayerVersion": LAYER_VERSION,
    "GetLayerVersion": LAYER_VERSION,
    "GetLayerVersionByArn": LAYER_VERSION,
    "ListLayers": {
        "Layers": [
            {
                "LayerName": "deps",
                "LayerArn": LAYER_ARN,
                "LatestMatchingVersion": {
                    k: v for k, v in LAYER_VERSION.items() if k not in ("Content", "LayerArn")
                },
            }
        ],
        "NextMarker": "50",
    },
    "ListLayerVersions": {
        "LayerVersions": [
            {k: v for k, v in LAYER_VERSION.items() if k not in ("Content", "LayerArn")}
        ]
    },
    "DeleteLayerVersion": {},
    "AddLayerVersionPermission": {"Statement": '{"Sid": "everyone"}', "RevisionId": "rev-2"},
    "RemoveLayerVersionPermission": {},
    "GetLayerVersionPolicy": {"Policy": '{"Version": "2012-10-17"}', "RevisionId": "rev-2"},
}


def parse_response(
    operation: OperationModel, status: int, headers: dict[str, str], body: bytes
) -> Any:
    stream: Any = body
    if operation.has_streaming_output:
        stream = StreamingBody(io.BytesIO(body), len(body))  # as botocore's endpoint passes it
    parsed = botocore.parsers.create_parser("rest-json").parse(
        {"status_code": status, "headers": HTTPHeaders.from_dict(headers), "body": stream},
        operation.output_shape,
    )
    parsed.pop("ResponseMetadata")
    for name, value in parsed.items():
        if isinstance(value, StreamingBody):
            parsed[name] = value.read()
    return parsed


def test_every_built_operation_has_a_result() -> None:
    assert sorted(RESULTS) == BUILT


# InvokeWithResponseStream answers with an event stream (tests/unit/test_eventstream.py);
# here, its DryRun answer and the head of a streamed one.
@pytest.mark.parametrize("name", [name for name in BUILT if name != "InvokeWithResponseStream"])
def test_response_round_trip(name: str) -> None:
    operation = LAMBDA.model.operation_model(name)
    response = REST_JSON.serialize(LAMBDA, operation, RESULTS[name])
    assert response.status == {
        "CreateFunction": 201,
        "DeleteFunction": 204,
        "DeleteFunctionConcurrency": 204,
        "PublishVersion": 201,
        "CreateAlias": 201,
        "DeleteAlias": 204,
        "PutProvisionedConcurrencyConfig": 202,
        "DeleteProvisionedConcurrencyConfig": 204,
        "InvokeAsync": 202,
        "DeleteFunctionEventInvokeConfig": 204,
        "CreateEventSourceMapping": 202,
        "UpdateEventSourceMapping": 202,
        "DeleteEventSourceMapping": 202,
        "InvokeWithResponseStream": 204,  # DryRun (a stream's answer: test_eventstream.py)
        "PublishLayerVersion": 201,
        "DeleteLayerVersion": 204,
        "AddLayerVersionPermission": 201,
        "RemoveLayerVersionPermission": 204,
    }.get(name, 200)
    parsed = parse_response(operation, response.status, response.headers, response.body)
    assert parsed == RESULTS[name]


def test_stream_invoke_head() -> None:
    operation = LAMBDA.model.operation_model("InvokeWithResponseStream")
    dry = REST_JSON.serialize(LAMBDA, operation, RESULTS["InvokeWithResponseStream"])
    assert dry.status == 204 and dry.headers["X-Amz-Executed-Version"] == "7"
    head = {
        "StatusCode": 200,
        "ExecutedVersion": "$LATEST",
        "ResponseStreamContentType": "text/csv",
    }
    response = REST_JSON.serialize(LAMBDA, operation, head)
    assert response.status == 200
    assert response.headers["X-Amz-Executed-Version"] == "$LATEST"
    assert response.headers["Content-Type"] == "text/csv"


def test_invoke_status_codes_round_trip() -> None:
    operation = LAMBDA.model.operation_model("Invoke")
    for status in (202, 204):
        response = REST_JSON.serialize(LAMBDA, operation, {"StatusCode": status, "Payload": b""})
        assert response.status == status
        assert parse_response(operation, response.status, response.headers, response.body) == {
            "StatusCode": status,
            "Payload": b"",
        }


@pytest.mark.parametrize(
    ("error", "status", "extra"),
    [
        (
            AwsError(
                "ResourceNotFoundException", f"Function not found: {ARN}:$LATEST", 404, user=True
            ),
            404,
            {"Type": "User"},
        ),
        (
            AwsError(
                "TooManyRequestsException",
                "Rate Exceeded.",
                429,
                user=True,
                fields={
                    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                    "retryAfterSeconds": "2",
                },
            ),
            429,
            {
                "Type": "User",
                "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                "retryAfterSeconds": "2",
            },
        ),
        (AwsError("ValidationException", "1 validation error detected: x"), 400, {}),
        (
            AwsError(
                "RequestEntityTooLargeException",
                "Zipped size must be smaller than 52428800 bytes",
                413,
            ),
            413,
            {},
        ),
        (
            AwsError(
                "NotImplementedException",
                "The ListLayers operation of lambda is not implemented by Lamina yet.",
                501,
            ),
            501,
            {},
        ),
    ],
    ids=lambda value: value.code if isinstance(value, AwsError) else None,
)
def test_error_round_trip(error: AwsError, status: int, extra: dict[str, Any]) -> None:
    response = REST_JSON.serialize_error(LAMBDA, error)
    assert response.status == status
    assert response.headers["X-Amzn-ErrorType"] == error.code
    wire = {
        "status_code": response.status,
        "headers": HTTPHeaders.from_dict(response.headers),
        "body": response.body,
    }
    parser = botocore.parsers.create_parser("rest-json")
    parsed = parser.parse(wire, LAMBDA.model.operation_model("GetFunction").output_shape)
    assert parsed["Error"]["Code"] == error.code
    assert parsed["Error"]["Message"] == error.message
    # As botocore's endpoint does: the error shape's own members come from a second parse.
    shape = LAMBDA.model.shape_for_error_code(error.code)
    modeled = parser.parse(wire, shape) if shape is not None else {}
    modeled.pop("ResponseMetadata", None)
    assert {k: v for k, v in modeled.items() if k not in ("message", "Message")} == extra


def test_model_status_wins_over_the_fallback() -> None:
    # The model gives ResourceConflictException 409, whatever status the raiser guessed.
    response = REST_JSON.serialize_error(LAMBDA, AwsError("ResourceConflictException", "x", 400))
    assert response.status == 409


# Parsing errors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            b'{"FunctionName": ',
            "Could not parse request body into json: Could not parse payload into json: ",
        ),
        (
            b'{"MemorySize": "big"}',
            "Cannot deserialize value of type `java.lang.Integer` from str at 'MemorySize'",
        ),
        (
            b'{"MemorySize": true}',
            "Cannot deserialize value of type `java.lang.Integer` from bool at 'MemorySize'",
        ),
        (
            b'{"Code": {"ZipFile": "***"}}',
            "Cannot deserialize value of type `blob` from str at 'Code.ZipFile'",
        ),
        (b'{"Tags": ["a"]}', "Cannot deserialize value of type `map` from list at 'Tags'"),
        (b"[]", "Cannot deserialize value of type `structure` from list at ''"),
        (b"[" * 100_000, "maximum recursion depth exceeded"),
        (b"\xff{}", "Could not parse request body into json: Could not parse payload into json: "),
    ],
)
def test_malformed_bodies_raise_invalid_request_content(body: bytes, detail: str) -> None:
    request = HttpRequest("POST", "/2015-03-31/functions", {}, {}, body)
    found = REST_JSON.route(LAMBDA, request)
    assert found is not None
    with pytest.raises(AwsError) as info:
        REST_JSON.parse(LAMBDA, found[0], found[1], request)
    assert info.value.code == "InvalidRequestContentException"
    assert info.value.status == 400
    assert info.value.fields == {"Type": "User"}
    assert info.value.message.startswith("Could not parse request body into json: ")
    assert detail in info.value.message


def test_bad_query_and_header_values() -> None:
    request = HttpRequest("GET", "/2015-03-31/functions", {"MaxItems": ["many"]}, {})
    found = REST_JSON.route(LAMBDA, request)
    assert found is not None
    with pytest.raises(AwsError) as info:
        REST_JSON.parse(LAMBDA, found[0], found[1], request)
    assert info.value.code == "InvalidRequestContentException"


# The validator ------------------------------------------------------------------------
def create_shape() -> Any:
    return LAMBDA.model.operation_model("CreateFunction").input_shape


def validation_message(shape: Any, params: dict[str, Any]) -> str:
    with pytest.raises(AwsError) as info:
        validate(shape, params, LAMBDA.extra_constraints)
    assert info.value.code == "ValidationException"
    assert info.value.status == 400
    return info.value.message


def test_validator_accepts_a_valid_request() -> None:
    validate(create_shape(), REQUESTS["CreateFunction"][0], LAMBDA.extra_constraints)


def test_validator_single_error() -> None:
    params = {**REQUESTS["CreateFunction"][1], "MemorySize": 10241}
    assert validation_message(create_shape(), params) == (
        "1 validation error detected: Value '10241' at 'memorySize' failed to satisfy "
        "constraint: Member must have value less than or equal to 10240"
    )


def test_validator_reports_every_error_in_one_message() -> None:
    params = {
        "FunctionName": "bad name",
        "Runtime": "cobol",
        "Handler": "a b",
        "Code": {"ZipFile": b""},
        "Timeout": 0,
        "MemorySize": 10241,
        "EphemeralStorage": {"Size": 10241},
        "TracingConfig": {"Mode": "Sometimes"},
    }
    # Missing required members first, then every problem in the order of the model's members.
    pattern = LAMBDA.model.shape_for("FunctionName").metadata["pattern"]
    runtimes = ", ".join(LAMBDA.model.shape_for("Runtime").enum)
    assert validation_message(create_shape(), params) == (
        "8 validation errors detected: "
        "Value null at 'role' failed to satisfy constraint: Member must not be null; "
        "Value 'bad name' at 'functionName' failed to satisfy constraint: Member must satisfy "
        f"regular expression pattern: {pattern}; "
        f"Value 'cobol' at 'runtime' failed to satisfy constraint: Member must satisfy enum "
        f"value set: [{runtimes}]; "
        "Value 'a b' at 'handler' failed to satisfy constraint: Member must satisfy regular "
        "expression pattern: [^\\s]+; "
        "Value '0' at 'timeout' failed to satisfy constraint: Member must have value greater "
        "than or equal to 1; "
        "Value '10241' at 'memorySize' failed to satisfy constraint: Member must have value "
        "less than or equal to 10240; "
        "Value 'Sometimes' at 'tracingConfig.mode' failed to satisfy constraint: Member must "
        "satisfy enum value set: [Active, PassThrough]; "
        "Value '10241' at 'ephemeralStorage.size' failed to satisfy constraint: Member must "
        "have value less than or equal to 10240"
    )


def test_validator_checks_list_lengths() -> None:
    params = {
        **REQUESTS["CreateFunction"][1],
        "VpcConfig": {"SubnetIds": [f"subnet-{i}" for i in range(17)]},
        "Architectures": ["x86_64", "arm64"],
    }
    message = validation_message(create_shape(), params)
    # How AWS renders a list value is not recorded in AWS_REFERENCE.md: only the rest is.
    problems = message.removeprefix("2 validation errors detected: ").split("; ")
    assert len(problems) == 2
    assert problems[0].startswith("Value '")
    assert problems[0].endswith(
        "' at 'vpcConfig.subnetIds' failed to satisfy constraint: Member must have length "
        "less than or equal to 16"
    )
    assert problems[1].endswith(
        "' at 'architectures' failed to satisfy constraint: Member must have length less than "
        "or equal to 1"
    )


def test_validator_missing_members_are_null() -> None:
    assert validation_message(create_shape(), {}) == (
        "3 validation errors detected: "
        "Value null at 'functionName' failed to satisfy constraint: Member must not be null; "
        "Value null at 'role' failed to satisfy constraint: Member must not be null; "
        "Value null at 'code' failed to satisfy constraint: Member must not be null"
    )


def test_validator_checks_nested_required_members() -> None:
    params = {**REQUESTS["CreateFunction"][1], "EphemeralStorage": {}}
    assert validation_message(create_shape(), params) == (
        "1 validation error detected: Value null at 'ephemeralStorage.size' failed to satisfy "
        "constraint: Member must not be null"
    )


def test_validator_checks_query_members() -> None:
    shape = LAMBDA.model.operation_model("ListFunctions").input_shape
    # Reported in the model's order (FunctionVersion before MaxItems), not the request's.
    assert validation_message(shape, {"MaxItems": 10001, "FunctionVersion": "SOME"}) == (
        "2 validation errors detected: "
        "Value 'SOME' at 'functionVersion' failed to satisfy constraint: Member must satisfy "
        "enum value set: [ALL]; "
        "Value '10001' at 'maxItems' failed to satisfy constraint: Member must have value less "
        "than or equal to 10000"
    )


def test_validator_reports_bad_map_keys_once_on_the_map() -> None:
    params = {
        **REQUESTS["CreateFunction"][1],
        "Environment": {"Variables": {"1A": "x", "B-B": "secret", "OK": "z"}},
    }
    # Environment variables are sensitive: the value is never echoed.
    assert validation_message(create_shape(), params) == (
        "1 validation error detected: Value at 'environment.variables' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must satisfy regular expression "
        "pattern: [a-zA-Z]([a-zA-Z0-9_])+]"
    )
    long_key = "k" * 129
    params = {**REQUESTS["CreateFunction"][1], "Tags": {long_key: "v"}}
    pattern = LAMBDA.model.shape_for("TagKey").metadata["pattern"]
    assert validation_message(create_shape(), params) == (
        f"1 validation error detected: Value '{{{long_key}=v}}' at 'tags' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must have length less than or "
        "equal to 128, Member must have length greater than or equal to 1, Member must satisfy "
        f"regular expression pattern: {pattern}]"
    )


def test_validator_extra_constraints_tighten_the_model() -> None:
    # botocore's model allows 32768 MB and 5400 s; AWS's quotas are 10240 MB and 900 s.
    model = LAMBDA.model
    assert model.shape_for("MemorySize").metadata["max"] > 10240
    assert model.shape_for("Timeout").metadata["max"] > 900
    assert model.shape_for("EphemeralStorageSize").metadata["max"] > 10240
    edge = {
        **REQUESTS["CreateFunction"][1],
        "MemorySize": 10240,
        "Timeout": 900,
        "EphemeralStorage": {"Size": 10240},
    }
    validate(create_shape(), edge, LAMBDA.extra_constraints)


def test_validator_refuses_nulls_inside_lists_and_maps() -> None:
    params = {
        **REQUESTS["CreateFunction"][1],
        "Architectures": [None],
        "Environment": {"Variables": {"AA": None}},
    }
    assert validation_message(create_shape(), params) == (
        "2 validation errors detected: "
        "Value null at 'environment.variables.value' failed to satisfy constraint: Member must "
        "not be null; "
        "Value null at 'architectures.member' failed to satisfy constraint: Member must not be null"
    )

"""Inputs built to break the server answer as AWS answers bad input, never with a 500:
JSON nested deeper than a parser recurses (in a header, in queue attributes, in a
pagination token, in trace documents over the API and over UDP), a bad query value of
Lamina's own log endpoint, and NaN or infinite metric values."""

from __future__ import annotations

import base64
import json
import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


XRAY_PORT = free_udp_port()
DEEP = "[" * 200_000 + "]" * 200_000  # far past any recursive parser's limit


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--isolation", "none", "--xray-port", str(XRAY_PORT)]
    running = Server(tmp_path_factory.mktemp("hostile") / "data", args).start()
    yield running
    running.stop()


def error_of(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    response: dict[str, Any] = raised.value.response
    return response


def test_deep_client_context_is_a_bad_request(server: Server) -> None:
    lam = server.client()
    python_function(lam, "ctx", "def handler(event, context):\n    return 1\n")
    # Within the 3,583 bytes AWS takes in the header, and past the JSON parser's recursion.
    for document in ("[" * 1300 + "]" * 1300, "[" * 1340 + "1" + "]" * 1340):
        response = error_of(
            lam.invoke,
            FunctionName="ctx",
            ClientContext=base64.b64encode(document.encode()).decode(),
        )
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert response["Error"]["Code"] == "InvalidRequestContentException"
        assert response["Error"]["Message"] == (
            "Client context must be a valid Base64-encoded JSON object."
        )
    assert lam.invoke(FunctionName="ctx")["StatusCode"] == 200  # still serving


@pytest.mark.parametrize("attribute", ["RedrivePolicy", "RedriveAllowPolicy"])
def test_deep_queue_policies_are_invalid_attribute_values(server: Server, attribute: str) -> None:
    sqs = server.client("sqs")
    response = error_of(
        sqs.create_queue, QueueName=f"deep-{attribute}", Attributes={attribute: DEEP}
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "InvalidAttributeValue"
    url = sqs.create_queue(QueueName=f"plain-{attribute}")["QueueUrl"]
    response = error_of(sqs.set_queue_attributes, QueueUrl=url, Attributes={attribute: DEEP})
    assert response["Error"]["Code"] == "InvalidAttributeValue"
    assert (
        "RedrivePolicy"
        not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    )


def test_deep_kinesis_tokens_are_invalid_arguments(server: Server) -> None:
    kinesis = server.client("kinesis")
    token = base64.b64encode(DEEP.encode()).decode()
    response = error_of(kinesis.list_shards, NextToken=token)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"] == {
        "Code": "InvalidArgumentException",
        "Message": "Invalid NextToken.",
    }
    response = error_of(kinesis.get_records, ShardIterator=token)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400  # longer than the model allows


def test_deep_trace_documents_are_refused(server: Server) -> None:
    xray = server.client("xray")
    deep_segment = {"trace_id": "1-5f000000-000000000000000000000001", "id": "a" * 16}
    nested: dict[str, Any] = deep_segment
    for _ in range(100):
        nested["metadata"] = {"x": {}}
        nested = nested["metadata"]["x"]
    answer = xray.put_trace_segments(TraceSegmentDocuments=[DEEP, json.dumps(deep_segment)])
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(answer["UnprocessedTraceSegments"]) == 2  # neither kept, as AWS answers bad ones
    # Over UDP too: the daemon endpoint drops them and goes on serving.
    port = XRAY_PORT
    good = {
        "trace_id": "1-5f000000-000000000000000000000002",
        "id": "b" * 16,
        "name": "after",
        "start_time": time.time(),
        "end_time": time.time(),
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        header = b'{"format": "json", "version": 1}\n'
        udp.sendto(header + DEEP.encode()[:60_000], ("127.0.0.1", port))
        udp.sendto(header + json.dumps(deep_segment).encode(), ("127.0.0.1", port))
        udp.sendto(header + json.dumps(good).encode(), ("127.0.0.1", port))
    deadline = time.monotonic() + 5
    traces: list[Any] = []
    while time.monotonic() < deadline and not traces:
        traces = xray.batch_get_traces(TraceIds=[good["trace_id"]])["Traces"]
        time.sleep(0.05)
    assert traces and traces[0]["Segments"]
    assert "Traceback" not in server.output()


def test_log_endpoint_bad_after_is_a_bad_request(server: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{server.endpoint}/_lamina/logs/x?after=abc", timeout=10)
    assert raised.value.code == 400
    assert "after must be a line number" in json.loads(raised.value.read())["message"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_put_metric_data_refuses_nan_and_infinity(server: Server, value: float) -> None:
    cloudwatch = server.client("cloudwatch")
    shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    response = error_of(
        cloudwatch.put_metric_data,
        Namespace="Hostile",
        MetricData=[
            {"MetricName": "fine", "Value": 1.0},
            {"MetricName": "broken", "Value": value},
        ],
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "InvalidParameterValue"
    assert response["Error"]["Message"] == (
        f"The value {shown} for parameter MetricData.member.2.Value is invalid."
    )
    response = error_of(
        cloudwatch.put_metric_data,
        Namespace="Hostile",
        MetricData=[{"MetricName": "many", "Values": [1.0, value]}],
    )
    assert response["Error"]["Message"] == (
        f"The value {shown} for parameter MetricData.member.1.Values.member.2 is invalid."
    )
    listed = cloudwatch.list_metrics(Namespace="Hostile")["Metrics"]
    assert listed == []  # all or nothing: the fine datum before the bad one was not kept


def test_nothing_above_was_a_server_error(server: Server, tmp_path: Path) -> None:
    assert "An internal error occurred" not in server.output()
    assert "Traceback" not in server.output()

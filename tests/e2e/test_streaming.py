"""InvokeWithResponseStream through boto3: chunks reach the caller as the function writes
them (shown by time: the first arrives before the function's last write), errors mid-stream
in InvokeComplete; Node's awslambda.streamifyResponse and a `provided` runtime speaking the
Runtime API's streaming mode (chunked, error trailers); AWS's bandwidth cap."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import runtimes
from tests.helpers import PYTHON_RUNTIME, ROLE, Server, make_zip

NODE = f"nodejs{max(runtimes.on_path() or runtimes.nodes())}.x"

STREAMING_NODE = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType("text/plain");
  for (let i = 0; i < event.chunks; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, event.gap));
    responseStream.write(`chunk ${i} at ${Date.now()}\\n`);
    if (event.failAt === i) throw new Error(`failed after chunk ${i}`);
  }
  responseStream.end();
});
"""

# A custom runtime that streams through the Runtime API by hand: chunked encoding, and the
# error in trailers.
STREAMING_BOOTSTRAP = f"""#!{sys.executable}
import base64, json, os, socket, time

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
API = "/2018-06-01/runtime/invocation"

def request(sock, head, body=b""):
    sock.sendall(head.encode() + body)
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\\r\\n\\r\\n")
    lines = head.decode().split("\\r\\n")
    headers = {{k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        rest += sock.recv(65536)
    return headers, rest

sock = socket.create_connection((host, int(port)))
while True:
    headers, body = request(sock, f"GET {{API}}/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    event, rid = json.loads(body), headers["lambda-runtime-aws-request-id"]
    sock.sendall(
        f"POST {{API}}/{{rid}}/response HTTP/1.1\\r\\nHost: x\\r\\n"
        "Lambda-Runtime-Function-Response-Mode: streaming\\r\\n"
        "Transfer-Encoding: chunked\\r\\nContent-Type: application/x-ndjson\\r\\n"
        "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\\r\\n"
        "\\r\\n".encode()
    )
    size = event.get("size", 0)
    for i in range(event.get("chunks", 0)):
        if i:
            time.sleep(event.get("gap", 0) / 1000)
        data = (json.dumps({{"i": i, "at": time.time() * 1000}}) + "\\n").encode()
        if size:
            data = b"x" * size
        sock.sendall(b"%x\\r\\n" % len(data) + data + b"\\r\\n")
    trailers = ""
    if event.get("fail"):
        error = json.dumps({{"errorType": "CustomStreamError", "errorMessage": "broke mid-stream"}})
        coded = base64.b64encode(error.encode()).decode()
        trailers = ("Lambda-Runtime-Function-Error-Type: CustomStreamError\\r\\n"
                    f"Lambda-Runtime-Function-Error-Body: {{coded}}\\r\\n")
    request(sock, "0\\r\\n" + trailers + "\\r\\n")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("stream") / "data", args=runtimes.runtime_args()
    ).start()
    yield running
    running.stop()


def collect(response: dict[str, Any]) -> tuple[list[tuple[float, bytes]], dict[str, Any]]:
    """(arrival time, chunk) of each PayloadChunk, and the InvokeComplete event."""
    chunks: list[tuple[float, bytes]] = []
    complete: dict[str, Any] = {}
    for event in response["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append((time.time() * 1000, event["PayloadChunk"]["Payload"]))
        if "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    return chunks, complete


def test_node_chunks_arrive_before_the_last_write(lam: Any) -> None:
    lam.create_function(
        FunctionName="node-stream", Runtime=NODE, Role=ROLE, Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": STREAMING_NODE})}, Timeout=10,
    )  # fmt: skip
    response = lam.invoke_with_response_stream(
        FunctionName="node-stream",
        Payload=json.dumps({"chunks": 3, "gap": 700}).encode(),
        LogType="Tail",
    )
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseStreamContentType"] == "text/plain"
    chunks, complete = collect(response)
    text = b"".join(chunk for _, chunk in chunks).decode()
    lines = text.splitlines()
    assert [line.split(" at ")[0] for line in lines] == ["chunk 0", "chunk 1", "chunk 2"]
    last_write = int(lines[-1].split(" at ")[1])
    first_arrival = chunks[0][0]
    assert first_arrival < last_write - 500, (first_arrival, last_write)  # proved by time
    assert "ErrorCode" not in complete
    assert "REPORT RequestId" in __import__("base64").b64decode(complete["LogResult"]).decode()


def test_a_warm_node_environment_streams_again(lam: Any) -> None:
    """The streamed answer's own 202 is read before the next event (it once was taken
    for the next event, and the second invocation of an environment hung)."""
    lam.create_function(
        FunctionName="node-stream-warm", Runtime=NODE, Role=ROLE, Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": STREAMING_NODE})}, Timeout=5,
    )  # fmt: skip
    for _ in range(3):
        response = lam.invoke_with_response_stream(
            FunctionName="node-stream-warm",
            Payload=json.dumps({"chunks": 2, "gap": 10}).encode(),
        )
        chunks, complete = collect(response)
        assert b"".join(c for _, c in chunks).decode().count("chunk") == 2
        assert "ErrorCode" not in complete


def test_node_error_mid_stream_arrives_in_invoke_complete(lam: Any) -> None:
    lam.create_function(
        FunctionName="node-stream-fail", Runtime=NODE, Role=ROLE, Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": STREAMING_NODE})}, Timeout=10,
    )  # fmt: skip
    response = lam.invoke_with_response_stream(
        FunctionName="node-stream-fail",
        Payload=json.dumps({"chunks": 3, "gap": 300, "failAt": 1}).encode(),
    )
    chunks, complete = collect(response)
    assert b"".join(c for _, c in chunks).decode().count("chunk") == 2
    assert complete["ErrorCode"] == "Error"
    details = json.loads(complete["ErrorDetails"])
    assert details["errorType"] == "Error"
    assert details["errorMessage"] == "failed after chunk 1"


def test_provided_runtime_streams_through_the_runtime_api(lam: Any) -> None:
    lam.create_function(
        FunctionName="raw-stream", Runtime="provided.al2023", Role=ROLE, Handler="x",
        Code={"ZipFile": make_zip({"bootstrap": STREAMING_BOOTSTRAP}, {"bootstrap": 0o755})},
        Timeout=10,
    )  # fmt: skip
    response = lam.invoke_with_response_stream(
        FunctionName="raw-stream", Payload=json.dumps({"chunks": 4, "gap": 400}).encode()
    )
    assert response["ResponseStreamContentType"] == "application/x-ndjson"
    chunks, complete = collect(response)
    records = [json.loads(line) for line in b"".join(c for _, c in chunks).splitlines()]
    assert [r["i"] for r in records] == [0, 1, 2, 3]
    assert chunks[0][0] < records[-1]["at"] - 800  # the first came before the last was written
    assert complete == {}
    failing = lam.invoke_with_response_stream(
        FunctionName="raw-stream", Payload=json.dumps({"chunks": 2, "fail": True}).encode()
    )
    chunks, complete = collect(failing)
    assert len(b"".join(c for _, c in chunks).splitlines()) == 2
    assert complete["ErrorCode"] == "CustomStreamError"
    assert json.loads(complete["ErrorDetails"])["errorMessage"] == "broke mid-stream"
    # A plain Invoke of a streaming function gets the response buffered.
    plain = lam.invoke(FunctionName="raw-stream", Payload=json.dumps({"chunks": 2}).encode())
    assert len(plain["Payload"].read().splitlines()) == 2


def test_buffered_function_through_the_stream_api(lam: Any) -> None:
    source = "def handler(event, context):\n    if event.get('fail'):\n" \
             "        raise ValueError('plain failure')\n    return {'whole': event}\n"  # fmt: skip
    lam.create_function(
        FunctionName="plain", Runtime=PYTHON_RUNTIME, Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": source})},
    )  # fmt: skip
    chunks, complete = collect(
        lam.invoke_with_response_stream(FunctionName="plain", Payload=b'{"a": 1}')
    )
    assert [json.loads(c) for _, c in chunks] == [{"whole": {"a": 1}}]
    assert complete == {}
    chunks, complete = collect(
        lam.invoke_with_response_stream(FunctionName="plain", Payload=b'{"fail": true}')
    )
    assert chunks == []
    assert complete["ErrorCode"] == "ValueError"
    assert json.loads(complete["ErrorDetails"])["errorMessage"] == "plain failure"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke_with_response_stream(FunctionName="no-such-function", Payload=b"{}")


def test_bandwidth_cap_after_the_first_6_mb(lam: Any) -> None:
    """10 MB streamed: the first 6 MB at full speed, the other 4 MB at 2 MiB/s (≥ 2 s)."""
    lam.create_function(
        FunctionName="big-stream", Runtime="provided.al2023", Role=ROLE, Handler="x",
        Code={"ZipFile": make_zip({"bootstrap": STREAMING_BOOTSTRAP}, {"bootstrap": 0o755})},
        Timeout=30,
    )  # fmt: skip
    size = 512 * 1024
    started = time.monotonic()
    chunks, complete = collect(
        lam.invoke_with_response_stream(
            FunctionName="big-stream", Payload=json.dumps({"chunks": 20, "size": size}).encode()
        )
    )
    elapsed = time.monotonic() - started
    total = sum(len(c) for _, c in chunks)
    assert total == 20 * size and complete == {}
    assert elapsed >= (total - 6 * 1024 * 1024) / (2 * 1024 * 1024) * 0.95, elapsed
    first_6mb = next(t for t, c in _running(chunks) if c >= 6 * 1024 * 1024)
    assert (first_6mb - chunks[0][0]) / 1000 < 1.0  # uncapped at first


def _running(chunks: list[tuple[float, bytes]]) -> Iterator[tuple[float, int]]:
    total = 0
    for at, chunk in chunks:
        total += len(chunk)
        yield at, total

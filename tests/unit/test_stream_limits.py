"""A streamed response's size limits, where the chunks arrive from the Runtime API: 200 MB
for InvokeWithResponseStream (passed on as they come, never buffered), 6 MB when a plain
Invoke buffers a streaming function's answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from lamina.sandbox.environment import STREAM_LIMIT, Environment, Outcome
from lamina.sandbox.launch import FunctionImage
from lamina.sandbox.runtime_api import RESPONSE_LIMIT, Invocation

MB = 1024 * 1024


class Sink:
    def __init__(self) -> None:
        self.content_type = ""
        self.received = 0

    def start(self, content_type: str) -> None:
        self.content_type = content_type

    def chunk(self, data: bytes) -> None:
        self.received += len(data)


def environment(tmp_path: Path) -> Environment:
    image = FunctionImage(
        name="f", arn="arn:aws:lambda:us-east-1:000000000000:function:f", version="$LATEST",
        region="us-east-1", runtime="provided.al2023", handler="x", code_dir=tmp_path,
        memory_mb=128, timeout_s=3, ephemeral_mb=512,
    )  # fmt: skip
    return Environment(image, tmp_path, python="python3", output=lambda line: None)


async def stream(env: Environment, sink: Sink | None, total: int, chunk: int) -> Outcome:
    invocation = Invocation("req-1", b"{}", 0, "arn", "Root=1-0-0", stream=sink)
    env._current = invocation
    env._outcome = asyncio.get_running_loop().create_future()
    assert env.stream_start("req-1", {"content-type": "text/plain"}) is None
    data = b"x" * chunk
    for _ in range(total // chunk):
        env.stream_chunk("req-1", data)
    env.stream_end("req-1", {})
    return await env._outcome


def test_streamed_response_stops_at_200_mb(tmp_path: Path) -> None:
    sink = Sink()
    outcome = asyncio.run(stream(environment(tmp_path), sink, STREAM_LIMIT + 4 * MB, 4 * MB))
    assert sink.content_type == "text/plain"
    assert sink.received <= STREAM_LIMIT
    assert outcome.error_type == "Function.ResponseSizeTooLarge"
    assert json.loads(outcome.payload)["errorMessage"] == (
        f"Response payload size exceeded maximum allowed payload size ({STREAM_LIMIT} bytes)."
    )


def test_streamed_response_at_200_mb_passes(tmp_path: Path) -> None:
    sink = Sink()
    outcome = asyncio.run(stream(environment(tmp_path), sink, STREAM_LIMIT, 4 * MB))
    assert sink.received == STREAM_LIMIT - STREAM_LIMIT % (4 * MB)
    assert outcome.error_type is None and outcome.payload == b""


def test_plain_invoke_buffers_at_most_6_mb(tmp_path: Path) -> None:
    outcome = asyncio.run(stream(environment(tmp_path), None, 7 * MB, MB))
    assert outcome.error_type == "Function.ResponseSizeTooLarge"
    assert f"({RESPONSE_LIMIT} bytes)" in json.loads(outcome.payload)["errorMessage"]
    outcome = asyncio.run(stream(environment(tmp_path), None, 6 * MB, MB))
    assert outcome.error_type is None and len(outcome.payload) == 6 * MB

"""Function URLs in RESPONSE_STREAM mode: Node's streamifyResponse with
HttpResponseStream.from sets the status, headers and cookies in its prelude, and the
client (requests, curl) gets the first bytes while the function is still writing."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests

from tests import runtimes
from tests.helpers import ROLE, Server, make_zip, python_function
from tests.web import localhost_resolves, public_url

NODE = f"nodejs{max(runtimes.on_path() or runtimes.nodes())}.x"

STREAMER = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const gap = Number((event.queryStringParameters || {}).gap || 1500);
  responseStream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201,
    headers: { "Content-Type": "text/plain", "X-Streamed": "yes" },
    cookies: ["stream=1; Path=/"],
  });
  responseStream.write(`first ${Date.now()}\\n`);
  await new Promise((resolve) => setTimeout(resolve, gap));
  responseStream.write(`last ${Date.now()}\\n`);
  responseStream.end();
});
"""

PLAIN = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.setContentType("application/x-ndjson");
  for (let i = 0; i < 3; i++) responseStream.write(JSON.stringify({ i }) + "\\n");
  responseStream.end();
});
"""

BUFFERED = """
def handler(event, context):
    return {"statusCode": 202, "headers": {"Content-Type": "text/plain"}, "body": "all at once"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("url-stream") / "data", args=runtimes.runtime_args()
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def urls(server: Server) -> dict[str, str]:
    lam = server.client()
    for name, source in (("streamer", STREAMER), ("plain-stream", PLAIN)):
        lam.create_function(
            FunctionName=name,
            Runtime=NODE,
            Role=ROLE,
            Handler="index.handler",
            Code={"ZipFile": make_zip({"index.js": source})},
            Timeout=10,
        )
    python_function(lam, "buffered", BUFFERED)
    return {
        name: public_url(lam, name, InvokeMode="RESPONSE_STREAM")
        for name in ("streamer", "plain-stream", "buffered")
    }


def test_the_first_bytes_arrive_before_the_function_ends(urls: dict[str, str]) -> None:
    with localhost_resolves():
        requests.get(urls["streamer"] + "?gap=10", timeout=30).raise_for_status()  # warm
        sent = time.monotonic()
        with requests.get(urls["streamer"], stream=True, timeout=30) as answer:
            assert answer.status_code == 201
            assert answer.headers["X-Streamed"] == "yes"
            assert answer.headers["Content-Type"] == "text/plain"
            assert answer.headers["Set-Cookie"] == "stream=1; Path=/"
            assert answer.headers["Transfer-Encoding"] == "chunked"
            lines = answer.iter_lines()
            first = next(lines)
            first_at = time.monotonic()
            last = next(lines)
            last_at = time.monotonic()
    assert first.startswith(b"first ") and last.startswith(b"last ")
    written_gap = (int(last.split()[1]) - int(first.split()[1])) / 1000
    assert written_gap >= 1.4  # the function paused 1.5 s between its two writes
    # The first line was in hand long before the function wrote (and ended with) the last.
    assert last_at - first_at >= 1.2, (first_at - sent, last_at - sent)
    assert first_at - sent < 1.2


def test_curl_sees_the_stream_as_it_is_written(urls: dict[str, str]) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        ["curl", "-sN", "-i", urls["streamer"] + "?gap=2000"], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    head = b""
    while b"first " not in head:
        line = process.stdout.readline()
        assert line, head
        head += line
    first_at = time.monotonic() - started
    rest = process.stdout.read()
    process.wait(timeout=30)
    ended_at = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 201")
    assert b"last " in rest
    assert ended_at - first_at >= 1.5


def test_a_stream_without_a_prelude_and_a_buffered_answer(urls: dict[str, str]) -> None:
    with localhost_resolves():
        plain = requests.get(urls["plain-stream"], timeout=30)
        assert plain.status_code == 200
        assert plain.headers["Content-Type"] == "application/x-ndjson"
        assert [json.loads(line) for line in plain.text.splitlines()] == [
            {"i": 0},
            {"i": 1},
            {"i": 2},
        ]
        buffered = requests.get(urls["buffered"], timeout=30)
        assert buffered.status_code == 202 and buffered.text == "all at once"

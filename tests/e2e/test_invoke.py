"""Invocation end to end: real `lamina serve`, real boto3, real processes (issue 3).

These tests follow environments by the host pids their functions report and share files
with them through the test's directories, so their servers run with `--isolation none`
(under namespaces a function has a PID namespace and a filesystem of its own);
tests/e2e/test_isolation.py covers timeouts, crashes and reuse under namespaces.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PYTHON_RUNTIME, Server, alive, make_zip, python_function

TRACE_ID = re.compile(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]")
REPORT = re.compile(
    r"REPORT RequestId: (?P<id>[0-9a-f-]{36})\tDuration: \d+\.\d{2} ms\t"
    r"Billed Duration: \d+ ms\tMemory Size: (?P<memory>\d+) MB\tMax Memory Used: \d+ MB"
    r"(?:\tInit Duration: \d+\.\d{2} ms)?$"
)

ECHO = "def handler(event, context):\n    return event\n"

COUNTER = """
import os
count = 0

def handler(event, context):
    global count
    count += 1
    print(f"count is {count}")
    return {"count": count, "pid": os.getpid()}
"""

SLEEPER = """
import os, time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("lamina") / "data", args=["--isolation", "none"])
    running.start()
    try:
        yield running
    finally:
        running.stop()


# Helpers -----------------------------------------------------------------------------
def body(response: dict[str, Any]) -> Any:
    return json.loads(response["Payload"].read())


def request_id(response: dict[str, Any]) -> str:
    value: str = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    return value


def tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def gone(pid: int, timeout: float = 5.0) -> bool:
    return wait_until(lambda: not alive(pid), timeout)


def in_threads(count: int, work: Callable[[int], Any], timeout: float = 30.0) -> list[Any]:
    """Run work(0..count-1) in threads that start together; results in order."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "an invoke did not finish"
    if errors:
        raise errors[0]
    return results


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def lamina(server: Server, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lamina.cli", *args, "--endpoint", server.endpoint],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def function_error(response: dict[str, Any]) -> dict[str, Any]:
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-function-error"] == "Unhandled"
    document: dict[str, Any] = body(response)
    return document


# Results, context, environment ----------------------------------------------------------
def test_return_value_and_executed_version(lam: Any) -> None:
    python_function(lam, "echo", ECHO)
    response = lam.invoke(FunctionName="echo", Payload=b'{"a": [1, 2, {"b": null}]}')
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "$LATEST"
    assert "FunctionError" not in response
    assert "LogResult" not in response
    assert body(response) == {"a": [1, 2, {"b": None}]}


def test_empty_payload_is_an_empty_object(lam: Any) -> None:
    python_function(lam, "echo-empty", ECHO)
    assert body(lam.invoke(FunctionName="echo-empty")) == {}


CONTEXT = """
def handler(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "client_context": context.client_context,
    }
"""


def test_context_attributes(lam: Any) -> None:
    created = python_function(lam, "ctx", CONTEXT, MemorySize=256, Timeout=7)
    response = lam.invoke(FunctionName="ctx")
    context = body(response)
    assert context["aws_request_id"] == request_id(response)
    assert context["function_name"] == "ctx"
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_in_mb"] == "256"
    assert context["invoked_function_arn"] == created["FunctionArn"]
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:ctx"
    assert 5000 < context["remaining"] <= 7000
    assert context["log_group_name"] == "/aws/lambda/ctx"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}", context["log_stream_name"])
    assert context["client_context"] is None
    again = lam.invoke(FunctionName="ctx")
    second = body(again)
    assert second["aws_request_id"] == request_id(again) != context["aws_request_id"]
    assert second["log_stream_name"] == context["log_stream_name"]  # the same environment


def test_qualified_arn_reaches_the_context(lam: Any) -> None:
    created = python_function(lam, "ctx-qualified", CONTEXT)
    response = lam.invoke(FunctionName="ctx-qualified", Qualifier="$LATEST")
    assert body(response)["invoked_function_arn"] == created["FunctionArn"] + ":$LATEST"
    assert response["ExecutedVersion"] == "$LATEST"


ENVIRON = """
import os

def handler(event, context):
    return dict(os.environ)
"""


def test_environment_variables(lam: Any) -> None:
    python_function(
        lam,
        "environ",
        ENVIRON,
        MemorySize=192,
        Environment={"Variables": {"GREETING": "hello", "EMPTY": ""}},
    )
    first = body(lam.invoke(FunctionName="environ"))
    assert first["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert first["_HANDLER"] == "app.handler"
    assert Path(first["LAMBDA_TASK_ROOT"]).is_dir()
    assert (Path(first["LAMBDA_TASK_ROOT"]) / "app.py").is_file()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", first["AWS_LAMBDA_RUNTIME_API"])
    assert first["AWS_REGION"] == "us-east-1"
    assert first["AWS_DEFAULT_REGION"] == "us-east-1"
    assert first["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{PYTHON_RUNTIME}"
    assert first["AWS_LAMBDA_FUNCTION_NAME"] == "environ"
    assert first["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "192"
    assert first["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert first["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/environ"
    assert first["TZ"] == ":UTC"
    assert first["GREETING"] == "hello"
    assert first["EMPTY"] == ""
    assert "AWS_LAMBDA_MAX_CONCURRENCY" not in first
    assert TRACE_ID.fullmatch(first["_X_AMZN_TRACE_ID"])
    second = body(lam.invoke(FunctionName="environ"))
    assert TRACE_ID.fullmatch(second["_X_AMZN_TRACE_ID"])
    assert second["_X_AMZN_TRACE_ID"] != first["_X_AMZN_TRACE_ID"]
    assert second["AWS_LAMBDA_RUNTIME_API"] == first["AWS_LAMBDA_RUNTIME_API"]  # warm


# Reuse, temp dirs, concurrency ------------------------------------------------------------
def test_warm_reuse(lam: Any) -> None:
    python_function(lam, "counter", COUNTER)
    first = lam.invoke(FunctionName="counter", LogType="Tail")
    second = lam.invoke(FunctionName="counter", LogType="Tail")
    one, two = body(first), body(second)
    assert (one["count"], two["count"]) == (1, 2)
    assert one["pid"] == two["pid"]
    cold, warm = tail(first).splitlines(), tail(second).splitlines()
    rid = request_id(first)
    assert cold[0] == f"START RequestId: {rid} Version: $LATEST"
    assert cold[1] == "count is 1"
    assert cold[2] == f"END RequestId: {rid}"
    assert REPORT.fullmatch(cold[3]) and "\tInit Duration: " in cold[3]
    assert cold[3].startswith(f"REPORT RequestId: {rid}\t")
    assert "\tMemory Size: 128 MB\t" in cold[3]
    assert len(cold) == 4
    rid = request_id(second)
    assert warm == [
        f"START RequestId: {rid} Version: $LATEST",
        "count is 2",
        f"END RequestId: {rid}",
        warm[3],
    ]
    assert REPORT.fullmatch(warm[3]) and "Init Duration" not in warm[3]


TEMP = """
import os, tempfile, time

def handler(event, context):
    directory = tempfile.gettempdir()
    path = os.path.join(directory, "kept.txt")
    if "write" in event:
        with open(path, "w") as out:
            out.write(event["write"])
    time.sleep(event.get("sleep", 0))
    found = open(path).read() if os.path.exists(path) else None
    return {"dir": directory, "found": found, "pid": os.getpid()}
"""


def test_temp_dir_kept_between_warm_invokes(lam: Any) -> None:
    python_function(lam, "temp-warm", TEMP)
    first = body(lam.invoke(FunctionName="temp-warm", Payload=b'{"write": "kept across"}'))
    second = body(lam.invoke(FunctionName="temp-warm", Payload=b"{}"))
    assert second["pid"] == first["pid"]
    assert second["dir"] == first["dir"]
    assert second["found"] == "kept across"
    assert Path(first["dir"]).name == "tmp"


def test_temp_dir_is_per_environment(server: Server) -> None:
    python_function(server.client(), "temp-two", TEMP)

    def work(index: int) -> Any:
        payload = json.dumps({"write": f"env {index}", "sleep": 1}).encode()
        return body(server.client().invoke(FunctionName="temp-two", Payload=payload))

    first, second = in_threads(2, work)
    assert first["pid"] != second["pid"]
    assert first["dir"] != second["dir"]
    assert (first["found"], second["found"]) == ("env 0", "env 1")


def test_five_concurrent_invokes_run_in_five_environments(server: Server) -> None:
    python_function(server.client(), "sleep-one", SLEEPER)
    started = time.monotonic()
    results = in_threads(
        5, lambda _: body(server.client().invoke(FunctionName="sleep-one", Payload=b'{"sleep": 1}'))
    )
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"five 1 s invokes took {elapsed:.2f} s"
    assert len({result["pid"] for result in results}) == 5


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose idle environments are reclaimed after one second."""
    running = Server(
        tmp_path_factory.mktemp("keepalive") / "data",
        args=["--keep-alive", "1", "--isolation", "none"],
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_idle_environment_is_reclaimed_after_keep_alive(quick_server: Server) -> None:
    client = quick_server.client()
    python_function(client, "reaped", COUNTER)
    first = client.invoke(FunctionName="reaped", LogType="Tail")
    old = body(first)
    assert old["count"] == 1 and "Init Duration" in tail(first)
    quick = body(client.invoke(FunctionName="reaped"))  # within the keep-alive: warm
    assert quick == {"count": 2, "pid": old["pid"]}
    assert gone(old["pid"], timeout=6.0), "the idle environment outlived its keep-alive"
    again = client.invoke(FunctionName="reaped", LogType="Tail")
    new = body(again)
    assert new["count"] == 1
    assert new["pid"] != old["pid"]
    assert "\tInit Duration: " in tail(again).splitlines()[-1]


# Failures -------------------------------------------------------------------------------
TIMEOUT = """
import json, os, subprocess, sys, time

def handler(event, context):
    if "dir" in event:
        child = subprocess.Popen(["sleep", "60"])
        with open(os.path.join(event["dir"], "pids.json"), "w") as out:
            json.dump({"runtime": os.getpid(), "child": child.pid}, out)
        time.sleep(5)
    return {"pid": os.getpid()}
"""


def test_timeout_kills_the_process_tree(lam: Any, tmp_path: Path) -> None:
    python_function(lam, "slowpoke", TIMEOUT, Timeout=1)
    started = time.monotonic()
    response = lam.invoke(
        FunctionName="slowpoke", LogType="Tail", Payload=json.dumps({"dir": str(tmp_path)}).encode()
    )
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0
    error = function_error(response)
    rid = request_id(response)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert error["errorMessage"] == f"RequestId: {rid} Error: Task timed out after 1.00 seconds"
    lines = tail(response).splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[-2] == f"END RequestId: {rid}"
    assert REPORT.fullmatch(lines[-1])
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert gone(pids["runtime"], 3.0), "the timed-out runtime is still alive"
    assert gone(pids["child"], 3.0), "the handler's child process survived the timeout"
    after = lam.invoke(FunctionName="slowpoke", LogType="Tail")
    assert "FunctionError" not in after
    assert body(after)["pid"] != pids["runtime"]
    assert "\tInit Duration: " in tail(after).splitlines()[-1]  # a new environment


def test_raised_exception(lam: Any) -> None:
    source = "def handler(event, context):\n    raise ValueError('bad value ' + str(event['n']))\n"
    python_function(lam, "raiser", source)
    response = lam.invoke(FunctionName="raiser", Payload=b'{"n": 7}', LogType="Tail")
    error = function_error(response)
    assert set(error) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "bad value 7"
    assert error["requestId"] == request_id(response)
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]
    assert all(isinstance(frame, str) for frame in error["stackTrace"])
    assert any("app.py" in frame and "raise ValueError" in frame for frame in error["stackTrace"])
    assert "ValueError" in tail(response)
    # The environment survives a handled failure.
    again = function_error(lam.invoke(FunctionName="raiser", Payload=b'{"n": 8}'))
    assert again["errorMessage"] == "bad value 8"


def test_crash_is_an_exit_error(lam: Any) -> None:
    source = (
        "import os\n\ndef handler(event, context):\n"
        "    if event.get('crash'):\n        os._exit(1)\n    return os.getpid()\n"
    )
    python_function(lam, "crasher", source)
    pid = body(lam.invoke(FunctionName="crasher"))
    response = lam.invoke(FunctionName="crasher", Payload=b'{"crash": true}')
    error = function_error(response)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == (
        f"RequestId: {request_id(response)} Error: Runtime exited with error: exit status 1"
    )
    assert gone(pid, 3.0)
    fresh = lam.invoke(FunctionName="crasher")
    assert "FunctionError" not in fresh
    assert body(fresh) != pid


def test_killed_runtime_names_the_signal(lam: Any) -> None:
    source = (
        "import os, signal\n\n"
        "def handler(event, context):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    python_function(lam, "self-killer", source)
    response = lam.invoke(FunctionName="self-killer")
    error = function_error(response)
    assert error == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {request_id(response)} Error: Runtime exited with error: "
        "signal: killed",
    }


def test_import_error(lam: Any) -> None:
    source = "import no_such_module_xyz\n\ndef handler(event, context):\n    return 1\n"
    python_function(lam, "bad-import", source)
    response = lam.invoke(FunctionName="bad-import", LogType="Tail")
    error = function_error(response)
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == (
        "Unable to import module 'app': No module named 'no_such_module_xyz'"
    )
    assert isinstance(error.get("stackTrace", []), list)
    log = tail(response)
    assert f"END RequestId: {request_id(response)}" in log
    assert "Runtime.ImportModuleError" in log


def test_missing_handler(lam: Any) -> None:
    python_function(
        lam, "no-handler", "def other(event, context):\n    return 1\n", handler="app.handler"
    )
    error = function_error(lam.invoke(FunctionName="no-handler"))
    assert error["errorType"] == "Runtime.HandlerNotFound"
    assert error["errorMessage"] == "Handler 'handler' missing on module 'app'"


def test_unserializable_result_is_a_marshal_error(lam: Any) -> None:
    python_function(lam, "marshal", "def handler(event, context):\n    return object()\n")
    error = function_error(lam.invoke(FunctionName="marshal"))
    assert error["errorType"] == "Runtime.MarshalError"
    assert error["errorMessage"].startswith("Unable to marshal response:")


# Payload limits, content, invocation types --------------------------------------------
LENGTH = "def handler(event, context):\n    return len(event)\n"


def test_request_payload_limit(lam: Any) -> None:
    python_function(lam, "length", LENGTH)
    limit = 6_291_456
    fits = b'"' + b"a" * (limit - 2) + b'"'
    assert body(lam.invoke(FunctionName="length", Payload=fits)) == limit - 2
    with pytest.raises(lam.exceptions.RequestTooLargeException) as raised:
        lam.invoke(FunctionName="length", Payload=fits[:-1] + b'a"')
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"]["Code"] == "RequestTooLargeException"
    assert error["Error"]["Message"] == (
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    )


BIG = "def handler(event, context):\n    return 'x' * event['size']\n"


def test_response_payload_limit(lam: Any) -> None:
    python_function(lam, "big", BIG)
    limit = 6_291_556
    fits = lam.invoke(FunctionName="big", Payload=json.dumps({"size": limit - 2}).encode())
    assert "FunctionError" not in fits
    assert len(fits["Payload"].read()) == limit
    over = lam.invoke(FunctionName="big", Payload=json.dumps({"size": limit - 1}).encode())
    error = function_error(over)
    assert error["errorType"] == "Function.ResponseSizeTooLarge"
    assert error["errorMessage"] == (
        "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    )
    after = lam.invoke(FunctionName="big", Payload=b'{"size": 3}')
    assert body(after) == "xxx"


def test_non_json_payload(lam: Any) -> None:
    python_function(lam, "echo-bad", ECHO)
    with pytest.raises(lam.exceptions.InvalidRequestContentException) as raised:
        lam.invoke(FunctionName="echo-bad", Payload=b"this is not json")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Message"].startswith("Could not parse request body into json")
    # Nesting too deep for the parser is bad content too, not a server error.
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName="echo-bad", Payload=b"[" * 100_000)


def test_client_context_reaches_the_handler(lam: Any) -> None:
    source = (
        "def handler(event, context):\n    c = context.client_context\n"
        "    return {'custom': c.custom, 'env': c.env, 'client': c.client}\n"
    )
    python_function(lam, "client-context", source)
    document = {
        "custom": {"tenant": "t-1", "n": 3},
        "env": {"locale": "en"},
        "client": {"app_title": "tests"},
    }
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    response = lam.invoke(FunctionName="client-context", ClientContext=encoded)
    assert body(response) == {
        "custom": {"tenant": "t-1", "n": 3},
        "env": {"locale": "en"},
        "client": {"app_title": "tests"},
    }
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName="client-context", ClientContext="%%% not base64 %%%")


def test_dry_run(lam: Any) -> None:
    python_function(lam, "dry", COUNTER)
    response = lam.invoke(FunctionName="dry", InvocationType="DryRun")
    assert response["StatusCode"] == 204
    assert response["Payload"].read() == b""
    assert body(lam.invoke(FunctionName="dry"))["count"] == 1  # nothing ran before
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="no-such-function", InvocationType="DryRun")


def test_invoke_missing_function(lam: Any) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as raised:
        lam.invoke(FunctionName="nowhere")
    assert raised.value.response["Error"]["Message"] == (
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nowhere:$LATEST"
    )


# Changes retire environments --------------------------------------------------------------
VERSIONED = """
import os
VERSION = "{version}"

def handler(event, context):
    return {{"version": VERSION, "pid": os.getpid(), "colour": os.environ.get("COLOUR")}}
"""


def test_update_code_retires_environments(lam: Any) -> None:
    python_function(lam, "evolving", VERSIONED.format(version="one"))
    old = body(lam.invoke(FunctionName="evolving"))
    assert old["version"] == "one"
    lam.update_function_code(
        FunctionName="evolving", ZipFile=make_zip({"app.py": VERSIONED.format(version="two")})
    )
    new = body(lam.invoke(FunctionName="evolving"))
    assert new["version"] == "two"
    assert new["pid"] != old["pid"]
    assert gone(old["pid"], 3.0)


def test_update_configuration_retires_environments(lam: Any) -> None:
    python_function(
        lam,
        "recoloured",
        VERSIONED.format(version="one"),
        Environment={"Variables": {"COLOUR": "red"}},
    )
    old = body(lam.invoke(FunctionName="recoloured"))
    assert old["colour"] == "red"
    lam.update_function_configuration(
        FunctionName="recoloured", Environment={"Variables": {"COLOUR": "blue"}}
    )
    new = body(lam.invoke(FunctionName="recoloured"))
    assert new["colour"] == "blue"
    assert new["pid"] != old["pid"]
    assert gone(old["pid"], 3.0)


def test_update_while_busy_retires_the_busy_environment(server: Server, lam: Any) -> None:
    source = VERSIONED.replace(
        "return {{", "import time; time.sleep(event.get('sleep', 0))\n    return {{"
    )
    python_function(lam, "busy-update", source.format(version="one"))
    results: list[Any] = []
    caller = threading.Thread(
        target=lambda: results.append(
            body(server.client().invoke(FunctionName="busy-update", Payload=b'{"sleep": 1}'))
        )
    )
    caller.start()
    time.sleep(0.5)  # the invoke is running on version one
    lam.update_function_code(
        FunctionName="busy-update", ZipFile=make_zip({"app.py": source.format(version="two")})
    )
    new = body(lam.invoke(FunctionName="busy-update"))
    caller.join(10)
    old = results[0]
    assert old["version"] == "one"  # a running invocation finishes on the code it started with
    assert new["version"] == "two"
    assert new["pid"] != old["pid"]
    assert gone(old["pid"], 3.0)
    assert body(lam.invoke(FunctionName="busy-update"))["pid"] == new["pid"]


def test_delete_stops_environments(lam: Any) -> None:
    python_function(lam, "doomed", SLEEPER)
    pid = body(lam.invoke(FunctionName="doomed"))["pid"]
    assert alive(pid)
    lam.delete_function(FunctionName="doomed")
    assert gone(pid, 3.0)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="doomed")


# Output and logs ---------------------------------------------------------------------------
FLOOD = """
import sys

def handler(event, context):
    line = "y" * (event["width"] - 1)
    for _ in range(event["lines"]):
        print(line)
    print("flood done")
    return "survived"
"""


def test_stdout_flood_is_bounded(server: Server, lam: Any) -> None:
    python_function(lam, "flood", FLOOD, Timeout=60)
    assert server.process is not None
    lam.invoke(FunctionName="flood", Payload=b'{"width": 10, "lines": 1}')  # warm, and baseline
    before = rss_kb(server.process.pid)
    response = lam.invoke(
        FunctionName="flood", LogType="Tail", Payload=b'{"width": 1000, "lines": 50000}'
    )  # 50 MB of output
    grown_mb = (rss_kb(server.process.pid) - before) / 1024
    assert "FunctionError" not in response
    assert body(response) == "survived"
    assert grown_mb < 50, f"the server grew by {grown_mb:.0f} MB"
    raw = base64.b64decode(response["LogResult"])
    assert len(raw) <= 4096
    lines = raw.decode().splitlines()
    rid = request_id(response)
    assert lines[-3:-1] == ["flood done", f"END RequestId: {rid}"]
    assert REPORT.fullmatch(lines[-1])
    assert set(lines[1]) == {"y"}


def test_short_line_flood_is_bounded(server: Server, lam: Any) -> None:
    python_function(lam, "flood-short", FLOOD, Timeout=60)
    assert server.process is not None
    lam.invoke(FunctionName="flood-short", Payload=b'{"width": 2, "lines": 1}')
    before = rss_kb(server.process.pid)
    response = lam.invoke(FunctionName="flood-short", Payload=b'{"width": 2, "lines": 1000000}')
    grown_mb = (rss_kb(server.process.pid) - before) / 1024
    assert body(response) == "survived"
    assert grown_mb < 50, f"the server grew by {grown_mb:.0f} MB"


def test_tail_is_at_most_4_kb(lam: Any) -> None:
    source = (
        "def handler(event, context):\n"
        "    print('z' * 10000)\n    print('é' * 3000)\n    return 1\n"
    )
    python_function(lam, "long-line", source)
    response = lam.invoke(FunctionName="long-line", LogType="Tail")
    raw = base64.b64decode(response["LogResult"])
    assert len(raw) <= 4096
    assert raw.endswith(b"\n")
    assert b"END RequestId: " + request_id(response).encode() in raw


def test_output_without_a_final_newline_stays_with_its_invocation(lam: Any) -> None:
    source = (
        "import sys\n\ndef handler(event, context):\n"
        "    sys.stdout.write('unfinished ' + event['n'])\n    return 1\n"
    )
    python_function(lam, "unfinished", source)
    for n in ("one", "two"):
        response = lam.invoke(
            FunctionName="unfinished", LogType="Tail", Payload=json.dumps({"n": n}).encode()
        )
        lines = tail(response).splitlines()
        assert lines[1:3] == [f"unfinished {n}", f"END RequestId: {request_id(response)}"]


def test_lamina_logs_prints_the_function_log(server: Server, lam: Any) -> None:
    source = (
        "def handler(event, context):\n    print('hello from', event['who'])\n    return 'ok'\n"
    )
    python_function(lam, "logged", source)
    response = lam.invoke(FunctionName="logged", Payload=b'{"who": "the logs test"}')
    rid = request_id(response)
    done = lamina(server, "logs", "logged")
    assert done.returncode == 0, done.stderr
    lines = [line.split(" ", 1)[1] for line in done.stdout.splitlines()]
    stamps = [line.split(" ", 1)[0] for line in done.stdout.splitlines()]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s) for s in stamps)
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    assert lines[start + 1] == "hello from the logs test"
    assert lines[start + 2] == f"END RequestId: {rid}"
    assert lines[start + 3].startswith(f"REPORT RequestId: {rid}\tDuration: ")


def test_lamina_logs_follow_shows_later_lines(server: Server, lam: Any) -> None:
    source = "def handler(event, context):\n    print('marker', event['n'])\n    return 'ok'\n"
    python_function(lam, "followed", source)
    lam.invoke(FunctionName="followed", Payload=b'{"n": 1}')
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lamina.cli",
            "logs",
            "followed",
            "--follow",
            "--endpoint",
            server.endpoint,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                return False
            if line.endswith(" " + text):
                return True
        return False

    try:
        assert wait_for("marker 1"), "the follower did not print the earlier line"
        later = lam.invoke(FunctionName="followed", Payload=b'{"n": 2}')
        assert wait_for("marker 2"), "the follower did not print the later line"
        assert wait_for(f"END RequestId: {request_id(later)}")
    finally:
        follower.kill()
        follower.wait(5)
        reader.join(5)


def test_lamina_invoke_prints_the_payload(server: Server, lam: Any) -> None:
    source = "def handler(event, context):\n    print('inside')\n    return event\n"
    python_function(lam, "cli-echo", source)
    done = lamina(server, "invoke", "cli-echo", "--payload", '{"hello": "world", "n": 2}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"hello": "world", "n": 2}
    assert "START RequestId: " in done.stderr
    assert "inside" in done.stderr
    python_function(lam, "cli-raiser", "def handler(event, context):\n    raise KeyError('nope')\n")
    raised = lamina(server, "invoke", "cli-raiser")
    assert raised.returncode == 1
    assert json.loads(raised.stdout)["errorType"] == "KeyError"
    missing = lamina(server, "invoke", "no-such-cli-function", "--payload", "{}")
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["message"] == (
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:"
        "no-such-cli-function:$LATEST"
    )

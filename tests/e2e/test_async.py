"""Asynchronous invocation: the durable queue, retries, backoff, destinations, crash safety.

Functions report every run over UDP to a recorder the test opens on 127.0.0.1, so what
ran is known even across a server crash. Platform delays run 100x fast (time scale 0.01):
AWS's 1 and 2 minute retries take 0.6 s and 1.2 s.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

SCALE = 0.01
# Functions report to a recorder on the test's loopback, which an isolated environment's
# network cannot reach: these servers run without isolation.
ARGS = ["--time-scale", str(SCALE), "--account-concurrency", "20", "--unreserved-floor", "5",
        "--isolation", "none"]  # fmt: skip
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"

# Reports each run, then behaves as the event asks.
WORKER = """
import json, os, socket, time
ADDRESS = ("127.0.0.1", int(os.environ["RECORDER_PORT"]))
OUT = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

def handler(event, context):
    OUT.sendto(json.dumps({
        "fn": context.function_name, "at": time.time(), "event": event,
        "request": context.aws_request_id,
    }).encode(), ADDRESS)
    time.sleep(event.get("sleep", 0) if isinstance(event, dict) else 0)
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"done": event}
"""


class Recorder:
    """Collects the functions' UDP reports."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reports: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            with self._lock:
                self.reports.append(json.loads(data))

    def of(self, function: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.reports if r["fn"] == function]

    def wait(self, function: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(function)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{function}: {len(self.of(function))} reports, wanted {count}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=ARGS).start()
    yield running
    running.stop()


@pytest.fixture
def worker(lam: Any, recorder: Recorder) -> Callable[..., str]:
    def make(name: str, **extra: Any) -> str:
        python_function(
            lam,
            name,
            WORKER,
            Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
            Timeout=30,
            **extra,
        )
        return name

    return make


def send(lam: Any, name: str, event: Any, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = lam.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode(), **extra
    )
    return response


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call()
    response: dict[str, Any] = raised.value.response
    return response


# Accepting ------------------------------------------------------------------------------
def test_202_and_eventual_execution(
    lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker("async-basic")
    response = send(lam, name, {"n": 1})
    assert response["StatusCode"] == 202
    assert response["Payload"].read() == b""
    report = recorder.wait(name, 1)[0]
    assert report["event"] == {"n": 1}
    assert report["request"] == response["ResponseMetadata"]["RequestId"]
    legacy = lam.invoke_async(FunctionName=name, InvokeArgs=b'{"n": 2}')
    assert legacy["Status"] == 202
    assert [r["event"] for r in recorder.wait(name, 2)][1] == {"n": 2}


def test_payload_limit_and_missing_function(lam: Any, worker: Callable[..., str]) -> None:
    name = worker("async-limits")
    big = {"x": "a" * 262_144}
    refused = error_of(lambda: send(lam, name, big))
    assert refused["Error"]["Code"] == "RequestTooLargeException"
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert send(lam, name, {"x": "a" * 200_000})["StatusCode"] == 202
    missing = error_of(lambda: send(lam, "nobody", {}))
    assert missing["Error"]["Code"] == "ResourceNotFoundException"


# Event-invoke configs -----------------------------------------------------------------------
def test_event_invoke_config_operations(
    server: Server, lam: Any, worker: Callable[..., str]
) -> None:
    name = worker("async-config")
    target = worker("async-config-target")
    put = lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": ARN + target}},
    )
    assert put["FunctionArn"] == f"{ARN}{name}:$LATEST"
    assert put["MaximumRetryAttempts"] == 1
    assert put["DestinationConfig"] == {
        "OnSuccess": {},
        "OnFailure": {"Destination": ARN + target},
    }
    updated = lam.update_function_event_invoke_config(
        FunctionName=name, MaximumEventAgeInSeconds=120
    )
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (1, 120)
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumEventAgeInSeconds"] == 120
    assert got["DestinationConfig"]["OnFailure"] == {"Destination": ARN + target}
    listed = lam.list_function_event_invoke_configs(FunctionName=name)
    assert [c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]] == [
        f"{ARN}{name}:$LATEST"
    ]
    # Put replaces the whole config.
    replaced = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert "MaximumEventAgeInSeconds" not in replaced
    assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    deleted = lam.delete_function_event_invoke_config(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    missing = error_of(lambda: lam.get_function_event_invoke_config(FunctionName=name))
    assert missing["Error"]["Code"] == "ResourceNotFoundException"
    assert missing["Error"]["Message"] == (
        f"The function {ARN}{name}:$LATEST doesn't have an EventInvokeConfig"
    )
    nothing = error_of(lambda: lam.put_function_event_invoke_config(FunctionName=name))
    assert nothing["Error"]["Message"] == (
        "You must specify at least one of error handling or destination setting."
    )
    for destination in (
        "arn:aws:sns:us-east-1:000000000000:topic",
        "arn:aws:sqs:us-east-1:000000000000:no-such-queue",
        ARN + "no-such-function",
    ):
        refused = error_of(
            lambda d=destination: lam.put_function_event_invoke_config(
                FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": d}}
            )
        )
        assert refused["Error"]["Code"] in (
            "InvalidParameterValueException",
            "ResourceNotFoundException",
        ), refused
    unchecked = server.client(parameter_validation=False)
    for bad in ({"MaximumRetryAttempts": 3}, {"MaximumEventAgeInSeconds": 59}):
        invalid = error_of(
            lambda b=bad: unchecked.put_function_event_invoke_config(FunctionName=name, **b)
        )
        assert invalid["Error"]["Code"] == "ValidationException"
    no_version = error_of(
        lambda: lam.put_function_event_invoke_config(
            FunctionName=name, Qualifier="7", MaximumRetryAttempts=0
        )
    )
    assert no_version["Error"]["Code"] == "ResourceNotFoundException"


# Outcomes -------------------------------------------------------------------------------
def destination_record(recorder: Recorder, target: str, index: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = recorder.wait(target, index + 1)[index]["event"]
    return record


def test_failing_event_is_retried_twice_then_sent_to_on_failure(
    lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker("async-failing")
    target = worker("async-failing-target")
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": ARN + target}}
    )
    accepted = send(lam, name, {"fail": True, "id": "f1"})
    record = destination_record(recorder, target)
    attempts = recorder.of(name)
    assert len(attempts) == 3  # 1 + MaximumRetryAttempts (2)
    first_gap = attempts[1]["at"] - attempts[0]["at"]
    second_gap = attempts[2]["at"] - attempts[1]["at"]
    # AWS: about 1 minute, then about 2 minutes (x 0.01 here).
    assert 0.5 <= first_gap <= 1.2, first_gap
    assert 1.6 <= second_gap / first_gap <= 2.4, (first_gap, second_gap)
    timestamp = record.pop("timestamp")
    assert timestamp.endswith("Z") and "T" in timestamp
    response_payload = record.pop("responsePayload")
    assert response_payload["errorType"] == "ValueError"
    assert response_payload["errorMessage"] == "asked to fail"
    assert record == {
        "version": "1.0",
        "requestContext": {
            "requestId": accepted["ResponseMetadata"]["RequestId"],
            "functionArn": f"{ARN}{name}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"fail": True, "id": "f1"},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
    }
    time.sleep(0.5)
    assert len(recorder.of(name)) == 3  # and no more


def test_retry_attempts_zero_and_on_success(
    lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker("async-once")
    failures, successes = worker("async-once-failures"), worker("async-once-successes")
    lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={
            "OnSuccess": {"Destination": ARN + successes},
            "OnFailure": {"Destination": ARN + failures},
        },
    )
    send(lam, name, {"fail": True})
    failed = destination_record(recorder, failures)
    assert failed["requestContext"]["approximateInvokeCount"] == 1
    assert failed["requestContext"]["condition"] == "RetriesExhausted"
    send(lam, name, {"ok": 1})
    succeeded = destination_record(recorder, successes)
    assert succeeded["requestContext"]["condition"] == "Success"
    assert succeeded["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert succeeded["responsePayload"] == {"done": {"ok": 1}}
    assert len(recorder.of(name)) == 2


def test_reserved_zero_goes_straight_to_the_failure_target(
    lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker("async-disabled")
    target = worker("async-disabled-target")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": ARN + target}}
    )
    started = time.monotonic()
    send(lam, name, {"z": 0})
    record = destination_record(recorder, target)
    assert time.monotonic() - started < 2  # at once, not after an hour of backoff
    assert record["requestContext"]["condition"] == "ZeroReservedConcurrency"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["requestPayload"] == {"z": 0}
    assert "responseContext" not in record
    assert recorder.of(name) == []


def test_throttled_backlog_drains_with_backoff(
    server: Server, lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker("async-backlog")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    for index in range(12):
        send(lam, name, {"i": index, "sleep": 0.1})
    runs = recorder.wait(name, 12, timeout=30)
    assert sorted(r["event"]["i"] for r in runs) == list(range(12))
    starts = sorted(r["at"] for r in runs)
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(starts))  # one at a time
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats", timeout=5) as answer:
        functions = json.loads(answer.read())["concurrency"][0]["Functions"]
    throttles = functions[name]["Throttles"].get(
        "ReservedFunctionConcurrentInvocationLimitExceeded", 0
    )
    # Throttled, and backed off rather than retried in a tight loop.
    assert 1 <= throttles <= 150, throttles


def test_a_backlog_does_not_starve_other_functions(
    lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    busy, quiet = worker("async-busy"), worker("async-quiet")
    lam.put_function_concurrency(FunctionName=busy, ReservedConcurrentExecutions=1)
    for index in range(100):
        send(lam, busy, {"i": index, "sleep": 0.05})
    sent = time.time()
    send(lam, quiet, {"q": 1})
    ran = recorder.wait(quiet, 1)[0]
    assert ran["at"] - sent < 1.0  # not behind 100 x 50 ms of the other's backlog
    assert len(recorder.of(busy)) < 50


def test_old_events_are_dropped_to_the_failure_target(
    lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker("async-aging")
    target = worker("async-aging-target")
    lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumEventAgeInSeconds=60,  # 0.6 s here; the first retry would come at 60 s
        DestinationConfig={"OnFailure": {"Destination": ARN + target}},
    )
    send(lam, name, {"fail": True})
    record = destination_record(recorder, target)
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert len(recorder.of(name)) == 1


def test_dead_letter_queue_and_sqs_destination(
    server: Server, lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    sqs = server.client("sqs")
    dead = sqs.create_queue(QueueName="async-dlq")["QueueUrl"]
    failures = sqs.create_queue(QueueName="async-failures")["QueueUrl"]

    def arn_of(url: str) -> str:
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    name = worker("async-dead-letter", DeadLetterConfig={"TargetArn": arn_of(dead)})
    lam.put_function_event_invoke_config(
        FunctionName=name,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": arn_of(failures)}},
    )
    send(lam, name, {"fail": True, "id": "dlq"})

    def receive(url: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = sqs.receive_message(
            QueueUrl=url, WaitTimeSeconds=10, MaxNumberOfMessages=10
        ).get("Messages", [])
        return messages

    dead_letters = receive(dead)
    assert [json.loads(m["Body"]) for m in dead_letters] == [{"fail": True, "id": "dlq"}]
    records = [json.loads(m["Body"]) for m in receive(failures)]
    assert len(records) == 1
    assert records[0]["requestContext"]["condition"] == "RetriesExhausted"
    assert records[0]["requestPayload"] == {"fail": True, "id": "dlq"}
    assert records[0]["responseContext"]["functionError"] == "Unhandled"


def prometheus_value(server: Server, metric: str, function: str) -> float:
    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(metric + "{") and f'resource="{function}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_async_metrics_count_received_dropped_and_deliveries(
    server: Server, lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker(
        "async-metrics",
        DeadLetterConfig={"TargetArn": "arn:aws:sqs:us-east-1:000000000000:no-such-dlq"},
    )
    for index in range(3):
        send(lam, name, {"i": index})
    recorder.wait(name, 3)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    send(lam, name, {"i": 3})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if prometheus_value(server, "aws_lambda_dead_letter_errors_total", name) >= 1:
            break
        time.sleep(0.05)
    assert prometheus_value(server, "aws_lambda_async_events_received_total", name) == 4
    assert prometheus_value(server, "aws_lambda_async_events_dropped_total", name) == 1
    assert prometheus_value(server, "aws_lambda_async_event_age_milliseconds_count", name) == 3
    assert prometheus_value(server, "aws_lambda_dead_letter_errors_total", name) == 1


def test_qualified_async_invoke_runs_the_version(
    lam: Any, worker: Callable[..., str], recorder: Recorder
) -> None:
    name = worker("async-versioned")
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    send(lam, name, {"v": 1}, Qualifier="live")
    assert recorder.wait(name, 1)[0]["event"] == {"v": 1}


# Crash safety ---------------------------------------------------------------------------
def test_no_accepted_event_is_lost_to_a_crash(tmp_path: Path, recorder: Recorder) -> None:
    first = Server(tmp_path / "data", args=ARGS).start()
    name = "async-crash"
    total = 150
    try:
        client = first.client()
        python_function(
            client,
            name,
            WORKER,
            Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
        )
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        # 80 ms each, two at a time: about 6 s of work, so most are still queued at the
        # kill however slowly the sends go (at 20 ms an event, a loaded machine's sends were
        # slower than the work and every event had run).
        for index in range(total):
            send(client, name, {"i": index, "sleep": 0.08})
    finally:
        first.kill()  # SIGKILL, with most events still queued
    before = {r["event"]["i"] for r in recorder.of(name)}
    assert len(before) < total, "the crash came too late to test anything"
    second = Server(tmp_path / "data", args=ARGS).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if {r["event"]["i"] for r in recorder.of(name)} == set(range(total)):
                break
            time.sleep(0.1)
        ran = [r["event"]["i"] for r in recorder.of(name)]
        assert set(ran) == set(range(total)), f"lost: {sorted(set(range(total)) - set(ran))}"
        duplicates = len(ran) - total
        assert duplicates <= 4, duplicates  # only those in flight at the kill (2 at a time)
    finally:
        second.stop()

"""The scaling rate (new environments per window) and the request rate, end to end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

SLEEPER = """
import os, time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}
"""


def start(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Server:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    # Environments are counted by the host pids their functions report: no PID namespaces.
    return Server(data_dir, args=[*args, "--isolation", "none"]).start()


@pytest.fixture(scope="module")
def bursty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # 3 new environments per 10 platform seconds; time runs 5x fast, so 2 s of real time.
    running = start(tmp_path_factory, "--burst", "3", "--burst-window", "10", "--time-scale", "0.2")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # 20 concurrency with 0.1 request/s per unit: 2 invokes/s shared, 1/s for reserved 10.
    running = start(
        tmp_path_factory,
        "--account-concurrency",
        "20",
        "--unreserved-floor",
        "5",
        "--request-rate",
        "0.1",
    )
    yield running
    running.stop()


def invoke_all(server: Server, name: str, count: int, sleep: float) -> list[dict[str, Any]]:
    outcomes: list[dict[str, Any]] = [{} for _ in range(count)]
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        client = server.client()
        barrier.wait(20)
        try:
            response = client.invoke(
                FunctionName=name, Payload=json.dumps({"sleep": sleep}).encode()
            )
            outcomes[index] = {"ok": json.loads(response["Payload"].read())}
        except ClientError as error:
            outcomes[index] = {"error": error.response}

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(outcomes)
    return outcomes


def test_scaling_rate_bounds_new_environments_not_reuse(bursty: Server) -> None:
    client = bursty.client()
    python_function(client, "burst", SLEEPER)
    first = invoke_all(bursty, "burst", 6, sleep=0.5)
    ran = [o["ok"]["pid"] for o in first if "ok" in o]
    assert len(ran) == 3  # only 3 new environments in the window
    refused = [o["error"] for o in first if "error" in o]
    assert len(refused) == 3
    for error in refused:
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert error["Reason"] == "ConcurrentInvocationLimitExceeded"
        assert int(error["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
    # Reusing a warm environment takes no token, even with the bucket empty.
    for _ in range(3):
        again = client.invoke(FunctionName="burst", Payload=b"{}")
        assert json.loads(again["Payload"].read())["pid"] in ran
    # Once the window has refilled, 3 warm + 3 new environments serve 6 at once.
    time.sleep(2.2)
    second = invoke_all(bursty, "burst", 6, sleep=0.5)
    assert all("ok" in o for o in second), second
    assert len({o["ok"]["pid"] for o in second}) == 6


def test_the_bucket_does_not_bank_unused_capacity(bursty: Server) -> None:
    client = bursty.client()
    python_function(client, "banked", SLEEPER)
    time.sleep(4.5)  # more than two windows of idleness: still only 3 new environments
    outcomes = invoke_all(bursty, "banked", 6, sleep=0.5)
    assert sum("ok" in o for o in outcomes) == 3


def test_request_rate_of_a_reserved_function(rated: Server) -> None:
    client = rated.client()
    python_function(client, "rate-reserved", SLEEPER)
    client.put_function_concurrency(FunctionName="rate-reserved", ReservedConcurrentExecutions=10)
    started = time.monotonic()
    outcomes: list[str] = []
    for _ in range(4):
        try:
            client.invoke(FunctionName="rate-reserved", Payload=b"{}")
            outcomes.append("ok")
        except client.exceptions.TooManyRequestsException as error:
            outcomes.append(error.response["Reason"])
    elapsed = time.monotonic() - started
    assert outcomes.count("ok") <= 1 + int(elapsed * 1) + 1  # capacity 1, refilled at 1/s
    assert "ReservedFunctionInvocationRateLimitExceeded" in outcomes
    time.sleep(1.1)
    assert client.invoke(FunctionName="rate-reserved", Payload=b"{}")["StatusCode"] == 200


def test_request_rate_of_an_unreserved_function(rated: Server) -> None:
    client = rated.client()
    python_function(client, "rate-shared", SLEEPER)
    reasons: list[str] = []
    for _ in range(6):
        try:
            client.invoke(FunctionName="rate-shared", Payload=b"{}")
            reasons.append("ok")
        except client.exceptions.TooManyRequestsException as error:
            reasons.append(error.response["Reason"])
    assert "FunctionInvocationRateLimitExceeded" in reasons
    assert reasons[0] == "ok"


def test_request_rate_can_be_turned_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start(
        tmp_path_factory,
        "--account-concurrency",
        "20",
        "--unreserved-floor",
        "5",
        "--request-rate",
        "0",
    )
    try:
        client = server.client()
        python_function(client, "unlimited", SLEEPER)
        client.put_function_concurrency(FunctionName="unlimited", ReservedConcurrentExecutions=1)
        for _ in range(30):
            assert client.invoke(FunctionName="unlimited", Payload=b"{}")["StatusCode"] == 200
    finally:
        server.stop()


def test_bad_limit_flags_are_refused(tmp_path: Path) -> None:
    for args in (
        ["--account-concurrency", "0"],
        ["--account-concurrency", "50", "--unreserved-floor", "100"],
        ["--burst", "0"],
        ["--request-rate", "-1"],
    ):
        with pytest.raises(RuntimeError, match="lamina serve exited"):
            Server(tmp_path / "data", args=args).start()

"""Durable functions end to end: the real SDK against a real server, with the clock scaled.

- waits of an hour and a day finish in seconds at time scale 0.00005;
- 100 executions suspended in waits hold no concurrency at all (the counting service and
  GetAccountSettings agree), and all complete when their timers fire, their
  re-invocations throttled by an account limit of 20 and retried, none lost;
- `kill -9` of the server during a workflow (in its wait, then with its callback
  pending) resumes it after a restart: each step ran once and the history is that of a
  run without a crash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.durable.sdk import sdk_files
from tests.helpers import PYTHON_RUNTIME, ROLE, Server, make_zip

SDK_PRELUDE = """
import os
from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration
"""


def durable_function(lam: Any, server: Server, name: str, body: str, **extra: Any) -> None:
    variables = dict(extra.pop("variables", {}))  # Lamina gives AWS_ENDPOINT_URL itself
    lam.create_function(
        FunctionName=name,
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({**sdk_files(), "app.py": SDK_PRELUDE + body})},
        Timeout=60,
        MemorySize=512,  # boto3 and the SDK in each environment
        Environment={"Variables": variables},
        DurableConfig={"ExecutionTimeout": 10 * 86_400, "RetentionPeriodInDays": 1},
        **extra,
    )


def execution_arn(response: dict[str, Any]) -> str:
    arn: str = response["ResponseMetadata"]["HTTPHeaders"]["x-amz-durable-execution-arn"]
    return arn


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def events(lam: Any, arn: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"DurableExecutionArn": arn, "IncludeExecutionData": True}
    while True:
        page = lam.get_durable_execution_history(**kwargs)
        found += page["Events"]
        if not page.get("NextMarker"):
            return found
        kwargs["Marker"] = page["NextMarker"]


def status(lam: Any, arn: str) -> str:
    value: str = lam.get_durable_execution(DurableExecutionArn=arn)["Status"]
    return value


def stats(server: Server) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats", timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


# Long waits ------------------------------------------------------------------------------
LONG_WAITS = """
@durable_execution
def handler(event, context: DurableContext):
    context.wait(Duration.from_hours(1), name="an-hour")
    context.step(lambda _: "between", name="between")
    context.wait(Duration.from_days(1), name="a-day")
    return "rested"
"""


def test_hour_and_day_waits_finish_in_seconds_at_a_small_time_scale(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", args=["--time-scale", "0.00005"]).start()
    try:
        lam = server.client()
        durable_function(lam, server, "long-waits", LONG_WAITS)
        started = time.monotonic()
        response = lam.invoke(FunctionName="long-waits", Payload=b"{}")
        took = time.monotonic() - started
        assert response["Payload"].read() == b'"rested"'
        assert response.get("FunctionError") is None
        arn = execution_arn(response)
        assert status(lam, arn) == "SUCCEEDED"
        waits = {
            e["Name"]: e["WaitStartedDetails"]["Duration"]
            for e in events(lam, arn)
            if e["EventType"] == "WaitStarted"
        }
        assert waits == {"an-hour": 3600, "a-day": 86_400}
        # 90,000 platform seconds at 0.00005 are 4.5 s of real time, plus the invocations.
        assert 4.25 < took < 30, took
        print(f"\nan hour and a day of waits at time scale 0.00005: {took:.1f} s")

        # Its retention period (one day: 4.3 s here) over, the execution is removed.
        def gone() -> bool:
            try:
                lam.get_durable_execution(DurableExecutionArn=arn)
            except lam.exceptions.ResourceNotFoundException:
                return True
            return False

        assert not gone()
        wait_until(gone, 30, "the end of the retention period", every=0.5)
        listed = lam.list_durable_executions_by_function(FunctionName="long-waits")
        assert listed["DurableExecutions"] == []
    finally:
        server.stop()


# Suspended executions hold no concurrency --------------------------------------------------
SUSPENDING = """
@durable_execution
def handler(event, context: DurableContext):
    value = context.step(lambda _: event["n"] * 2, name="double")
    context.wait(Duration.from_seconds(2000), name="rest")
    return value
"""


COUNT = 100


@pytest.mark.timeout(240)
def test_100_suspended_executions_hold_no_concurrency_and_all_complete(tmp_path: Path) -> None:
    # 5 slots for 100 executions (a reservation of 5 in an account of 20): the 100 first
    # invocations and the 100 re-invocations when the timers fire are throttled, wait and
    # retry. (The wait is 20 s of real time at this scale: all must be suspended before the
    # first timer fires: at load 21 on 2 cores, 5.4 s passed between the first suspension
    # and the last.)
    args = ["--time-scale", "0.01", "--account-concurrency", "20", "--unreserved-floor", "10"]
    server = Server(tmp_path / "data", args=args).start()
    try:
        lam = server.client()
        durable_function(lam, server, "suspender", SUSPENDING)
        lam.put_function_concurrency(FunctionName="suspender", ReservedConcurrentExecutions=5)
        arns = []
        for n in range(COUNT):
            response = lam.invoke(
                FunctionName="suspender", InvocationType="Event", Payload=json.dumps({"n": n})
            )
            assert response["StatusCode"] == 202
            arns.append(execution_arn(response))
        assert len(set(arns)) == COUNT

        def all_suspended() -> bool:
            durable = stats(server)["durable"]
            return bool(durable["Suspended"] == COUNT and durable["Invoking"] == 0)

        wait_until(all_suspended, 25, f"{COUNT} suspended executions")
        account = stats(server)["concurrency"][0]
        assert account["ConcurrentExecutions"] == 0
        assert account["Functions"]["suspender"]["ConcurrentExecutions"] == 0
        settings = lam.get_account_settings()["AccountLimit"]
        assert settings["ConcurrentExecutions"] == account["AccountLimit"] == 20
        assert settings["UnreservedConcurrentExecutions"] == 15
        assert account["UnreservedConcurrentExecutions"] == 15
        assert {status(lam, arn) for arn in arns[::10]} == {"RUNNING"}
        throttled_at_start = stats(server)["durable"]["ThrottledInvocations"]
        assert throttled_at_start > 0  # 100 first invocations through 5 slots

        wait_until(lambda: stats(server)["durable"]["Running"] == 0, 120, "all completions", 0.5)
        results = [lam.get_durable_execution(DurableExecutionArn=arn) for arn in arns]
        assert [r["Status"] for r in results] == ["SUCCEEDED"] * COUNT
        assert [json.loads(r["Result"]) for r in results] == [n * 2 for n in range(COUNT)]
        for arn in arns[::25]:
            types = [e["EventType"] for e in events(lam, arn)]
            assert types == [
                "ExecutionStarted",
                "StepStarted",
                "StepSucceeded",
                "WaitStarted",
                "InvocationCompleted",
                "WaitSucceeded",
                "InvocationCompleted",
                "ExecutionSucceeded",
            ]
        peak = stats(server)["concurrency"][0]
        assert peak["ConcurrentExecutions"] == 0
        print(
            f"\n{COUNT} suspended, 0 concurrent; re-invocations throttled and retried: "
            f"{stats(server)['durable']['ThrottledInvocations']}"
        )
    finally:
        server.stop()


# kill -9 in the middle of a workflow -------------------------------------------------------
WORKFLOW = """
from pathlib import Path

def ran(name):
    with open(Path(os.environ["RUNS"]) / os.environ["AWS_LAMBDA_FUNCTION_NAME"], "a") as out:
        out.write(name + "\\n")
    return name

@durable_execution
def handler(event, context: DurableContext):
    a = context.step(lambda _: ran("a"), name="a")
    b = context.step(lambda _: ran("b"), name="b")
    context.wait(Duration.from_seconds(30), name="pause")
    approval = context.create_callback(name="approval")
    answer = approval.result()
    c = context.step(lambda _: ran("c"), name="c")
    return [a, b, answer, c]
"""


def _shape(history: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["EventId"], e["EventType"], e.get("Name"), e.get("SubType")) for e in history]


def _callback_id(lam: Any, arn: str) -> str | None:
    for event in events(lam, arn):
        if event["EventType"] == "CallbackStarted":
            callback_id: str = event["CallbackStartedDetails"]["CallbackId"]
            return callback_id
    return None


def _suspended_after(lam: Any, arn: str, event_type: str) -> bool:
    history = events(lam, arn)
    types = [e["EventType"] for e in history]
    return event_type in types and types[-1] == "InvocationCompleted"


@pytest.mark.timeout(180)
def test_kill_9_during_a_workflow_resumes_with_each_step_run_once(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    # Step bodies record each run in a host file: environments are plain processes here.
    args = ["--time-scale", "0.1", "--isolation", "none"]
    server = Server(tmp_path / "data", args=args).start()
    lam = server.client()
    try:
        for name in ("crashing", "steady"):
            durable_function(lam, server, name, WORKFLOW, variables={"RUNS": str(runs)})

        # The same workflow without a crash, for comparison.
        steady = execution_arn(lam.invoke(FunctionName="steady", InvocationType="Event"))
        wait_until(lambda: _suspended_after(lam, steady, "CallbackStarted"), 30, "a callback")
        callback = _callback_id(lam, steady)
        lam.send_durable_execution_callback_success(CallbackId=callback, Result=b"yes")
        wait_until(lambda: status(lam, steady) == "SUCCEEDED", 30, "the steady run")

        arn = execution_arn(lam.invoke(FunctionName="crashing", InvocationType="Event"))
        wait_until(lambda: _suspended_after(lam, arn, "WaitStarted"), 30, "the wait")
        server.kill()  # SIGKILL while the execution waits out its timer
        server = Server(tmp_path / "data", args=args, port=server.port).start()
        lam = server.client()
        wait_until(lambda: _suspended_after(lam, arn, "CallbackStarted"), 30, "the callback")
        server.kill()  # and again while its callback is pending
        server = Server(tmp_path / "data", args=args, port=server.port).start()
        lam = server.client()
        assert status(lam, arn) == "RUNNING"
        callback = _callback_id(lam, arn)
        assert callback is not None
        lam.send_durable_execution_callback_success(CallbackId=callback, Result=b"yes")
        wait_until(lambda: status(lam, arn) == "SUCCEEDED", 30, "the resumed run")

        result = json.loads(lam.get_durable_execution(DurableExecutionArn=arn)["Result"])
        assert result == ["a", "b", "yes", "c"]
        assert (runs / "crashing").read_text().split() == ["a", "b", "c"]  # each step once
        assert (runs / "steady").read_text().split() == ["a", "b", "c"]
        assert _shape(events(lam, arn)) == _shape(events(lam, steady))
    finally:
        server.stop()

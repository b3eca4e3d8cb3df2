"""The durable execution API as a client and a function see it: the invocation event,
checkpoint tokens (stale ones refused, ClientToken replays), paging, names, events of
AWS's types, stop / pause / resume / delete, callbacks, retries and invalid answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_durable import (
    durable_function,
    events,
    execution_arn,
    status,
    wait_until,
)
from tests.helpers import PYTHON_RUNTIME, ROLE, Server, make_zip

RAW = """
import json, os
import boto3
from botocore.exceptions import ClientError

lam = boto3.client("lambda")


def many(arn, token, state):
    if len(state["Operations"]) == 1:  # the first invocation: 1,100 steps and a wait
        updates = []
        for n in range(1100):
            updates.append({"Id": f"s{n}", "Type": "STEP", "Action": "START"})
            updates.append({"Id": f"s{n}", "Type": "STEP", "Action": "SUCCEED", "Payload": "1"})
        updates.append({"Id": "w", "Type": "WAIT", "Action": "START",
                        "WaitOptions": {"WaitSeconds": 1}})
        lam.checkpoint_durable_execution(
            DurableExecutionArn=arn, CheckpointToken=token, Updates=updates
        )
        return {"Status": "PENDING"}
    ids = [op["Id"] for op in state["Operations"]]
    report = {"in_event": len(ids), "marker": bool(state.get("NextMarker"))}
    marker = state.get("NextMarker")
    while marker:
        page = lam.get_durable_execution_state(
            DurableExecutionArn=arn, CheckpointToken=token, Marker=marker
        )
        ids += [op["Id"] for op in page["Operations"]]
        marker = page.get("NextMarker")
    report.update(total=len(ids), unique=len(set(ids)))
    return {"Status": "SUCCEEDED", "Result": json.dumps(report)}


def handler(event, context):
    arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
    ops = event["InitialExecutionState"]["Operations"]
    mode = json.loads(ops[0]["ExecutionDetails"]["InputPayload"])["mode"]
    if mode == "pending":
        return {"Status": "PENDING"}
    if mode == "crash":
        raise RuntimeError("the handler broke")
    if mode == "many":
        return many(arn, token, event["InitialExecutionState"])
    report = {
        "keys": sorted(event),
        "first": [ops[0]["Type"], ops[0]["Id"] == arn.rsplit("/", 1)[1]],
        "millis": isinstance(ops[0]["StartTimestamp"], int),
    }
    start = [{"Id": "s1", "Type": "STEP", "Action": "START", "SubType": "Step", "Name": "probe"}]
    first = lam.checkpoint_durable_execution(
        DurableExecutionArn=arn, CheckpointToken=token, Updates=start, ClientToken="c-1"
    )
    again = lam.checkpoint_durable_execution(
        DurableExecutionArn=arn, CheckpointToken=token, Updates=start, ClientToken="c-1"
    )
    report["replayed"] = again["CheckpointToken"] == first["CheckpointToken"]
    report["returned"] = [op["Id"] for op in first["NewExecutionState"]["Operations"]]
    try:
        lam.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken=token, Updates=[])
        report["stale"] = "accepted"
    except ClientError as error:
        report["stale"] = error.response["Error"]["Code"]
    token = first["CheckpointToken"]
    page = lam.get_durable_execution_state(
        DurableExecutionArn=arn, CheckpointToken=token, MaxItems=1
    )
    rest = lam.get_durable_execution_state(
        DurableExecutionArn=arn, CheckpointToken=token, Marker=page["NextMarker"]
    )
    report["pages"] = [
        [op["Id"] for op in page["Operations"]], [op["Id"] for op in rest["Operations"]]
    ]
    done = [{"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Payload": '"done"'}]
    last = lam.checkpoint_durable_execution(
        DurableExecutionArn=arn, CheckpointToken=token, Updates=done
    )
    report["changed"] = [
        [op["Id"], op["Status"], op["StepDetails"]["Result"]]
        for op in last["NewExecutionState"]["Operations"]
    ]
    try:
        lam.checkpoint_durable_execution(
            DurableExecutionArn=arn, CheckpointToken=last["CheckpointToken"],
            Updates=[{"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Payload": '"twice"'}],
        )
        report["closed_twice"] = "accepted"
    except ClientError as error:
        report["closed_twice"] = error.response["Error"]["Message"]
    return {"Status": "SUCCEEDED", "Result": json.dumps(report)}
"""

SLEEPER = """
@durable_execution
def handler(event, context: DurableContext):
    context.step(lambda _: "before", name="before")
    context.wait(Duration.from_seconds(event.get("seconds", 36000)), name="sleep")
    return {"slept": event.get("seconds", 36000)}
"""

APPROVAL = """
@durable_execution
def handler(event, context: DurableContext):
    return context.create_callback(name="approval").result()
"""

CHATTY = """
@durable_execution
def handler(event, context: DurableContext):
    context.logger.info("workflow begins")
    value = context.step(lambda step: step.logger.info("inside the step") or 7, name="seven")
    context.logger.info("workflow ends")
    return value
"""

CHAINED = """
@durable_execution
def handler(event, context: DurableContext):
    return context.invoke("plain-target", {"from": "durable"}, name="call-plain")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Scale 0.1: a 20 s wait is 2 s; the 5 s between retried invocations is 0.5 s.
    running = Server(
        tmp_path_factory.mktemp("durable-api") / "data", args=["--time-scale", "0.1"]
    ).start()
    lam = running.client()
    lam.create_function(
        FunctionName="raw",
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": RAW})},
        Timeout=30,
        MemorySize=512,
        DurableConfig={"ExecutionTimeout": 600},
    )
    durable_function(lam, running, "sleeper", SLEEPER)
    durable_function(lam, running, "approval", APPROVAL)
    durable_function(lam, running, "chained", CHAINED)
    durable_function(lam, running, "chatty", CHATTY, LoggingConfig={"LogFormat": "JSON"})
    lam.create_function(
        FunctionName="plain-target",
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return {'got': e}\n"})},
    )
    yield running
    running.stop()


@pytest.fixture
def lam(server: Server) -> Any:
    return server.client()


def invoke_raw(lam: Any, mode: str) -> tuple[str, dict[str, Any]]:
    response = lam.invoke(FunctionName="raw", Payload=json.dumps({"mode": mode}))
    return execution_arn(response), response


def test_the_invocation_event_and_the_checkpoint_api(lam: Any) -> None:
    arn, response = invoke_raw(lam, "probe")
    assert response["StatusCode"] == 200 and response.get("FunctionError") is None
    assert response["ExecutedVersion"] == "$LATEST"
    report = json.loads(response["Payload"].read())
    assert report["keys"] == ["CheckpointToken", "DurableExecutionArn", "InitialExecutionState"]
    assert report["first"] == ["EXECUTION", True]
    assert report["millis"] is True  # the event's timestamps are epoch milliseconds
    assert report["replayed"] is True  # the same ClientToken and token: the same answer
    assert report["returned"] == ["s1"]  # only what changed
    assert report["stale"] == "InvalidParameterValueException"
    assert report["pages"][0] == [arn.rsplit("/", 1)[1]] and report["pages"][1] == ["s1"]
    assert report["changed"] == [["s1", "SUCCEEDED", '"done"']]
    assert report["closed_twice"] == "Invalid current STEP state to close."
    assert [e["EventType"] for e in events(lam, arn)] == [
        "ExecutionStarted",
        "StepStarted",
        "StepSucceeded",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ]
    assert arn.startswith(
        "arn:aws:lambda:us-east-1:000000000000:function:raw:$LATEST/durable-execution/"
    )


def test_pending_with_nothing_pending_fails_the_execution(lam: Any) -> None:
    arn, response = invoke_raw(lam, "pending")
    assert response.get("FunctionError") == "Unhandled"
    details = lam.get_durable_execution(DurableExecutionArn=arn)
    assert details["Status"] == "FAILED"
    assert "no pending operations" in details["Error"]["ErrorMessage"]
    completed = [e for e in events(lam, arn) if e["EventType"] == "InvocationCompleted"]
    assert len(completed) == 3  # tried three times, as the service does


def test_failed_invocations_are_retried_then_fail_the_execution(lam: Any) -> None:
    arn, response = invoke_raw(lam, "crash")
    body = json.loads(response["Payload"].read())
    assert response.get("FunctionError") == "Unhandled"
    assert body["errorType"] == "RuntimeError" and body["errorMessage"] == "the handler broke"
    history = events(lam, arn)
    completed = [e for e in history if e["EventType"] == "InvocationCompleted"]
    assert len(completed) == 5
    assert all(
        e["InvocationCompletedDetails"]["Error"]["Payload"]["ErrorType"] == "RuntimeError"
        for e in completed
    )
    assert history[-1]["EventType"] == "ExecutionFailed"


def test_names_make_starts_idempotent(lam: Any) -> None:
    first = lam.invoke(
        FunctionName="sleeper",
        InvocationType="Event",
        Payload=b"{}",
        DurableExecutionName="nightly-1",
    )
    again = lam.invoke(
        FunctionName="sleeper",
        InvocationType="Event",
        Payload=b"{}",
        DurableExecutionName="nightly-1",
    )
    assert first["StatusCode"] == again["StatusCode"] == 202
    assert execution_arn(first) == execution_arn(again)
    assert "/durable-execution/nightly-1/" in execution_arn(first)
    with pytest.raises(ClientError) as raised:
        lam.invoke(
            FunctionName="sleeper",
            InvocationType="Event",
            Payload=b'{"seconds": 1}',
            DurableExecutionName="nightly-1",
        )
    assert raised.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    listed = lam.list_durable_executions_by_function(
        FunctionName="sleeper", DurableExecutionName="nightly-1"
    )["DurableExecutions"]
    assert [e["DurableExecutionArn"] for e in listed] == [execution_arn(first)]
    lam.stop_durable_execution(DurableExecutionArn=execution_arn(first))


def test_event_invokes_return_at_once_and_stop_and_delete(lam: Any) -> None:
    started = time.monotonic()
    response = lam.invoke(FunctionName="sleeper", InvocationType="Event", Payload=b"{}")
    assert time.monotonic() - started < 2 and response["StatusCode"] == 202
    arn = execution_arn(response)
    wait_until(lambda: any(e["EventType"] == "WaitStarted" for e in events(lam, arn)), 30, "wait")
    running = lam.list_durable_executions_by_function(FunctionName="sleeper", Statuses=["RUNNING"])[
        "DurableExecutions"
    ]
    assert arn in [e["DurableExecutionArn"] for e in running]
    with pytest.raises(ClientError) as conflict:
        lam.delete_durable_execution(DurableExecutionArn=arn)
    assert conflict.value.response["Error"]["Code"] == "ResourceConflictException"
    stopped = lam.stop_durable_execution(
        DurableExecutionArn=arn, Error={"ErrorType": "Operator", "ErrorMessage": "enough"}
    )
    assert stopped["StopTimestamp"]
    details = lam.get_durable_execution(DurableExecutionArn=arn)
    assert details["Status"] == "STOPPED" and details["Error"]["ErrorMessage"] == "enough"
    last = events(lam, arn)[-1]
    assert last["EventType"] == "ExecutionStopped"
    assert last["ExecutionStoppedDetails"]["Error"]["Payload"]["ErrorType"] == "Operator"
    lam.delete_durable_execution(DurableExecutionArn=arn)
    with pytest.raises(ClientError) as gone:
        lam.get_durable_execution(DurableExecutionArn=arn)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_paused_execution_is_not_invoked_until_resumed(lam: Any) -> None:
    arn = execution_arn(
        lam.invoke(FunctionName="sleeper", InvocationType="Event", Payload=b'{"seconds": 20}')
    )
    wait_until(lambda: events(lam, arn)[-1]["EventType"] == "InvocationCompleted", 30, "suspend")
    lam.pause_durable_execution(DurableExecutionArn=arn, Reason="maintenance")
    paused = lam.get_durable_execution(DurableExecutionArn=arn)
    assert paused["Status"] == "PAUSED"
    assert paused["PauseDetails"]["Reason"] == "maintenance"
    time.sleep(3)  # the 2 s wait has fired meanwhile: no invocation while paused
    history = events(lam, arn)
    assert [e["EventType"] for e in history].count("InvocationCompleted") == 1
    assert "WaitSucceeded" in [e["EventType"] for e in history]
    lam.resume_durable_execution(DurableExecutionArn=arn)
    wait_until(lambda: status(lam, arn) == "SUCCEEDED", 30, "the resumed execution")
    types = [e["EventType"] for e in events(lam, arn)]
    assert "ExecutionPaused" in types and "ExecutionResumed" in types


def test_history_pages_in_order_and_in_reverse(lam: Any) -> None:
    response = lam.invoke(FunctionName="sleeper", Payload=b'{"seconds": 1}')
    arn = execution_arn(response)
    assert json.loads(response["Payload"].read()) == {"slept": 1}
    everything = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    ids = [e["EventId"] for e in everything]
    assert ids == list(range(1, len(ids) + 1))
    paged: list[int] = []
    kwargs: dict[str, Any] = {"DurableExecutionArn": arn, "MaxItems": 3}
    while True:
        page = lam.get_durable_execution_history(**kwargs)
        assert len(page["Events"]) <= 3
        paged += [e["EventId"] for e in page["Events"]]
        if not page.get("NextMarker"):
            break
        kwargs["Marker"] = page["NextMarker"]
    assert paged == ids
    reverse = lam.get_durable_execution_history(DurableExecutionArn=arn, ReverseOrder=True)
    assert [e["EventId"] for e in reverse["Events"]] == ids[::-1]
    step = next(e for e in everything if e["EventType"] == "StepSucceeded")
    assert step["StepSucceededDetails"]["Result"] == {"Truncated": True}  # data not asked for
    with_data = lam.get_durable_execution_history(
        DurableExecutionArn=arn, IncludeExecutionData=True
    )
    step = next(e for e in with_data["Events"] if e["EventType"] == "StepSucceeded")
    assert step["StepSucceededDetails"]["Result"] == {"Payload": '"before"', "Truncated": False}


def test_callbacks_succeed_fail_and_refuse_what_is_not_theirs(lam: Any) -> None:
    with pytest.raises(ClientError) as unknown:
        lam.send_durable_execution_callback_success(CallbackId="bm90LWEtY2FsbGJhY2s=", Result=b"1")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"

    def callback_of(arn: str) -> str | None:
        for event in events(lam, arn):
            if event["EventType"] == "CallbackStarted":
                callback: str = event["CallbackStartedDetails"]["CallbackId"]
                return callback
        return None

    ok = execution_arn(lam.invoke(FunctionName="approval", InvocationType="Event"))
    callback = wait_until(lambda: callback_of(ok), 30, "a callback")
    lam.send_durable_execution_callback_heartbeat(CallbackId=callback)
    lam.send_durable_execution_callback_success(CallbackId=callback, Result=b"approved")
    wait_until(lambda: status(lam, ok) == "SUCCEEDED", 30, "success")
    with pytest.raises(ClientError) as twice:
        lam.send_durable_execution_callback_success(CallbackId=callback, Result=b"again")
    assert twice.value.response["Error"]["Code"] == "InvalidParameterValueException"

    bad = execution_arn(lam.invoke(FunctionName="approval", InvocationType="Event"))
    callback = wait_until(lambda: callback_of(bad), 30, "a callback")
    lam.send_durable_execution_callback_failure(
        CallbackId=callback, Error={"ErrorType": "Rejected", "ErrorMessage": "no"}
    )
    wait_until(lambda: status(lam, bad) == "FAILED", 30, "failure")
    failed = next(e for e in events(lam, bad) if e["EventType"] == "CallbackFailed")
    assert failed["CallbackFailedDetails"]["Error"]["Payload"] == {
        "ErrorType": "Rejected",
        "ErrorMessage": "no",
    }


def test_a_chained_invoke_of_a_plain_function_feeds_back_its_result(lam: Any) -> None:
    response = lam.invoke(FunctionName="chained", Payload=b"{}")
    assert json.loads(response["Payload"].read()) == {"got": {"from": "durable"}}
    history = events(lam, execution_arn(response))
    started = next(e for e in history if e["EventType"] == "ChainedInvokeStarted")
    assert started["Name"] == "call-plain"
    assert started["ChainedInvokeStartedDetails"]["FunctionName"] == "plain-target"
    assert "ChainedInvokeSucceeded" in [e["EventType"] for e in history]


def test_sdk_log_lines_carry_the_execution_arn_for_json_filter_patterns(server: Server) -> None:
    lam = server.client()
    logs = server.client("logs")
    arns = [execution_arn(lam.invoke(FunctionName="chatty", Payload=b"{}")) for _ in range(2)]

    def messages(pattern: str) -> list[str]:
        found = logs.filter_log_events(logGroupName="/aws/lambda/chatty", filterPattern=pattern)
        return [json.loads(e["message"])["message"] for e in found["events"]]

    expected = ["workflow begins", "inside the step", "workflow ends"]
    for arn in arns:
        # Every line of the execution's invocations (botocore's own too) names it...
        during = messages(f'{{ $.durableExecutionArn = "{arn}" }}')
        assert [m for m in during if m in expected] == expected
        # ...and the SDK's logger adds executionArn to its own lines.
        assert messages(f'{{ $.executionArn = "{arn}" && $.level = "INFO" }}') == expected
    other = arns[0].rsplit("/", 1)[0] + "/not-this-one"
    assert messages(f'{{ $.durableExecutionArn = "{other}" }}') == []


def test_an_event_with_more_operations_than_a_page_is_continued_by_the_state_api(
    lam: Any,
) -> None:
    _, response = invoke_raw(lam, "many")
    report = json.loads(response["Payload"].read())
    # 1,100 steps, a wait and the execution: 1,000 in the event, the rest on the next page.
    assert report == {"in_event": 1000, "marker": True, "total": 1102, "unique": 1102}

"""The durable execution state machine over plain records: checks, transitions, history."""

from __future__ import annotations

from typing import Any

import pytest

from lamina.control.durable import machine
from lamina.control.durable.model import Execution, new_execution, split_arn
from lamina.errors import AwsError

NOW = 1_700_000_000.0


def execution(timeout: int = 3600, scale: float = 1.0) -> Execution:
    return new_execution(
        "000000000000",
        "us-east-1",
        "fn",
        "$LATEST",
        None,
        '{"x": 1}',
        NOW,
        timeout,
        1,
        timeout * scale,
    )


def update(op_id: str, kind: str, action: str, **extra: Any) -> dict[str, Any]:
    return {"Id": op_id, "Type": kind, "Action": action, **extra}


def refused(ex: Execution, updates: list[dict[str, Any]]) -> str:
    with pytest.raises(AwsError) as raised:
        machine.apply_checkpoint(ex, updates, NOW, 1.0)
    assert raised.value.code == "InvalidParameterValueException"
    return raised.value.message


def test_a_new_execution_has_its_execution_operation_and_first_event() -> None:
    ex = execution()
    assert split_arn(ex.arn) == (
        "arn:aws:lambda:us-east-1:000000000000:function:fn",
        "$LATEST",
        ex.name,
        ex.exec_id,
    )
    assert ex.ops[ex.exec_id]["Type"] == "EXECUTION"
    assert ex.ops[ex.exec_id]["ExecutionDetails"] == {"InputPayload": '{"x": 1}'}
    assert [e["EventType"] for e in ex.events] == ["ExecutionStarted"]
    assert ex.events[0]["ExecutionStartedDetails"]["ExecutionTimeout"] == 3600


def test_a_step_started_and_succeeded_in_one_batch() -> None:
    ex = execution()
    machine.apply_checkpoint(
        ex,
        [
            update("s1", "STEP", "START", SubType="Step", Name="one"),
            update("s1", "STEP", "SUCCEED", Payload='"ok"'),
        ],
        NOW + 1,
        1.0,
    )
    op = ex.ops["s1"]
    assert op["Status"] == "SUCCEEDED"
    assert op["StepDetails"] == {"Attempt": 1, "Result": '"ok"'}
    assert [(e["EventId"], e["EventType"], e.get("Name")) for e in ex.events[1:]] == [
        (2, "StepStarted", "one"),
        (3, "StepSucceeded", "one"),
    ]
    assert ex.events[2]["StepSucceededDetails"]["RetryDetails"] == {"CurrentAttempt": 1}


def test_a_step_retry_is_pending_until_its_time_then_ready() -> None:
    ex = execution()
    machine.apply_checkpoint(ex, [update("s", "STEP", "START")], NOW, 1.0)
    error = {"ErrorType": "E", "ErrorMessage": "boom"}
    machine.apply_checkpoint(
        ex,
        [update("s", "STEP", "RETRY", Error=error, StepOptions={"NextAttemptDelaySeconds": 5})],
        NOW,
        0.5,
    )
    assert ex.ops["s"]["Status"] == "PENDING"
    assert ex.ops["s"]["StepDetails"]["NextAttemptTimestamp"] == NOW + 2.5  # scaled
    assert ex.events[-1]["StepFailedDetails"]["RetryDetails"] == {
        "CurrentAttempt": 1,
        "NextAttemptDelaySeconds": 5,
    }
    assert ex.has_pending() and machine.next_deadline(ex) == NOW + 2.5
    assert not machine.fire_due(ex, NOW + 2, 0.5)
    assert machine.fire_due(ex, NOW + 2.5, 0.5)
    assert ex.ops["s"]["Status"] == "READY"
    machine.apply_checkpoint(ex, [update("s", "STEP", "START")], NOW + 3, 0.5)
    assert ex.ops["s"]["Status"] == "STARTED"


def test_a_wait_fires_at_its_scaled_end_with_its_requested_duration() -> None:
    ex = execution()
    machine.apply_checkpoint(
        ex, [update("w", "WAIT", "START", WaitOptions={"WaitSeconds": 3600})], NOW, 0.001
    )
    started = ex.events[-1]
    assert started["WaitStartedDetails"] == {"Duration": 3600, "ScheduledEndTimestamp": NOW + 3.6}
    assert machine.fire_due(ex, NOW + 3.6, 0.001)
    assert ex.ops["w"]["Status"] == "SUCCEEDED"
    assert ex.events[-1]["EventType"] == "WaitSucceeded"
    assert ex.events[-1]["WaitSucceededDetails"] == {"Duration": 3600}


def test_callbacks_get_ids_and_time_out_on_their_timeout_or_heartbeat() -> None:
    ex = execution()
    outcome = machine.apply_checkpoint(
        ex,
        [
            update("a", "CALLBACK", "START", CallbackOptions={"TimeoutSeconds": 10}),
            update("b", "CALLBACK", "START", CallbackOptions={"HeartbeatTimeoutSeconds": 4}),
        ],
        NOW,
        1.0,
    )
    assert len(outcome.callbacks) == 2 and len(set(outcome.callbacks)) == 2
    assert ex.ops["a"]["CallbackDetails"]["CallbackId"] == outcome.callbacks[0]
    ex.ops["b"] = machine.heartbeat(ex.ops["b"], NOW + 3, 1.0)  # the timer starts again
    assert not machine.fire_due(ex, NOW + 5, 1.0)
    assert machine.fire_due(ex, NOW + 7, 1.0)
    assert ex.ops["b"]["Status"] == "TIMED_OUT"
    assert ex.events[-1]["CallbackTimedOutDetails"]["Error"]["Payload"]["ErrorType"] == (
        "Callback.Heartbeat"
    )
    assert machine.fire_due(ex, NOW + 10, 1.0)
    assert ex.ops["a"]["Status"] == "TIMED_OUT"
    assert ex.events[-1]["CallbackTimedOutDetails"]["Error"]["Payload"]["ErrorType"] == (
        "Callback.Timeout"
    )


def test_the_execution_update_must_come_last_and_closes_it() -> None:
    ex = execution()
    assert (
        refused(ex, [update(ex.exec_id, "EXECUTION", "SUCCEED"), update("s", "STEP", "START")])
        == "EXECUTION checkpoint must be the last update."
    )
    outcome = machine.apply_checkpoint(
        ex, [update(ex.exec_id, "EXECUTION", "SUCCEED", Payload='"big"')], NOW, 1.0
    )
    assert outcome.ended and ex.status == "SUCCEEDED" and ex.result == '"big"'
    assert ex.events[-1]["EventType"] == "ExecutionSucceeded"
    assert ex.token is None


@pytest.mark.parametrize(
    ("setup", "bad", "message"),
    [
        ([], update("w", "WAIT", "SUCCEED"), "Invalid action for the given operation type."),
        ([], update("c", "CALLBACK", "CANCEL"), "Invalid action for the given operation type."),
        (
            [update("w", "WAIT", "START", WaitOptions={"WaitSeconds": 5})],
            update("w", "WAIT", "START", WaitOptions={"WaitSeconds": 5}),
            "Cannot start a WAIT that already exist.",
        ),
        (
            [update("s", "STEP", "START"), update("s", "STEP", "SUCCEED")],
            update("s", "STEP", "SUCCEED"),
            "Invalid current STEP state to close.",
        ),
        (
            [update("s", "STEP", "START")],
            update("s", "STEP", "RETRY"),
            "Invalid StepOptions for the given action.",
        ),
        (
            [update("s", "STEP", "START")],
            update("s", "STEP", "FAIL", Payload="x"),
            "Cannot provide a Payload for FAIL action.",
        ),
        (
            [update("s", "STEP", "START", Name="a")],
            update("s", "STEP", "SUCCEED", Name="b"),
            "Inconsistent operation name.",
        ),
        ([], update("s", "STEP", "START", ParentId="nowhere"), "Invalid parent operation id."),
        (
            [],
            update("i", "CHAINED_INVOKE", "START"),
            "Update for CHAINED_INVOKE operation requires ChainedInvokeOptions.",
        ),
        (
            [],
            update("w", "WAIT", "CANCEL"),
            "Cannot cancel a WAIT that does not exist or has already completed.",
        ),
    ],
)
def test_each_update_is_checked_for_its_type_and_state(
    setup: list[dict[str, Any]], bad: dict[str, Any], message: str
) -> None:
    ex = execution()
    if setup:
        machine.apply_checkpoint(ex, setup, NOW, 1.0)
    before = (ex.seq, len(ex.events))
    assert refused(ex, [bad]) == message
    assert (ex.seq, len(ex.events)) == before  # nothing applied


def test_two_updates_of_one_operation_are_refused_unless_start_then_close() -> None:
    ex = execution()
    waits = [update("w", "WAIT", "START", WaitOptions={"WaitSeconds": 1})] * 2
    assert refused(ex, waits) == "Cannot checkpoint multiple operations with the same ID."


def test_only_changes_since_the_last_answer_are_unseen() -> None:
    ex = execution()
    ex.delivered = ex.seq
    machine.apply_checkpoint(ex, [update("s", "STEP", "START")], NOW, 1.0)
    assert [op["Id"] for op in ex.unseen()] == ["s"]
    ex.delivered = ex.seq
    assert ex.unseen() == []


def test_the_execution_times_out_at_its_scaled_deadline() -> None:
    ex = execution(timeout=100, scale=0.01)
    assert machine.next_deadline(ex) == NOW + 1.0
    assert machine.fire_due(ex, NOW + 1.0, 0.01)
    assert ex.status == "TIMED_OUT"
    assert ex.events[-1]["EventType"] == "ExecutionTimedOut"
    assert machine.next_deadline(ex) is None


def test_a_chained_invoke_completes_once() -> None:
    ex = execution()
    machine.apply_checkpoint(
        ex,
        [
            update(
                "i",
                "CHAINED_INVOKE",
                "START",
                Payload='"in"',
                ChainedInvokeOptions={"FunctionName": "target", "TenantId": "t1"},
            )
        ],
        NOW,
        1.0,
    )
    assert ex.events[-1]["ChainedInvokeStartedDetails"] == {
        "FunctionName": "target",
        "TenantId": "t1",
        "Input": {"Payload": '"in"'},
    }
    assert machine.complete_chained(ex, "i", "SUCCEEDED", NOW + 1, result='"out"')
    assert not machine.complete_chained(ex, "i", "FAILED", NOW + 2, error={"ErrorType": "x"})
    assert ex.ops["i"]["ChainedInvokeDetails"] == {"Result": '"out"'}


def test_a_record_round_trips_through_json() -> None:
    import json

    ex = execution()
    machine.apply_checkpoint(ex, [update("s", "STEP", "START")], NOW, 1.0)
    again = Execution.from_json(json.loads(json.dumps(ex.to_json())))
    assert again == ex

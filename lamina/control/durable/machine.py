"""The durable execution state machine: pure transitions over an Execution.

Every function here takes the execution, the wall-clock `now` and the clock's scale, and
changes the record in place: operations, their change sequence, and the history. Nothing
here touches the store, the engine or a timer; the caller persists the record and acts
on what a transition returns (callbacks minted, an execution that ended); chained invokes
checkpointed as STARTED are dispatched by the service once the invocation has ended.

The checks and their messages follow what the Lambda service answers (an update must
suit its operation's type and current status; a batch may close the execution only with
its last update; one update per operation, except a STEP or CONTEXT started and closed
in the same batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lamina.control.durable.model import (
    EXECUTION_EVENTS,
    OP_TERMINAL,
    RUNNING,
    TERMINAL,
    TIMED_OUT,
    Execution,
    error_object,
    new_callback_id,
)
from lamina.errors import AwsError

ERROR_LIMIT = 32_768  # bytes of an ErrorObject
VALID_ACTIONS = {
    "EXECUTION": {"SUCCEED", "FAIL"},
    "STEP": {"START", "SUCCEED", "FAIL", "RETRY"},
    "CONTEXT": {"START", "SUCCEED", "FAIL"},
    "WAIT": {"START", "CANCEL"},
    "CALLBACK": {"START"},
    "CHAINED_INVOKE": {"START"},
}


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterValueException", message, 400)


@dataclass
class Outcome:
    """What a checkpoint asks of the caller."""

    callbacks: list[str] = field(default_factory=list)  # CallbackIds minted
    ended: bool = False  # the execution reached a terminal status


# Checks ----------------------------------------------------------------------------------
def check_updates(ex: Execution, updates: list[dict[str, Any]]) -> None:
    executions = [u for u in updates if u["Type"] == "EXECUTION"]
    if len(executions) > 1:
        raise invalid("Cannot checkpoint multiple EXECUTION updates.")
    if executions and updates[-1]["Type"] != "EXECUTION":
        raise invalid("EXECUTION checkpoint must be the last update.")
    last: dict[str, dict[str, Any]] = {}
    started: set[str] = set()
    for update in updates:
        op_id = update["Id"]
        previous = last.get(op_id)
        if previous is not None and not (
            previous["Type"] in ("STEP", "CONTEXT")
            and previous["Action"] == "START"
            and update["Action"] != "START"
        ):
            raise invalid("Cannot checkpoint multiple operations with the same ID.")
        parent = update.get("ParentId")
        if parent is not None and parent not in started:
            known = ex.ops.get(parent)
            if known is None or known["Type"] != "CONTEXT" or known["Status"] != "STARTED":
                raise invalid("Invalid parent operation id.")
        if update["Action"] == "START":
            started.add(op_id)
        last[op_id] = update
        _check_update(ex, update)


def _check_update(ex: Execution, update: dict[str, Any]) -> None:
    kind, action = update["Type"], update["Action"]
    current = ex.ops.get(update["Id"])
    if current is not None and kind != "EXECUTION":
        if kind != current["Type"]:
            raise invalid("Inconsistent operation type.")
        for member, label in (("SubType", "subtype"), ("Name", "name")):
            if update.get(member) is not None and update[member] != current.get(member):
                raise invalid(f"Inconsistent operation {label}.")
        if update.get("ParentId") is not None and update["ParentId"] != current.get("ParentId"):
            raise invalid("Inconsistent parent operation id.")
    error = update.get("Error")
    if error is not None and len(str(error).encode()) > ERROR_LIMIT:
        raise invalid(f"Error object size must be less than {ERROR_LIMIT} bytes.")
    if action not in VALID_ACTIONS.get(kind, ()):
        raise invalid("Invalid action for the given operation type.")
    if action == "SUCCEED" and error is not None:
        raise invalid("Cannot provide an Error for SUCCEED action.")
    if action == "FAIL" and update.get("Payload") is not None:
        raise invalid("Cannot provide a Payload for FAIL action.")
    status = current["Status"] if current is not None else None
    if kind == "STEP" and current is not None:
        if action == "START" and status != "READY":
            raise invalid("Invalid current STEP state to start.")
        if action in ("SUCCEED", "FAIL") and status not in ("STARTED", "READY"):
            raise invalid("Invalid current STEP state to close.")
        if action == "RETRY" and status not in ("STARTED", "READY"):
            raise invalid("Invalid current STEP state to re-attempt.")
    if kind == "STEP" and action == "RETRY":
        if update.get("StepOptions") is None:
            raise invalid("Invalid StepOptions for the given action.")
        if error is not None and update.get("Payload") is not None:
            raise invalid("Cannot provide both error and payload to RETRY a STEP.")
    if kind == "CONTEXT":
        if action == "START" and current is not None:
            raise invalid("Cannot start a CONTEXT that already exist.")
        if action != "START" and current is not None and status != "STARTED":
            raise invalid("Invalid current CONTEXT state to close.")
    if kind in ("WAIT", "CALLBACK", "CHAINED_INVOKE") and action == "START" and current:
        raise invalid(f"Cannot start a {kind} that already exist.")
    if kind == "WAIT" and action == "CANCEL" and (current is None or status != "STARTED"):
        raise invalid("Cannot cancel a WAIT that does not exist or has already completed.")
    if kind == "CHAINED_INVOKE" and not (update.get("ChainedInvokeOptions") or {}).get(
        "FunctionName"
    ):
        raise invalid("Update for CHAINED_INVOKE operation requires ChainedInvokeOptions.")


# Applying --------------------------------------------------------------------------------
def apply_checkpoint(
    ex: Execution, updates: list[dict[str, Any]], now: float, scale: float
) -> Outcome:
    check_updates(ex, updates)
    outcome = Outcome()
    for update in updates:
        _apply(ex, update, now, scale, outcome)
        if outcome.ended:
            break
    return outcome


def _base(ex: Execution, update: dict[str, Any], now: float) -> dict[str, Any]:
    current = ex.ops.get(update["Id"])
    if current is not None:
        return dict(current)
    op: dict[str, Any] = {"Id": update["Id"], "Type": update["Type"], "StartTimestamp": now}
    for member in ("ParentId", "Name", "SubType"):
        if update.get(member) is not None:
            op[member] = update[member]
    return op


def _wrapped_error(error: dict[str, Any] | None) -> dict[str, Any]:
    return {"Payload": error} if error else {}


def _apply(
    ex: Execution, update: dict[str, Any], now: float, scale: float, outcome: Outcome
) -> None:
    kind, action = update["Type"], update["Action"]
    payload = update.get("Payload")
    error = error_object(update.get("Error"))
    if kind == "EXECUTION":
        if action == "SUCCEED":
            finish(ex, "SUCCEEDED", now, result=payload if payload is not None else "")
        else:
            finish(ex, "FAILED", now, error=error)
        outcome.ended = True
        return
    op = _base(ex, update, now)
    if kind == "STEP":
        _apply_step(ex, op, update, now, scale, payload, error)
    elif kind == "CONTEXT":
        _apply_context(ex, op, update, now, payload, error)
    elif kind == "WAIT":
        if action == "START":
            seconds = int((update.get("WaitOptions") or {}).get("WaitSeconds", 1))
            end = now + seconds * scale
            op.update(Status="STARTED", WaitDetails={"ScheduledEndTimestamp": end})
            op["_duration"] = seconds
            ex.touch(op)
            ex.event("WaitStarted", now, op, {"Duration": seconds, "ScheduledEndTimestamp": end})
        else:
            op.update(Status="CANCELLED", EndTimestamp=now)
            ex.touch(op)
            ex.event("WaitCancelled", now, op, {"Error": _wrapped_error(error)} if error else {})
    elif kind == "CALLBACK":
        options = update.get("CallbackOptions") or {}
        timeout = int(options.get("TimeoutSeconds") or 0)
        heartbeat = int(options.get("HeartbeatTimeoutSeconds") or 0)
        callback_id = new_callback_id()
        op.update(Status="STARTED", CallbackDetails={"CallbackId": callback_id})
        if timeout > 0:
            op["_timeout_at"] = now + timeout * scale
        if heartbeat > 0:
            op["_heartbeat"] = heartbeat
            op["_heartbeat_at"] = now + heartbeat * scale
        ex.touch(op)
        details: dict[str, Any] = {"CallbackId": callback_id}
        if timeout > 0:
            details["Timeout"] = timeout
        if heartbeat > 0:
            details["HeartbeatTimeout"] = heartbeat
        ex.event("CallbackStarted", now, op, details)
        outcome.callbacks.append(callback_id)
    elif kind == "CHAINED_INVOKE":
        options = update.get("ChainedInvokeOptions") or {}
        op.update(Status="STARTED", ChainedInvokeDetails={})
        op["_target"] = options["FunctionName"]
        op["_payload"] = payload
        if options.get("TenantId"):
            op["_tenant"] = options["TenantId"]
        ex.touch(op)
        started: dict[str, Any] = {"FunctionName": options["FunctionName"]}
        if options.get("TenantId"):
            started["TenantId"] = options["TenantId"]
        if payload is not None:
            started["Input"] = {"Payload": payload}
        ex.event("ChainedInvokeStarted", now, op, started)
        op["_event"] = len(ex.events) - 1  # filled in with the child's ARN once it starts


def _apply_step(
    ex: Execution,
    op: dict[str, Any],
    update: dict[str, Any],
    now: float,
    scale: float,
    payload: str | None,
    error: dict[str, Any] | None,
) -> None:
    action = update["Action"]
    details = dict(op.get("StepDetails") or {"Attempt": 0})
    details.pop("NextAttemptTimestamp", None)
    if action == "START":
        op.update(Status="STARTED", StepDetails=details)
        op.pop("EndTimestamp", None)
        ex.touch(op)
        ex.event("StepStarted", now, op)
        return
    details["Attempt"] = int(details.get("Attempt", 0)) + 1
    details.pop("Result", None)
    details.pop("Error", None)
    if payload is not None:
        details["Result"] = payload
    if error is not None:
        details["Error"] = error
    retry: dict[str, Any] = {"CurrentAttempt": details["Attempt"]}
    if action == "RETRY":
        delay = int((update.get("StepOptions") or {}).get("NextAttemptDelaySeconds", 0))
        details["NextAttemptTimestamp"] = now + delay * scale
        retry["NextAttemptDelaySeconds"] = delay
        op.update(Status="PENDING", StepDetails=details)
        ex.touch(op)
        if error is not None:
            ex.event("StepFailed", now, op, {"Error": {"Payload": error}, "RetryDetails": retry})
        else:
            result = {"Payload": payload} if payload is not None else {}
            ex.event("StepSucceeded", now, op, {"Result": result, "RetryDetails": retry})
        return
    op.update(Status="SUCCEEDED" if action == "SUCCEED" else "FAILED", StepDetails=details)
    op["EndTimestamp"] = now
    ex.touch(op)
    if action == "SUCCEED":
        result = {"Payload": payload} if payload is not None else {}
        ex.event("StepSucceeded", now, op, {"Result": result, "RetryDetails": retry})
    else:
        ex.event("StepFailed", now, op, {"Error": _wrapped_error(error), "RetryDetails": retry})


def _apply_context(
    ex: Execution,
    op: dict[str, Any],
    update: dict[str, Any],
    now: float,
    payload: str | None,
    error: dict[str, Any] | None,
) -> None:
    action = update["Action"]
    if action == "START":
        op.update(Status="STARTED")
        ex.touch(op)
        ex.event("ContextStarted", now, op)
        return
    details: dict[str, Any] = {}
    if (update.get("ContextOptions") or {}).get("ReplayChildren"):
        details["ReplayChildren"] = True
    if payload is not None:
        details["Result"] = payload
    if error is not None:
        details["Error"] = error
    op.update(Status="SUCCEEDED" if action == "SUCCEED" else "FAILED", ContextDetails=details)
    op["EndTimestamp"] = now
    ex.touch(op)
    if action == "SUCCEED":
        result = {"Payload": payload} if payload is not None else {}
        ex.event("ContextSucceeded", now, op, {"Result": result})
    else:
        ex.event("ContextFailed", now, op, {"Error": _wrapped_error(error)})


# Completions from outside the function ---------------------------------------------------
def complete_callback(
    ex: Execution,
    op: dict[str, Any],
    status: str,
    now: float,
    result: str | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    details = dict(op.get("CallbackDetails") or {})
    op = dict(op)
    if result is not None:
        details["Result"] = result
    if error is not None:
        details["Error"] = error
    op.update(Status=status, EndTimestamp=now, CallbackDetails=details)
    for key in ("_timeout_at", "_heartbeat_at"):
        op.pop(key, None)
    ex.touch(op)
    if status == "SUCCEEDED":
        ex.event("CallbackSucceeded", now, op, {"Result": {"Payload": result or ""}})
    elif status == "FAILED":
        ex.event("CallbackFailed", now, op, {"Error": _wrapped_error(error)})
    else:
        ex.event("CallbackTimedOut", now, op, {"Error": _wrapped_error(error)})


def complete_chained(
    ex: Execution,
    op_id: str,
    status: str,
    now: float,
    result: str | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    current = ex.ops.get(op_id)
    if ex.status != RUNNING or current is None or current["Status"] != "STARTED":
        return False
    op = dict(current)
    details: dict[str, Any] = {}
    if result is not None:
        details["Result"] = result
    if error is not None:
        details["Error"] = error
    op.update(Status=status, EndTimestamp=now, ChainedInvokeDetails=details)
    ex.touch(op)
    word = {"SUCCEEDED": "Succeeded", "FAILED": "Failed", "TIMED_OUT": "TimedOut"}.get(
        status, "Stopped"
    )
    if status == "SUCCEEDED":
        ex.event("ChainedInvokeSucceeded", now, op, {"Result": {"Payload": result or ""}})
    else:
        ex.event(f"ChainedInvoke{word}", now, op, {"Error": _wrapped_error(error)})
    return True


def fire_due(ex: Execution, now: float, scale: float) -> bool:
    """Complete whatever came due by `now`; True if anything changed."""
    if ex.status != RUNNING:
        return False
    if ex.deadline <= now:
        error = {
            "ErrorType": "ExecutionTimedOut",
            "ErrorMessage": f"Execution timed out after {ex.timeout} seconds.",
        }
        finish(ex, TIMED_OUT, now, error=error)
        return True
    changed = False
    for op in list(ex.ops.values()):
        kind, status = op["Type"], op["Status"]
        if kind == "WAIT" and status == "STARTED":
            if op["WaitDetails"]["ScheduledEndTimestamp"] <= now:
                done = {**op, "Status": "SUCCEEDED", "EndTimestamp": now}
                ex.touch(done)
                ex.event("WaitSucceeded", now, done, {"Duration": op.get("_duration", 0)})
                changed = True
        elif kind == "STEP" and status == "PENDING":
            at = (op.get("StepDetails") or {}).get("NextAttemptTimestamp")
            if at is not None and at <= now:
                ex.touch({**op, "Status": "READY"})
                changed = True
        elif kind == "CALLBACK" and status == "STARTED":
            if op.get("_timeout_at") is not None and op["_timeout_at"] <= now:
                error = {"ErrorType": "Callback.Timeout", "ErrorMessage": "Callback timed out"}
                complete_callback(ex, op, "TIMED_OUT", now, error=error)
                changed = True
            elif op.get("_heartbeat_at") is not None and op["_heartbeat_at"] <= now:
                error = {
                    "ErrorType": "Callback.Heartbeat",
                    "ErrorMessage": "Callback timed out on heartbeat",
                }
                complete_callback(ex, op, "TIMED_OUT", now, error=error)
                changed = True
    return changed


def next_deadline(ex: Execution) -> float | None:
    if ex.status != RUNNING:
        return None
    times = [ex.deadline]
    for op in ex.ops.values():
        kind, status = op["Type"], op["Status"]
        if kind == "WAIT" and status == "STARTED":
            times.append(op["WaitDetails"]["ScheduledEndTimestamp"])
        elif kind == "STEP" and status == "PENDING":
            at = (op.get("StepDetails") or {}).get("NextAttemptTimestamp")
            if at is not None:
                times.append(at)
        elif kind == "CALLBACK" and status == "STARTED":
            times.extend(op[k] for k in ("_timeout_at", "_heartbeat_at") if op.get(k))
    return min(times)


def heartbeat(op: dict[str, Any], now: float, scale: float) -> dict[str, Any]:
    op = dict(op)
    if op.get("_heartbeat"):
        op["_heartbeat_at"] = now + op["_heartbeat"] * scale
    return op


def finish(
    ex: Execution,
    status: str,
    now: float,
    result: str | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """End the execution: its EXECUTION operation, status and closing event."""
    if ex.status in TERMINAL:
        return
    ex.status, ex.end, ex.result, ex.error = status, now, result, error
    ex.token, ex.invoking = None, False
    root = ex.ops.get(ex.exec_id)
    if root is not None:
        ex.touch({**root, "Status": status, "EndTimestamp": now})
    for op in list(ex.ops.values()):  # nothing waits any more
        if op["Status"] not in OP_TERMINAL and op["Type"] == "CALLBACK":
            ex.ops[op["Id"]] = {k: v for k, v in op.items() if not k.endswith("_at")}
    if status == "SUCCEEDED":
        details: dict[str, Any] = {"Result": {"Payload": result or ""}}
    else:
        details = {"Error": _wrapped_error(error)}
    ex.event(EXECUTION_EVENTS[status], now, None, details)


def invocation_completed(
    ex: Execution, started: float, now: float, request_id: str, error: dict[str, Any] | None
) -> None:
    details: dict[str, Any] = {
        "StartTimestamp": started,
        "EndTimestamp": now,
        "RequestId": request_id,
    }
    if error:
        details["Error"] = {"Payload": error}
    ex.event("InvocationCompleted", now, None, details)

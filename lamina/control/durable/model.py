"""Durable executions as plain data: the execution record, its operations and history.

An execution is one JSON-able record: its operations (each kept in the API's own shape,
timestamps as epoch seconds, Lamina's bookkeeping under keys starting with `_`) and its
history (AWS's events, EventIds 1, 2, 3, ...). `seq` counts changes to operations; each
operation remembers the change that last touched it, so a checkpoint answers with just
the operations its invocation has not yet seen (`delivered`).

Deadlines (a wait's end, a retry, a callback's timeouts, the execution's timeout) are
real wall-clock seconds: a platform delay scaled by the clock when it was set, so that
`--time-scale` shortens them and a restart finds them where they were.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

RUNNING, SUCCEEDED, FAILED, TIMED_OUT, STOPPED = (
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "STOPPED",
)
TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, STOPPED})
OP_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "STOPPED"})
DEFAULT_TIMEOUT = 86_400  # seconds, when DurableConfig names none
DEFAULT_RETENTION = 14  # days
EXECUTION_EVENTS = {
    SUCCEEDED: "ExecutionSucceeded",
    FAILED: "ExecutionFailed",
    TIMED_OUT: "ExecutionTimedOut",
    STOPPED: "ExecutionStopped",
}
EVENT_PREFIX = {
    "EXECUTION": "Execution",
    "CONTEXT": "Context",
    "STEP": "Step",
    "WAIT": "Wait",
    "CALLBACK": "Callback",
    "CHAINED_INVOKE": "ChainedInvoke",
}
STATUS_WORD = {
    "STARTED": "Started",
    "SUCCEEDED": "Succeeded",
    "FAILED": "Failed",
    "TIMED_OUT": "TimedOut",
    "STOPPED": "Stopped",
    "CANCELLED": "Cancelled",
}
DETAILS = {
    "EXECUTION": "ExecutionDetails",
    "CONTEXT": "ContextDetails",
    "STEP": "StepDetails",
    "WAIT": "WaitDetails",
    "CALLBACK": "CallbackDetails",
    "CHAINED_INVOKE": "ChainedInvokeDetails",
}


def durable_config(given: dict[str, Any] | None) -> dict[str, Any]:
    """{"DurableConfig": ...} as a function's configuration shows the one it was given
    (defaults filled in), or nothing when none was given."""
    if given is None:
        return {}
    config: dict[str, Any] = {
        "ExecutionTimeout": int(given.get("ExecutionTimeout") or DEFAULT_TIMEOUT),
        "RetentionPeriodInDays": int(given.get("RetentionPeriodInDays") or DEFAULT_RETENTION),
    }
    if given.get("KMSKeyArn"):
        config["KMSKeyArn"] = given["KMSKeyArn"]
    return {"DurableConfig": config}


def new_token() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode()


def new_callback_id() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode().replace("/", "A")


def execution_arn(function_arn: str, version: str, name: str, exec_id: str) -> str:
    return f"{function_arn}:{version}/durable-execution/{name}/{exec_id}"


def split_arn(arn: str) -> tuple[str, str, str, str] | None:
    """(unqualified function ARN, version, name, id) of an execution ARN, or None."""
    head, sep, tail = arn.partition("/durable-execution/")
    parts = tail.split("/")
    if not sep or len(parts) != 2 or not all(parts):
        return None
    function_arn, _, version = head.rpartition(":")
    if function_arn.count(":") != 6:
        return None
    return function_arn, version, parts[0], parts[1]


@dataclass
class Execution:
    arn: str
    name: str
    account: str
    region: str
    function: str  # the function's name
    version: str  # the version that runs it ($LATEST or a number)
    input: str
    start: float
    timeout: int  # ExecutionTimeout, seconds
    retention: int  # days
    deadline: float  # when the execution times out (real wall seconds)
    status: str = RUNNING
    end: float | None = None
    result: str | None = None
    error: dict[str, Any] | None = None
    token: str | None = None  # the current checkpoint token
    invocation: str = ""  # the request id of the invocation holding `token`
    invoking: bool = False
    seq: int = 0  # changes to operations so far
    delivered: int = 0  # changes the running invocation has seen
    failures: int = 0  # consecutive failed invocations
    paused: bool = False
    pause: dict[str, Any] | None = None  # PauseDetails while paused
    parent: dict[str, str] | None = None  # {"arn", "op"}: a chained invoke waits for this
    trace: str | None = None
    ops: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: dict[str, Any] | None = None  # for ClientToken replays

    @property
    def exec_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function}"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Execution:
        return cls(**data)

    # Changes ---------------------------------------------------------------------------
    def touch(self, op: dict[str, Any]) -> None:
        self.seq += 1
        op["_seq"] = self.seq
        self.ops[op["Id"]] = op

    def event(
        self,
        event_type: str,
        now: float,
        op: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "EventType": event_type,
            "EventId": len(self.events) + 1,
            "EventTimestamp": now,
        }
        if op is not None:
            for key in ("SubType", "Id", "Name", "ParentId"):
                if op.get(key) is not None:
                    event[key] = op[key]
        event[f"{event_type}Details"] = details if details is not None else {}
        self.events.append(event)
        return event

    def unseen(self) -> list[dict[str, Any]]:
        return [op for op in self.ops.values() if op["_seq"] > self.delivered]

    def has_pending(self) -> bool:
        """Something outside the function will move this execution on by itself."""
        for op in self.ops.values():
            status, kind = op["Status"], op["Type"]
            if status == "STARTED" and kind in ("WAIT", "CALLBACK", "CHAINED_INVOKE"):
                return True
            if kind == "STEP" and status == "PENDING":
                return True
        return False


def new_execution(
    account: str,
    region: str,
    function: str,
    version: str,
    name: str | None,
    payload: str,
    now: float,
    timeout: int,
    retention: int,
    scaled_timeout: float,
) -> Execution:
    exec_id = str(uuid.uuid4())
    name = name or exec_id
    function_arn = f"arn:aws:lambda:{region}:{account}:function:{function}"
    arn = execution_arn(function_arn, version, name, exec_id)
    execution = Execution(
        arn=arn,
        name=name,
        account=account,
        region=region,
        function=function,
        version=version,
        input=payload,
        start=now,
        timeout=timeout,
        retention=retention,
        deadline=now + scaled_timeout,
    )
    op = {
        "Id": exec_id,
        "Type": "EXECUTION",
        "Status": "STARTED",
        "StartTimestamp": now,
        "ExecutionDetails": {"InputPayload": payload},
    }
    execution.touch(op)
    execution.event(
        "ExecutionStarted",
        now,
        {"Id": exec_id},
        {"Input": {"Payload": payload}, "ExecutionTimeout": timeout},
    )
    return execution


# Rendering -------------------------------------------------------------------------------
def public(op: dict[str, Any]) -> dict[str, Any]:
    """An operation as the API returns it (epoch-second timestamps)."""
    return {k: v for k, v in op.items() if not k.startswith("_")}


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value * 1000)


def for_invocation(op: dict[str, Any]) -> dict[str, Any]:
    """An operation as the invocation event carries it (epoch-millisecond timestamps)."""
    out = public(op)
    for key in ("StartTimestamp", "EndTimestamp"):
        if key in out:
            out[key] = _ms(out[key])
    step = out.get("StepDetails")
    if step and step.get("NextAttemptTimestamp") is not None:
        out["StepDetails"] = {**step, "NextAttemptTimestamp": _ms(step["NextAttemptTimestamp"])}
    wait = out.get("WaitDetails")
    if wait and wait.get("ScheduledEndTimestamp") is not None:
        out["WaitDetails"] = {"ScheduledEndTimestamp": _ms(wait["ScheduledEndTimestamp"])}
    return out


def shown_event(event: dict[str, Any], include_data: bool) -> dict[str, Any]:
    """An event as GetDurableExecutionHistory returns it: payloads only when asked for."""
    out = dict(event)
    key = f"{event['EventType']}Details"
    details = event.get(key)
    if isinstance(details, dict):
        shown = dict(details)
        for member in ("Input", "Result", "Error"):
            value = shown.get(member)
            if isinstance(value, dict):
                if include_data:
                    shown[member] = {**value, "Truncated": False}
                else:
                    shown[member] = {"Truncated": True}
        out[key] = shown
    return out


def error_object(raw: Any) -> dict[str, Any] | None:
    """An ErrorObject as the API keeps it (only its known members)."""
    if not isinstance(raw, dict):
        return None
    keys = ("ErrorMessage", "ErrorType", "ErrorData", "StackTrace")
    return {k: raw[k] for k in keys if raw.get(k) is not None}

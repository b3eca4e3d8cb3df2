"""The durable execution operations of the Lambda API, and Invoke of a durable function."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from lamina.context import RequestContext
from lamina.control.durable import machine
from lamina.control.durable.model import (
    OP_TERMINAL,
    RUNNING,
    Execution,
    error_object,
    shown_event,
    split_arn,
)
from lamina.control.durable.service import DurableExecutions, invalid
from lamina.control.functions import FunctionRef, Functions, Target, resolve
from lamina.errors import AwsError, not_found

LIST_DEFAULT, LIST_MAX = 50, 1000
SYNC_LIMIT = 900.0  # seconds a synchronous Invoke waits for its execution, as on Lambda
HISTORY_DEFAULT, HISTORY_MAX = 100, 1000


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


class DurableApi:
    def __init__(self, executions: DurableExecutions, functions: Functions) -> None:
        self.executions = executions
        self.functions = functions

    # Helpers --------------------------------------------------------------------------
    def _execution(self, ctx: RequestContext, arn: str) -> Execution:
        parts = split_arn(arn)
        if parts is None:
            raise invalid(f"Invalid durable execution ARN: {arn}")
        ex = self.executions.get(arn)
        if (ex.account, ex.region) != (ctx.account, ctx.region):
            raise not_found(f"Durable execution not found: {arn}")
        return ex

    def _callback(self, callback_id: str) -> tuple[Execution, dict[str, Any]]:
        found = self.executions.store.callback(callback_id)
        if found is None:
            raise not_found("Callback not found.")
        ex = self.executions.get(found[0])
        op = ex.ops.get(found[1])
        if op is None:
            raise not_found("Callback not found.")
        if op["Status"] == "TIMED_OUT":
            raise AwsError("CallbackTimeoutException", "Callback timed out.", 400, user=True)
        if ex.status != RUNNING or op["Status"] in OP_TERMINAL:
            raise invalid("Callback has already been completed.")
        return ex, op

    # Invoke ---------------------------------------------------------------------------
    async def invoke(
        self,
        ctx: RequestContext,
        ref: FunctionRef,
        target: Target,
        kind: str,
        payload: bytes,
        name: str | None,
    ) -> dict[str, Any]:
        ex, _ = self.executions.start_execution(
            ref.key, target.version, target.config, payload.decode(), name
        )
        if kind == "Event":
            return {"StatusCode": 202, "DurableExecutionArn": ex.arn}
        try:
            async with asyncio.timeout(SYNC_LIMIT):
                ex = await self.executions.wait(ex.arn)
        except TimeoutError:
            message = (
                f"The durable execution is still running after {SYNC_LIMIT:.0f} seconds, the "
                "limit of a synchronous invocation: invoke with InvocationType Event and follow "
                "it with GetDurableExecution."
            )
            body = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            return {
                "StatusCode": 200,
                "ExecutedVersion": ex.version,
                "DurableExecutionArn": ex.arn,
                "FunctionError": "Unhandled",
                "Payload": json.dumps(body).encode(),
            }
        response: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": ex.version,
            "DurableExecutionArn": ex.arn,
        }
        if ex.status == "SUCCEEDED":
            response["Payload"] = (ex.result or "").encode()
        else:
            error = ex.error or {}
            body = {
                "errorType": error.get("ErrorType") or ex.status,
                "errorMessage": error.get("ErrorMessage") or f"Execution {ex.status.lower()}",
            }
            if error.get("StackTrace"):
                body["stackTrace"] = error["StackTrace"]
            response["FunctionError"] = "Unhandled"
            response["Payload"] = json.dumps(body).encode()
        return response

    # Checkpoints ----------------------------------------------------------------------
    async def CheckpointDurableExecution(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        return self.executions.checkpoint(
            ex.arn,
            params["CheckpointToken"],
            list(params.get("Updates") or []),
            params.get("ClientToken"),
        )

    async def GetDurableExecutionState(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        return self.executions.state_page(
            ex.arn, params["CheckpointToken"], params.get("Marker"), params.get("MaxItems")
        )

    # Reading --------------------------------------------------------------------------
    async def GetDurableExecution(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        include = params.get("IncludeExecutionData", True) is not False
        status = ex.status
        if ex.paused and status == RUNNING:
            status = "PAUSING" if ex.invoking else "PAUSED"
        out: dict[str, Any] = {
            "DurableExecutionArn": ex.arn,
            "DurableExecutionName": ex.name,
            "FunctionArn": f"{ex.function_arn}:{ex.version}",
            "Status": status,
            "StartTimestamp": ex.start,
            "Version": ex.version,
            "ExecutionDataIncluded": include,
            "DurableConfig": {
                "ExecutionTimeout": ex.timeout,
                "RetentionPeriodInDays": ex.retention,
            },
        }
        if ex.status == RUNNING:
            out["ExpectedExecutionTimeoutTimestamp"] = ex.deadline
        if include:
            out["InputPayload"] = ex.input
            if ex.result is not None:
                out["Result"] = ex.result
        if ex.error:
            out["Error"] = ex.error
        if ex.end is not None:
            out["EndTimestamp"] = ex.end
        if ex.trace:
            out["TraceHeader"] = {"XAmznTraceId": ex.trace}
        if ex.paused:
            out["PauseDetails"] = ex.pause or {}
        return out

    async def GetDurableExecutionHistory(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        include = bool(params.get("IncludeExecutionData", False))
        events = ex.events[::-1] if params.get("ReverseOrder") else ex.events
        start = _marker(params.get("Marker"))
        limit = max(1, min(params.get("MaxItems") or HISTORY_DEFAULT, HISTORY_MAX))
        page = [shown_event(e, include) for e in events[start : start + limit]]
        out: dict[str, Any] = {"Events": page}
        if start + limit < len(events):
            out["NextMarker"] = str(start + limit)
        return out

    async def ListDurableExecutionsByFunction(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        self.functions.record(FunctionRef(ref.key, None))
        rows = self.executions.store.list(ref.key.account, ref.key.region, ref.key.name)
        if ref.qualifier:
            version = self.functions.target(ref).version
            rows = [r for r in rows if r["version"] == version]
        if params.get("DurableExecutionName"):
            rows = [r for r in rows if r["name"] == params["DurableExecutionName"]]
        statuses = set(params.get("Statuses") or [])
        if statuses:
            rows = [r for r in rows if r["status"] in statuses]
        after, before = _seconds(params.get("StartedAfter")), _seconds(params.get("StartedBefore"))
        if after is not None:
            rows = [r for r in rows if r["start"] >= after]
        if before is not None:
            rows = [r for r in rows if r["start"] <= before]
        if params.get("ReverseOrder"):
            rows.reverse()
        start = _marker(params.get("Marker"))
        limit = max(1, min(params.get("MaxItems") or LIST_DEFAULT, LIST_MAX))
        function_arn = ref.key.arn
        page = []
        for row in rows[start : start + limit]:
            item = {
                "DurableExecutionArn": row["arn"],
                "DurableExecutionName": row["name"],
                "FunctionArn": f"{function_arn}:{row['version']}",
                "Status": row["status"],
                "StartTimestamp": row["start"],
            }
            if row["end"] is not None:
                item["EndTimestamp"] = row["end"]
            page.append(item)
        out: dict[str, Any] = {"DurableExecutions": page}
        if start + limit < len(rows):
            out["NextMarker"] = str(start + limit)
        return out

    # Callbacks ------------------------------------------------------------------------
    async def SendDurableExecutionCallbackSuccess(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex, op = self._callback(params["CallbackId"])
        raw = params.get("Result") or b""
        result = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        clock = self.executions.clock
        machine.complete_callback(ex, op, "SUCCEEDED", clock.wall(), result=result)
        self.executions.changed(ex)
        return {}

    async def SendDurableExecutionCallbackFailure(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex, op = self._callback(params["CallbackId"])
        error = error_object(params.get("Error")) or {}
        clock = self.executions.clock
        machine.complete_callback(ex, op, "FAILED", clock.wall(), error=error)
        self.executions.changed(ex)
        return {}

    async def SendDurableExecutionCallbackHeartbeat(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex, op = self._callback(params["CallbackId"])
        clock = self.executions.clock
        ex.ops[op["Id"]] = machine.heartbeat(op, clock.wall(), clock.scale)
        self.executions.changed(ex)
        return {}

    # Control --------------------------------------------------------------------------
    async def StopDurableExecution(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        if ex.status != RUNNING:
            raise invalid(f"Durable execution is not running: {ex.status}")
        now = self.executions.clock.wall()
        error = error_object(params.get("Error")) or {
            "ErrorType": "ExecutionStopped",
            "ErrorMessage": "Execution stopped",
        }
        machine.finish(ex, "STOPPED", now, error=error)
        self.executions.changed(ex)
        return {"StopTimestamp": now}

    async def PauseDurableExecution(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        if ex.status != RUNNING or ex.paused:
            raise AwsError(
                "ResourceConflictException", "Durable execution cannot be paused.", 409, user=True
            )
        now = self.executions.clock.wall()
        ex.paused = True
        ex.pause = {
            "PauseRequestTimestamp": now,
            "Reason": params.get("Reason") or "",
            "ExecutionTimeoutPaused": bool(params.get("ExecutionTimeoutPaused", False)),
        }
        ex.event("ExecutionPaused", now, None, {})
        self.executions.changed(ex)
        return {}

    async def ResumeDurableExecution(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        if ex.status != RUNNING or not ex.paused:
            raise AwsError(
                "ResourceConflictException", "Durable execution is not paused.", 409, user=True
            )
        ex.paused = False
        ex.pause = None
        ex.event("ExecutionResumed", self.executions.clock.wall(), None, {})
        self.executions.changed(ex)
        return {}

    async def DeleteDurableExecution(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ex = self._execution(ctx, params["DurableExecutionArn"])
        if ex.status == RUNNING:
            raise AwsError(
                "ResourceConflictException",
                "A running durable execution cannot be deleted: stop it first.",
                409,
                user=True,
            )
        self.executions.store.delete(ex.arn)
        return {"DeletionRequestTimestamp": self.executions.clock.wall()}


def _marker(marker: str | None) -> int:
    return int(marker) if marker and marker.isdigit() else 0

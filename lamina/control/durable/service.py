"""Durable executions: the owner of every execution record while the server runs.

It starts executions, re-invokes them when something they wait for happens (a timer, a
callback, a chained invoke), applies what they checkpoint, and ends them. Records live
in memory while running (one object per execution, changed only on the event loop) and
are written to the store before any caller is told of a change.

Invocations go through the engine's leases like any other (`Admission`): a suspended
execution holds no concurrency, and a throttled re-invocation waits and tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.control.durable import machine
from lamina.control.durable.model import (
    DEFAULT_RETENTION,
    DEFAULT_TIMEOUT,
    RUNNING,
    Execution,
    for_invocation,
    new_execution,
    new_token,
)
from lamina.control.functions import LATEST, FunctionRef, Functions, resolve
from lamina.engine.durable_driver import Admission, Runners, Timers
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.service import Engine
from lamina.errors import AwsError, not_found
from lamina.keys import FunctionKey
from lamina.store.durable import DurableStore

log = logging.getLogger("lamina.durable")

MAX_FAILED_INVOCATIONS = 5  # consecutive failed invocations before the execution fails
MAX_EMPTY_PENDING = 3  # PENDING answers with nothing pending, likewise
RETRY_BACKOFF = 5.0  # platform seconds between failed invocations
PAGE_BYTES = 1_000_000  # operations carried in the invocation event before paging
PAGE_ITEMS = 1000
RETENTION = "retention"  # the timer that removes executions past their retention period


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterValueException", message, 400)


def durable_config(config: dict[str, Any]) -> dict[str, Any] | None:
    value = config.get("DurableConfig")
    return value if isinstance(value, dict) else None


class DurableExecutions:
    def __init__(
        self, store: DurableStore, functions: Functions, engine: Engine, clock: Clock
    ) -> None:
        self.store = store
        self.functions = functions
        self.engine = engine
        self.clock = clock
        self.running: dict[str, Execution] = {}  # every RUNNING execution, by ARN
        self.timers = Timers(clock, self._due)
        self.runners = Runners()
        self.admission = Admission(engine, clock)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.invocations = 0  # invocations of durable functions made so far

    # Lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Pick up every execution a previous run left RUNNING."""
        self.timers.start()
        upcoming = self.store.next_expiry()
        if upcoming is not None:
            self.timers.set(RETENTION, upcoming)
        for record in self.store.running():
            ex = Execution.from_json(record)
            self.running[ex.arn] = ex
        for ex in list(self.running.values()):
            self.timers.set(ex.arn, machine.next_deadline(ex))
            for op in ex.ops.values():
                if op["Type"] == "CHAINED_INVOKE" and op["Status"] == "STARTED":
                    self._resume_chained(ex, op)
            if ex.failures or self._wants_invocation(ex):
                self.kick(ex.arn)

    async def close(self) -> None:
        await self.timers.close()
        await self.runners.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, int]:
        """For /_lamina/stats: running executions, how many hold an invocation now."""
        invoking = sum(1 for ex in self.running.values() if ex.invoking)
        return {
            "Running": len(self.running),
            "Invoking": invoking,
            "Suspended": len(self.running) - invoking,
            "Timers": self.timers.pending(),
            "WaitingForAdmission": self.admission.waiting,
            "ThrottledInvocations": self.admission.throttles,
            "Invocations": self.invocations,
        }

    # Records --------------------------------------------------------------------------
    def get(self, arn: str) -> Execution:
        ex = self.running.get(arn)
        if ex is not None:
            return ex
        record = self.store.load(arn)
        if record is None:
            raise not_found(f"Durable execution not found: {arn}")
        return Execution.from_json(record)

    def save(self, ex: Execution, callbacks: Sequence[str] = ()) -> None:
        minted = [(cb, op_id) for cb in callbacks for op_id in self._callback_ops(ex, cb)]
        expires = None
        if ex.status != RUNNING and ex.end is not None:
            expires = ex.end + self.clock.platform_delay(ex.retention * 86_400)
        self.store.save(ex.to_json(), minted, expires)
        if ex.status == RUNNING:
            self.running[ex.arn] = ex
            self.timers.set(ex.arn, machine.next_deadline(ex))
        else:
            self.running.pop(ex.arn, None)
            self.timers.set(ex.arn, None)
            if expires is not None:
                self._expire_at(expires)

    def _expire_at(self, when: float) -> None:
        """One timer for the next execution whose retention period ends."""
        current = self.timers.due(RETENTION)
        if current is None or when < current:
            self.timers.set(RETENTION, when)

    @staticmethod
    def _callback_ops(ex: Execution, callback_id: str) -> list[str]:
        return [
            op["Id"]
            for op in ex.ops.values()
            if (op.get("CallbackDetails") or {}).get("CallbackId") == callback_id
        ]

    def changed(self, ex: Execution, callbacks: Sequence[str] = ()) -> None:
        """Persist a change made from outside the function, then let it run on."""
        was_running = ex.arn in self.running
        self.save(ex, callbacks)
        if ex.status != RUNNING:
            if was_running:
                self._ended(ex)
            return
        if self._wants_invocation(ex):
            self.kick(ex.arn)

    # Starting -------------------------------------------------------------------------
    def start_execution(
        self,
        key: FunctionKey,
        version: str,
        config: dict[str, Any],
        payload: str,
        name: str | None,
        parent: dict[str, str] | None = None,
        trace: str | None = None,
    ) -> tuple[Execution, bool]:
        """A new execution (True), or the one already started under `name` (False)."""
        if name:
            existing = self.store.by_name(key.account, key.region, key.name, name)
            if existing is not None:
                if existing["input"] != payload:
                    raise AwsError(
                        "DurableExecutionAlreadyStartedException",
                        f"A durable execution named {name} has already been started for "
                        f"function {key.name} with a different input.",
                        409,
                        user=True,
                    )
                return self.get(existing["arn"]), False
        settings = durable_config(config) or {}
        timeout = int(settings.get("ExecutionTimeout") or DEFAULT_TIMEOUT)
        retention = int(settings.get("RetentionPeriodInDays") or DEFAULT_RETENTION)
        ex = new_execution(
            key.account,
            key.region,
            key.name,
            version,
            name,
            payload,
            self.clock.wall(),
            timeout,
            retention,
            self.clock.platform_delay(timeout),
        )
        ex.parent = parent
        ex.trace = trace
        self.save(ex)
        self.kick(ex.arn)
        return ex, True

    async def wait(self, arn: str) -> Execution:
        """The execution once it has ended."""
        ex = self.get(arn)
        if ex.status == RUNNING:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(arn, []).append(future)
            await future
        return self.get(arn)

    def _ended(self, ex: Execution) -> None:
        for future in self._waiters.pop(ex.arn, []):
            if not future.done():
                future.set_result(None)
        if ex.parent is not None:
            self._spawn(self._report_to_parent(ex))

    # Driving --------------------------------------------------------------------------
    @staticmethod
    def _wants_invocation(ex: Execution) -> bool:
        if ex.status != RUNNING or ex.paused:
            return False
        return ex.invoking or ex.seq > ex.delivered or not ex.has_pending()

    def kick(self, arn: str) -> None:
        self.runners.kick(arn, lambda: self._rounds(arn))

    def _due(self, arn: str) -> None:
        if arn == RETENTION:
            self.store.expire(self.clock.wall())
            upcoming = self.store.next_expiry()
            if upcoming is not None:
                self.timers.set(RETENTION, upcoming)
            return
        ex = self.running.get(arn)
        if ex is None:
            return
        if machine.fire_due(ex, self.clock.wall(), self.clock.scale):
            self.changed(ex)
        else:
            self.timers.set(arn, machine.next_deadline(ex))

    async def _rounds(self, arn: str) -> None:
        while True:
            ex = self.running.get(arn)
            if ex is None or not self._wants_invocation(ex):
                return
            again = await self._invoke_once(ex)
            if not again:
                return

    def _first_page(self, ex: Execution) -> dict[str, Any]:
        ops: list[dict[str, Any]] = []
        size = 0
        for index, op in enumerate(ex.ops.values()):
            shown = for_invocation(op)
            size += len(json.dumps(shown))
            if ops and (size > PAGE_BYTES or len(ops) >= PAGE_ITEMS):
                return {"Operations": ops, "NextMarker": str(index)}
            ops.append(shown)
        return {"Operations": ops}

    async def _invoke_once(self, ex: Execution) -> bool:
        """Run one invocation; True if the execution should be invoked again at once."""
        try:
            target = self.functions.target(FunctionRef(self._key(ex), ex.version))
        except AwsError as error:
            machine.finish(ex, "FAILED", self.clock.wall(), error=_error(error.code, error.message))
            self.changed(ex)
            return False
        request_id = str(uuid.uuid4())
        ex.invocation, ex.token, ex.invoking = request_id, new_token(), True
        ex.delivered = ex.seq
        self.save(ex)
        event = {
            "DurableExecutionArn": ex.arn,
            "CheckpointToken": ex.token,
            "InitialExecutionState": self._first_page(ex),
        }
        started = self.clock.wall()
        self.invocations += 1
        image = self.functions.image(self._key(ex), target.view)
        request = InvokeRequest(
            payload=json.dumps(event).encode(),
            request_id=request_id,
            invoked_arn=f"{ex.function_arn}:{ex.version}",
            trace_header=ex.trace,
        )
        provisioned = ex.version if ex.version != LATEST else None
        result = await self.admission.invoke(self._key(ex), image, request, provisioned)
        return self._invocation_ended(ex, request_id, started, result)

    def _dispatch_started(self, ex: Execution) -> None:
        """Start the chained invokes the invocation checkpointed: once it has ended, as
        the service does, so the parent's history records its invocation first."""
        for op in ex.ops.values():
            started = op["Type"] == "CHAINED_INVOKE" and op["Status"] == "STARTED"
            if started and not op.get("_dispatched"):
                op["_dispatched"] = True
                self._spawn(self._dispatch(ex.arn, op["Id"]))

    def _invocation_ended(
        self, ex: Execution, request_id: str, started: float, result: InvokeResult
    ) -> bool:
        now = self.clock.wall()
        if ex.invocation != request_id or not ex.invoking:
            return False  # the execution ended or moved on while it ran
        ex.invoking, ex.token = False, None
        self._dispatch_started(ex)
        if ex.status != RUNNING:
            machine.invocation_completed(ex, started, now, request_id, None)
            self.save(ex)
            return False
        output, error = _parse_output(result)
        if error is not None:  # the function failed: Lambda retries the invocation
            machine.invocation_completed(ex, started, now, request_id, error)
            ex.failures += 1
            if ex.failures >= MAX_FAILED_INVOCATIONS:
                machine.finish(ex, "FAILED", now, error=error)
            return self._retry_later(ex)
        machine.invocation_completed(ex, started, now, request_id, None)
        status = output.get("Status")
        if status == "SUCCEEDED":
            if output.get("Error") is not None:
                machine.finish(
                    ex,
                    "FAILED",
                    now,
                    error=_invalid_output("Cannot provide an Error for SUCCEEDED status."),
                )
            else:
                result_text = output.get("Result")
                machine.finish(
                    ex,
                    "SUCCEEDED",
                    now,
                    result=result_text if isinstance(result_text, str) else None,
                )
        elif status == "FAILED":
            machine.finish(ex, "FAILED", now, error=machine.error_object(output.get("Error")) or {})
        elif status == "PENDING":
            if ex.paused or ex.seq > ex.delivered or ex.has_pending():
                ex.failures = 0
            else:
                ex.failures += 1
                if ex.failures >= MAX_EMPTY_PENDING:
                    machine.finish(
                        ex,
                        "FAILED",
                        now,
                        error=_invalid_output(
                            "Cannot return PENDING status with no pending operations."
                        ),
                    )
                return self._retry_later(ex)
        else:
            machine.finish(
                ex,
                "FAILED",
                now,
                error=_invalid_output(f"Invalid invocation output status: {status}"),
            )
        self.changed(ex)
        return ex.status == RUNNING and not ex.paused and ex.seq > ex.delivered

    def _retry_later(self, ex: Execution) -> bool:
        """Persist a failed invocation; the next one starts after a backoff."""
        if ex.status != RUNNING:
            self.changed(ex)
            return False
        self.save(ex)
        arn = ex.arn

        async def later() -> None:
            await self.clock.sleep(RETRY_BACKOFF)
            self.kick(arn)

        self._spawn(later())
        return False

    @staticmethod
    def _key(ex: Execution) -> FunctionKey:
        return FunctionKey(ex.account, ex.region, ex.function)

    # Checkpoints ----------------------------------------------------------------------
    def checkpoint(
        self, arn: str, token: str, updates: list[dict[str, Any]], client_token: str | None
    ) -> dict[str, Any]:
        ex = self.get(arn)
        cached = ex.last_checkpoint
        if client_token and cached and cached["client"] == client_token and cached["in"] == token:
            return dict(cached["response"])
        if ex.status != RUNNING or not ex.invoking or token != ex.token:
            raise invalid("Invalid checkpoint token")
        now = self.clock.wall()
        outcome = machine.apply_checkpoint(ex, updates, now, self.clock.scale)
        machine.fire_due(ex, now, self.clock.scale)
        operations = [machine_public(op) for op in ex.unseen()]
        ex.delivered = ex.seq
        ended = ex.status != RUNNING
        ex.token = None if ended or ex.paused else new_token()
        response: dict[str, Any] = {"NewExecutionState": {"Operations": operations}}
        if ex.token is not None:
            response["CheckpointToken"] = ex.token
            ex.last_checkpoint = {"client": client_token or "", "in": token, "response": response}
        self.save(ex, outcome.callbacks)
        if ended:
            self._ended(ex)
        return response

    def state_page(
        self, arn: str, token: str, marker: str | None, max_items: int | None
    ) -> dict[str, Any]:
        ex = self.get(arn)
        if ex.status != RUNNING or token != ex.token:
            raise invalid("Invalid checkpoint token")
        start = int(marker) if marker and marker.isdigit() else 0
        limit = max(1, min(max_items or 100, 1000))
        ops = list(ex.ops.values())
        page = [machine_public(op) for op in ops[start : start + limit]]
        out: dict[str, Any] = {"Operations": page}
        if start + limit < len(ops):
            out["NextMarker"] = str(start + limit)
        return out

    # Chained invokes ------------------------------------------------------------------
    def _resume_chained(self, ex: Execution, op: dict[str, Any]) -> None:
        child_arn = op.get("_child")
        if child_arn is None:
            op["_dispatched"] = True
            self._spawn(self._dispatch(ex.arn, op["Id"]))
            return
        record = self.store.load(child_arn)
        if record is not None and record["status"] != RUNNING:
            self._spawn(self._report_to_parent(Execution.from_json(record)))

    async def _dispatch(self, arn: str, op_id: str) -> None:
        ex = self.running.get(arn)
        op = ex.ops.get(op_id) if ex else None
        if ex is None or op is None or op["Status"] != "STARTED":
            return
        payload = op.get("_payload") or "{}"
        ctx = RequestContext(ex.account, ex.region, "", "")
        try:
            ref = resolve(ctx, op["_target"])
            target = self.functions.target(ref)
        except AwsError as error:
            self._chained_done(arn, op_id, "FAILED", None, _error(error.code, error.message))
            return
        if durable_config(target.config) is not None:
            child, _ = self.start_execution(
                ref.key,
                target.version,
                target.config,
                payload,
                None,
                parent={"arn": arn, "op": op_id},
            )
            current = self.running.get(arn)
            if current is not None and op_id in current.ops:
                current.ops[op_id]["_child"] = child.arn
                index = current.ops[op_id].get("_event")
                if index is not None and index < len(current.events):
                    details = current.events[index].get("ChainedInvokeStartedDetails", {})
                    details["DurableExecutionArn"] = child.arn
                    details["ExecutedVersion"] = target.version
                self.save(current)
            return
        image = self.functions.image(ref.key, target.view)
        request = InvokeRequest(
            payload=payload.encode(),
            request_id=str(uuid.uuid4()),
            invoked_arn=f"{ref.key.arn}:{ref.qualifier}" if ref.qualifier else ref.key.arn,
        )
        provisioned = ref.qualifier if target.version != LATEST else None
        result = await self.admission.invoke(ref.key, image, request, provisioned)
        if result.function_error:
            self._chained_done(arn, op_id, "FAILED", None, _function_error(result.payload))
        else:
            self._chained_done(
                arn, op_id, "SUCCEEDED", result.payload.decode(errors="replace"), None
            )

    def _chained_done(
        self, arn: str, op_id: str, status: str, result: str | None, error: dict[str, Any] | None
    ) -> None:
        ex = self.running.get(arn)
        if ex is not None and machine.complete_chained(
            ex, op_id, status, self.clock.wall(), result, error
        ):
            self.changed(ex)

    async def _report_to_parent(self, child: Execution) -> None:
        assert child.parent is not None
        status = child.status
        self._chained_done(
            child.parent["arn"],
            child.parent["op"],
            status,
            child.result if status == "SUCCEEDED" else None,
            child.error if status != "SUCCEEDED" else None,
        )


def machine_public(op: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in op.items() if not k.startswith("_")}


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"ErrorType": error_type, "ErrorMessage": message}


def _invalid_output(message: str) -> dict[str, Any]:
    return _error("InvalidInvocationOutput", message)


def _function_error(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error: dict[str, Any] = {
        "ErrorType": str(body.get("errorType") or "Unhandled"),
        "ErrorMessage": str(body.get("errorMessage") or payload.decode(errors="replace")[:1024]),
    }
    trace = body.get("stackTrace")
    if isinstance(trace, list) and trace:
        error["StackTrace"] = [str(line) for line in trace][:50]
    return error


def _parse_output(result: InvokeResult) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The handler's answer, or the error that the invocation failed with."""
    if result.function_error:
        return {}, _function_error(result.payload)
    try:
        output = json.loads(result.payload)
    except ValueError:
        return {}, _invalid_output("The function's response is not valid JSON.")
    if not isinstance(output, dict) or "Status" not in output:
        return {"Status": None}, None
    return output, None

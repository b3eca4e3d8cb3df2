"""The synchronous invoke path: pool → environment → run → logs → release."""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from lamina.keys import FunctionKey
from lamina.observe import traces
from lamina.observe.logs import FunctionLog, LogStore
from lamina.sandbox.environment import Environment, Outcome
from lamina.sandbox.launch import FunctionImage
from lamina.sandbox.runtime_api import Invocation, StreamSink

TAIL_BYTES = 4096
TRANSCRIPT_LIMIT = 64 * 1024  # what one invocation keeps for its Tail; the rest is trimmed


@dataclass
class InvokeRequest:
    payload: bytes
    request_id: str = ""
    invoked_arn: str = ""
    client_context: str | None = None
    want_tail: bool = False
    trace_header: str | None = None  # X-Amzn-Trace-Id to continue (else the request's own)
    invocation_type: str = "RequestResponse"  # or Event (the async queue's)
    arrived: float = 0.0  # wall time the engine got it (set by Engine.invoke)
    memory_mb: int = 0  # the function's, set by Engine.invoke (for the invocation log)
    stream: StreamSink | None = None  # InvokeWithResponseStream: where the response goes
    tenant_id: str | None = None  # tenant isolation mode: environments of this tenant only


@dataclass
class InvokeResult:
    payload: bytes
    function_error: str | None
    executed_version: str
    request_id: str
    log_tail: str | None = None  # base64 of the last 4 KB, when asked for
    duration_ms: float = 0.0
    init_ms: float | None = None  # set when the invocation started its environment
    trace: traces.InvocationTrace | None = None
    error_type: str | None = None  # the function error's type (errorType), when it failed


class Transcript:
    """The lines of one invocation, written to the function's log; when a Tail was asked
    for, its last ones are kept too (otherwise nothing is, and the environment's output
    keeps going straight to the log)."""

    __slots__ = ("keep", "lines", "log", "size", "stream")

    def __init__(self, log: FunctionLog, stream: str, keep: bool) -> None:
        self.log = log
        self.stream = stream
        self.keep = keep
        self.lines: deque[str] = deque()  # popped from the left on every line of a flood
        self.size = 0

    def write(self, text: str) -> None:
        self.log.write(text, self.stream)
        if self.keep:
            self.lines.append(text)
            self.size += len(text) + 1
            while self.size > TRANSCRIPT_LIMIT and len(self.lines) > 1:
                self.size -= len(self.lines.popleft()) + 1

    def write_lines(self, *texts: str) -> None:
        self.log.write_lines(texts, self.stream)
        if self.keep:
            for text in texts:
                self.lines.append(text)
                self.size += len(text) + 1
            while self.size > TRANSCRIPT_LIMIT and len(self.lines) > 1:
                self.size -= len(self.lines.popleft()) + 1

    def tail(self) -> str:
        data = "".join(line + "\n" for line in self.lines).encode()[-TAIL_BYTES:]
        return base64.b64encode(data).decode()


def _iso(epoch: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    return f"{stamp}.{int(epoch * 1000) % 1000:03d}Z"


def _platform(kind: str, record: dict[str, object]) -> str:
    """A platform event as the JSON log format writes it (LoggingConfig.LogFormat JSON)."""
    return json.dumps({"time": _iso(time.time()), "type": kind, "record": record})


def start_line(image: FunctionImage, request_id: str, tenant: str | None) -> str:
    if image.log_format != "JSON":
        return f"START RequestId: {request_id} Version: {image.version}"
    record: dict[str, object] = {
        "requestId": request_id,
        "functionArn": image.arn,
        "version": image.version,
    }
    if tenant is not None:
        record["tenantId"] = tenant
    return _platform("platform.start", record)


def max_memory_mb(env: Environment) -> int:
    """Peak resident memory of the environment's process."""
    return env.max_memory_mb()


class EnvironmentSource(Protocol):
    """Where an invocation gets its environment: an on-demand pool or a provisioned set."""

    key: FunctionKey
    image: FunctionImage

    def acquire(self) -> tuple[Environment, bool]: ...

    def release(self, env: Environment) -> None: ...


class Invoker:
    def __init__(self, logs: LogStore) -> None:
        self.logs = logs

    async def invoke(self, pool: EnvironmentSource, request: InvokeRequest) -> InvokeResult:
        key, image = pool.key, pool.image
        request_id = request.request_id or str(uuid.uuid4())
        env, cold = pool.acquire()
        tail = request.want_tail
        transcript = Transcript(self.logs.log(key), env.log_stream, tail)
        trace = traces.begin(request.trace_header or traces.incoming_header.get(), image.tracing)
        output = env.output  # the log's writer for the environment's stream
        try:
            if tail:  # what the function prints is kept for the Tail too
                env.output = transcript.write
            if cold:
                trace.init_start = time.time()
                failure = await env.start(request_id)
                trace.init_end = time.time()
                if failure is not None:
                    transcript.write(start_line(image, request_id, request.tenant_id))
                    return self._finish(
                        image, request_id, failure, transcript, request, env, cold, trace=trace
                    )
            transcript.write(start_line(image, request_id, request.tenant_id))
            invocation = Invocation(
                request_id=request_id,
                payload=request.payload,
                deadline_ms=int(time.time() * 1000 + image.timeout_s * 1000),
                invoked_arn=request.invoked_arn or image.arn,
                trace_id=trace.header,
                client_context=request.client_context,
                stream=request.stream,
                tenant_id=request.tenant_id,
            )
            trace.invoke_start = time.time()
            started = time.monotonic()
            outcome = await env.invoke(invocation, image.timeout_s)
            duration = (time.monotonic() - started) * 1000
            trace.invoke_end = time.time()
            return self._finish(
                image, request_id, outcome, transcript, request, env, cold, duration, trace
            )
        finally:
            env.output = output
            pool.release(env)

    @staticmethod
    def _json_report(
        image: FunctionImage,
        request_id: str,
        outcome: Outcome,
        request: InvokeRequest,
        env: Environment,
        cold: bool,
        duration: float,
    ) -> dict[str, object]:
        metrics: dict[str, object] = {
            "durationMs": round(duration, 2),
            "billedDurationMs": max(math.ceil(duration), 1),
            "memorySizeMB": image.memory_mb,
            "maxMemoryUsedMB": max_memory_mb(env),
        }
        if cold:
            metrics["initDurationMs"] = round(env.init_duration_ms, 2)
        status = "success"
        if outcome.error_type == "Sandbox.Timedout":
            status = "timeout"
        elif outcome.error_type is not None:
            status = "error"
        record: dict[str, object] = {"requestId": request_id, "metrics": metrics, "status": status}
        if outcome.error_type is not None:
            record["errorType"] = outcome.error_type
        if request.tenant_id is not None:
            record["tenantId"] = request.tenant_id
        return record

    def _finish(
        self,
        image: FunctionImage,
        request_id: str,
        outcome: Outcome,
        transcript: Transcript,
        request: InvokeRequest,
        env: Environment,
        cold: bool,
        duration: float = 0.0,
        trace: traces.InvocationTrace | None = None,
    ) -> InvokeResult:
        if image.log_format == "JSON":
            report_json = self._json_report(
                image, request_id, outcome, request, env, cold, duration
            )
            if trace is not None and trace.sampled:
                report_json["tracing"] = {
                    "type": "X-Amzn-Trace-Id",
                    "value": f"Root={trace.root};Parent={trace.function_id};Sampled=1",
                }
            transcript.write(_platform("platform.report", report_json))
        else:
            report = (
                f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
                f"Billed Duration: {max(math.ceil(duration), 1)} ms\t"
                f"Memory Size: {image.memory_mb} MB\tMax Memory Used: {env.max_memory_mb()} MB"
            )
            if cold:
                report += f"\tInit Duration: {env.init_duration_ms:.2f} ms"
            if trace is not None and trace.sampled:
                transcript.write_lines(
                    f"END RequestId: {request_id}",
                    report,
                    f"XRAY TraceId: {trace.root}\tSegmentId: {trace.function_id}\tSampled: true",
                )
            else:
                transcript.write_lines(f"END RequestId: {request_id}", report)
        if trace is not None:
            trace.error_type = outcome.error_type
            trace.end = time.time()
        return InvokeResult(
            payload=outcome.payload,
            function_error="Unhandled" if outcome.error_type is not None else None,
            executed_version=image.version,
            request_id=request_id,
            log_tail=transcript.tail() if request.want_tail else None,
            duration_ms=duration,
            init_ms=env.init_duration_ms if cold else None,
            trace=trace,
            error_type=outcome.error_type,
        )

"""The engine's observer: finished invocations and throttles → metrics and traces."""

from __future__ import annotations

import logging
import time

from lamina.engine.concurrency import Throttle
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.keys import FunctionKey
from lamina.observe.invocation_log import InvocationLog
from lamina.observe.metrics import Metrics, qualifier_of
from lamina.observe.traces import TraceStore, lamina_segments

log = logging.getLogger("lamina.telemetry")


class Telemetry:
    """Records each event where it happens: one call per finished invocation, one per
    throttle (Engine.observer). Never lets a recording problem fail an invocation."""

    def __init__(
        self, metrics: Metrics, traces: TraceStore, invocations: InvocationLog | None = None
    ) -> None:
        self.metrics = metrics
        self.traces = traces
        self.invocations = invocations  # what `lamina trace export` reads

    def invoked(self, key: FunctionKey, request: InvokeRequest, result: InvokeResult) -> None:
        try:
            qualifier = qualifier_of(request.invoked_arn) if request.invoked_arn else None
            self.metrics.invocation(
                key,
                qualifier,
                result.executed_version,
                result.duration_ms,
                result.function_error is not None,
                result.init_ms,
            )
            if self.invocations is not None:
                self.invocations.record(
                    (
                        request.arrived or time.time(),
                        key.account,
                        key.region,
                        key.name,
                        qualifier or "",
                        request.invocation_type,
                        request.memory_mb,
                        result.duration_ms,
                        result.init_ms,
                        "Unhandled" if result.function_error is not None else "Success",
                        "",
                        result.request_id,
                    )
                )
            trace = result.trace
            if trace is not None and trace.sampled:
                arn = request.invoked_arn or key.arn
                for document in lamina_segments(
                    trace, key, arn, result.request_id, result.executed_version
                ):
                    self.traces.put(document, key.account, key.region)
        except Exception:
            log.exception("recording an invocation of %s failed", key.name)

    def throttled(self, key: FunctionKey, request: InvokeRequest, reason: Throttle) -> None:
        try:
            qualifier = qualifier_of(request.invoked_arn) if request.invoked_arn else None
            self.metrics.throttle(key, qualifier, reason.value)
            if self.invocations is not None:
                self.invocations.record(
                    (
                        request.arrived or time.time(),
                        key.account,
                        key.region,
                        key.name,
                        qualifier or "",
                        request.invocation_type,
                        request.memory_mb,
                        None,
                        None,
                        "Throttled",
                        reason.value,
                        request.request_id,
                    )
                )
        except Exception:
            log.exception("recording a throttle of %s failed", key.name)

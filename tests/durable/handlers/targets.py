"""Targets of the invoke suite's chained invokes: durable functions themselves."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution


@durable_execution
def echo(event: Any, context: DurableContext) -> Any:
    return event


@durable_execution
def fail(event: Any, context: DurableContext) -> Any:
    raise ValueError("target failed on purpose")


@durable_execution
def measure(event: Any, context: DurableContext) -> Any:
    return {"received": len(event) if isinstance(event, str) else event}

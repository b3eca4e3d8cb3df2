"""Handlers for the wait suite (requirements 2-N)."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration


@durable_execution
def h2_1(event: Any, context: DurableContext) -> Any:
    context.wait(Duration.from_seconds(2))
    return "waited"


@durable_execution
def h2_2(event: Any, context: DurableContext) -> Any:
    context.wait(Duration.from_seconds(2), name="custom_wait_name")
    return "waited"


@durable_execution
def h2_3(event: Any, context: DurableContext) -> Any:
    context.wait(Duration.from_seconds(2), name="wait-1")
    context.wait(Duration.from_seconds(2), name="wait-2")
    return {"completedWaits": 2}


@durable_execution
def h2_4(event: Any, context: DurableContext) -> Any:
    context.wait(Duration.from_minutes(1))
    return "waited"


@durable_execution
def h2_5(event: Any, context: DurableContext) -> Any:
    context.wait(Duration.from_hours(1))
    return "waited"

"""Handlers for the wait-for-callback suite (requirements 7-N)."""

from __future__ import annotations

import json
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
from common import given, retries


def submit(callback_id: str, context: Any) -> None:
    """Hands the callback id to the outside system (the test reads it from the history)."""


def _config(**kwargs: Any) -> WaitForCallbackConfig:
    return WaitForCallbackConfig(**kwargs)


class JsonObject(SerDes[Any]):
    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return json.loads(data)


@durable_execution
def h7_1(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name=given(event))


@durable_execution
def h7_2(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name="approval")


@durable_execution
def h7_3(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(lambda callback_id, ctx: None)


@durable_execution
def h7_4(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name=given(event))


@durable_execution
def h7_5(event: Any, context: DurableContext) -> Any:
    config = _config(timeout=Duration.from_seconds(3))
    return context.wait_for_callback(submit, name=given(event), config=config)


@durable_execution
def h7_6(event: Any, context: DurableContext) -> Any:
    try:
        return context.wait_for_callback(submit, name=given(event))
    except Exception:
        return "recovered"


@durable_execution
def h7_7(event: Any, context: DurableContext) -> Any:
    def refuse(callback_id: str, ctx: Any) -> None:
        raise RuntimeError("the submitter failed")

    config = _config(retry_strategy=retries(2, delay=1))
    return context.wait_for_callback(refuse, name=given(event), config=config)


@durable_execution
def h7_8(event: Any, context: DurableContext) -> Any:
    name = given(event)
    return context.run_in_child_context(
        lambda child: child.wait_for_callback(submit, name=name), name="wrapper"
    )


@durable_execution
def h7_9(event: Any, context: DurableContext) -> Any:
    context.wait_for_callback(submit, name="first")
    return context.wait_for_callback(submit, name="second")


@durable_execution
def h7_10(event: Any, context: DurableContext) -> Any:
    context.wait(Duration.from_seconds(1))
    context.step(lambda _: {"fixed": "data"})
    return context.wait_for_callback(submit, name=given(event))


@durable_execution
def h7_11(event: Any, context: DurableContext) -> Any:
    config = _config(serdes=JsonObject())
    return context.wait_for_callback(submit, name=given(event), config=config)["status"]


@durable_execution
def h7_12(event: Any, context: DurableContext) -> Any:
    config = _config(heartbeat_timeout=Duration.from_seconds(5))
    return context.wait_for_callback(submit, name=given(event), config=config)


@durable_execution
def h7_13(event: Any, context: DurableContext) -> Any:
    config = _config(heartbeat_timeout=Duration.from_seconds(10))
    return context.wait_for_callback(submit, name=given(event), config=config)


@durable_execution
def h7_14(event: Any, context: DurableContext) -> Any:
    config = _config(timeout=Duration.from_seconds(3))
    try:
        return context.wait_for_callback(submit, name=given(event), config=config)
    except Exception:
        return "timed-out-handled"


@durable_execution
def h7_15(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name=given(event))

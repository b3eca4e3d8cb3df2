"""Handlers for the callback suite (requirements 4-N)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import CallbackConfig, Duration
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
from common import given


class Received(SerDes[Any]):
    """Reads {"id", "message", "timestamp": ISO} into a typed record with epoch seconds."""

    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        raw = json.loads(data)
        when = dt.datetime.fromisoformat(raw["timestamp"].replace("Z", "+00:00"))
        return {"id": raw["id"], "message": raw["message"], "timestamp": int(when.timestamp())}


class Number(SerDes[Any]):
    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return int(json.loads(data))


def _timeout(seconds: int) -> CallbackConfig:
    return CallbackConfig(timeout=Duration.from_seconds(seconds))


@durable_execution
def h4_1(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name=given(event)).result()


@durable_execution
def h4_2(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name="approval").result()


@durable_execution
def h4_3(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name=given(event), config=_timeout(5)).result()


@durable_execution
def h4_4(event: Any, context: DurableContext) -> Any:
    config = CallbackConfig(heartbeat_timeout=Duration.from_seconds(5))
    return context.create_callback(name=given(event), config=config).result()


@durable_execution
def h4_5(event: Any, context: DurableContext) -> Any:
    config = CallbackConfig(heartbeat_timeout=Duration.from_seconds(10))
    return context.create_callback(name=given(event), config=config).result()


@durable_execution
def h4_6(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name=given(event)).result()


@durable_execution
def h4_7(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=given(event))
    context.step(lambda _: "in between")
    return callback.result()


@durable_execution
def h4_8(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=given(event), config=_timeout(5))
    context.step(lambda _: "in between")
    return callback.result()


@durable_execution
def h4_9(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=given(event))
    context.wait(Duration.from_seconds(5))
    return callback.result()


@durable_execution
def h4_10(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=given(event))
    context.wait(Duration.from_seconds(5))
    return callback.result()


@durable_execution
def h4_11(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=given(event), config=_timeout(3))
    context.wait(Duration.from_seconds(6))
    return callback.result()


@durable_execution
def h4_12(event: Any, context: DurableContext) -> Any:
    value = context.create_callback(name=given(event)).result()
    context.wait(Duration.from_seconds(2))
    return value


@durable_execution
def h4_13(event: Any, context: DurableContext) -> Any:
    try:
        message = context.create_callback(name=given(event)).result()
    except Exception as error:
        message = f"callback failed: {error}"
    context.wait(Duration.from_seconds(2))
    return message


@durable_execution
def h4_14(event: Any, context: DurableContext) -> Any:
    try:
        message = context.create_callback(name=given(event), config=_timeout(3)).result()
    except Exception as error:
        message = f"callback timed out: {error}"
    context.wait(Duration.from_seconds(2))
    return message


@durable_execution
def h4_15(event: Any, context: DurableContext) -> Any:
    config = CallbackConfig(serdes=Received())
    return {"received": context.create_callback(name=given(event), config=config).result()}


@durable_execution
def h4_16(event: Any, context: DurableContext) -> Any:
    count = context.create_callback(name=given(event), config=CallbackConfig(serdes=Number()))
    value = count.result()
    return {"count": value, "doubled": value * 2}


@durable_execution
def h4_17(event: Any, context: DurableContext) -> Any:
    first, second = given(event)
    a = context.create_callback(name=first).result()
    b = context.create_callback(name=second).result()
    return [a, b]


@durable_execution
def h4_18(event: Any, context: DurableContext) -> Any:
    first, second = given(event)
    a = context.create_callback(name=first)
    b = context.create_callback(name=second)
    return [a.result(), b.result()]


@durable_execution
def h4_19(event: Any, context: DurableContext) -> Any:
    first, second = given(event)
    a = context.create_callback(name=first)
    b = context.create_callback(name=second)
    b_value = b.result()
    return [a.result(), b_value]

"""Handlers for the invoke suite (requirements 5-N): chained invokes of durable targets."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, InvokeConfig
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
from common import given

ECHO = os.environ.get("ECHO_FUNCTION", "conformance-echo")
FAIL = os.environ.get("FAIL_FUNCTION", "conformance-fail")


class UpperPayload(SerDes[Any]):
    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return json.dumps({k: v.upper() if isinstance(v, str) else v for k, v in value.items()})

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return json.loads(data)


class UpperResult(SerDes[Any]):
    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return json.dumps(json.loads(data).upper())


@durable_execution
def h5_1(event: Any, context: DurableContext) -> Any:
    return context.invoke(ECHO, given(event))


@durable_execution
def h5_2(event: Any, context: DurableContext) -> Any:
    data = given(event)
    return context.invoke(ECHO, data["payload"], name=data["name"])


@durable_execution
def h5_3(event: Any, context: DurableContext) -> Any:
    return context.invoke(ECHO, given(event))


@durable_execution
def h5_4(event: Any, context: DurableContext) -> Any:
    return context.invoke(ECHO, None)


@durable_execution
def h5_5(event: Any, context: DurableContext) -> Any:
    return context.invoke(FAIL, {"reason": "fail"})


@durable_execution
def h5_6(event: Any, context: DurableContext) -> Any:
    try:
        return context.invoke(FAIL, {"reason": "fail"})
    except Exception:
        return "fallback"


@durable_execution
def h5_7(event: Any, context: DurableContext) -> Any:
    large = "x" * (200 * 1024)
    result = context.invoke(ECHO, large)
    return len(result)


@durable_execution
def h5_8(event: Any, context: DurableContext) -> Any:
    data = given(event)
    return context.invoke(ECHO, data["payload"], config=InvokeConfig(tenant_id=data["tenantId"]))


@durable_execution
def h5_9(event: Any, context: DurableContext) -> Any:
    value = context.invoke(ECHO, "cached")
    context.wait(Duration.from_seconds(1))
    return value


@durable_execution
def h5_10(event: Any, context: DurableContext) -> Any:
    try:
        value = context.invoke(FAIL, {"reason": "fail"})
    except Exception as error:
        value = f"caught: {type(error).__name__}"
    context.wait(Duration.from_seconds(1))
    return value


@durable_execution
def h5_11(event: Any, context: DurableContext) -> Any:
    value = context.step(lambda _: "from step")
    return context.invoke(ECHO, value)


@durable_execution
def h5_12(event: Any, context: DurableContext) -> Any:
    value = context.invoke(ECHO, "from invoke")
    return context.step(lambda _: value)


@durable_execution
def h5_13(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: child.invoke(ECHO, "inside child"))


@durable_execution
def h5_14(event: Any, context: DurableContext) -> Any:
    first = context.invoke(ECHO, "first")
    second = context.invoke(ECHO, "second")
    return [first, second]


@durable_execution
def h5_15(event: Any, context: DurableContext) -> Any:
    return context.invoke(ECHO, given(event), config=InvokeConfig(serdes_payload=UpperPayload()))


@durable_execution
def h5_16(event: Any, context: DurableContext) -> Any:
    return context.invoke(ECHO, given(event), config=InvokeConfig(serdes_result=UpperResult()))

"""Handlers for the parallel suite (requirements 8-N)."""

from __future__ import annotations

import json
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, ParallelBranch, durable_execution
from aws_durable_execution_sdk_python.config import (
    CompletionConfig,
    Duration,
    NestingType,
    ParallelConfig,
)
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext


def returns(value: Any) -> Any:
    return lambda ctx: value


def fails(ctx: DurableContext) -> Any:
    raise RuntimeError("branch failed")


def sequential(**completion: Any) -> ParallelConfig:
    return ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def projection(result: Any, *fields: str) -> dict[str, Any]:
    values = {
        "completionReason": result.completion_reason.value,
        "status": result.status.value,
        "successCount": result.success_count,
        "failureCount": result.failure_count,
        "totalCount": result.total_count,
    }
    return {name: values[name] for name in fields}


ALL = ("completionReason", "status", "successCount", "failureCount", "totalCount")
SHORT = ("completionReason", "successCount", "failureCount", "totalCount")


@durable_execution
def h8_1(event: Any, context: DurableContext) -> Any:
    branches = [
        lambda ctx: ctx.step(lambda _: "task-1"),
        lambda ctx: ctx.step(lambda _: "task-2"),
    ]
    return context.parallel(branches, name="parallel", config=sequential()).get_results()


@durable_execution
def h8_2(event: Any, context: DurableContext) -> Any:
    return context.parallel([returns("alpha"), returns("beta")], config=sequential()).get_results()


@durable_execution
def h8_3(event: Any, context: DurableContext) -> Any:
    branches = [
        ParallelBranch(returns("one"), name="first"),
        ParallelBranch(returns("two"), name="second"),
    ]
    return context.parallel(branches, name="named", config=sequential()).get_results()


@durable_execution
def h8_4(event: Any, context: DurableContext) -> Any:
    branches = [returns("hello"), returns(42), returns({"k": "v"})]
    return context.parallel(branches, config=sequential()).get_results()


@durable_execution
def h8_5(event: Any, context: DurableContext) -> Any:
    return context.parallel([], config=sequential()).get_results()


@durable_execution
def h8_6(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [returns("ok"), fails, returns("never")], config=sequential(tolerated_failure_count=0)
    )
    return projection(result, *ALL)


@durable_execution
def h8_7(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [fails, returns("never")], config=sequential(tolerated_failure_count=0)
    )
    result.throw_if_error()
    return result.get_results()


@durable_execution
def h8_8(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [returns(f"b{i}") for i in range(4)], config=sequential(min_successful=2)
    )
    return projection(result, "completionReason", "successCount", "totalCount")


@durable_execution
def h8_9(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [returns("a"), fails, returns("c")], config=sequential(tolerated_failure_count=1)
    )
    return projection(result, *ALL)


@durable_execution
def h8_10(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [fails, fails, returns("never")], config=sequential(tolerated_failure_count=1)
    )
    return projection(result, *SHORT)


@durable_execution
def h8_11(event: Any, context: DurableContext) -> Any:
    branches = [returns("r0"), returns("r1"), returns("r2")]
    return context.parallel(branches, config=ParallelConfig(max_concurrency=2)).get_results()


@durable_execution
def h8_12(event: Any, context: DurableContext) -> Any:
    branches = [lambda ctx: ctx.step(lambda _: "fa"), lambda ctx: ctx.step(lambda _: "fb")]
    config = ParallelConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return context.parallel(branches, config=config).get_results()


@durable_execution
def h8_13(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [fails, fails, returns("c"), returns("d")],
        config=sequential(tolerated_failure_percentage=25),
    )
    return projection(result, *SHORT)


@durable_execution
def h8_14(event: Any, context: DurableContext) -> Any:
    def second(ctx: DurableContext) -> str:
        ctx.wait(Duration.from_seconds(2))
        return "b1"

    branches = [lambda ctx: ctx.step(lambda _: "b0"), second]
    return context.parallel(branches, config=sequential()).get_results()


class Wrapped(SerDes[Any]):
    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return json.dumps({"wrapped": value})

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return json.loads(data)["wrapped"]


@durable_execution
def h8_15(event: Any, context: DurableContext) -> Any:
    config = ParallelConfig(max_concurrency=1, item_serdes=Wrapped())
    return context.parallel([returns("x"), returns("y")], config=config).get_results()


@durable_execution
def h8_16(event: Any, context: DurableContext) -> Any:
    result = context.parallel([fails, fails, fails], config=sequential(tolerated_failure_count=3))
    return projection(result, *ALL)


@durable_execution
def h8_17(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [returns("a"), fails, returns("c")], config=sequential(min_successful=3)
    )
    return projection(result, *ALL)


@durable_execution
def h8_18(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [fails, fails, returns("c"), returns("d")],
        config=sequential(min_successful=3, tolerated_failure_count=1),
    )
    return projection(result, *SHORT)


@durable_execution
def h8_19(event: Any, context: DurableContext) -> Any:
    return context.parallel(
        [returns("a"), returns("b")], config=ParallelConfig(max_concurrency=0)
    ).get_results()


@durable_execution
def h8_20(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [returns("a"), fails, returns("c")], config=sequential(tolerated_failure_count=1)
    )
    return {
        "hasFailure": result.has_failure,
        "successCount": len(result.succeeded()),
        "failureCount": len(result.failed()),
        "errorCount": len(result.get_errors()),
    }


@durable_execution
def h8_21(event: Any, context: DurableContext) -> Any:
    def inner(ctx: DurableContext) -> Any:
        branches = [lambda c: c.step(lambda _: "i1"), lambda c: c.step(lambda _: "i2")]
        return ctx.parallel(branches, config=sequential()).get_results()

    return context.parallel([inner], config=sequential()).get_results()


@durable_execution
def h8_22(event: Any, context: DurableContext) -> Any:
    result = context.parallel(
        [fails, returns("b"), returns("c"), returns("d")],
        config=sequential(tolerated_failure_percentage=25),
    )
    return projection(result, *ALL)

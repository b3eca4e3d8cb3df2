"""Handlers for the map suite (requirements 9-N)."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import (
    CompletionConfig,
    Duration,
    MapConfig,
    NestingType,
)
from aws_durable_execution_sdk_python.serdes import ExtendedTypeSerDes, SerDes, SerDesContext
from common import given
from parallel import ALL, SHORT, projection


def sequential(**completion: Any) -> MapConfig:
    return MapConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def fail_on(*indexes: int) -> Any:
    def func(ctx: DurableContext, item: Any, index: int, items: Any) -> Any:
        if index in indexes:
            raise RuntimeError(f"item {index} failed")
        return "ok"

    return func


@durable_execution
def h9_1(event: Any, context: DurableContext) -> Any:
    def greet(ctx: DurableContext, item: str, index: int, items: Any) -> str:
        return ctx.step(lambda _: f"Hello, {item}!")

    return context.map(given(event), greet, name="map", config=sequential()).get_results()


@durable_execution
def h9_2(event: Any, context: DurableContext) -> Any:
    return context.map(
        given(event), lambda ctx, item, index, items: item * 2, config=sequential()
    ).get_results()


@durable_execution
def h9_3(event: Any, context: DurableContext) -> Any:
    return context.map(
        given(event), lambda ctx, item, index, items: item + index, config=sequential()
    ).get_results()


@durable_execution
def h9_4(event: Any, context: DurableContext) -> Any:
    return context.map(
        given(event), lambda ctx, item, index, items: item, config=sequential()
    ).get_results()


@durable_execution
def h9_5(event: Any, context: DurableContext) -> Any:
    result = context.map([0, 1, 2], fail_on(1), config=sequential(tolerated_failure_count=0))
    return projection(result, *ALL)


@durable_execution
def h9_6(event: Any, context: DurableContext) -> Any:
    result = context.map([0, 1], fail_on(0), config=sequential(tolerated_failure_count=0))
    result.throw_if_error()
    return result.get_results()


@durable_execution
def h9_7(event: Any, context: DurableContext) -> Any:
    result = context.map([0, 1, 2, 3], fail_on(), config=sequential(min_successful=2))
    return projection(result, "completionReason", "successCount", "totalCount")


@durable_execution
def h9_8(event: Any, context: DurableContext) -> Any:
    result = context.map([0, 1, 2], fail_on(1), config=sequential(tolerated_failure_count=1))
    return projection(result, *ALL)


@durable_execution
def h9_9(event: Any, context: DurableContext) -> Any:
    result = context.map([0, 1, 2], fail_on(0, 1), config=sequential(tolerated_failure_count=1))
    return projection(result, *SHORT)


@durable_execution
def h9_10(event: Any, context: DurableContext) -> Any:
    result = context.map(
        [0, 1, 2, 3], fail_on(0, 1), config=sequential(tolerated_failure_percentage=25)
    )
    return projection(result, *SHORT)


@durable_execution
def h9_11(event: Any, context: DurableContext) -> Any:
    return context.map(
        [0, 1, 2], lambda ctx, item, index, items: f"r{item}", config=MapConfig(max_concurrency=2)
    ).get_results()


@durable_execution
def h9_12(event: Any, context: DurableContext) -> Any:
    def step(ctx: DurableContext, item: str, index: int, items: Any) -> str:
        return ctx.step(lambda _: item)

    config = MapConfig(max_concurrency=1, nesting_type=NestingType.FLAT)
    return context.map(["fa", "fb"], step, config=config).get_results()


@durable_execution
def h9_13(event: Any, context: DurableContext) -> Any:
    config = MapConfig(max_concurrency=1, item_namer=lambda item, index: f"item-{item}")
    return context.map(
        given(event), lambda ctx, item, index, items: item * 10, config=config
    ).get_results()


class Wrapping(SerDes[Any]):
    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return f"wrapped:{value}"

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return data.removeprefix("wrapped:")


@durable_execution
def h9_14(event: Any, context: DurableContext) -> Any:
    config = MapConfig(max_concurrency=1, item_serdes=Wrapping())
    return context.map(
        ["x", "y"], lambda ctx, item, index, items: item.upper(), config=config
    ).get_results()


@durable_execution
def h9_15(event: Any, context: DurableContext) -> Any:
    def func(ctx: DurableContext, item: int, index: int, items: Any) -> str:
        if index == 1:
            ctx.wait(Duration.from_seconds(1))
        return ctx.step(lambda _: f"r{index}")

    return context.map([0, 1], func, config=sequential()).get_results()


@durable_execution
def h9_16(event: Any, context: DurableContext) -> Any:
    result = context.map(
        [0, 1, 2, 3],
        lambda ctx, item, index, items: str(index) * (70 * 1024),
        config=sequential(),
    )
    return projection(result, "successCount", "totalCount")


@durable_execution
def h9_17(event: Any, context: DurableContext) -> Any:
    result = context.map(
        ["a", "b"], lambda ctx, item, index, items: item.upper(), config=sequential()
    ).get_results()
    context.wait(Duration.from_seconds(1))
    return result


@durable_execution
def h9_18(event: Any, context: DurableContext) -> Any:
    result = context.map([0, 1], fail_on(1), config=sequential(tolerated_failure_count=1))
    summary = projection(result, *ALL)
    context.wait(Duration.from_seconds(1))
    return summary


class OperationLevel(SerDes[Any]):
    """The whole map result as "OPSERDE:" and its results joined by commas."""

    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return "OPSERDE:" + ",".join(value.get_results())

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return data[len("OPSERDE:") :].split(",")


def _results(value: Any) -> Any:
    return value if isinstance(value, list) else value.get_results()


@durable_execution
def h9_19(event: Any, context: DurableContext) -> Any:
    config = MapConfig(max_concurrency=1, serdes=OperationLevel(), item_serdes=ExtendedTypeSerDes())
    return _results(
        context.map(["x", "y"], lambda ctx, item, index, items: item.upper(), config=config)
    )


@durable_execution
def h9_20(event: Any, context: DurableContext) -> Any:
    config = MapConfig(max_concurrency=1, serdes=OperationLevel(), item_serdes=ExtendedTypeSerDes())
    result = _results(
        context.map(["x", "y"], lambda ctx, item, index, items: item.upper(), config=config)
    )
    context.wait(Duration.from_seconds(1))
    return result

"""Handlers for the child context suite (requirements 3-N)."""

from __future__ import annotations

import time
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import ChildConfig, Duration, StepConfig
from common import Upper, bump, crash, given, retries

NO_RETRY = StepConfig(retry_strategy=retries(1))


def _fail(_: StepContext) -> None:
    raise RuntimeError("step failed")


@durable_execution
def h3_1(event: Any, context: DurableContext) -> Any:
    text = given(event)
    return context.run_in_child_context(lambda child: child.step(lambda _: text))


@durable_execution
def h3_2(event: Any, context: DurableContext) -> Any:
    data = given(event)
    return context.run_in_child_context(
        lambda child: child.step(lambda _: data["value"]), name=data["name"]
    )


@durable_execution
def h3_3(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def body(child: DurableContext) -> Any:
        first = child.step(lambda _: text)
        return child.step(lambda _: first)

    return context.run_in_child_context(body, name="sequential")


@durable_execution
def h3_4(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(
        lambda child: child.step(_fail, config=NO_RETRY), name="failing"
    )


@durable_execution
def h3_5(event: Any, context: DurableContext) -> Any:
    text = given(event)
    try:
        context.run_in_child_context(lambda child: child.step(_fail, config=NO_RETRY))
    except Exception:
        return context.step(lambda _: text)
    return None


@durable_execution
def h3_6(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def inner(child: DurableContext) -> Any:
        return child.step(lambda _: text)

    def outer(child: DurableContext) -> Any:
        child.step(lambda _: text)
        return child.run_in_child_context(inner, name="inner")

    return context.run_in_child_context(outer, name="outer")


@durable_execution
def h3_7(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def flaky(step: StepContext) -> str:
        if step.attempt < 2:
            raise RuntimeError("first attempt fails")
        return text

    return context.run_in_child_context(
        lambda child: child.step(flaky, config=StepConfig(retry_strategy=retries(3))),
        name="retrying",
    )


@durable_execution
def h3_8(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(
        lambda child: child.step(_fail, config=StepConfig(retry_strategy=retries(2))),
        name="exhausted",
    )


@durable_execution
def h3_9(event: Any, context: DurableContext) -> Any:
    text = given(event)
    value = context.run_in_child_context(lambda child: child.step(lambda _: text))
    context.wait(Duration.from_seconds(1))
    return value


@durable_execution
def h3_10(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def body(child: DurableContext) -> Any:
        value = child.step(lambda _: text)
        child.wait(Duration.from_seconds(1))
        return value

    return context.run_in_child_context(body, name="step-and-wait")


@durable_execution
def h3_11(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def body(child: DurableContext) -> Any:
        # Logged on replays too, so that re-running the body is seen.
        child.logger.with_is_replaying(lambda: False).info(f"building large result for {text}")
        small = child.step(lambda _: text)
        return small * (300 * 1024 // max(1, len(small)))

    large = context.run_in_child_context(body, name="large")
    context.wait(Duration.from_seconds(1))
    return len(large)


@durable_execution
def h3_12(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def once(_: StepContext) -> str:
        if bump("runs") == 1:
            time.sleep(0.5)  # the step's START checkpoint is sent in the background
            crash()
        return text

    return context.run_in_child_context(lambda child: child.step(once))


@durable_execution
def h3_13(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def body(child: DurableContext) -> Any:
        child.wait(Duration.from_seconds(1))
        return text

    context.run_in_child_context(body, name="waiting")
    return context.step(lambda _: text)


@durable_execution
def h3_14(event: Any, context: DurableContext) -> Any:
    text = given(event)
    return context.run_in_child_context(
        lambda child: child.step(lambda _: text), name="upper", config=ChildConfig(serdes=Upper())
    )


@durable_execution
def h3_15(event: Any, context: DurableContext) -> Any:
    def body(child: DurableContext) -> Any:
        raise RuntimeError("thrown in the child body")

    return context.run_in_child_context(body, name="throwing")


@durable_execution
def h3_16(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: None, name="empty")


@durable_execution
def h3_17(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def body(child: DurableContext) -> Any:
        child.logger.with_is_replaying(lambda: False).info(f"child body ran for {text}")
        return text

    value = context.run_in_child_context(body, name="logging")
    context.wait(Duration.from_seconds(1))
    return value


@durable_execution
def h3_18(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def body(child: DurableContext) -> Any:
        value = child.step(lambda _: text)
        child.wait(Duration.from_seconds(1))
        return value

    value = context.run_in_child_context(body, name="inner-work")
    context.step(lambda _: value)
    context.wait(Duration.from_seconds(1))
    return value

"""Handlers for the step suite (requirements 1-N), written from their descriptions."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, StepConfig, StepSemantics
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from common import Upper, bump, crash, given, retries

NO_RETRY = StepConfig(retry_strategy=retries(1))


class TransientError(Exception):
    pass


@durable_execution
def h1_1(event: Any, context: DurableContext) -> Any:
    who = given(event)
    return context.step(lambda _: f"Hello, {who}!")


@durable_execution
def h1_2(event: Any, context: DurableContext) -> Any:
    who = given(event)
    return context.step(lambda _: f"Hello, {who}!", name="custom_step_name")


@durable_execution
def h1_3(event: Any, context: DurableContext) -> Any:
    first = context.step(lambda _: "first")
    return context.step(lambda _: f"{first}_second")


@durable_execution
def h1_4(event: Any, context: DurableContext) -> Any:
    data = given(event)
    return context.step(
        lambda _: {"user": {"name": data["name"], "tags": data["tags"]}, "count": len(data["tags"])}
    )


@durable_execution
def h1_5(event: Any, context: DurableContext) -> Any:
    return context.step(lambda _: None)


@durable_execution
def h1_6(event: Any, context: DurableContext) -> Any:
    text = given(event)
    return context.step(lambda _: text, config=StepConfig(serdes=Upper()))


@durable_execution
def h1_7(event: Any, context: DurableContext) -> Any:
    who = given(event)

    def greet(step: StepContext) -> str:
        step.logger.info(f"Greeting step started for: {who}")
        greeting = f"Hello, {who}!"
        step.logger.info(f"Greeting step completed with: {greeting}")
        return greeting

    return context.step(greet)


@durable_execution
def h1_8(event: Any, context: DurableContext) -> Any:
    value = context.step(lambda _: "computed")
    context.wait(Duration.from_seconds(2))
    return value


@durable_execution
def h1_9(event: Any, context: DurableContext) -> Any:
    value = context.step(lambda _: "cached_value")
    context.wait(Duration.from_seconds(1))
    return value


@durable_execution
def h1_10(event: Any, context: DurableContext) -> Any:
    def fail(_: StepContext) -> None:
        raise RuntimeError("permanent failure")

    try:
        context.step(fail, config=NO_RETRY)
    except Exception as error:
        caught = str(error)
    context.wait(Duration.from_seconds(1))
    return caught


@durable_execution
def h1_11(event: Any, context: DurableContext) -> Any:
    def flaky(step: StepContext) -> str:
        if step.attempt < 2:
            raise RuntimeError("first attempt fails")
        return "Operation succeeded"

    return context.step(flaky, config=StepConfig(retry_strategy=retries(3)))


@durable_execution
def h1_12(event: Any, context: DurableContext) -> Any:
    def always(_: StepContext) -> None:
        raise RuntimeError("always fails")

    return context.step(always, config=StepConfig(retry_strategy=retries(4)))


@durable_execution
def h1_13(event: Any, context: DurableContext) -> Any:
    def third(step: StepContext) -> str:
        if step.attempt < 3:
            raise RuntimeError(f"attempt {step.attempt} fails")
        return "third time"

    return context.step(third)


@durable_execution
def h1_14(event: Any, context: DurableContext) -> Any:
    def third(step: StepContext) -> str:
        if bump("attempts") < 3:
            raise RuntimeError("not yet")
        return "done"

    return context.step(third, config=StepConfig(retry_strategy=retries(5, delay=2, backoff=3)))


@durable_execution
def h1_15(event: Any, context: DurableContext) -> Any:
    def transient(step: StepContext) -> str:
        if step.attempt < 2:
            raise TransientError("try again")
        return "recovered"

    strategy = create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=3,
            initial_delay=Duration.from_seconds(1),
            retryable_error_types=[TransientError],
        )
    )
    return context.step(transient, config=StepConfig(retry_strategy=strategy))


@durable_execution
def h1_16(event: Any, context: DurableContext) -> Any:
    def transient(_: StepContext) -> str:
        raise TransientError("not retried")

    strategy = create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=3, initial_delay=Duration.from_seconds(1), retryable_error_types=[KeyError]
        )
    )
    return context.step(transient, config=StepConfig(retry_strategy=strategy))


@durable_execution
def h1_17(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def flaky(step: StepContext) -> str:
        step.logger.info(text)
        crash()
        return "unreachable"

    config = StepConfig(
        step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY, retry_strategy=retries(1)
    )
    return context.step(flaky, name="at_most_once_flaky_step", config=config)


@durable_execution
def h1_18(event: Any, context: DurableContext) -> Any:
    text = given(event)

    def flaky(step: StepContext) -> str:
        step.logger.info(text)
        if bump("runs") == 1:
            crash()
        return "succeeded on second attempt"

    config = StepConfig(
        step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY, retry_strategy=retries(3)
    )
    return context.step(flaky, config=config)


@durable_execution
def h1_19(event: Any, context: DurableContext) -> Any:
    def broken(_: StepContext) -> None:
        raise RuntimeError("broken")

    return context.step(broken, config=NO_RETRY)


@durable_execution
def h1_20(event: Any, context: DurableContext) -> Any:
    def broken(_: StepContext) -> None:
        raise RuntimeError("broken")

    try:
        return context.step(broken, config=NO_RETRY)
    except Exception:
        return context.step(lambda _: "fallback_result")

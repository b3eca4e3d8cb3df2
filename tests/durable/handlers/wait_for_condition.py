"""Handlers for the wait-for-condition suite (requirements 6-N)."""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_durable_execution_sdk_python.config import Duration, JitterStrategy
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitForConditionDecision,
    WaitStrategyConfig,
    create_wait_strategy,
)
from common import given


def until(limit: int) -> Any:
    """Poll every second while the state is below `limit`."""

    def strategy(state: Any, attempts: int) -> WaitForConditionDecision:
        if state >= limit:
            return WaitForConditionDecision.stop_polling()
        return WaitForConditionDecision.continue_waiting(Duration.from_seconds(1))

    return strategy


def increment(state: int, _: Any) -> int:
    return state + 1


def counting(limit: int, start: int = 0) -> WaitForConditionConfig[int]:
    return WaitForConditionConfig(wait_strategy=until(limit), initial_state=start)


@durable_execution
def h6_1(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(increment, counting(given(event)))


@durable_execution
def h6_2(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(lambda state, _: state, counting(5, start=5))


@durable_execution
def h6_3(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(increment, counting(given(event)), name="poll-status")


@durable_execution
def h6_4(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(increment, counting(given(event), start=5))


@durable_execution
def h6_5(event: Any, context: DurableContext) -> Any:
    limit = given(event)
    strategy = create_wait_strategy(
        WaitStrategyConfig(
            should_continue_polling=lambda state: state < limit,
            initial_delay=Duration.from_seconds(2),
            backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE,
        )
    )
    return context.wait_for_condition(
        increment, WaitForConditionConfig(wait_strategy=strategy, initial_state=0)
    )


@durable_execution
def h6_6(event: Any, context: DurableContext) -> Any:
    strategy = create_wait_strategy(
        WaitStrategyConfig(
            should_continue_polling=lambda state: True,
            max_attempts=3,
            initial_delay=Duration.from_seconds(1),
            backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE,
        )
    )
    return context.wait_for_condition(
        increment, WaitForConditionConfig(wait_strategy=strategy, initial_state=0)
    )


def _broken(state: Any, _: Any) -> Any:
    raise RuntimeError("the check failed")


@durable_execution
def h6_7(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(_broken, counting(1))


@durable_execution
def h6_8(event: Any, context: DurableContext) -> Any:
    try:
        return context.wait_for_condition(_broken, counting(1))
    except Exception:
        return "recovered"


@durable_execution
def h6_9(event: Any, context: DurableContext) -> Any:
    def check(state: dict[str, Any], _: Any) -> dict[str, Any]:
        attempts = state["attempts"] + 1
        return {"status": "DONE" if attempts >= 2 else "PENDING", "attempts": attempts}

    def strategy(state: dict[str, Any], attempts: int) -> WaitForConditionDecision:
        if state["status"] != "PENDING":
            return WaitForConditionDecision.stop_polling()
        return WaitForConditionDecision.continue_waiting(Duration.from_seconds(1))

    config = WaitForConditionConfig(
        wait_strategy=strategy, initial_state={"status": "PENDING", "attempts": 0}
    )
    return context.wait_for_condition(check, config)


@durable_execution
def h6_10(event: Any, context: DurableContext) -> Any:
    def strategy(state: Any, attempts: int) -> WaitForConditionDecision:
        return WaitForConditionDecision.stop_polling()

    config = WaitForConditionConfig(wait_strategy=strategy, initial_state=0)
    return context.wait_for_condition(lambda state, _: None, config)


class Reversed(SerDes[str]):
    """Keeps the state reversed and bracketed in the checkpoint."""

    def serialize(self, value: str, ctx: SerDesContext) -> str:
        return "<" + value[::-1] + ">"

    def deserialize(self, data: str, ctx: SerDesContext) -> str:
        return data[1:-1][::-1]


@durable_execution
def h6_11(event: Any, context: DurableContext) -> Any:
    def strategy(state: str, attempts: int) -> WaitForConditionDecision:
        if len(state) >= 2:
            return WaitForConditionDecision.stop_polling()
        return WaitForConditionDecision.continue_waiting(Duration.from_seconds(1))

    config = WaitForConditionConfig(wait_strategy=strategy, initial_state="", serdes=Reversed())
    return context.wait_for_condition(lambda state, _: state + "x", config)


@durable_execution
def h6_12(event: Any, context: DurableContext) -> Any:
    value = context.wait_for_condition(increment, counting(given(event)))
    return context.step(lambda _: value * 10)


@durable_execution
def h6_13(event: Any, context: DurableContext) -> Any:
    first = context.wait_for_condition(increment, counting(2))
    return context.wait_for_condition(increment, counting(4, start=first))

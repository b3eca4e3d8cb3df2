"""Shared by the conformance handlers: the requirement's input and a counter kept outside
the function (the state directory the test hands over), for behaviour that must differ
between the first and a later invocation, such as a crash on the first attempt only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aws_durable_execution_sdk_python.config import Duration, JitterStrategy
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext


def given(event: Any) -> Any:
    """The requirement's Input: the test invokes with {"Input": ...}."""
    return event.get("Input") if isinstance(event, dict) else event


def bump(name: str) -> int:
    """How many times `name` has been counted before, counting this one (1, 2, ...)."""
    root = Path(os.environ["CONFORMANCE_STATE"]) / os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def crash() -> None:
    """Ends the runtime process at once, as a crash would."""
    os._exit(1)


def retries(attempts: int, delay: int = 1, backoff: float = 1.0, **extra: Any) -> Any:
    return create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=attempts,
            initial_delay=Duration.from_seconds(delay),
            backoff_rate=backoff,
            jitter_strategy=JitterStrategy.NONE,
            **extra,
        )
    )


class Upper(SerDes[Any]):
    """Checkpoints a string upper-cased, as it is (no JSON quoting)."""

    def serialize(self, value: Any, ctx: SerDesContext) -> str:
        return str(value).upper()

    def deserialize(self, data: str, ctx: SerDesContext) -> Any:
        return data

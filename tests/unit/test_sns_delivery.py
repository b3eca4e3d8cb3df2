"""SNS's delivery policies, and a delivery to a function that fails on the function's
side (its store out of reach) retried as AWS retries managed endpoints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from lamina.clock import Clock
from lamina.deliveries import Delivery
from lamina.services.sns.delivery import DEFAULT_HTTP_POLICY, Deliveries, managed_delay, retry_delay
from lamina.services.sns.publish import Publisher
from lamina.services.sns.store import TopicStore
from lamina.services.sns.topics import Topics

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:f"


def test_managed_endpoint_policy() -> None:
    delays = [managed_delay(n) for n in range(1, 18)]
    assert delays[:5] == [0.0, 0.0, 0.0, 1.0, 1.0]  # 3 at once, 2 after a second
    backoff = delays[5:15]
    assert backoff[0] == 1.0 and backoff[-1] == 20.0 and backoff == sorted(backoff)
    assert delays[15:] == [20.0, 20.0]
    assert managed_delay(100_015) == 20.0 and managed_delay(100_016) is None


def test_http_policies() -> None:
    assert [retry_delay(DEFAULT_HTTP_POLICY, n) for n in range(1, 5)] == [20, 20, 20, None]
    policy = {"numRetries": 6, "numNoDelayRetries": 1, "numMinDelayRetries": 1,
              "numMaxDelayRetries": 1, "minDelayTarget": 2, "maxDelayTarget": 32,
              "backoffFunction": "exponential"}  # fmt: skip
    delays = [retry_delay(policy, n) for n in range(1, 8)]
    assert delays[0] == 0 and delays[1] == 2 and delays[5] == 32 and delays[6] is None
    assert 2 <= delays[2] <= delays[3] <= delays[4] <= 32  # type: ignore[operator]


class Flaky:
    """A function target whose store fails twice, then takes the event."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def invoke_async(self, function_arn: str, payload: bytes, **_: Any) -> Delivery:
        self.calls.append(json.loads(payload))
        return Delivery.FAILED if len(self.calls) <= 2 else Delivery.ACCEPTED

    def may_deliver(self, *args: Any, **kwargs: Any) -> Delivery:
        return Delivery.ACCEPTED


class NoQueues:
    def send_as_service(self, *args: Any, **kwargs: Any) -> Delivery:
        raise AssertionError("no dead-letter queue expected")

    def may_deliver(self, *args: Any, **kwargs: Any) -> Delivery:
        return Delivery.MISSING


def test_a_failure_on_the_functions_side_is_retried(tmp_path: Path) -> None:
    async def run() -> tuple[Flaky, int]:
        clock = Clock(0.01)
        store = TopicStore(tmp_path)
        topics = Topics(store, clock)
        target = Flaky()
        deliveries = Deliveries(topics, store, clock, target, NoQueues())
        await deliveries.start()
        topic = topics.create("000000000000", "us-east-1", "t", {}, {})
        topics.subscribe(topic, "000000000000", "lambda", FUNCTION, {}, "")
        publisher = Publisher(topics, deliveries, clock)
        await publisher.publish(topic, publisher.prepare(topic, {"Message": "m"}, ""))
        for _ in range(100):
            if len(target.calls) >= 3 and not store.pending():
                break
            await asyncio.sleep(0.01)
        left = len(store.pending())
        await deliveries.close()
        store.close()
        return target, left

    target, left = asyncio.run(run())
    assert len(target.calls) == 3  # the first attempt and two immediate retries
    assert {c["Records"][0]["Sns"]["Message"] for c in target.calls} == {"m"}
    assert left == 0  # delivered: nothing left in the outbox

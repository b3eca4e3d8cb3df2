"""How a service delivers to another: the small interfaces S3, SNS and EventBridge reach
Lambda, SQS and SNS through, as AWS's services do, on behalf of a resource of theirs.

Every delivery names the service principal (`sns.amazonaws.com`), the resource it acts
for (`source_arn`: the topic, the rule, the bucket) and that resource's account: the
target's resource policy decides, with `aws:SourceArn` and `aws:SourceAccount` set, as
IAM decides for AWS's services. server.py hands each service the implementations
(control/service_invoke.py for functions, services/sqs for queues, services/sns for topics).
Shared vocabulary, like keys.py: control and every service import it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class Delivery(StrEnum):
    ACCEPTED = "accepted"  # on disk at the target (an async event, a message)
    MISSING = "missing"  # no such function, queue or topic
    DENIED = "denied"  # the target's resource policy does not let the service in
    TOO_LARGE = "too_large"  # the target refuses a payload this size
    FAILED = "failed"  # anything else (the target refused it)

    @property
    def retryable(self) -> bool:
        """Whether trying again later may succeed (a policy may be added, a function
        created); a payload too large stays too large."""
        return self is not Delivery.TOO_LARGE


class FunctionInvoker(Protocol):
    async def invoke_async(
        self,
        function_arn: str,
        payload: bytes,
        *,
        service: str,
        source_arn: str,
        source_account: str,
    ) -> Delivery:
        """An asynchronous invoke (the function's event queue: retries, DLQ,
        destinations) if the function's policy lets `service` invoke it for `source_arn`."""
        ...

    def may_deliver(
        self, function_arn: str, *, service: str, source_arn: str, source_account: str
    ) -> Delivery:
        """What a delivery would meet (ACCEPTED, MISSING, DENIED), without delivering: a
        service checks its destinations when they are configured."""
        ...


class QueueSender(Protocol):
    def send_as_service(
        self,
        queue_arn: str,
        body: str,
        *,
        service: str,
        source_arn: str,
        source_account: str,
        attributes: dict[str, dict[str, str]] | None = None,
        group: str | None = None,
        dedup: str | None = None,
    ) -> Delivery:
        """SendMessage if the queue's policy lets `service` send for `source_arn`."""
        ...

    def may_deliver(
        self, queue_arn: str, *, service: str, source_arn: str, source_account: str
    ) -> Delivery: ...


class TopicPublisher(Protocol):
    async def publish_as_service(
        self,
        topic_arn: str,
        message: str,
        *,
        service: str,
        source_arn: str,
        source_account: str,
        subject: str | None = None,
    ) -> Delivery:
        """Publish if the topic's policy lets `service` publish for `source_arn`."""
        ...

    def may_deliver(
        self, topic_arn: str, *, service: str, source_arn: str, source_account: str
    ) -> Delivery: ...


class MetricSink(Protocol):
    """Where figures go (observe.metrics.Metrics.put): the figures of AWS/SNS,
    AWS/Events, ... as CloudWatch has them."""

    def put(
        self,
        account: str,
        region: str,
        namespace: str,
        name: str,
        dims: tuple[tuple[str, str], ...],
        value: float,
        timestamp: float | None = None,
        unit: str | None = None,
    ) -> None: ...

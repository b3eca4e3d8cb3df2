"""SQS as event source mappings read it (engine/pollers/sources.py's QueueSource), and
Lambda's SQS event record, exactly as AWS builds it."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from lamina.services.sqs.messages import Claim, system_attributes
from lamina.services.sqs.queue import Queue
from lamina.services.sqs.queues import Queues


class QueueView:
    """One queue, for a poller."""

    def __init__(self, queues: Queues, queue: Queue) -> None:
        self._queues = queues
        self._queue = queue

    @property
    def fifo(self) -> bool:
        return self._queue.fifo

    @property
    def visibility_timeout(self) -> int:
        return self._queue.int_attribute("VisibilityTimeout")

    async def poll(
        self, batch_size: int, window: float, max_bytes: int, wait: float
    ) -> list[Claim]:
        return await self._queues.poll(self._queue, batch_size, window, max_bytes, wait)

    def hold(self, claims: Sequence[Claim], seconds: float) -> list[Claim]:
        return self._queues.hold(self._queue, claims, seconds)

    def release(self, claims: Sequence[Claim]) -> None:
        self._queues.release(self._queue, claims)

    def settle(self, claims: Sequence[Claim]) -> int:
        return self._queues.settle(self._queue, claims)

    def records(self, claims: Sequence[Claim]) -> list[dict[str, Any]]:
        return [self.record(claim) for claim in claims]

    @staticmethod
    def filter_form(record: dict[str, Any]) -> dict[str, Any]:
        """The record, its body parsed when it is JSON (patterns on `body` see fields)."""
        try:
            body = json.loads(record["body"])
        except ValueError:
            return record
        return {**record, "body": body}

    def record(self, claim: Claim) -> dict[str, Any]:
        queue = self._queue
        message = claim.message
        attributes = {}
        for name, value in message.attributes.items():
            item: dict[str, Any] = {
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            if value.get("BinaryValue") is not None:
                item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
            else:
                item["stringValue"] = value.get("StringValue", "")
            attributes[name] = item
        system = system_attributes(message)
        system.pop("DeadLetterQueueSourceArn", None)
        entry: dict[str, Any] = {
            "messageId": message.id,
            "receiptHandle": self._queues.receipt_handle(queue, claim),
            "body": message.body,
            "attributes": system,
            "messageAttributes": attributes,
            "md5OfBody": message.md5_body,
        }
        if message.md5_attributes:
            entry["md5OfMessageAttributes"] = message.md5_attributes
        entry.update(
            {"eventSource": "aws:sqs", "eventSourceARN": queue.arn, "awsRegion": queue.region}
        )
        return entry


class QueueSource:
    """Every queue, for pollers and for on-failure destinations."""

    def __init__(self, queues: Queues) -> None:
        self._queues = queues

    def queue(self, arn: str) -> QueueView | None:
        queue = self._queues.queue_by_arn(arn)
        return None if queue is None else QueueView(self._queues, queue)

    def send_internal(self, arn: str, body: str) -> str | None:
        return self._queues.send_internal(arn, body)

"""SQS queue attributes and the checks of what a request asks for: names, attribute
values, redrive policies, messages to send. Pure functions over plain values."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lamina.errors import AwsError
from lamina.services.sqs.messages import (
    INVALID_BODY,
    attributes_size,
    check_message_attributes,
    invalid_value,
    parameter_error,
    sqs_error,
)

if TYPE_CHECKING:
    from lamina.services.sqs.queue import Queue

NAME = re.compile(r"[a-zA-Z0-9_-]{1,80}")
FIFO_NAME = re.compile(r"[a-zA-Z0-9_-]{1,75}\.fifo")
MAX_VISIBILITY = 43_200

# Settable attributes: default, and the check of a value (None: any string).
DEFAULTS = {
    "DelaySeconds": "0",
    "MaximumMessageSize": "1048576",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "VisibilityTimeout": "30",
    "SqsManagedSseEnabled": "true",
}
FIFO_DEFAULTS = {
    "FifoQueue": "true",
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoThroughputLimit": "perQueue",
}
RANGES = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1_048_576),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, MAX_VISIBILITY),
    "KmsDataKeyReusePeriodSeconds": (60, 86_400),
}
BOOLEANS = ("FifoQueue", "ContentBasedDeduplication", "SqsManagedSseEnabled")
CHOICES = {
    "DeduplicationScope": ("messageGroup", "queue"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
FREE_TEXT = ("Policy", "KmsMasterKeyId", "RedrivePolicy", "RedriveAllowPolicy")
FIFO_ONLY = ("ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit")
SETTABLE = frozenset(DEFAULTS) | frozenset(RANGES) | frozenset(BOOLEANS) | frozenset(CHOICES)
SETTABLE |= frozenset(FREE_TEXT)
COMPUTED = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)


def check_attributes(
    attributes: dict[str, str],
    fifo: bool,
    creating: bool,
    queue_arn: str,
    queue_by_arn: Callable[[str], Queue | None],
) -> dict[str, str]:
    """The attributes of a CreateQueue or SetQueueAttributes, checked and normalised."""
    out: dict[str, str] = {}
    for name, value in attributes.items():
        if name not in SETTABLE:
            raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        if name == "FifoQueue" and not creating:
            raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        if name in FIFO_ONLY and not fifo:
            raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        if name in RANGES:
            low, high = RANGES[name]
            try:
                number = int(value)
            except ValueError:
                number = low - 1
            if not low <= number <= high:
                raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
            value = str(number)
        elif name in BOOLEANS:
            if value.lower() not in ("true", "false"):
                raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
            value = value.lower()
        elif name in CHOICES and value not in CHOICES[name]:
            raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
        elif name == "RedrivePolicy" and value:
            value = check_redrive(value, fifo, queue_arn, queue_by_arn)
        elif name == "RedriveAllowPolicy" and value:
            try:
                json.loads(value)
            except (ValueError, RecursionError):
                raise sqs_error(
                    "InvalidAttributeValue", f"Invalid value for the parameter {name}."
                ) from None
        out[name] = value
    return out


def check_redrive(
    raw: str, fifo: bool, queue_arn: str, queue_by_arn: Callable[[str], Queue | None]
) -> str:
    def bad(reason: str) -> AwsError:
        return sqs_error(
            "InvalidAttributeValue",
            f"Value {raw} for parameter RedrivePolicy is invalid. Reason: {reason}",
        )

    try:
        policy = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad("Redrive policy is not a valid JSON map.") from None
    if not isinstance(policy, dict):
        raise bad("Redrive policy is not a valid JSON map.")
    target = policy.get("deadLetterTargetArn")
    count = policy.get("maxReceiveCount")
    if not target or count is None:
        raise bad("Redrive policy must contain deadLetterTargetArn and maxReceiveCount.")
    try:
        count = int(count)
    except (TypeError, ValueError):
        raise bad("Invalid value for maxReceiveCount: must be an integer.") from None
    if not 1 <= count <= 1000:
        raise bad("Invalid value for maxReceiveCount: must be between 1 and 1000.")
    dead = queue_by_arn(str(target))
    if dead is None:
        raise bad("Dead letter target does not exist.")
    if dead.arn == queue_arn:
        raise bad("Dead letter target can not be the same queue.")
    if dead.fifo != fifo:
        raise bad("Dead-letter queue must be same type of queue as the source.")
    return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": count})


def check_send(
    queue: Queue,
    body: str,
    attributes: dict[str, dict[str, Any]],
    delay: int | None,
    group: str | None,
    dedup: str | None,
) -> tuple[str | None, str | None]:
    """A message to send, checked: (group, deduplication id), content-based if need be."""
    if body == "":
        raise sqs_error("MissingParameter", "The request must contain the parameter MessageBody.")
    if INVALID_BODY.search(body):
        raise sqs_error(
            "InvalidMessageContents",
            "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | "
            "#x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
        )
    check_message_attributes(attributes)
    limit = queue.int_attribute("MaximumMessageSize")
    if len(body.encode()) + attributes_size(attributes) > limit:
        raise invalid_value(
            f"One or more parameters are invalid. Reason: Message must be shorter than "
            f"{limit} bytes."
        )
    if delay is not None and not 0 <= delay <= 900:
        raise parameter_error("DelaySeconds", delay, "Must be >= 0 and <= 900, if provided.")
    if queue.fifo:
        if delay:
            raise parameter_error(
                "DelaySeconds",
                delay,
                "The request include parameter that is not valid for this queue type.",
            )
        if not group:
            raise sqs_error(
                "MissingParameter", "The request must contain the parameter MessageGroupId."
            )
        if dedup is None:
            if queue.attributes.get("ContentBasedDeduplication") != "true":
                raise invalid_value(
                    "The queue should either have ContentBasedDeduplication enabled or "
                    "MessageDeduplicationId provided explicitly"
                )
            dedup = hashlib.sha256(body.encode()).hexdigest()
        for name, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup)):
            if len(value) > 128 or not re.fullmatch(r"[!-~]+", value):
                raise parameter_error(
                    name,
                    value,
                    f"{name} can only include alphanumeric and punctuation characters. "
                    "1 to 128 in length.",
                )
    elif dedup is not None:
        raise parameter_error(
            "MessageDeduplicationId",
            dedup,
            "The request includes a parameter that is not valid for this queue type.",
        )
    return group, dedup

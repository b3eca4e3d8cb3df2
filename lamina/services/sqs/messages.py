"""SQS messages: their attributes and digests, their stored form, the claims a receive
hands out, and AWS's SQS errors.

A message's immutable part (id, body, attributes, sent time, FIFO group and ids) is
written once; its state (visibility, receive count, the latest receipt) changes with
each receive. A `Claim` is a receive of a message: it owns the message while the
message's receipt is still the one it was received with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lamina.errors import AwsError
from lamina.services.sqs.store import StoredMessage

ATTRIBUTE_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,256}")
SENDER_ID = "AIDAIT2UOQQY3AUEKVGXU"
MAX_ATTRIBUTES = 10
INVALID_BODY = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_error(
    code: str, message: str, query_code: str | None = None, status: int = 400
) -> AwsError:
    """SQS's JSON errors carry the old query-protocol code in `x-amzn-query-error`, which
    boto3 reports as the error code (e.g. AWS.SimpleQueueService.NonExistentQueue)."""
    return AwsError(
        code, message, status, headers={"x-amzn-query-error": f"{query_code or code};Sender"}
    )


def no_queue() -> AwsError:
    return sqs_error(
        "QueueDoesNotExist",
        "The specified queue does not exist.",
        "AWS.SimpleQueueService.NonExistentQueue",
    )


def invalid_value(message: str) -> AwsError:
    return sqs_error("InvalidParameterValue", message)


def parameter_error(name: str, value: Any, reason: str) -> AwsError:
    return invalid_value(f"Value {value} for parameter {name} is invalid. Reason: {reason}")


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_of_attributes(attributes: dict[str, dict[str, Any]]) -> str:
    """AWS's digest of message attributes: names sorted, each field length-prefixed."""

    def chunk(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    out = b""
    for name in sorted(attributes):
        value = attributes[name]
        data_type = value["DataType"]
        out += chunk(name.encode()) + chunk(data_type.encode())
        if "BinaryValue" in value and value["BinaryValue"] is not None:
            out += b"\x02" + chunk(bytes(value["BinaryValue"]))
        else:
            out += b"\x01" + chunk(str(value.get("StringValue", "")).encode())
    return md5_hex(out)


def attributes_size(attributes: dict[str, dict[str, Any]]) -> int:
    size = 0
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode())
        if value.get("BinaryValue") is not None:
            size += len(value["BinaryValue"])
        else:
            size += len(str(value.get("StringValue", "")).encode())
    return size


def check_message_attributes(attributes: dict[str, dict[str, Any]]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise invalid_value(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum "
            f"[{MAX_ATTRIBUTES}]."
        )
    for name, value in attributes.items():
        lowered = name.lower()
        if (
            not ATTRIBUTE_NAME.fullmatch(name)
            or lowered.startswith(("aws.", "amazon."))
            or name.startswith(".")
            or name.endswith(".")
            or ".." in name
        ):
            raise invalid_value(f"Message attribute name '{name}' is invalid.")
        data_type = value.get("DataType") or ""
        base = data_type.split(".", 1)[0]
        if base not in ("String", "Number", "Binary"):
            raise invalid_value(
                f"The type of message attribute '{name}' is invalid. You must use only the "
                "following supported type prefixes: Binary, Number, String."
            )
        if value.get("StringListValues") or value.get("BinaryListValues"):
            raise invalid_value(
                f"Message attribute '{name}' uses list values, which SQS does not support yet."
            )
        if base == "Binary":
            if not value.get("BinaryValue"):
                raise invalid_value(
                    f"The message attribute '{name}' must contain non-empty message attribute "
                    f"value for message attribute type '{data_type}'."
                )
        else:
            text = value.get("StringValue")
            if not text:
                raise invalid_value(
                    f"The message attribute '{name}' must contain non-empty message attribute "
                    f"value for message attribute type '{data_type}'."
                )
            if base == "Number":
                try:
                    float(text)
                except ValueError:
                    raise invalid_value(
                        f"Can't cast the value of message (user) attribute '{name}' to a number."
                    ) from None


def wanted(names: Iterable[str], name: str) -> bool:
    for pattern in names:
        if pattern in ("All", ".*") or pattern == name:
            return True
        if pattern.endswith(".*") and name.startswith(pattern[:-1]):
            return True
    return False


@dataclass(eq=False)
class Message:
    seq: int
    id: str
    body: str
    attributes: dict[str, dict[str, Any]]
    system: dict[str, dict[str, Any]]
    sent: float  # wall-clock seconds
    group: str | None = None
    dedup: str | None = None
    sequence: str | None = None
    source_arn: str | None = None  # set when redriven to a dead-letter queue
    visible: float = 0.0  # wall-clock seconds at which the message can be received
    receives: int = 0
    first_receive: float | None = None
    receipt: str | None = None  # the nonce of the latest receive
    version: int = 0
    md5_body: str = ""
    md5_attributes: str | None = None
    size: int = 0

    def __post_init__(self) -> None:
        self.md5_body = md5_hex(self.body.encode())
        if self.attributes:
            self.md5_attributes = md5_of_attributes(self.attributes)
        self.size = len(self.body.encode()) + attributes_size(self.attributes)

    def frozen_part(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "body": self.body,
            "attributes": _encode_attributes(self.attributes),
            "system": _encode_attributes(self.system),
            "sent": self.sent,
            "group": self.group,
            "dedup": self.dedup,
            "sequence": self.sequence,
            "source_arn": self.source_arn,
        }

    def stored(self) -> StoredMessage:
        return StoredMessage(
            self.seq,
            self.frozen_part(),
            self.visible,
            self.receives,
            self.first_receive,
            self.receipt,
        )

    @classmethod
    def load(cls, row: StoredMessage) -> Message:
        part = row.message
        return cls(
            seq=row.seq,
            id=part["id"],
            body=part["body"],
            attributes=_decode_attributes(part["attributes"]),
            system=_decode_attributes(part.get("system") or {}),
            sent=part["sent"],
            group=part.get("group"),
            dedup=part.get("dedup"),
            sequence=part.get("sequence"),
            source_arn=part.get("source_arn"),
            visible=row.visible,
            receives=row.receives,
            first_receive=row.first_receive,
            receipt=row.receipt,
        )


def _encode_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, value in attributes.items():
        item = {"DataType": value["DataType"]}
        if value.get("BinaryValue") is not None:
            item["BinaryValue"] = base64.b64encode(bytes(value["BinaryValue"])).decode()
        else:
            item["StringValue"] = value.get("StringValue", "")
        out[name] = item
    return out


def _decode_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {"DataType": value["DataType"]}
        if "BinaryValue" in value:
            item["BinaryValue"] = base64.b64decode(value["BinaryValue"])
        else:
            item["StringValue"] = value.get("StringValue", "")
        out[name] = item
    return out


@dataclass(frozen=True, slots=True)
class Claim:
    """A received message and the receipt it was received with: owned while they match."""

    message: Message
    nonce: str

    @property
    def owned(self) -> bool:
        return self.message.receipt == self.nonce


def system_attributes(message: Message) -> dict[str, str]:
    """The system attributes a receive shows (ReceiveMessage, Lambda's SQS event)."""
    system = {
        "SenderId": SENDER_ID,
        "SentTimestamp": str(int(message.sent * 1000)),
        "ApproximateReceiveCount": str(message.receives),
        "ApproximateFirstReceiveTimestamp": str(int((message.first_receive or 0) * 1000)),
    }
    if message.sequence:
        system["SequenceNumber"] = message.sequence
    if message.dedup:
        system["MessageDeduplicationId"] = message.dedup
    if message.group:
        system["MessageGroupId"] = message.group
    trace = message.system.get("AWSTraceHeader")
    if trace:
        system["AWSTraceHeader"] = str(trace.get("StringValue", ""))
    if message.source_arn:
        system["DeadLetterQueueSourceArn"] = message.source_arn
    return system


def receipt_handle(queue_id: int, queue_arn: str, claim: Claim) -> str:
    raw = f"{queue_id}:{claim.message.seq}:{claim.nonce}:{queue_arn}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def parse_receipt(queue_id: int, queue_arn: str, handle: str) -> tuple[int, str]:
    """(seq, nonce) of a receipt handle of this queue; ReceiptHandleIsInvalid otherwise."""
    try:
        found_id, seq, nonce, arn = base64.urlsafe_b64decode(handle.encode()).decode().split(":", 3)
        if int(found_id) != queue_id or arn != queue_arn:
            raise ValueError("another queue")
        return int(seq), nonce
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise sqs_error(
            "ReceiptHandleIsInvalid",
            f'The input receipt handle "{handle}" is not a valid receipt handle.',
        ) from None

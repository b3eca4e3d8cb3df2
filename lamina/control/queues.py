"""SQS-compatible queues: the SQS operations and the queue state behind them.

Each queue is owned by one `Queue` object on the event loop; every change is written
through to the store (store/queues.py) before the operation answers, so an accepted
message survives a crash. Times the user sees (SentTimestamp, ...) are wall-clock; the
queue's own delays — visibility timeouts, DelaySeconds, retention, the deduplication
window, the purge and re-creation cool-downs — are platform delays and go through the
clock, so `--time-scale` shortens them. WaitTimeSeconds is the caller's own wait and is
not scaled.

Long polling waits on futures woken by sends and visibility changes, with a timeout at
the next moment a hidden message becomes visible: no polling loop.

Event source mappings use the same queues through `poll`, `settle` and `hold`
(control/mappings.py); the async issue can use `send_internal` for dead-letter targets.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import heapq
import json
import math
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.store.queues import QueueStore, StoredMessage

NAME = re.compile(r"[a-zA-Z0-9_-]{1,80}")
FIFO_NAME = re.compile(r"[a-zA-Z0-9_-]{1,75}\.fifo")
BATCH_ID = re.compile(r"[a-zA-Z0-9_-]{1,80}")
ATTRIBUTE_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,256}")
SENDER_ID = "AIDAIT2UOQQY3AUEKVGXU"
DEDUP_WINDOW = 300.0  # seconds, a platform delay
PURGE_COOLDOWN = 60.0
RECREATE_COOLDOWN = 60.0
MAX_VISIBILITY = 43_200
BATCH_LIMIT = 10
MAX_ATTRIBUTES = 10
INVALID_BODY = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

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
SYSTEM_NAMES = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


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


@dataclass(eq=False)
class Queue:
    id: int
    account: str
    region: str
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]
    created: float
    modified: float
    owner: Queues
    messages: dict[int, Message] = field(default_factory=dict)
    heap: list[tuple[float, int, int]] = field(default_factory=list)  # standard queues
    groups: dict[str, deque[int]] = field(default_factory=dict)  # FIFO queues
    dedup: dict[str, tuple[str, str | None, float]] = field(default_factory=dict)
    last_seq: int = 0
    last_purge: float = -math.inf  # platform time
    deleted: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{self.name}"

    @property
    def fifo(self) -> bool:
        return self.attributes.get("FifoQueue") == "true"

    def int_attribute(self, name: str) -> int:
        return int(self.attributes.get(name, DEFAULTS.get(name, "0")))

    def url(self, endpoint: str) -> str:
        return f"{endpoint}/{self.account}/{self.name}"

    def record(self) -> dict[str, Any]:
        return {
            "attributes": self.attributes,
            "tags": self.tags,
            "created": self.created,
            "modified": self.modified,
        }

    def redrive(self) -> tuple[str, int] | None:
        raw = self.attributes.get("RedrivePolicy")
        if not raw:
            return None
        policy = json.loads(raw)
        return policy["deadLetterTargetArn"], int(policy["maxReceiveCount"])

    # Ordering --------------------------------------------------------------------------
    def next_seq(self) -> int:
        """Increasing integers, time-based so that they keep increasing after a restart."""
        self.last_seq = max(self.last_seq + 1, int(time.time() * 1_000_000))
        return self.last_seq

    def index(self, message: Message) -> None:
        self.messages[message.seq] = message
        if self.fifo:
            assert message.group is not None
            self.groups.setdefault(message.group, deque()).append(message.seq)
        else:
            heapq.heappush(self.heap, (message.visible, message.seq, message.version))

    def touched(self, message: Message) -> None:
        """The message's visibility changed: re-index it."""
        message.version += 1
        if not self.fifo:
            heapq.heappush(self.heap, (message.visible, message.seq, message.version))

    def forget(self, message: Message) -> None:
        self.messages.pop(message.seq, None)
        message.receipt = None
        if self.fifo and message.group is not None:
            seqs = self.groups.get(message.group)
            if seqs is not None:
                while seqs and seqs[0] not in self.messages:
                    seqs.popleft()
                if not seqs:
                    del self.groups[message.group]

    def next_visible(self) -> float:
        if not self.fifo:
            return self.heap[0][0] if self.heap else math.inf
        soonest = math.inf
        for seqs in self.groups.values():
            for seq in seqs:
                message = self.messages.get(seq)
                if message is not None:
                    soonest = min(soonest, message.visible)
                    break
        return soonest

    # Waiting ---------------------------------------------------------------------------
    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until something may have changed, or `timeout` real seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        try:
            await asyncio.wait({future}, timeout=max(0.0, timeout))
        finally:
            if future in self.waiters:
                self.waiters.remove(future)

    # Counts ----------------------------------------------------------------------------
    def counts(self, now: float) -> tuple[int, int, int]:
        visible = hidden = delayed = 0
        retention = self.owner.clock.platform_delay(self.int_attribute("MessageRetentionPeriod"))
        for message in self.messages.values():
            if message.sent + retention <= now:
                continue
            if message.visible <= now:
                visible += 1
            elif message.receives:
                hidden += 1
            else:
                delayed += 1
        return visible, hidden, delayed


@dataclass
class ReceiveOptions:
    max_messages: int
    visibility: float  # real seconds
    max_bytes: int = 0  # 0: no limit


class Queues:
    """Every queue of every account and region, and the SQS operations on them."""

    def __init__(self, store: QueueStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.queues: dict[tuple[str, str, str], Queue] = {}
        self.by_arn: dict[str, Queue] = {}
        self.deleted_at: dict[tuple[str, str, str], float] = {}  # platform time
        self._load()

    # Loading and lookup ----------------------------------------------------------------
    def _load(self) -> None:
        now = self.clock.wall()
        for queue_id, account, region, name, record in list(self.store.queues()):
            queue = Queue(
                queue_id,
                account,
                region,
                name,
                dict(record["attributes"]),
                dict(record.get("tags") or {}),
                record["created"],
                record["modified"],
                self,
            )
            for row in self.store.messages(queue_id):
                message = Message.load(row)
                queue.last_seq = max(queue.last_seq, message.seq)
                queue.index(message)
            for key, message_id, sequence, expires in self.store.dedup_entries(queue_id, now):
                queue.dedup[key] = (message_id, sequence, expires)
            self._register(queue)

    def _register(self, queue: Queue) -> None:
        self.queues[(queue.account, queue.region, queue.name)] = queue
        self.by_arn[queue.arn] = queue

    def queue_by_arn(self, arn: str) -> Queue | None:
        queue = self.by_arn.get(arn)
        return None if queue is None or queue.deleted else queue

    def _from_url(self, ctx: RequestContext, url: str) -> Queue:
        parts = url.rstrip("/").split("/")
        if len(parts) < 2:
            raise no_queue()
        account, name = parts[-2], parts[-1]
        if not account.isdigit():  # a bare name or path, as some clients send
            account = ctx.account
        queue = self.queues.get((account, ctx.region, name))
        if queue is None or account != ctx.account:
            raise no_queue()
        return queue

    # Attributes ------------------------------------------------------------------------
    def _check_attributes(
        self, attributes: dict[str, str], fifo: bool, creating: bool, queue_arn: str
    ) -> dict[str, str]:
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
                    raise sqs_error(
                        "InvalidAttributeValue", f"Invalid value for the parameter {name}."
                    )
                value = str(number)
            elif name in BOOLEANS:
                if value.lower() not in ("true", "false"):
                    raise sqs_error(
                        "InvalidAttributeValue", f"Invalid value for the parameter {name}."
                    )
                value = value.lower()
            elif name in CHOICES and value not in CHOICES[name]:
                raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
            elif name == "RedrivePolicy" and value:
                value = self._check_redrive(value, fifo, queue_arn)
            elif name == "RedriveAllowPolicy" and value:
                try:
                    json.loads(value)
                except ValueError:
                    raise sqs_error(
                        "InvalidAttributeValue", f"Invalid value for the parameter {name}."
                    ) from None
            out[name] = value
        return out

    def _check_redrive(self, raw: str, fifo: bool, queue_arn: str) -> str:
        def bad(reason: str) -> AwsError:
            return sqs_error(
                "InvalidAttributeValue",
                f"Value {raw} for parameter RedrivePolicy is invalid. Reason: {reason}",
            )

        try:
            policy = json.loads(raw)
        except ValueError:
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
        dead = self.queue_by_arn(str(target))
        if dead is None:
            raise bad("Dead letter target does not exist.")
        if dead.arn == queue_arn:
            raise bad("Dead letter target can not be the same queue.")
        if dead.fifo != fifo:
            raise bad("Dead-letter queue must be same type of queue as the source.")
        return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": count})

    # Receiving, the heart of it --------------------------------------------------------
    def _expired(self, queue: Queue, message: Message, now: float) -> bool:
        retention = self.clock.platform_delay(queue.int_attribute("MessageRetentionPeriod"))
        return message.sent + retention <= now

    def receive(self, queue: Queue, options: ReceiveOptions) -> list[Claim]:
        """Take up to `max_messages` visible messages and hide them for `visibility`."""
        now = self.clock.wall()
        taken: list[Message] = []
        dropped: list[Message] = []
        redrive = queue.redrive()
        size = 0

        def take(message: Message) -> bool:
            """False when the message went away instead (expired, or moved to the DLQ)."""
            nonlocal size
            if self._expired(queue, message, now):
                dropped.append(message)
                queue.forget(message)
                return False
            if redrive is not None and message.receives >= redrive[1]:
                dead = self.queue_by_arn(redrive[0])
                if dead is not None:
                    self._move(queue, message, dead, now)
                    return False
            taken.append(message)
            size += message.size
            return True

        def full() -> bool:
            if len(taken) >= options.max_messages:
                return True
            return bool(options.max_bytes) and size >= options.max_bytes

        if queue.fifo:
            for group in list(queue.groups):
                if full():
                    break
                seqs = queue.groups.get(group)
                for seq in list(seqs or ()):
                    message = queue.messages.get(seq)
                    if message is None:
                        continue
                    if message.visible > now:
                        break  # in flight or delayed: the rest of the group waits behind it
                    take(message)
                    if full():
                        break
        else:
            heap = queue.heap
            while heap and not full():
                visible, seq, version = heap[0]
                if visible > now:
                    break
                heapq.heappop(heap)
                message = queue.messages.get(seq)
                if message is None or message.version != version:
                    continue
                take(message)
        claims = []
        for message in taken:
            message.receives += 1
            if message.first_receive is None:
                message.first_receive = now
            message.visible = now + options.visibility
            message.receipt = uuid.uuid4().hex
            queue.touched(message)
            claims.append(Claim(message, message.receipt))
        if dropped:
            self.store.delete_messages(queue.id, [m.seq for m in dropped])
        if taken:
            self.store.update_states(
                queue.id,
                [(m.seq, m.visible, m.receives, m.first_receive, m.receipt) for m in taken],
            )
        return claims

    def _move(self, queue: Queue, message: Message, dead: Queue, now: float) -> None:
        queue.forget(message)
        moved = Message(
            seq=dead.next_seq(),
            id=message.id,
            body=message.body,
            attributes=message.attributes,
            system=message.system,
            sent=message.sent,
            group=message.group,
            dedup=message.dedup,
            sequence=message.sequence,
            source_arn=queue.arn,
            visible=now,
            receives=message.receives,
            first_receive=message.first_receive,
        )
        self.store.move_message(queue.id, message.seq, dead.id, moved.stored())
        dead.index(moved)
        dead.wake()

    async def receive_waiting(
        self, queue: Queue, options: ReceiveOptions, wait: float
    ) -> list[Claim]:
        """receive(), waiting up to `wait` real seconds for the first message."""
        deadline = time.monotonic() + wait
        while True:
            if queue.deleted:
                raise no_queue()
            claims = self.receive(queue, options)
            remaining = deadline - time.monotonic()
            if claims or remaining <= 0:
                return claims
            until_visible = queue.next_visible() - self.clock.wall()
            await queue.wait(min(remaining, max(until_visible, 0.001)))

    # For event source mappings ---------------------------------------------------------
    async def poll(
        self, queue: Queue, batch_size: int, window: float, max_bytes: int, wait: float = 20.0
    ) -> list[Claim]:
        """A batch for a mapping: long-poll for the first messages, then gather more for
        up to `window` platform seconds, until `batch_size` or `max_bytes` is reached.
        Cancelled while gathering, the messages become visible again at once."""
        visibility = self.clock.platform_delay(queue.int_attribute("VisibilityTimeout"))
        options = ReceiveOptions(min(batch_size, BATCH_LIMIT), visibility, max_bytes)
        claims = await self.receive_waiting(queue, options, wait)
        if not claims or window <= 0:
            return claims
        deadline = time.monotonic() + self.clock.platform_delay(window)
        try:
            while len(claims) < batch_size and sum(c.message.size for c in claims) < max_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or queue.deleted:
                    break
                wanted_now = min(batch_size - len(claims), BATCH_LIMIT)
                used = sum(c.message.size for c in claims)
                more = self.receive(queue, ReceiveOptions(wanted_now, visibility, max_bytes - used))
                if more:
                    claims.extend(more)
                    continue
                until_visible = queue.next_visible() - self.clock.wall()
                await queue.wait(min(remaining, max(until_visible, 0.001)))
        except asyncio.CancelledError:
            self.release(queue, claims)
            raise
        return claims

    def release(self, queue: Queue, claims: Iterable[Claim]) -> None:
        """Make claimed messages visible again now (a poller gave them back)."""
        self.hold(queue, claims, 0.0)

    def hold(self, queue: Queue, claims: Iterable[Claim], seconds: float) -> list[Claim]:
        """Keep claimed messages hidden for `seconds` more platform seconds; returns the
        claims still owned (the others were received again by someone else)."""
        now = self.clock.wall()
        kept = []
        for claim in claims:
            message = claim.message
            if not claim.owned or queue.messages.get(message.seq) is not message:
                continue
            message.visible = now + self.clock.platform_delay(seconds)
            queue.touched(message)
            kept.append(claim)
        if kept:
            self.store.update_states(
                queue.id,
                [
                    (
                        c.message.seq,
                        c.message.visible,
                        c.message.receives,
                        c.message.first_receive,
                        c.message.receipt,
                    )
                    for c in kept
                ],
            )
            queue.wake()
        return kept

    def settle(self, queue: Queue, claims: Iterable[Claim]) -> int:
        """Delete the claimed messages still owned; returns how many were deleted."""
        gone = []
        for claim in claims:
            message = claim.message
            if claim.owned and queue.messages.get(message.seq) is message:
                queue.forget(message)
                gone.append(message.seq)
        if gone:
            self.store.delete_messages(queue.id, gone)
        return len(gone)

    def send_internal(self, arn: str, body: str) -> str | None:
        """Send `body` to the queue `arn` (destinations, dead-letter targets); the message
        id, or None if there is no such queue."""
        queue = self.queue_by_arn(arn)
        if queue is None:
            return None
        group = "lamina" if queue.fifo else None
        dedup = uuid.uuid4().hex if queue.fifo else None
        message, _ = self._enqueue(queue, body, {}, {}, 0, group, dedup)
        return message.id

    # Sending ---------------------------------------------------------------------------
    def _check_send(
        self,
        queue: Queue,
        body: str,
        attributes: dict[str, dict[str, Any]],
        delay: int | None,
        group: str | None,
        dedup: str | None,
    ) -> tuple[str | None, str | None]:
        if body == "":
            raise sqs_error(
                "MissingParameter", "The request must contain the parameter MessageBody."
            )
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

    def _enqueue(
        self,
        queue: Queue,
        body: str,
        attributes: dict[str, dict[str, Any]],
        system: dict[str, dict[str, Any]],
        delay: int | None,
        group: str | None,
        dedup: str | None,
    ) -> tuple[Message, bool]:
        """Store and index one message; (message, False) for a FIFO duplicate."""
        now = self.clock.wall()
        if queue.fifo:
            assert dedup is not None
            scope = group if queue.attributes.get("DeduplicationScope") == "messageGroup" else ""
            key = f"{scope}\x00{dedup}"
            seen = queue.dedup.get(key)
            if seen is not None and seen[2] > now:
                duplicate = Message(
                    0, seen[0], body, attributes, system, now, group, dedup, seen[1]
                )
                return duplicate, False
        seq = queue.next_seq()
        if delay is None:
            delay = queue.int_attribute("DelaySeconds")
        message = Message(
            seq=seq,
            id=str(uuid.uuid4()),
            body=body,
            attributes=attributes,
            system=system,
            sent=now,
            group=group if queue.fifo else None,
            dedup=dedup if queue.fifo else None,
            sequence=f"{seq:020d}" if queue.fifo else None,
            visible=now + self.clock.platform_delay(delay),
        )
        self.store.insert_messages(queue.id, [message.stored()])
        if queue.fifo:
            expires = now + self.clock.platform_delay(DEDUP_WINDOW)
            queue.dedup[key] = (message.id, message.sequence, expires)
            self.store.put_dedup(queue.id, key, message.id, message.sequence, expires)
            if len(queue.dedup) > 1000:
                queue.dedup = {k: v for k, v in queue.dedup.items() if v[2] > now}
                self.store.drop_dedup(queue.id, now)
        queue.index(message)
        queue.wake()
        return message, True

    @staticmethod
    def _sent(message: Message) -> dict[str, Any]:
        result: dict[str, Any] = {"MessageId": message.id, "MD5OfMessageBody": message.md5_body}
        if message.md5_attributes:
            result["MD5OfMessageAttributes"] = message.md5_attributes
        if message.system:
            result["MD5OfMessageSystemAttributes"] = md5_of_attributes(message.system)
        if message.sequence:
            result["SequenceNumber"] = message.sequence
        return result

    def _send_one(self, queue: Queue, params: dict[str, Any]) -> dict[str, Any]:
        body = params.get("MessageBody")
        if body is None:
            raise sqs_error(
                "MissingParameter", "The request must contain the parameter MessageBody."
            )
        attributes = dict(params.get("MessageAttributes") or {})
        system = dict(params.get("MessageSystemAttributes") or {})
        for name in system:
            if name != "AWSTraceHeader":
                raise invalid_value(f"Message system attribute name '{name}' is invalid.")
        group, dedup = self._check_send(
            queue,
            body,
            attributes,
            params.get("DelaySeconds"),
            params.get("MessageGroupId"),
            params.get("MessageDeduplicationId"),
        )
        if not queue.fifo and params.get("MessageGroupId"):
            group = None  # standard queues accept and ignore a group id (fair queues)
        message, _ = self._enqueue(
            queue, body, attributes, system, params.get("DelaySeconds"), group, dedup
        )
        return self._sent(message)

    # Operations ------------------------------------------------------------------------
    async def CreateQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["QueueName"]
        given = dict(params.get("Attributes") or {})
        fifo = given.get("FifoQueue", "false").lower() == "true"
        if fifo and not FIFO_NAME.fullmatch(name):
            raise invalid_value(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or "
                "underscores, must end with .fifo suffix and be 1 to 80 in length."
            )
        if not fifo and not NAME.fullmatch(name):
            if name.endswith(".fifo") and NAME.fullmatch(name[:-5]):
                raise invalid_value(
                    "The name of a FIFO queue can only include alphanumeric characters, "
                    "hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in "
                    "length. Set the FifoQueue attribute to true for a FIFO queue."
                )
            raise invalid_value(
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in "
                "length"
            )
        arn = f"arn:aws:sqs:{ctx.region}:{ctx.account}:{name}"
        checked = self._check_attributes(given, fifo, True, arn)
        attributes = {**DEFAULTS, **(FIFO_DEFAULTS if fifo else {}), **checked}
        if not fifo:
            attributes.pop("FifoQueue", None)
        key = (ctx.account, ctx.region, name)
        existing = self.queues.get(key)
        if existing is not None:
            for attribute, value in checked.items():
                if existing.attributes.get(attribute, "") != value:
                    raise sqs_error(
                        "QueueNameExists",
                        "A queue already exists with the same name and a different value for "
                        f"attribute {attribute}",
                        "QueueAlreadyExists",
                    )
            return {"QueueUrl": existing.url(ctx.endpoint)}
        deleted = self.deleted_at.get(key)
        if deleted is not None and self.clock.platform_now() - deleted < RECREATE_COOLDOWN:
            raise sqs_error(
                "QueueDeletedRecently",
                "You must wait 60 seconds after deleting a queue before you can create another "
                "with the same name.",
                "AWS.SimpleQueueService.QueueDeletedRecently",
            )
        now = self.clock.wall()
        tags = dict(params.get("tags") or {})
        record = {"attributes": attributes, "tags": tags, "created": now, "modified": now}
        queue_id = self.store.insert_queue(ctx.account, ctx.region, name, record)
        queue = Queue(queue_id, ctx.account, ctx.region, name, attributes, tags, now, now, self)
        self._register(queue)
        return {"QueueUrl": queue.url(ctx.endpoint)}

    async def GetQueueUrl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        account = params.get("QueueOwnerAWSAccountId") or ctx.account
        queue = self.queues.get((account, ctx.region, params["QueueName"]))
        if queue is None or account != ctx.account:
            raise no_queue()
        return {"QueueUrl": queue.url(ctx.endpoint)}

    async def ListQueues(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("QueueNamePrefix") or ""
        names = sorted(
            q.name
            for (account, region, name), q in self.queues.items()
            if account == ctx.account and region == ctx.region and name.startswith(prefix)
        )
        limit = params.get("MaxResults")
        if limit is not None and not 1 <= limit <= 1000:
            raise parameter_error("MaxResults", limit, "MaxResults must be between 1 and 1000.")
        after = ""
        if params.get("NextToken"):
            try:
                after = base64.urlsafe_b64decode(params["NextToken"].encode()).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise invalid_value("Invalid NextToken value.") from None
            names = [n for n in names if n > after]
        result: dict[str, Any] = {}
        if limit is None:
            names = names[:1000]
        elif len(names) > limit:
            names = names[:limit]
            result["NextToken"] = base64.urlsafe_b64encode(names[-1].encode()).decode()
        urls = [self.queues[(ctx.account, ctx.region, n)].url(ctx.endpoint) for n in names]
        if urls:
            result["QueueUrls"] = urls
        return result

    async def DeleteQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        self.store.delete_queue(queue.id)
        queue.deleted = True
        key = (queue.account, queue.region, queue.name)
        del self.queues[key]
        self.by_arn.pop(queue.arn, None)
        self.deleted_at[key] = self.clock.platform_now()
        queue.wake()
        return {}

    async def PurgeQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        now = self.clock.platform_now()
        if now - queue.last_purge < PURGE_COOLDOWN:
            raise sqs_error(
                "PurgeQueueInProgress",
                f"Only one PurgeQueue operation on {queue.name} is allowed every 60 seconds.",
                "AWS.SimpleQueueService.PurgeQueueInProgress",
                403,
            )
        queue.last_purge = now
        self.store.purge(queue.id)
        for message in queue.messages.values():
            message.receipt = None
        queue.messages.clear()
        queue.heap.clear()
        queue.groups.clear()
        return {}

    async def GetQueueAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        names = list(params.get("AttributeNames") or [])
        everything = "All" in names
        visible, hidden, delayed = queue.counts(self.clock.wall())
        available: dict[str, str] = {
            **queue.attributes,
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(hidden),
            "ApproximateNumberOfMessagesDelayed": str(delayed),
            "CreatedTimestamp": str(int(queue.created)),
            "LastModifiedTimestamp": str(int(queue.modified)),
            "QueueArn": queue.arn,
        }
        result = {}
        for name in available if everything else names:
            if name in available:
                result[name] = available[name]
            elif (name in FIFO_ONLY and not queue.fifo) or (
                name not in SETTABLE and name not in COMPUTED
            ):
                raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        return {"Attributes": result} if result else {}

    async def SetQueueAttributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        checked = self._check_attributes(
            dict(params.get("Attributes") or {}), queue.fifo, False, queue.arn
        )
        for name, value in checked.items():
            if value == "" and name in FREE_TEXT:
                queue.attributes.pop(name, None)
            else:
                queue.attributes[name] = value
        queue.modified = self.clock.wall()
        self.store.update_queue(queue.id, queue.record())
        queue.wake()
        return {}

    async def SendMessage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        return self._send_one(queue, params)

    async def SendMessageBatch(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        entries = self._check_batch(params.get("Entries") or [], "SendMessageBatchRequestEntry")
        total = sum(
            len(e.get("MessageBody", "").encode())
            + attributes_size(e.get("MessageAttributes") or {})
            for e in entries
        )
        limit = queue.int_attribute("MaximumMessageSize")
        if total > limit:
            raise sqs_error(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes.",
                "AWS.SimpleQueueService.BatchRequestTooLong",
            )
        successful, failed = [], []
        for entry in entries:
            try:
                successful.append({"Id": entry["Id"], **self._send_one(queue, entry)})
            except AwsError as error:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}

    async def ReceiveMessage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        count = params.get("MaxNumberOfMessages")
        if count is None:
            count = 1
        if not 1 <= count <= BATCH_LIMIT:
            raise parameter_error(
                "MaxNumberOfMessages", count, "Must be between 1 and 10, if provided."
            )
        wait = params.get("WaitTimeSeconds")
        if wait is None:
            wait = queue.int_attribute("ReceiveMessageWaitTimeSeconds")
        if not 0 <= wait <= 20:
            raise parameter_error("WaitTimeSeconds", wait, "Must be >= 0 and <= 20, if provided.")
        visibility = params.get("VisibilityTimeout")
        if visibility is None:
            visibility = queue.int_attribute("VisibilityTimeout")
        if not 0 <= visibility <= MAX_VISIBILITY:
            raise parameter_error(
                "VisibilityTimeout", visibility, "Must be between 0 and 43200, if provided."
            )
        system_names = [
            *(params.get("MessageSystemAttributeNames") or []),
            *(params.get("AttributeNames") or []),
        ]
        attribute_names = params.get("MessageAttributeNames") or []
        options = ReceiveOptions(count, self.clock.platform_delay(visibility))
        claims = await self.receive_waiting(queue, options, float(wait))
        messages = [self._received(queue, claim, system_names, attribute_names) for claim in claims]
        return {"Messages": messages} if messages else {}

    def receipt_handle(self, queue: Queue, claim: Claim) -> str:
        raw = f"{queue.id}:{claim.message.seq}:{claim.nonce}:{queue.arn}"
        return base64.urlsafe_b64encode(raw.encode()).decode()

    def _parse_receipt(self, queue: Queue, handle: str) -> tuple[int, str]:
        try:
            queue_id, seq, nonce, arn = (
                base64.urlsafe_b64decode(handle.encode()).decode().split(":", 3)
            )
            if int(queue_id) != queue.id or arn != queue.arn:
                raise ValueError("another queue")
            return int(seq), nonce
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise sqs_error(
                "ReceiptHandleIsInvalid",
                f'The input receipt handle "{handle}" is not a valid receipt handle.',
            ) from None

    def _received(
        self, queue: Queue, claim: Claim, system_names: list[str], attribute_names: list[str]
    ) -> dict[str, Any]:
        message = claim.message
        out: dict[str, Any] = {
            "MessageId": message.id,
            "ReceiptHandle": self.receipt_handle(queue, claim),
            "MD5OfBody": message.md5_body,
            "Body": message.body,
        }
        system = self.system_attributes(message)
        chosen = {k: v for k, v in system.items() if wanted(system_names, k)}
        if chosen:
            out["Attributes"] = chosen
        attributes = {k: v for k, v in message.attributes.items() if wanted(attribute_names, k)}
        if attributes:
            out["MessageAttributes"] = attributes
            out["MD5OfMessageAttributes"] = md5_of_attributes(attributes)
        return out

    @staticmethod
    def system_attributes(message: Message) -> dict[str, str]:
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

    def _delete(self, queue: Queue, handle: str) -> None:
        seq, nonce = self._parse_receipt(queue, handle)
        message = queue.messages.get(seq)
        # A stale handle (the message was received again since) succeeds without deleting,
        # as AWS documents; a message already gone succeeds too.
        if message is None or message.receipt != nonce:
            return
        queue.forget(message)
        self.store.delete_messages(queue.id, [seq])

    async def DeleteMessage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        self._delete(queue, params["ReceiptHandle"])
        return {}

    async def DeleteMessageBatch(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        entries = self._check_batch(params.get("Entries") or [], "DeleteMessageBatchRequestEntry")
        successful, failed = [], []
        for entry in entries:
            try:
                self._delete(queue, entry["ReceiptHandle"])
                successful.append({"Id": entry["Id"]})
            except AwsError as error:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}

    def _change_visibility(self, queue: Queue, handle: str, timeout: int) -> None:
        if not 0 <= timeout <= MAX_VISIBILITY:
            raise parameter_error(
                "VisibilityTimeout", timeout, "Must be between 0 and 43200, if provided."
            )
        seq, nonce = self._parse_receipt(queue, handle)
        message = queue.messages.get(seq)
        if message is None or message.receipt != nonce:
            raise parameter_error(
                "ReceiptHandle",
                handle,
                "Message does not exist or is not available for visibility timeout change.",
            )
        now = self.clock.wall()
        if message.visible <= now:
            raise sqs_error(
                "MessageNotInflight",
                "Message does not exist or is not available for visibility timeout change.",
                "AWS.SimpleQueueService.MessageNotInflight",
            )
        message.visible = now + self.clock.platform_delay(timeout)
        queue.touched(message)
        self.store.update_states(
            queue.id,
            [(seq, message.visible, message.receives, message.first_receive, message.receipt)],
        )
        queue.wake()

    async def ChangeMessageVisibility(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        self._change_visibility(queue, params["ReceiptHandle"], params["VisibilityTimeout"])
        return {}

    async def ChangeMessageVisibilityBatch(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        entries = self._check_batch(
            params.get("Entries") or [], "ChangeMessageVisibilityBatchRequestEntry"
        )
        successful, failed = [], []
        for entry in entries:
            try:
                self._change_visibility(
                    queue, entry["ReceiptHandle"], entry.get("VisibilityTimeout") or 0
                )
                successful.append({"Id": entry["Id"]})
            except AwsError as error:
                failed.append(_failure(entry["Id"], error))
        return {"Successful": successful, "Failed": failed}

    @staticmethod
    def _check_batch(entries: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        if not entries:
            raise sqs_error(
                "EmptyBatchRequest",
                f"There should be at least one {kind} in the request.",
                "AWS.SimpleQueueService.EmptyBatchRequest",
            )
        if len(entries) > BATCH_LIMIT:
            raise sqs_error(
                "TooManyEntriesInBatchRequest",
                f"Maximum number of entries per request are {BATCH_LIMIT}. You have sent "
                f"{len(entries)}.",
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            )
        seen = set()
        for entry in entries:
            entry_id = entry["Id"]
            if not BATCH_ID.fullmatch(entry_id):
                raise sqs_error(
                    "InvalidBatchEntryId",
                    "A batch entry id can only contain alphanumeric characters, hyphens and "
                    "underscores. It can be at most 80 letters long.",
                    "AWS.SimpleQueueService.InvalidBatchEntryId",
                )
            if entry_id in seen:
                raise sqs_error(
                    "BatchEntryIdsNotDistinct",
                    f"Id {entry_id} repeated.",
                    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                )
            seen.add(entry_id)
        return entries

    async def ListDeadLetterSourceQueues(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        dead = self._from_url(ctx, params["QueueUrl"])
        urls = []
        for queue in sorted(self.queues.values(), key=lambda q: q.name):
            policy = queue.redrive()
            if queue.account == ctx.account and policy is not None and policy[0] == dead.arn:
                urls.append(queue.url(ctx.endpoint))
        return {"queueUrls": urls}

    async def TagQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        queue.tags.update(params.get("Tags") or {})
        self.store.update_queue(queue.id, queue.record())
        return {}

    async def UntagQueue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        for key in params.get("TagKeys") or []:
            queue.tags.pop(key, None)
        self.store.update_queue(queue.id, queue.record())
        return {}

    async def ListQueueTags(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queue = self._from_url(ctx, params["QueueUrl"])
        return {"Tags": dict(queue.tags)} if queue.tags else {}


def _failure(entry_id: str, error: AwsError) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": True,
        "Code": error.headers.get("x-amzn-query-error", error.code).split(";")[0],
        "Message": error.message,
    }

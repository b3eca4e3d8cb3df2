"""One SQS queue in memory: its messages indexed for receiving, its waiters, its counts.

Standard queues keep a heap of (visible at, seq, version): a receive pops what is
visible; a message whose visibility changed is pushed again with a new version and its
old entries are skipped. FIFO queues keep each message group in order: a group whose
first message is in flight or delayed is not received from. The queue's owner
(queues.py) changes the state and writes it through to the store.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lamina.clock import Clock
from lamina.services.sqs.attributes import DEFAULTS
from lamina.services.sqs.messages import Message


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
    clock: Clock
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
        retention = self.clock.platform_delay(self.int_attribute("MessageRetentionPeriod"))
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

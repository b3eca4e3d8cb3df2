"""One SQS queue in memory: the messages it has loaded, indexed for receiving, and its
waiters.

Standard queues keep a heap of (visible at, seq, version): a receive pops what is
visible; a message whose visibility changed is pushed again with a new version and its
old entries are skipped. They load only a window of their messages (window.py): every
stored message whose key (visible at, seq) is at most `edge` is loaded, others may be on
disk only. FIFO queues keep each message group in order: a group whose first message is
in flight or delayed is not received from; they load their messages in the order they
were sent, every message up to the seq `edge[1]` (all of them at EVERYTHING).
The queue's owner (queues.py) changes the state and writes it through to the store.
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

NOTHING = (-math.inf, -1)  # the edge of a queue that has loaded none of its messages
EVERYTHING = (math.inf, 0)  # ... and of one that holds every message in memory


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
    edge: tuple[float, int] = NOTHING
    loaded_bytes: int = 0
    trim_at: int = 0  # trim the window when this many messages are loaded (window.py)
    sends: int = 0  # FIFO sends since expired deduplication ids were last dropped
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
        self.loaded_bytes += message.size
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
        if self.messages.pop(message.seq, None) is not None:
            self.loaded_bytes -= message.size
        message.receipt = None
        if self.fifo and message.group is not None:
            seqs = self.groups.get(message.group)
            if seqs is not None:
                while seqs and seqs[0] not in self.messages:
                    seqs.popleft()
                if not seqs:
                    del self.groups[message.group]

    def evict(self, message: Message) -> None:
        """Out of memory, still stored (a claim on it is checked against the store). In a
        FIFO queue, only the last loaded message of its group."""
        if self.messages.pop(message.seq, None) is not None:
            self.loaded_bytes -= message.size
        if self.fifo and message.group is not None:
            seqs = self.groups.get(message.group)
            if seqs is not None:
                while seqs and seqs[-1] not in self.messages:
                    seqs.pop()
                if not seqs:
                    del self.groups[message.group]

    def reindex(self) -> None:
        self.heap = [(m.visible, m.seq, m.version) for m in self.messages.values()]
        heapq.heapify(self.heap)

    def top(self) -> tuple[float, int] | None:
        """The key of the loaded message that becomes visible first (standard queues)."""
        heap = self.heap
        while heap:
            visible, seq, version = heap[0]
            message = self.messages.get(seq)
            if message is not None and message.version == version:
                return visible, seq
            heapq.heappop(heap)
        return None

    def clear(self) -> None:
        for message in self.messages.values():
            message.receipt = None
        self.messages.clear()
        self.heap.clear()
        self.groups.clear()
        self.loaded_bytes = 0
        self.edge = EVERYTHING

    def next_visible(self) -> float:
        if not self.fifo:
            top = self.top()
            return min(top[0] if top else math.inf, self.edge[0])
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


@dataclass
class ReceiveOptions:
    max_messages: int
    visibility: float  # real seconds
    max_bytes: int = 0  # 0: no limit

"""Function logs: a bounded in-memory record per function, with live followers.

Bounded by bytes, so a function that prints without end costs a fixed amount of memory:
the oldest lines go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from lamina.keys import FunctionKey

DEFAULT_BYTES_PER_FUNCTION = 4 * 1024 * 1024
# What a kept line costs beyond its text (LogLine, its seq and timestamp, the str header,
# the deque slot): counted, so a flood of short lines is bounded by memory, not by text.
LINE_OVERHEAD = 160


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    timestamp: float
    text: str


class FunctionLog:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.lines: deque[LogLine] = deque()
        self.size = 0
        self.seq = 0
        self.followers: set[asyncio.Queue[LogLine]] = set()

    def write(self, text: str) -> None:
        self.seq += 1
        line = LogLine(self.seq, time.time(), text)
        self.lines.append(line)
        self.size += len(text) + LINE_OVERHEAD
        while self.size > self.limit_bytes and self.lines:
            self.size -= len(self.lines.popleft().text) + LINE_OVERHEAD
        for queue in self.followers:
            if queue.qsize() < 10_000:  # a slow follower loses lines, never our memory
                queue.put_nowait(line)


class LogStore:
    def __init__(self, limit_bytes: int = DEFAULT_BYTES_PER_FUNCTION) -> None:
        self.limit_bytes = limit_bytes
        self._logs: dict[FunctionKey, FunctionLog] = {}

    def log(self, key: FunctionKey) -> FunctionLog:
        found = self._logs.get(key)
        if found is None:
            found = self._logs[key] = FunctionLog(self.limit_bytes)
        return found

    def write(self, key: FunctionKey, text: str) -> None:
        self.log(key).write(text)

    def read(self, key: FunctionKey, after: int = 0) -> list[LogLine]:
        return [line for line in self.log(key).lines if line.seq > after]

    async def follow(self, key: FunctionKey, after: int = 0) -> AsyncIterator[LogLine]:
        """Lines after `after`, then every new line as it is written, until cancelled."""
        log = self.log(key)
        queue: asyncio.Queue[LogLine] = asyncio.Queue()
        log.followers.add(queue)
        try:
            last = after
            for line in self.read(key, after):
                last = line.seq
                yield line
            while True:
                line = await queue.get()
                if line.seq > last:
                    last = line.seq
                    yield line
        finally:
            log.followers.discard(queue)

    def forget(self, key: FunctionKey) -> None:
        self._logs.pop(key, None)

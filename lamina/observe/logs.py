"""Function logs: one log group per function (`/aws/lambda/<name>`), a stream per
execution environment, kept in memory with live followers.

Bounded by bytes, so a function that prints without end costs a fixed amount of memory:
the oldest lines go first. A group may also have a retention in days (CloudWatch Logs'
PutRetentionPolicy): older lines are dropped as new ones come and before any read.

Every line written is also handed to `LogStore.tap` (the log keeper, log_keeper.py, which
writes them to the store); lines the keeper brings back (after a restart, or from other
nodes of a cluster) are written untapped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from lamina.keys import FunctionKey

DEFAULT_BYTES_PER_FUNCTION = 4 * 1024 * 1024
# What a kept line costs beyond its text (LogLine, its seq and timestamp, the str header,
# the deque slot): counted, so a flood of short lines is bounded by memory, not by text.
LINE_OVERHEAD = 160
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653)  # fmt: skip


def group_name(function: str) -> str:
    return f"/aws/lambda/{function}"


@dataclass(slots=True, eq=False)  # not frozen: made three times an invocation, kept as is
class LogLine:
    seq: int
    timestamp: float
    text: str
    stream: str = ""


@dataclass(slots=True)
class StreamInfo:
    created: float
    first: float
    last: float
    lines: int = 0
    size: int = 0


Tap = Callable[[FunctionKey, LogLine], None]


class FunctionLog:
    def __init__(
        self, limit_bytes: int, key: FunctionKey | None = None, tap: Tap | None = None
    ) -> None:
        self.limit_bytes = limit_bytes
        self.key = key
        self.tap = tap
        self.lines: deque[LogLine] = deque()
        self.size = 0
        self.seq = 0
        self.created = 0.0  # when the group got its first line (0: no group)
        self.retention_days: int | None = None
        self.streams: dict[str, StreamInfo] = {}
        self.followers: set[asyncio.Queue[LogLine]] = set()

    def write(
        self, text: str, stream: str = "", at: float | None = None, tapped: bool = True
    ) -> None:
        now = time.time() if at is None else at
        self.seq += 1
        line = LogLine(self.seq, now, text, stream)
        if not self.created:
            self.created = now
        self.lines.append(line)
        cost = len(text) + LINE_OVERHEAD
        self.size += cost
        info = self.streams.get(stream)
        if info is None:
            info = self.streams[stream] = StreamInfo(now, now, now)
        info.last = now
        info.lines += 1
        info.size += cost
        while self.size > self.limit_bytes and self.lines:
            self._drop_oldest()
        if self.retention_days is not None:
            self.expire(now)
        for queue in self.followers:
            if queue.qsize() < 10_000:  # a slow follower loses lines, never our memory
                queue.put_nowait(line)
        if tapped and self.tap is not None and self.key is not None:
            self.tap(self.key, line)

    def write_lines(self, texts: tuple[str, ...], stream: str) -> None:
        """Lines written at one moment (an invocation's END and REPORT): `write`'s work
        with one clock read and one look-up of the stream."""
        now = time.time()
        if not self.created:
            self.created = now
        info = self.streams.get(stream)
        if info is None:
            info = self.streams[stream] = StreamInfo(now, now, now)
        info.last = now
        tap = self.tap if self.key is not None else None
        for text in texts:
            self.seq += 1
            line = LogLine(self.seq, now, text, stream)
            self.lines.append(line)
            cost = len(text) + LINE_OVERHEAD
            self.size += cost
            info.lines += 1
            info.size += cost
            for queue in self.followers:
                if queue.qsize() < 10_000:
                    queue.put_nowait(line)
            if tap is not None:
                tap(self.key, line)  # type: ignore[arg-type]
        while self.size > self.limit_bytes and self.lines:
            self._drop_oldest()
        if self.retention_days is not None:
            self.expire(now)

    def sink(self, stream: str) -> Callable[[str], None]:
        """A writer of lines into `stream` (an environment's output goes through one)."""

        def write(text: str) -> None:
            self.write(text, stream)

        return write

    def expire(self, now: float | None = None) -> None:
        """Drop lines older than the retention."""
        if self.retention_days is None:
            return
        horizon = (time.time() if now is None else now) - self.retention_days * 86400
        while self.lines and self.lines[0].timestamp < horizon:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        line = self.lines.popleft()
        cost = len(line.text) + LINE_OVERHEAD
        self.size -= cost
        info = self.streams.get(line.stream)
        if info is not None:
            info.lines -= 1
            info.size -= cost
            if info.lines <= 0:
                del self.streams[line.stream]
            elif self.lines:
                info.first = max(info.first, self.lines[0].timestamp)

    def clear(self) -> None:
        """The group was deleted: its lines and streams go; writers may go on writing."""
        self.lines.clear()
        self.streams.clear()
        self.size = 0
        self.created = 0.0
        self.retention_days = None


class LogStore:
    def __init__(self, limit_bytes: int = DEFAULT_BYTES_PER_FUNCTION) -> None:
        self.limit_bytes = limit_bytes
        self._logs: dict[FunctionKey, FunctionLog] = {}
        self._tap: Tap | None = None
        self.on_forget: list[Callable[[FunctionKey], None]] = []

    @property
    def tap(self) -> Tap | None:
        """Told every line written here (the log keeper); handed to every function's log."""
        return self._tap

    @tap.setter
    def tap(self, tap: Tap | None) -> None:
        self._tap = tap
        for log in self._logs.values():
            log.tap = tap

    def log(self, key: FunctionKey) -> FunctionLog:
        found = self._logs.get(key)
        if found is None:
            found = self._logs[key] = FunctionLog(self.limit_bytes, key, self._tap)
        return found

    def retentions(self) -> list[tuple[FunctionKey, int]]:
        """(function, retention in days) of the groups that have one."""
        return [(k, log.retention_days) for k, log in self._logs.items()
                if log.retention_days is not None]  # fmt: skip

    def find(self, key: FunctionKey) -> FunctionLog | None:
        """The function's log if it has a group (it has written a line)."""
        found = self._logs.get(key)
        if found is None or not found.created:
            return None
        found.expire()
        return found

    def groups(self, account: str, region: str) -> list[tuple[FunctionKey, FunctionLog]]:
        return sorted(
            (
                (key, log)
                for key, log in self._logs.items()
                if key.account == account and key.region == region and log.created
            ),
            key=lambda item: item[0].name,
        )

    def write(
        self,
        key: FunctionKey,
        text: str,
        stream: str = "",
        at: float | None = None,
        tapped: bool = True,
    ) -> None:
        self.log(key).write(text, stream, at, tapped)

    def read(self, key: FunctionKey, after: int = 0) -> list[LogLine]:
        log = self.log(key)
        log.expire()
        return [line for line in log.lines if line.seq > after]

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
        found = self._logs.get(key)
        if found is not None:
            found.clear()
        for listener in self.on_forget:
            listener(key)

"""The log keeper: function log lines into the store, and back.

It owns one background task. Every FLUSH_S it writes the lines written since (one
transaction): a restart, even after `kill -9`, loses at most the last FLUSH_S of lines.
At start it brings back the lines of the last RELOAD_S into memory. In a cluster it also
reads, every FLUSH_S, the lines other nodes wrote (`aws logs tail` on any node shows the
environments of every node). Every TRIM_S the store enforces retention.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from lamina.clock import Clock
from lamina.keys import FunctionKey
from lamina.observe.keeping import keep
from lamina.observe.logs import LogLine, LogStore
from lamina.tasks import stop_task

RELOAD_S = 86400.0
LOOKBACK = 2000
BUFFER_LIMIT = 100_000  # lines waiting; beyond it (the store away) the oldest go

log = logging.getLogger("lamina.logs")

Line = tuple[FunctionKey, str, float, str]


class Archive(Protocol):
    @property
    def shared(self) -> bool: ...

    def append(self, lines: Sequence[Line]) -> None: ...

    def last_id(self) -> int: ...

    def recent(self, since: float, limit: int = ...) -> list[tuple[int, Line]]: ...

    def since(self, after: int, limit: int = ...) -> list[tuple[int, Line]]: ...

    def forget(self, key: FunctionKey) -> None: ...

    def trim(self, now: float, retention: Iterable[tuple[FunctionKey, float]]) -> int: ...


class LogKeeper:
    def __init__(self, logs: LogStore, archive: Archive, clock: Clock | None = None) -> None:
        self.logs = logs
        self.archive = archive
        self.clock = clock or Clock()
        self._buffer: list[Line] = []
        self._seen = 0  # the highest line number read from the store (cluster)
        # Numbers are given at insert, commits may land out of their order: the last
        # LOOKBACK numbers are read again, and the lines already taken skipped.
        self._taken: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        logs.tap = self._tap
        logs.on_forget.append(self._forgotten)
        self._forgotten_keys: list[FunctionKey] = []

    def _tap(self, key: FunctionKey, line: LogLine) -> None:
        buffer = self._buffer
        buffer.append((key, line.stream, line.timestamp, line.text))
        if len(buffer) > BUFFER_LIMIT:
            del buffer[: len(buffer) - BUFFER_LIMIT]

    def _forgotten(self, key: FunctionKey) -> None:
        self._forgotten_keys.append(key)

    async def start(self) -> None:
        recent = await asyncio.to_thread(self.archive.recent, self.clock.wall() - RELOAD_S)
        for _, (key, stream, at, text) in recent:
            self.logs.write(key, text, stream, at, tapped=False)
        self._seen = recent[-1][0] if recent else await asyncio.to_thread(self.archive.last_id)
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def close(self) -> None:
        await stop_task(self._task)
        await self._flush()  # a graceful stop loses nothing

    async def _keep(self) -> None:
        others = self._read_others if self.archive.shared else None
        await keep(self._flush, others, self._trim, log, "function logs", self.clock)

    async def _trim(self) -> None:
        retention = [(k, days * 86400.0) for k, days in self.logs.retentions()]
        await asyncio.to_thread(self.archive.trim, self.clock.wall(), retention)

    async def _flush(self) -> None:
        for key in self._forgotten_keys[:]:
            await asyncio.to_thread(self.archive.forget, key)
            self._forgotten_keys.remove(key)
        if not self._buffer:
            return
        lines, self._buffer = self._buffer, []
        try:
            await asyncio.to_thread(self.archive.append, lines)
        except BaseException:
            self._buffer[:0] = lines  # kept for the next try
            raise

    async def _read_others(self) -> None:
        while True:
            after = max(0, self._seen - LOOKBACK)
            found = await asyncio.to_thread(self.archive.since, after)
            fresh = 0
            for number, (key, stream, at, text) in found:
                if number in self._taken:
                    continue
                fresh += 1
                self._taken.add(number)
                self._seen = max(self._seen, number)
                self.logs.write(key, text, stream, at, tapped=False)
            if len(self._taken) > 4 * LOOKBACK:
                floor = self._seen - LOOKBACK
                self._taken = {n for n in self._taken if n > floor}
            if fresh == 0 or len(found) < 10_000:
                return

"""The trace keeper: X-Ray documents into the store, and back.

Every FLUSH_S it writes the documents received since (one transaction): a restart, even
after `kill -9`, loses at most the last FLUSH_S. At start it brings back the newest
documents (up to the store's MAX_TRACES traces' worth). In a cluster it reads, every
FLUSH_S, the documents other nodes received, so GetTraceSummaries and BatchGetTraces on
any node answer for the whole cluster. Every TRIM_S the store enforces retention.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from lamina.clock import Clock
from lamina.observe.keeping import keep
from lamina.observe.traces import TraceStore
from lamina.tasks import stop_task

RELOAD = 50_000  # documents read back at a start
LOOKBACK = 2000  # numbers read again: commits may land out of their order
BUFFER_LIMIT = 100_000

log = logging.getLogger("lamina.xray")

Document = tuple[str, str, str, float, str]


class Archive(Protocol):
    @property
    def shared(self) -> bool: ...

    def append(self, documents: list[Document]) -> None: ...

    def last_id(self) -> int: ...

    def recent(self, limit: int) -> list[tuple[int, Document]]: ...

    def since(self, after: int, limit: int = ...) -> list[tuple[int, Document]]: ...

    def trim(self, now: float) -> int: ...


class TraceKeeper:
    def __init__(self, traces: TraceStore, archive: Archive, clock: Clock | None = None) -> None:
        self.traces = traces
        self.archive = archive
        self.clock = clock or Clock()
        self._buffer: list[Document] = []
        self._seen = 0
        self._taken: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        traces.tap = self._tap

    def _tap(self, document: dict[str, Any], account: str | None, region: str | None) -> None:
        buffer = self._buffer
        trace = str(document.get("trace_id"))
        body = json.dumps(document, separators=(",", ":"))
        buffer.append((trace, account or "", region or "", self.clock.wall(), body))
        if len(buffer) > BUFFER_LIMIT:
            del buffer[: len(buffer) - BUFFER_LIMIT]

    def _take(self, found: list[tuple[int, Document]]) -> int:
        fresh = 0
        for number, (_, account, region, _, body) in found:
            if number in self._taken:
                continue
            fresh += 1
            self._taken.add(number)
            self._seen = max(self._seen, number)
            try:
                document = json.loads(body)
            except ValueError:
                continue
            self.traces.put(document, account or None, region or None, tapped=False)
        if len(self._taken) > 4 * LOOKBACK:
            floor = self._seen - LOOKBACK
            self._taken = {n for n in self._taken if n > floor}
        return fresh

    async def start(self) -> None:
        recent = await asyncio.to_thread(self.archive.recent, RELOAD)
        self._take(recent)
        if not recent:
            self._seen = await asyncio.to_thread(self.archive.last_id)
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def close(self) -> None:
        await stop_task(self._task)
        await self._flush()

    async def _keep(self) -> None:
        others = self._read_others if self.archive.shared else None
        await keep(self._flush, others, self._trim, log, "traces", self.clock)

    async def _trim(self) -> None:
        await asyncio.to_thread(self.archive.trim, self.clock.wall())

    async def _flush(self) -> None:
        if not self._buffer:
            return
        documents, self._buffer = self._buffer, []
        try:
            await asyncio.to_thread(self.archive.append, documents)
        except BaseException:
            self._buffer[:0] = documents
            raise

    async def _read_others(self) -> None:
        for _ in range(100):  # bounded: 10,000 a read
            found = await asyncio.to_thread(self.archive.since, max(0, self._seen - LOOKBACK))
            if self._take(found) == 0 or len(found) < 10_000:
                return

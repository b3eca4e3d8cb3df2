"""What drives durable executions forward: timers, one runner per execution, and
invocations that wait out throttles.

- `Timers` keeps one deadline (real wall seconds) per key in a heap and one task that
  sleeps until the earliest; due keys are handed to `on_due`. Deadlines are set from
  persisted records, so after a restart they are simply set again.
- `Runners` runs at most one coroutine per key at a time; a kick while one runs asks
  for one more round after it (so nothing that happened meanwhile is missed).
- `invoke_admitted` runs one invocation through the engine's leases. A throttled one
  waits (exponential backoff with jitter, platform-scaled, cut short by any released
  lease) and tries again, for as long as it takes: a re-invocation is never dropped.
  While it waits it holds no concurrency at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from lamina.clock import Clock, wait_event
from lamina.engine.concurrency import Lease
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.service import Engine, Throttled
from lamina.keys import FunctionKey
from lamina.sandbox.launch import FunctionImage
from lamina.tasks import stop_task

log = logging.getLogger("lamina.durable")

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0  # platform seconds between throttled tries


class Timers:
    def __init__(self, clock: Clock, on_due: Callable[[str], None]) -> None:
        self.clock = clock
        self.on_due = on_due
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        await stop_task(self._task)

    def set(self, key: str, when: float | None) -> None:
        if when is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))
        if self._heap[0][2] == key:
            self._wake.set()

    def pending(self) -> int:
        return len(self._due)

    def due(self, key: str) -> float | None:
        return self._due.get(key)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.wall()
            while self._heap and self._heap[0][0] <= now:
                when, _, key = heapq.heappop(self._heap)
                if self._due.get(key) == when:
                    del self._due[key]
                    try:
                        self.on_due(key)
                    except Exception:
                        log.exception("a durable timer failed")
            while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # superseded deadlines
            timeout = self._heap[0][0] - now if self._heap else None
            await wait_event(self._wake, timeout)


class Runners:
    """At most one running coroutine per key; kicks while it runs add one more round."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self._again: set[Hashable] = set()

    def kick(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        if key in self._tasks:
            self._again.add(key)
            return
        task = asyncio.get_running_loop().create_task(self._rounds(key, work))
        self._tasks[key] = task

    def running(self, key: Hashable) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    async def _rounds(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await work()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("a durable execution's round failed")
                if key not in self._again:
                    return
        finally:
            self._tasks.pop(key, None)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Admission:
    """Re-invocations that a throttle turned away wait here, first come first served: each
    released lease wakes the longest waiting one (no herd), and each also retries on its
    own after a backoff (a rate limit refills without any release)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._queue: deque[asyncio.Future[None]] = deque()
        self.throttles = 0  # throttled tries so far
        engine.on_release.append(self._on_release)

    @property
    def waiting(self) -> int:
        """Re-invocations waiting out a throttle right now."""
        return sum(1 for future in self._queue if not future.done())

    def _on_release(self, lease: Lease) -> None:
        while self._queue:
            future = self._queue.popleft()
            if not future.done():
                future.set_result(None)
                return

    async def invoke(
        self,
        key: FunctionKey,
        image: FunctionImage,
        request: InvokeRequest,
        provisioned_for: str | None = None,
    ) -> InvokeResult:
        backoff = BACKOFF_FIRST
        while True:
            try:
                return await self.engine.invoke(key, image, request, provisioned_for)
            except Throttled:
                self.throttles += 1
            delay = self.clock.platform_delay(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, BACKOFF_MAX)
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue.append(turn)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await asyncio.shield(turn)
            finally:
                if not turn.done():
                    turn.cancel()

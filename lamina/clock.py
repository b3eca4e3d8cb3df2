"""The one source of time.

Platform delays (keep-alive, retry gaps, event age, bucket refills) go through a Clock so
that tests and demos can run them faster with a time scale. Function timeouts are never
scaled: they are the user's contract, so callers measure them with `monotonic()` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any


class Clock:
    """Real time, with platform delays multiplied by `scale` (1.0 = real)."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale

    def monotonic(self) -> float:
        """Seconds on a monotonic clock, for measuring durations."""
        return time.monotonic()

    def platform_now(self) -> float:
        """Monotonic seconds in platform time: runs 1/scale times as fast as real time, so
        token buckets refill at the same pace as every other scaled delay."""
        return time.monotonic() / self.scale

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps users see."""
        return time.time()

    def platform_delay(self, seconds: float) -> float:
        """The real number of seconds a platform delay of `seconds` lasts."""
        return seconds * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.platform_delay(seconds))

    def call_later(
        self, seconds: float, callback: Callable[..., Any], *args: Any
    ) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(self.platform_delay(seconds), callback, *args)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set or `timeout` real seconds pass (None: no limit); True if
    it is set. A cancellation that comes as the event is set is raised, never lost (Python
    3.11's asyncio.wait_for can lose it: a component's task would then miss its stop)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()

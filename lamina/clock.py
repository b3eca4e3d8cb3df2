"""The one source of time.

Platform delays (keep-alive, retry gaps, event age, bucket refills) go through a Clock so
that tests and demos can run them faster with a time scale. Function timeouts are never
scaled: they are the user's contract, so callers measure them with `monotonic()` directly.
"""

from __future__ import annotations

import asyncio
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

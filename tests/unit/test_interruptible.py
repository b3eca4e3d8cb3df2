"""Waits of pollers and shard workers that a graceful stop interrupts."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

from lamina.engine.pollers.base import Interruptible, Stopped


class Nested(Interruptible):
    """Waits through an outer one (as a shard worker through its poller)."""

    def __init__(self, outer: Interruptible) -> None:
        super().__init__()
        self.outer = outer

    async def _wait(self, task: asyncio.Future[Any]) -> Any:
        return await self.outer.idle(task)


def test_an_interrupt_ends_a_wait_with_stopped() -> None:
    async def main() -> None:
        waits = Interruptible()
        waiting = asyncio.ensure_future(waits.idle(asyncio.sleep(60)))
        await asyncio.sleep(0)
        waits.interrupt()
        with pytest.raises(Stopped):
            await waiting
        assert not waits._idle  # nothing left to cancel

    asyncio.run(main())


def test_a_wait_asked_for_after_the_interrupt_is_stopped_and_never_left_unawaited() -> None:
    async def main() -> None:
        waits = Interruptible()
        waits.interrupt()
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            with pytest.raises(Stopped):
                await waits.idle(asyncio.sleep(60))
            await asyncio.sleep(0)  # the cancelled wait finishes

    asyncio.run(main())


def test_either_stop_interrupts_a_nested_wait_and_others_go_through() -> None:
    async def main() -> None:
        for stopped in ("inner", "outer"):
            outer = Interruptible()
            inner = Nested(outer)
            waiting = asyncio.ensure_future(inner.idle(asyncio.sleep(60)))
            await asyncio.sleep(0)
            (inner if stopped == "inner" else outer).interrupt()
            with pytest.raises(Stopped):
                await waiting
        outer = Interruptible()
        assert await Nested(outer).idle(asyncio.sleep(0, "done")) == "done"
        external = asyncio.ensure_future(Nested(Interruptible()).idle(asyncio.sleep(60)))
        await asyncio.sleep(0)
        external.cancel()  # a cancellation from outside stays a cancellation
        with pytest.raises(asyncio.CancelledError):
            await external

    asyncio.run(main())

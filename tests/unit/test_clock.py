"""Waiting on an event with a limit: the event, the limit, and a stop at the same moment."""

from __future__ import annotations

import asyncio

from lamina.clock import wait_event


def test_wait_event_returns_when_set_or_after_the_limit() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, event.set)
        was_set = await wait_event(event, 10.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        timed_out = await wait_event(asyncio.Event(), 0.02)
        return was_set, timed_out, loop.time() - started

    was_set, timed_out, waited = asyncio.run(scenario())
    assert was_set is True
    assert timed_out is False
    assert 0.015 <= waited < 5.0


def test_a_stop_that_comes_as_the_event_is_set_is_not_lost() -> None:
    """The waiting task is cancelled in the same loop step that sets the event: the
    cancellation is raised (asyncio.wait_for on Python 3.11 returns normally instead)."""

    async def scenario() -> list[bool]:
        outcomes = []
        for limit in (None, 10.0):
            event = asyncio.Event()
            task = asyncio.get_running_loop().create_task(wait_event(event, limit))
            for _ in range(3):
                await asyncio.sleep(0)  # the task is waiting
            event.set()
            task.cancel()
            await asyncio.wait({task})
            outcomes.append(task.cancelled())
        return outcomes

    assert asyncio.run(scenario()) == [True, True]

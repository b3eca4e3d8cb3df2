"""Invocation timeouts under one timer: order, cancellation, bounded memory (issue 6)."""

from __future__ import annotations

import asyncio

from lamina.sandbox.deadlines import Deadlines


def test_due_callbacks_run_in_order_and_cancelled_ones_never() -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        fired: list[str] = []
        now = loop.time()
        deadlines.add(now + 0.06, lambda: fired.append("late"))
        deadlines.add(now + 0.02, lambda: fired.append("early"))
        deadlines.add(now + 0.01, lambda: fired.append("cancelled")).cancel()
        deadlines.add(now + 0.04, lambda: fired.append("middle"))
        await asyncio.sleep(0.03)
        assert fired == ["early"]
        deadlines.add(loop.time() + 0.005, lambda: fired.append("sooner"))  # re-arms earlier
        await asyncio.sleep(0.08)
        assert deadlines.timer is None and not deadlines.heap
        return fired

    assert asyncio.run(scenario()) == ["early", "sooner", "middle", "late"]


def test_cancelled_entries_are_swept() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        keep = deadlines.add(loop.time() + 60, lambda: None)
        for _ in range(50_000):  # a warm invoke adds one and cancels it when answered
            deadlines.add(loop.time() + 60, lambda: None).cancel()
        assert len(deadlines.heap) <= 2 * Deadlines.SWEEP_AT + 2
        assert keep in [entry for _, _, entry in deadlines.heap]
        keep.cancel()
        assert deadlines.timer is not None
        deadlines.timer.cancel()

    asyncio.run(scenario())

"""The pool of prepared inits on its own: a cold start that finds it empty waits for the
init being prepared, and goes the whole way at once when preparing fails."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from lamina.sandbox import cgroups as cg
from lamina.sandbox import inits


class Cgroup:
    def __init__(self) -> None:
        self.procs_files = ["/nowhere/cgroup.procs"]

    def remove(self) -> bool:
        return True

    def freeze(self, frozen: bool = True) -> None:
        pass


class Cgroups:
    def create(self, name: str, memory_mb: int, pids: int) -> Cgroup:
        return Cgroup()


class Preparer:
    """Prepares an init in `delay` seconds (fails if `failing`)."""

    def __init__(self, delay: float, failing: bool = False) -> None:
        self.delay = delay
        self.failing = failing
        self.on_exit = None
        self.prepared = 0

    async def prepare(self, key: int, sandbox: dict[str, Any]) -> int:
        await asyncio.sleep(self.delay)
        if self.failing:
            raise OSError("no init today")
        self.prepared += 1
        return 100_000 + key


def pool(preparer: Preparer) -> inits.Inits:
    return inits.Inits(preparer, cast(cg.Cgroups, Cgroups()), None, {}, 64, size=1)


def test_a_cold_start_that_finds_none_waits_for_the_one_being_prepared() -> None:
    async def scenario() -> tuple[list[int | None], int, float]:
        preparer = Preparer(0.05)
        ready = pool(preparer)
        ready.start()
        taken = []
        started = time.monotonic()
        for _ in range(3):  # one ready at most: the next two wait for the refill each
            found = await ready.take_soon()
            taken.append(found.pid if found else None)
        elapsed = time.monotonic() - started
        await ready.close()
        return taken, ready.missed, elapsed

    taken, missed, elapsed = asyncio.run(scenario())
    assert None not in taken and len(set(taken)) == 3, taken
    assert missed == 0
    assert elapsed < inits.WAIT_S * 2, elapsed  # none waited out its patience


def test_a_failing_preparation_sends_the_waiting_cold_start_the_whole_way_at_once() -> None:
    async def scenario() -> tuple[object, float]:
        ready = pool(Preparer(0.02, failing=True))
        ready.start()
        started = time.monotonic()
        found = await ready.take_soon()
        elapsed = time.monotonic() - started
        await ready.close()
        return found, elapsed

    found, elapsed = asyncio.run(scenario())
    assert found is None
    assert elapsed < inits.WAIT_S / 2, elapsed  # woken by the failure, not by the limit

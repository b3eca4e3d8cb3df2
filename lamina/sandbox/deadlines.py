"""Invocation timeouts (and other short deadlines of environments) under one timer per
event loop."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable


class Deadline:
    __slots__ = ("callback", "owner", "when")

    def __init__(self, owner: Deadlines, when: float, callback: Callable[[], None]) -> None:
        self.owner = owner
        self.when = when
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self.owner.cancelled += 1


class Deadlines:
    """Invocation timeouts under one timer per event loop.

    A timer per invocation costs a timer handle made and cancelled on every warm invoke
    (with uvloop, a libuv handle opened and closed). Here a deadline is an entry in a
    heap; cancelling one only clears it; the single timer is armed for the earliest entry
    and, when it fires, runs what is due and skips what was cancelled. Cancelled entries
    are swept when they outnumber the live ones, so memory stays bounded by those."""

    SWEEP_AT = 1024

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # (when, order, entry): compared as tuples, in C, never by a method of the entry
        self.heap: list[tuple[float, int, Deadline]] = []
        self.order = 0
        self.timer: asyncio.TimerHandle | None = None
        self.armed_for = math.inf
        self.cancelled = 0  # entries in the heap that were cancelled

    def add(self, when: float, callback: Callable[[], None]) -> Deadline:
        entry = Deadline(self, when, callback)
        self.order += 1
        heapq.heappush(self.heap, (when, self.order, entry))
        if self.cancelled > self.SWEEP_AT and 2 * self.cancelled > len(self.heap):
            self.heap = [item for item in self.heap if item[2].callback is not None]
            heapq.heapify(self.heap)
            self.cancelled = 0
        if when < self.armed_for:
            self._arm(when)
        return entry

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.armed_for = when
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer, self.armed_for = None, math.inf
        now = self.loop.time()
        heap = self.heap
        while heap and (heap[0][2].callback is None or heap[0][0] <= now):
            entry = heapq.heappop(heap)[2]
            callback, entry.callback = entry.callback, None
            if callback is None:
                self.cancelled -= 1
            else:
                callback()
            heap = self.heap  # a callback may have added (and swept) entries
        if heap:
            self._arm(heap[0][0])


_deadlines: dict[asyncio.AbstractEventLoop, Deadlines] = {}


def deadlines() -> Deadlines:
    loop = asyncio.get_running_loop()
    found = _deadlines.get(loop)
    if found is None:
        for other in [other for other in _deadlines if other.is_closed()]:
            del _deadlines[other]
        found = _deadlines[loop] = Deadlines(loop)
    return found

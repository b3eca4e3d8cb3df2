"""Which environment an invocation runs on: the pool's policy as plain functions over plain
data, with `now` passed in. The engine calls them with real environments and its clock;
the planner (lamina/plan) calls the same ones in virtual time.

- Placement (`admit`): an idle provisioned environment of the invoked alias or version
  first; else an on-demand one, counted as spillover when that target has provisioned
  concurrency; a new on-demand environment (a cold start) needs a token of the
  function's scaling bucket. The counting service (engine/concurrency.py) decides.
- Reuse (`IdleStack`): idle on-demand environments are reused most recently used first;
  one idle for `keep_alive` seconds is reclaimed. Environments go idle in time order, so
  the stack is also ordered by idle time: the ones to reclaim are always at its bottom.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from lamina.engine.concurrency import Counter, Decision, Kind
from lamina.engine.counting import SharedCounting
from lamina.keys import FunctionKey

T = TypeVar("T")
_PROVISIONED, _ON_DEMAND = Kind.PROVISIONED, Kind.ON_DEMAND  # enum lookups cost ~0.2 µs


def admit(
    counter: Counter,
    key: FunctionKey,
    now: float,
    provisioned_idle: bool,
    provisioned_target: bool,
    warm_idle: bool,
) -> Decision:
    """Ask the counting service for a slot, as the engine places an invocation.

    `provisioned_idle`: an initialised provisioned environment of the invoked target is
    free. `provisioned_target`: the target has provisioned concurrency at all (an
    on-demand run of it is a spillover). `warm_idle`: an on-demand environment is idle
    (else the invocation needs a new one: a cold start, under the scaling rate).
    """
    if provisioned_idle:
        return counter.acquire(key, now, _PROVISIONED)
    return counter.acquire(key, now, _ON_DEMAND, not warm_idle, provisioned_target)


async def admit_shared(
    counting: SharedCounting,
    key: FunctionKey,
    now: float,
    provisioned_idle: bool,
    provisioned_target: bool,
    warm_idle: bool,
) -> Decision:
    """`admit`, asking a cluster's shared counts (the same rules, in Redis)."""
    if provisioned_idle:
        return await counting.acquire(key, now, _PROVISIONED)
    return await counting.acquire(key, now, _ON_DEMAND, not warm_idle, provisioned_target)


class IdleStack(Generic[T]):
    """Idle environments, most recently used last, each with the time it went idle."""

    __slots__ = ("_items", "_since", "keep_alive")

    def __init__(self, keep_alive: float) -> None:
        self.keep_alive = keep_alive
        self._items: list[T] = []
        self._since: list[float] = []

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def push(self, item: T, now: float) -> None:
        """`item` goes idle at `now` (callers pass non-decreasing times)."""
        self._items.append(item)
        self._since.append(now)

    def pop(self, now: float) -> T | None:
        """The most recently used environment still within its keep-alive, taken off the
        stack; None if there is none (those past it stay for `expired`)."""
        since = self._since
        if not since or since[-1] + self.keep_alive <= now:
            return None
        since.pop()
        return self._items.pop()

    def top(self) -> T | None:
        """What `pop` would return next, left in place (None if nothing is idle)."""
        return self._items[-1] if self._items else None

    def has_idle(self, now: float) -> bool:
        """Whether `pop(now)` would return an environment."""
        since = self._since
        return bool(since) and since[-1] + self.keep_alive > now

    def expired(self, now: float) -> list[T]:
        """Take off and return the environments idle for `keep_alive` or longer."""
        since, limit, count = self._since, now - self.keep_alive, 0
        while count < len(since) and since[count] <= limit:
            count += 1
        if not count:
            return []
        gone = self._items[:count]
        del self._items[:count], since[:count]
        return gone

    def next_expiry(self) -> float | None:
        """When the oldest idle environment reaches its keep-alive (None if none is idle)."""
        return self._since[0] + self.keep_alive if self._since else None

    def take(self, wanted: Callable[[T], bool]) -> T | None:
        """Take off the most recently used item `wanted` accepts (None if none does)."""
        items = self._items
        for index in range(len(items) - 1, -1, -1):
            if wanted(items[index]):
                del self._since[index]
                return items.pop(index)
        return None

    def remove_if(self, doomed: Callable[[T], bool]) -> list[T]:
        """Take off and return the environments `doomed` says are unusable."""
        marks = [doomed(item) for item in self._items]
        if not any(marks):
            return []
        gone = [item for item, mark in zip(self._items, marks, strict=True) if mark]
        self._items = [item for item, mark in zip(self._items, marks, strict=True) if not mark]
        self._since = [since for since, mark in zip(self._since, marks, strict=True) if not mark]
        return gone

    def clear(self) -> list[T]:
        gone, self._items, self._since = self._items, [], []
        return gone

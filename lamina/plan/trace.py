"""A traffic trace as the replay reads it: a table of streams (one function's traffic of
one invocation type) and, in time order, batches of invocations.

A batch is three columns of equal length: arrival times (seconds from the trace's
start, non-decreasing across batches), stream indexes and durations (seconds). Traces
drawn from aggregates (Azure 2019) draw their batches anew on each pass with the same
seed, so every pass, and every setting --recommend tries, replays the same invocations.
"""

from __future__ import annotations

import bisect
import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

Batch = tuple[Sequence[float], Sequence[int], Sequence[float]]
BATCH_ROWS = 65_536


@dataclass
class Stream:
    """One function's invocations of one type, as the trace describes them."""

    id: str  # the function's identity in the trace (hashes; account/region/name)
    name: str  # the short name reports and settings use
    invocation: str = "sync"  # sync | async, the trace's (settings may override)
    account: str | None = None  # the trace's account, when it has one
    region: str | None = None
    qualifier: str | None = None  # the alias or version invoked (Lamina's export)
    trigger: str | None = None  # Azure's trigger group
    memory_mb: int | None = None  # the trace's figure, if any
    init_ms: float | None = None  # the trace's cold start figure, if any
    invocations: int = 0  # how many the trace holds (0: unknown)
    has_durations: bool = True  # False: the trace gives none; settings' duration_ms is used


class Trace(Protocol):
    format: str
    streams: list[Stream]
    start_epoch: float | None  # wall time of its start, when known
    day_offset: float  # seconds past midnight UTC at its start (for schedules)

    @property
    def span(self) -> float:
        """Seconds the trace covers."""

    @property
    def total(self) -> int:
        """Invocations it holds."""

    def batches(self, seed: int) -> Iterator[Batch]: ...


@dataclass
class Columns:
    """A trace held in memory: its rows sorted by arrival."""

    format: str
    streams: list[Stream]
    times: array[float]
    indexes: array[int]
    durations: array[float]
    span: float
    start_epoch: float | None = None
    day_offset: float = 0.0

    @property
    def total(self) -> int:
        return len(self.times)

    def batches(self, seed: int) -> Iterator[Batch]:
        for start in range(0, len(self.times), BATCH_ROWS):
            end = start + BATCH_ROWS
            yield self.times[start:end], self.indexes[start:end], self.durations[start:end]


def sorted_columns(
    rows: list[tuple[float, int, float]],
) -> tuple[array[float], array[int], array[float]]:
    rows.sort()
    times = array("d", (row[0] for row in rows))
    indexes = array("i", (row[1] for row in rows))
    durations = array("d", (row[2] for row in rows))
    return times, indexes, durations


class Quantiles:
    """Draws from a distribution given by percentiles: the inverse of its distribution
    function, linear between the given points."""

    __slots__ = ("probabilities", "values")

    def __init__(self, points: list[tuple[float, float]]) -> None:
        points = sorted(points)
        self.probabilities = [p for p, _ in points]
        self.values = [v for _, v in points]

    def draw(self, rng: random.Random) -> float:
        return self.at(rng.random())

    def at(self, u: float) -> float:
        probabilities, values = self.probabilities, self.values
        index = bisect.bisect_right(probabilities, u)
        if index <= 0:
            return values[0]
        if index >= len(values):
            return values[-1]
        p0, p1 = probabilities[index - 1], probabilities[index]
        v0, v1 = values[index - 1], values[index]
        return v0 if p1 == p0 else v0 + (v1 - v0) * (u - p0) / (p1 - p0)


def short_names(ids: list[str], width: int = 10) -> list[str]:
    """Readable unique names for hashed ids: their first `width` characters, longer where
    two would collide."""
    names = [identifier[:width] for identifier in ids]
    while len(set(names)) < len(names) and width < max(len(i) for i in ids):
        width += 4
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
        names = [i[:width] if seen[n] > 1 else n for i, n in zip(ids, names, strict=True)]
    return names

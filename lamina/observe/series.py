"""One metric's statistics per minute, as CloudWatch keeps them: the store that
GetMetricStatistics and GetMetricData read (observe/metrics.py records into it)."""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

RESOLUTION = 60  # seconds per stored datapoint
RETENTION_MINUTES = 26 * 60  # one-minute datapoints kept a little over a day

Dimensions = tuple[tuple[str, str], ...]  # sorted by name


def dimensions(**pairs: str) -> Dimensions:
    return tuple(sorted(pairs.items()))


class MinuteSeries:
    """Per-minute statistics of one metric: for each minute with data, its sample count,
    sum, minimum and maximum. The current minute is kept in plain attributes (the hot
    path); earlier ones in flat arrays (40 bytes a minute, ~62 KB for a series busy all
    day), minutes ascending."""

    __slots__ = ("count", "head", "high", "low", "minutes", "stats", "total", "unit")

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.minutes = array("q")  # earlier minutes with data, ascending
        self.stats = array("d")  # count, sum, min, max of each of them
        self.head = -1  # the latest minute with data (-1: none yet)
        self.count = self.total = self.low = self.high = 0.0

    def add(self, now: float, value: float) -> None:
        minute = int(now // RESOLUTION)
        if minute <= self.head:  # this minute (or a clock step back)
            self.count += 1
            self.total += value
            if value < self.low:
                self.low = value
            if value > self.high:
                self.high = value
            return
        self._advance(minute, 1.0, value, value, value)

    def add_stats(self, when: float, count: float, total: float, low: float, high: float) -> None:
        """Add already-aggregated values at `when`, which may be in the past (PutMetricData)."""
        minute = int(when // RESOLUTION)
        if minute == self.head:
            self.count += count
            self.total += total
            self.low = min(self.low, low)
            self.high = max(self.high, high)
            return
        if minute > self.head:
            self._advance(minute, count, total, low, high)
            return
        if minute <= self.head - RETENTION_MINUTES:
            return  # older than what is kept
        minutes, stats = self.minutes, self.stats
        index = bisect.bisect_left(minutes, minute)
        if index < len(minutes) and minutes[index] == minute:
            at = index * 4
            stats[at] += count
            stats[at + 1] += total
            stats[at + 2] = min(stats[at + 2], low)
            stats[at + 3] = max(stats[at + 3], high)
            return
        minutes.insert(index, minute)
        stats[index * 4 : index * 4] = array("d", (count, total, low, high))

    def _advance(self, minute: int, count: float, total: float, low: float, high: float) -> None:
        """A new latest minute: the current one goes to the arrays, the oldest out."""
        minutes = self.minutes
        if self.head >= 0:
            minutes.append(self.head)
            self.stats.extend((self.count, self.total, self.low, self.high))
        self.head = minute
        self.count, self.total, self.low, self.high = count, total, low, high
        horizon = minute - RETENTION_MINUTES
        if minutes and minutes[0] <= horizon:
            drop = bisect.bisect_right(minutes, horizon)
            del minutes[:drop]
            del self.stats[: drop * 4]

    def kept(self) -> list[int]:
        """The minutes that have data."""
        return [*self.minutes, self.head] if self.head >= 0 else []

    def periods(self, start: float, end: float, period: int) -> Iterator[tuple[int, list[float]]]:
        """(period start in seconds, [count, sum, min, max]) for each period in [start, end)
        that has data, periods aligned to multiples of `period` since the epoch."""
        minutes, stats = self.minutes, self.stats
        first = int(start // RESOLUTION)
        last = math.ceil(end / RESOLUTION)  # exclusive
        index = bisect.bisect_left(minutes, first)
        buckets: list[tuple[int, float, float, float, float]] = []
        while index < len(minutes) and minutes[index] < last:
            at = index * 4
            buckets.append((minutes[index], stats[at], stats[at + 1], stats[at + 2], stats[at + 3]))
            index += 1
        if first <= self.head < last:
            buckets.append((self.head, self.count, self.total, self.low, self.high))
        yield from by_period(buckets, period)

    def last_minute(self) -> float:
        return float(self.head * RESOLUTION) if self.head >= 0 else 0.0


Stats = tuple[float, float, float, float]  # count, sum, min, max


class NodeMinutes:
    """One node's stored minutes of one metric, in flat arrays (40 bytes a minute), minutes
    ascending; a minute written again replaces its statistics (the node wrote its whole
    minute so far), so reading a row twice is harmless."""

    __slots__ = ("minutes", "stats")

    def __init__(self) -> None:
        self.minutes = array("q")
        self.stats = array("d")

    def set(self, minute: int, stats: Stats) -> None:
        minutes = self.minutes
        if not minutes or minute > minutes[-1]:  # the usual case: the next minute
            minutes.append(minute)
            self.stats.extend(stats)
            return
        index = bisect.bisect_left(minutes, minute)
        if minutes[index] == minute:
            self.stats[index * 4 : index * 4 + 4] = array("d", stats)
        else:
            minutes.insert(index, minute)
            self.stats[index * 4 : index * 4] = array("d", stats)

    def trim(self, horizon: int) -> None:
        drop = bisect.bisect_right(self.minutes, horizon)
        if drop:
            del self.minutes[:drop]
            del self.stats[: drop * 4]


class RemoteSeries:
    """One metric as other nodes (or this node before a restart) stored it: each node's
    minutes, combined when read."""

    __slots__ = ("nodes", "unit")

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.nodes: dict[str, NodeMinutes] = {}

    def set(self, node: str, minute: int, stats: Stats) -> None:
        found = self.nodes.get(node)
        if found is None:
            found = self.nodes[node] = NodeMinutes()
        found.set(minute, stats)

    def trim(self, horizon: int) -> None:
        for node, kept in list(self.nodes.items()):
            kept.trim(horizon)
            if not kept.minutes:
                del self.nodes[node]

    def minutes(self, first: int, last: int) -> Iterator[tuple[int, Stats]]:
        """(minute, the nodes' statistics combined) for minutes in [first, last)."""
        found: dict[int, list[Stats]] = {}
        for kept in self.nodes.values():
            minutes, stats = kept.minutes, kept.stats
            index = bisect.bisect_left(minutes, first)
            while index < len(minutes) and minutes[index] < last:
                at = index * 4
                found.setdefault(minutes[index], []).append(
                    (stats[at], stats[at + 1], stats[at + 2], stats[at + 3])
                )
                index += 1
        for minute in sorted(found):
            yield minute, _combine(found[minute])

    def last_minute(self) -> float:
        last = max((kept.minutes[-1] for kept in self.nodes.values() if kept.minutes), default=0)
        return float(last * RESOLUTION)


def _combine(parts: Any) -> Stats:
    count = total = 0.0
    low, high = math.inf, -math.inf
    for c, s, lo, hi in parts:
        count += c
        total += s
        low = min(low, lo)
        high = max(high, hi)
    return count, total, low, high


class MergedSeries:
    """This node's series and the stored ones of other nodes, read as one: what
    GetMetricStatistics, GetMetricData and ListMetrics see in a cluster or after a restart."""

    __slots__ = ("local", "remote", "unit")

    def __init__(self, local: MinuteSeries | None, remote: RemoteSeries | None) -> None:
        self.local = local
        self.remote = remote
        unit = local.unit if local is not None else "None"
        if unit == "None" and remote is not None:
            unit = remote.unit
        self.unit = unit

    def periods(self, start: float, end: float, period: int) -> Iterator[tuple[int, list[float]]]:
        first = int(start // RESOLUTION)
        last = math.ceil(end / RESOLUTION)
        minutes: dict[int, list[Stats]] = {}
        if self.local is not None:
            for minute, stats in self.local.periods(start, end, RESOLUTION):
                minutes.setdefault(minute // RESOLUTION, []).append(
                    (stats[0], stats[1], stats[2], stats[3])
                )
        if self.remote is not None:
            for minute, combined in self.remote.minutes(first, last):
                minutes.setdefault(minute, []).append(combined)
        ordered = ((minute, *_combine(minutes[minute])) for minute in sorted(minutes))
        yield from by_period(ordered, period)

    def last_minute(self) -> float:
        local = self.local.last_minute() if self.local is not None else 0.0
        remote = self.remote.last_minute() if self.remote is not None else 0.0
        return max(local, remote)


def by_period(
    minutes: Iterable[tuple[int, float, float, float, float]], period: int
) -> Iterator[tuple[int, list[float]]]:
    """(minute, count, sum, min, max) in minute order → (period start in seconds, [count,
    sum, min, max] of its minutes)."""
    current: int | None = None
    totals: list[float] = []
    for minute, count, total, low, high in minutes:
        slot = minute * RESOLUTION // period * period
        if slot != current:
            if current is not None:
                yield current, totals
            current, totals = slot, [count, total, low, high]
        else:
            totals[0] += count
            totals[1] += total
            totals[2] = min(totals[2], low)
            totals[3] = max(totals[3], high)
    if current is not None:
        yield current, totals

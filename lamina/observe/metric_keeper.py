"""The metric keeper: this node's one-minute datapoints and totals into the store, and
what other nodes (or this node before a restart) stored, back.

Recording stays in memory (observe/metrics.py marks what it writes). Every FLUSH_S the
keeper writes, in one transaction, each written series' minutes since its last flush (a
row per series and minute, replaced as the minute fills) and the totals of each account
that changed: a restart, even after `kill -9`, loses at most the last FLUSH_S. At start
it reads back the last hour before the server answers, and the rest of RETENTION_MINUTES
just after; in a cluster it reads, every FLUSH_S, what the
other nodes wrote, so every node answers for the whole cluster. Every TRIM_S the store
enforces retention.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from typing import Any, Protocol

from lamina.clock import Clock
from lamina.observe.keeping import keep
from lamina.observe.metrics import Metrics, Scope, SeriesKey
from lamina.observe.series import RESOLUTION, RETENTION_MINUTES, MinuteSeries, RemoteSeries
from lamina.observe.totals import encode
from lamina.tasks import stop_task

LOOKBACK_S = 5.0  # others' rows are read again this far back: commits land late
RECENT_MINUTES = 60  # read back before a start completes; the rest of the day after

log = logging.getLogger("lamina.metrics")

MinuteRow = tuple[str, str, str, str, str, int, str, float, float, float, float]


class Archive(Protocol):
    @property
    def shared(self) -> bool: ...

    def write(
        self, minutes: list[MinuteRow], totals: list[tuple[str, str, str]], at: float
    ) -> None: ...

    def others(
        self, since: float, first_minute: int, end_minute: int = ...
    ) -> tuple[list[Any], list[Any]]: ...

    def trim(self, first_minute: int, since: float) -> int: ...


def _minute_stats(series: MinuteSeries, minute: int) -> tuple[float, float, float, float] | None:
    if minute == series.head:
        return series.count, series.total, series.low, series.high
    index = bisect.bisect_left(series.minutes, minute)
    if index < len(series.minutes) and series.minutes[index] == minute:
        at = index * 4
        stats = series.stats
        return stats[at], stats[at + 1], stats[at + 2], stats[at + 3]
    return None


class MetricKeeper:
    def __init__(self, metrics: Metrics, archive: Archive, clock: Clock | None = None) -> None:
        self.metrics = metrics
        self.archive = archive
        self.clock = clock or Clock()
        self._flushed: dict[MinuteSeries, int] = {}  # each series' head at its last flush
        self._read = 0.0  # wall time of the last read of the others' rows
        self._recent = 0  # the first minute read back at the start
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The last hour before answering; the rest of the day just after (at a large
        # store's size, seconds of reading that need not hold up the start).
        self._recent = int(self.clock.wall() // RESOLUTION) - RECENT_MINUTES
        await self._read_others(0.0, self._recent)
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def close(self) -> None:
        await stop_task(self._task)
        await self._flush()  # a graceful stop loses nothing

    async def _keep(self) -> None:
        first = int(self.clock.wall() // RESOLUTION) - RETENTION_MINUTES
        try:
            await self._read_others(0.0, first, self._recent)
        except Exception as error:
            log.warning("stored metrics not read back: %s", error)
        others = self._read_recent if self.archive.shared else None
        await keep(self._flush, others, self._trim, log, "metrics", self.clock)

    async def _read_recent(self) -> None:
        await self._read_others(self._read - LOOKBACK_S)

    def _collect(self) -> tuple[list[MinuteRow], list[tuple[str, str, str]], list[Any]]:
        """What changed since the last flush, as rows; and how to take it back."""
        metrics = self.metrics
        changed = set(metrics.changed)
        metrics.changed.clear()
        scopes = set(metrics.changed_scopes)
        metrics.changed_scopes.clear()
        for target in metrics.changed_targets:
            changed.update(target.series())
            scopes.add(target.scope)
        metrics.changed_targets.clear()
        past, metrics.past = metrics.past, set()
        wanted: dict[MinuteSeries, set[int]] = {}
        for series in changed:
            if series.head < 0:
                continue
            since = self._flushed.get(series, -1)
            index = bisect.bisect_left(series.minutes, since)
            minutes = wanted[series] = set(series.minutes[index:])
            minutes.add(series.head)
        for series, minute in past:
            wanted.setdefault(series, set()).add(minute)
        rows: list[MinuteRow] = []
        for series, minutes in wanted.items():
            (account, region), (namespace, name, dims) = metrics.names[series]
            dims_text = json.dumps(dims, separators=(",", ":"))
            for minute in minutes:
                stats = _minute_stats(series, minute)
                if stats is not None:
                    rows.append(
                        (account, region, namespace, name, dims_text, minute, series.unit, *stats)
                    )
        totals = [
            (scope[0], scope[1], json.dumps(encode(metrics.accounts[scope])))
            for scope in scopes
            if scope in metrics.accounts
        ]
        return rows, totals, [changed, scopes, past, wanted]

    async def _flush(self) -> None:
        rows, totals, undo = self._collect()
        if not rows and not totals:
            return
        try:
            await asyncio.to_thread(self.archive.write, rows, totals, self.clock.wall())
        except BaseException:
            changed, scopes, past, _ = undo  # kept for the next try
            self.metrics.changed.update(changed)
            self.metrics.changed_scopes.update(scopes)
            self.metrics.past.update(past)
            raise
        for series in undo[3]:
            self._flushed[series] = series.head

    async def _read_others(self, since: float, first: int | None = None, end: int = 2**62) -> None:
        now = self.clock.wall()
        if first is None:
            first = int(now // RESOLUTION) - RETENTION_MINUTES
        minutes, totals = await asyncio.to_thread(self.archive.others, since, first, end)
        if end == 2**62:
            self._read = now
        remote = self.metrics.remote
        # Rows of one series come together: its name is parsed once, not once a row.
        series: dict[tuple[str, ...], RemoteSeries] = {}
        for node, account, region, namespace, name, dims, minute, unit, n, total, lo, hi in minutes:
            named = (account, region, namespace, name, dims)
            found = series.get(named)
            if found is None:
                scope: Scope = (account, region)
                pairs = tuple((str(k), str(v)) for k, v in json.loads(dims))
                key: SeriesKey = (namespace, name, pairs)
                by_key = remote.setdefault(scope, {})
                found = by_key.get(key)
                if found is None:
                    found = by_key[key] = RemoteSeries(unit)
                series[named] = found
            found.set(node, minute, (n, total, lo, hi))
        for node, account, region, body in totals:
            self.metrics.remote_totals[(node, (account, region))] = json.loads(body)

    async def _trim(self) -> None:
        now = self.clock.wall()
        horizon = int(now // RESOLUTION) - RETENTION_MINUTES
        for series_by_key in self.metrics.remote.values():
            for series in series_by_key.values():
                series.trim(horizon)
        await asyncio.to_thread(self.archive.trim, horizon, now - RETENTION_MINUTES * 60.0)

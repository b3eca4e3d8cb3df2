"""The metric keeper writes one row per series and minute, however many invocations, and a
fresh recorder on the same store reads back what was written (once, however often read).
Retention is the server clock's wall time."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from lamina.clock import Clock
from lamina.keys import FunctionKey
from lamina.observe.metric_keeper import MetricKeeper
from lamina.observe.metrics import NAMESPACE, Metrics
from lamina.observe.series import RETENTION_MINUTES, dimensions
from lamina.store.metric_archive import MetricArchive

KEY = FunctionKey("000000000000", "us-east-1", "f")


class SetClock(Clock):
    """A clock whose wall time the test sets."""

    def __init__(self, now: float) -> None:
        super().__init__(1.0)
        self.now = now

    def wall(self) -> float:
        return self.now


def test_one_row_per_series_and_minute_and_read_back(tmp_path: Path) -> None:
    now = 1_800_000_000.0  # the start of a minute

    async def run() -> None:
        clock = SetClock(now)
        metrics = Metrics(wall=clock.wall)
        keeper = MetricKeeper(metrics, MetricArchive(tmp_path, "one"), clock)
        await keeper.start()
        for _ in range(50):
            metrics.invocation(KEY, None, "$LATEST", 2.0, error=False)
        await keeper._flush()
        for _ in range(50):
            metrics.invocation(KEY, None, "$LATEST", 4.0, error=True)
        await keeper.close()

        again = Metrics(wall=clock.wall)
        reader = MetricKeeper(again, MetricArchive(tmp_path, "two"), clock)
        await reader.start()
        await reader._read_others(0.0)  # the same rows again: replaced, not added
        series = again.find(
            "000000000000", "us-east-1", NAMESPACE, "Duration", dimensions(FunctionName="f")
        )
        assert series is not None
        assert list(series.periods(now - 60, now + 60, 60)) == [
            (int(now), [100.0, 300.0, 2.0, 4.0])
        ]
        errors = again.find("000000000000", "us-east-1", NAMESPACE, "Errors", ())
        assert errors is not None and next(iter(errors.periods(now, now + 60, 60)))[1][1] == 50.0
        await reader.close()

    asyncio.run(run())
    rows = (
        sqlite3.connect(tmp_path / "metrics.db")
        .execute("SELECT COUNT(*), COUNT(DISTINCT namespace || name || dims) FROM metric_minutes")
        .fetchone()
    )
    assert rows[0] == rows[1] == 6  # Invocations, Errors, Duration for (account, function)


def test_retention_is_the_clocks_wall_time(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    clock = SetClock(now)

    def stored() -> int:
        connection = sqlite3.connect(tmp_path / "metrics.db")
        (count,) = connection.execute("SELECT COUNT(*) FROM metric_minutes").fetchone()
        connection.close()
        return int(count)

    async def run() -> None:
        metrics = Metrics(wall=clock.wall)
        keeper = MetricKeeper(metrics, MetricArchive(tmp_path, "one"), clock)
        await keeper.start()
        metrics.invocation(KEY, None, "$LATEST", 2.0, error=False)
        await keeper._flush()
        await keeper._trim()
        assert stored() == 6  # within the retention: kept
        clock.now = now + RETENTION_MINUTES * 60.0 + 120.0
        await keeper._trim()
        assert stored() == 0
        await keeper.close()

    asyncio.run(run())

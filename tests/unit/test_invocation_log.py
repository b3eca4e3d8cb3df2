"""The invocation log the server keeps for `lamina trace export`: buffered records in
hourly CSV files, read back by time, account and region, old hours pruned."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

from lamina.observe.invocation_log import COLUMNS, InvocationLog


def line(stamp: float, account: str = "000000000000", outcome: str = "Success") -> tuple:
    return (
        stamp,
        account,
        "us-east-1",
        "f",
        "",
        "RequestResponse",
        128,
        None if outcome == "Throttled" else 12.5,
        None,
        outcome,
        "ConcurrentInvocationLimitExceeded" if outcome == "Throttled" else "",
        "id",
    )


def rows(log: InvocationLog, since: float, **kwargs: object) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(log.read(since, **kwargs)))))  # type: ignore[arg-type]


def test_records_are_kept_by_hour_and_read_back(tmp_path: Path) -> None:
    log = InvocationLog(tmp_path / "invocations")
    (tmp_path / "invocations").mkdir()
    hour = 3600 * 480000  # an hour boundary
    log.record(line(hour - 1.0))
    log.record(line(hour + 1.0, outcome="Throttled"))
    log.record(line(hour + 2.0, account="111111111111"))
    assert list((tmp_path / "invocations").iterdir()) == []  # nothing written yet
    found = rows(log, hour - 10)
    assert len(list((tmp_path / "invocations").glob("*.csv"))) == 2  # two hours
    assert [r["timestamp"] for r in found] == [
        f"{hour - 1.0:.6f}",
        f"{hour + 1.0:.6f}",
        f"{hour + 2.0:.6f}",
    ]
    assert list(found[0]) == COLUMNS
    throttled = found[1]
    assert (throttled["outcome"], throttled["reason"], throttled["duration_ms"]) == (
        "Throttled",
        "ConcurrentInvocationLimitExceeded",
        "",
    )
    assert found[0]["duration_ms"] == "12.500" and found[0]["memory_mb"] == "128"
    assert len(rows(log, hour)) == 2
    assert len(rows(log, hour - 10, until=hour)) == 1
    assert [r["account"] for r in rows(log, 0, account="111111111111")] == ["111111111111"]
    log.record(line(hour + 3.0))
    assert len(rows(log, hour)) == 3  # reading flushes what is buffered


def test_old_hours_are_pruned_and_close_flushes(tmp_path: Path) -> None:
    log = InvocationLog(tmp_path / "invocations", retention_hours=2)

    async def run() -> None:
        await log.start()
        log.record(line(time.time() - 5 * 3600))  # an hour past the retention
        log.record(line(time.time()))
        await log.close()

    asyncio.run(run())
    assert len(list((tmp_path / "invocations").glob("*.csv"))) == 2
    log._prune()
    assert len(list((tmp_path / "invocations").glob("*.csv"))) == 1
    assert len(rows(log, 0)) == 1

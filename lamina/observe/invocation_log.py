"""What the server saw, one line per invocation, throttled ones included: the trace that
`lamina trace export` reads and `lamina plan` replays.

A line: arrival (wall time, seconds), account, region, function, qualifier, type
(RequestResponse or Event), memory, duration and init duration (ms; init only on a cold
start), outcome (Success, Unhandled, Throttled), the throttle's reason, request id.

Recording is an append to a list (the hot path does no I/O); the component's own task
writes the list out once a second to hourly CSV files under `<data dir>/invocations/`
and deletes files older than the retention. Reading flushes first, so an export sees
every invocation recorded before it.
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from lamina.clock import Clock
from lamina.tasks import stop_task

log = logging.getLogger("lamina.invocation_log")

COLUMNS = [
    "timestamp",
    "account",
    "region",
    "function",
    "qualifier",
    "type",
    "memory_mb",
    "duration_ms",
    "init_ms",
    "outcome",
    "reason",
    "request_id",
]
FLUSH_INTERVAL = 1.0  # seconds
RETENTION_HOURS = 26

Line = tuple[float, str, str, str, str, str, int, float | None, float | None, str, str, str]


class InvocationLog:
    def __init__(
        self, directory: Path, retention_hours: int = RETENTION_HOURS, clock: Clock | None = None
    ) -> None:
        self.directory = directory
        self.retention_hours = retention_hours
        self.clock = clock or Clock()
        self.pending: list[Line] = []
        self._task: asyncio.Task[None] | None = None

    # Recording (the hot path) -----------------------------------------------------------
    def record(self, line: Line) -> None:
        self.pending.append(line)

    # The writer -----------------------------------------------------------------------
    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._write_forever())

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None
        self.flush()

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)  # a disk-write cadence: never scaled
            try:
                await asyncio.to_thread(self.flush)
                self._prune()
            except OSError:
                log.exception("writing the invocation log failed")

    def flush(self) -> None:
        """Append what was recorded to the files of its hours."""
        lines, self.pending = self.pending, []
        if not lines:
            return
        by_hour: dict[int, list[list[str]]] = {}
        for line in lines:
            hour = int(line[0] // 3600)
            rows = by_hour.get(hour)
            if rows is None:
                rows = by_hour[hour] = []
            rows.append(_cells(line))
        for hour, rows in by_hour.items():
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows(rows)  # one writer a file
            path = self._path(hour)
            fresh = not path.exists()
            with path.open("a", newline="") as handle:
                if fresh:
                    handle.write(",".join(COLUMNS) + "\n")
                handle.write(buffer.getvalue())

    def _path(self, hour: int) -> Path:
        stamp = time.strftime("%Y-%m-%dT%H", time.gmtime(hour * 3600))
        return self.directory / f"{stamp}.csv"

    def _prune(self) -> None:
        oldest = int(self.clock.wall() // 3600) - self.retention_hours
        for path in self.directory.glob("*.csv"):
            hour = _hour_of(path)
            if hour is not None and hour < oldest:
                path.unlink(missing_ok=True)

    # Reading --------------------------------------------------------------------------
    def read(
        self,
        since: float,
        until: float | None = None,
        account: str | None = None,
        region: str | None = None,
    ) -> Iterator[str]:
        """CSV text, header first, of the invocations that arrived in [since, until)."""
        self.flush()
        yield ",".join(COLUMNS) + "\n"
        first, last = int(since // 3600), int((until or self.clock.wall() + 3600) // 3600)
        paths = sorted(
            (hour, path)
            for path in self.directory.glob("*.csv")
            if (hour := _hour_of(path)) is not None and first <= hour <= last
        )
        for _, path in paths:
            with path.open(newline="") as handle:
                reader = csv.reader(handle)
                next(reader, None)
                out = io.StringIO()
                writer = csv.writer(out, lineterminator="\n")
                for row in reader:
                    try:
                        stamp = float(row[0])
                    except (ValueError, IndexError):
                        continue
                    if stamp < since or (until is not None and stamp >= until):
                        continue
                    if (account and row[1] != account) or (region and row[2] != region):
                        continue
                    writer.writerow(row)
                yield out.getvalue()


def _cells(line: Line) -> list[str]:
    stamp, account, region, function, qualifier, kind, memory, duration, init = line[:9]
    outcome, reason, request_id = line[9:]
    return [
        f"{stamp:.6f}",
        account,
        region,
        function,
        qualifier,
        kind,
        str(memory or ""),
        "" if duration is None else f"{duration:.3f}",
        "" if init is None else f"{init:.3f}",
        outcome,
        reason,
        request_id,
    ]


def _hour_of(path: Path) -> int | None:
    try:
        return calendar.timegm(time.strptime(path.stem, "%Y-%m-%dT%H")) // 3600
    except ValueError:
        return None

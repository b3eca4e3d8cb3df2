"""Trace formats `lamina plan` reads, told apart by their header line.

- Azure Functions 2019 (Shahrad et al., "Serverless in the Wild", USENIX ATC 2020):
  `HashOwner,HashApp,HashFunction,Trigger,1..1440`, invocations per function per minute.
  The durations file (`...,Average,Count,Minimum,Maximum,percentile_Average_0,...`) and
  the memory file (`...,SampleCount,AverageAllocatedMb,...`) are found beside it. Within
  a minute, arrivals are drawn as a Poisson process given the minute's count (the count's
  arrival times are independent and uniform over the minute); timer-triggered functions,
  whose arrivals the paper finds periodic, fire evenly spaced from the minute's start.
  Durations are drawn from each function's percentiles (linear between them); memory is
  the app's 99th percentile of allocated memory, rounded up to 64 MB (at least 128).
- Azure Functions 2021 (Zhang et al., SOSP 2021): `app,func,end_timestamp,duration`, one
  line per invocation (seconds; arrival = end - duration).
- Lamina's own export (`lamina trace export`): one line per invocation a server saw,
  throttled ones included (they are offered load too; their duration is drawn from the
  function's others). An asynchronous event is replayed once, at its first attempt.
"""

from __future__ import annotations

import csv
import math
import random
import statistics
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lamina.plan.trace import Batch, Columns, Quantiles, Stream, Trace, short_names, sorted_columns

AZURE2019_PERCENTILES = (
    (0.0, "percentile_Average_0"),
    (0.01, "percentile_Average_1"),
    (0.25, "percentile_Average_25"),
    (0.5, "percentile_Average_50"),
    (0.75, "percentile_Average_75"),
    (0.99, "percentile_Average_99"),
    (1.0, "percentile_Average_100"),
)
ASYNC_TRIGGERS = {"timer", "event", "storage"}
EXPORT_COLUMNS = [
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

DefaultDuration = Callable[[Stream], float]  # seconds, for streams the trace has none for


class TraceProblem(ValueError):
    """A file that is not a trace `lamina plan` reads; the message says why."""


def read(path: Path, default_duration: DefaultDuration = lambda stream: 0.1) -> Trace:
    try:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
    except OSError as exc:
        raise TraceProblem(f"cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TraceProblem(f"{path} is not a CSV trace: {exc}") from exc
    names = [name.strip() for name in header]
    if names[:4] == ["HashOwner", "HashApp", "HashFunction", "Trigger"]:
        return read_azure2019(path, default_duration)
    if names[:4] == ["app", "func", "end_timestamp", "duration"]:
        return read_azure2021(path)
    if names[:1] == ["timestamp"] and {"function", "duration_ms", "outcome"} <= set(names):
        return read_lamina(path, default_duration)
    raise TraceProblem(
        f"{path}: unknown trace format (header {','.join(names[:6])}...): `lamina plan` reads "
        "Azure Functions 2019 invocation counts, Azure Functions 2021 invocations and "
        "`lamina trace export`"
    )


# Azure Functions 2019 ----------------------------------------------------------------------
@dataclass
class Azure2019:
    streams: list[Stream]
    counts: list[array[int]]  # per stream, invocations per minute
    durations: list[Quantiles | None]  # per stream, seconds
    fallback: list[float]  # per stream, seconds, where durations are unknown
    minutes: int
    format: str = "azure2019"
    start_epoch: float | None = None
    day_offset: float = 0.0
    _total: int = field(default=0)

    @property
    def span(self) -> float:
        return self.minutes * 60.0

    @property
    def total(self) -> int:
        return self._total

    def batches(self, seed: int) -> Iterator[Batch]:
        rng = random.Random(seed)
        draw = rng.random
        timers = [stream.trigger == "timer" for stream in self.streams]
        active = [i for i, counts in enumerate(self.counts) if any(counts)]
        for minute in range(self.minutes):
            base = minute * 60.0
            rows: list[tuple[float, int, float]] = []
            for index in active:
                count = self.counts[index][minute]
                if not count:
                    continue
                if timers[index]:
                    times = [base + k * 60.0 / count for k in range(count)]
                else:
                    times = [base + 60.0 * draw() for _ in range(count)]
                quantiles = self.durations[index]
                if quantiles is None:
                    fixed = self.fallback[index]
                    rows.extend((t, index, fixed) for t in times)
                else:
                    at = quantiles.at
                    rows.extend((t, index, at(draw())) for t in times)
            if rows:
                rows.sort()
                yield [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _sibling(path: Path, marker: str) -> Path | None:
    """The durations or memory file beside an invocations file: the CSV in the same
    directory whose header has `marker`, preferring the one whose name shares the most."""
    best: tuple[int, Path] | None = None
    for candidate in sorted(path.parent.glob("*.csv")):
        if candidate == path:
            continue
        try:
            with candidate.open(newline="") as handle:
                header = next(csv.reader(handle), [])
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        if marker not in header:
            continue
        shared = sum(1 for a, b in zip(candidate.name, path.name, strict=False) if a == b)
        shared += 100 * _same_day(candidate.name, path.name)
        if best is None or shared > best[0]:
            best = (shared, candidate)
    return best[1] if best else None


def _same_day(a: str, b: str) -> bool:
    days = [token for token in a.split(".") if token.startswith("d") and token[1:].isdigit()]
    return bool(days) and days[0] in b.split(".")


def read_azure2019(path: Path, default_duration: DefaultDuration) -> Azure2019:
    streams: list[Stream] = []
    counts: list[array[int]] = []
    keys: list[tuple[str, str, str]] = []
    minutes = 0
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        minutes = len(header) - 4
        if minutes < 1:
            raise TraceProblem(f"{path}: no minute columns")
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise TraceProblem(
                    f"{path}:{number}: {len(row)} fields, the header has {len(header)}"
                )
            try:
                per_minute = array("I", (int(value or 0) for value in row[4:]))
            except (ValueError, OverflowError) as exc:
                raise TraceProblem(f"{path}:{number}: {exc}") from exc
            owner, app, function, trigger = row[:4]
            keys.append((owner, app, function))
            counts.append(per_minute)
            streams.append(
                Stream(
                    id=function,
                    name="",
                    invocation="async" if trigger in ASYNC_TRIGGERS else "sync",
                    trigger=trigger,
                    invocations=sum(per_minute),
                )
            )
    for stream, name in zip(streams, short_names([s.id for s in streams]), strict=True):
        stream.name = name
    durations: list[Quantiles | None] = [None] * len(streams)
    found = _sibling(path, "percentile_Average_50")
    if found is not None:
        by_key = {key: index for index, key in enumerate(keys)}
        for entry in _dict_rows(found):
            index = by_key.get((entry["HashOwner"], entry["HashApp"], entry["HashFunction"]))
            if index is None:
                continue
            try:
                points = [(p, float(entry[name]) / 1000.0) for p, name in AZURE2019_PERCENTILES]
            except (KeyError, ValueError) as exc:
                raise TraceProblem(f"{found}: bad percentiles for {entry['HashFunction']}") from exc
            durations[index] = Quantiles(points)
    memory_file = _sibling(path, "AverageAllocatedMb_pct99")
    if memory_file is not None:
        by_app: dict[tuple[str, str], int] = {}
        for entry in _dict_rows(memory_file):
            try:
                allocated = float(entry["AverageAllocatedMb_pct99"])
            except (KeyError, ValueError):
                continue
            megabytes = max(128, math.ceil(allocated / 64) * 64)
            by_app[(entry["HashOwner"], entry["HashApp"])] = megabytes
        for stream, (owner, app, _) in zip(streams, keys, strict=True):
            stream.memory_mb = by_app.get((owner, app))
    for stream, quantiles in zip(streams, durations, strict=True):
        stream.has_durations = quantiles is not None
    fallback = [default_duration(stream) for stream in streams]
    return Azure2019(
        streams, counts, durations, fallback, minutes, _total=sum(s.invocations for s in streams)
    )


def _dict_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as handle:
        yield from csv.DictReader(handle)


# Azure Functions 2021 ----------------------------------------------------------------------
def read_azure2021(path: Path) -> Columns:
    index_of: dict[tuple[str, str], int] = {}
    ids: list[tuple[str, str]] = []
    rows: list[tuple[float, int, float]] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                app, func, end, duration = row[0], row[1], float(row[2]), float(row[3])
            except (IndexError, ValueError) as exc:
                raise TraceProblem(f"{path}:{number}: {exc}") from exc
            if duration < 0 or not math.isfinite(end) or not math.isfinite(duration):
                raise TraceProblem(f"{path}:{number}: a negative or infinite time")
            key = (app, func)
            index = index_of.get(key)
            if index is None:
                index = index_of[key] = len(ids)
                ids.append(key)
            rows.append((max(0.0, end - duration), index, duration))
    if not rows:
        raise TraceProblem(f"{path}: no invocations")
    names = short_names([f"{app}/{func}" for app, func in ids])
    streams = [
        Stream(id=f"{app}/{func}", name=name.replace("/", "-"))
        for (app, func), name in zip(ids, _app_func_names(ids, names), strict=True)
    ]
    start = min(row[0] for row in rows)
    shifted = [(t - start, index, duration) for t, index, duration in rows]
    times, indexes, durations = sorted_columns(shifted)
    for index in indexes:
        streams[index].invocations += 1
    return Columns("azure2021", streams, times, indexes, durations, _span(times))


def _app_func_names(ids: list[tuple[str, str]], names: list[str]) -> list[str]:
    """`app-func`, each part shortened to 6 characters when it is a long hash, as long as
    names stay unique."""

    def part(text: str) -> str:
        return text[:6] if len(text) > 16 else text

    short = [f"{part(app)}-{part(func)}" for app, func in ids]
    return short if len(set(short)) == len(short) else names


def _span(times: array[float]) -> float:
    return float(math.ceil(times[-1] + 1e-9)) if len(times) else 0.0


# Lamina's export ---------------------------------------------------------------------------
def read_lamina(path: Path, default_duration: DefaultDuration) -> Columns:
    index_of: dict[tuple[str, str, str, str, str], int] = {}
    streams: list[Stream] = []
    raw: list[tuple[float, int, float | None]] = []
    seen_events: set[str] = set()
    observed: dict[int, list[float]] = {}
    inits: dict[int, list[float]] = {}
    memory: dict[int, dict[int, int]] = {}
    for number, row in enumerate(_dict_rows(path), start=2):
        try:
            timestamp = float(row["timestamp"])
            kind = "async" if row.get("type") == "Event" else "sync"
            key = (
                row.get("account") or "",
                row.get("region") or "",
                row["function"],
                row.get("qualifier") or "",
                kind,
            )
            duration = float(row["duration_ms"]) / 1000 if row.get("duration_ms") else None
            init = float(row["init_ms"]) if row.get("init_ms") else None
            megabytes = int(row["memory_mb"]) if row.get("memory_mb") else None
        except (KeyError, ValueError, TypeError) as exc:
            raise TraceProblem(f"{path}:{number}: {exc}") from exc
        if kind == "async":
            request = row.get("request_id") or ""
            if request and request in seen_events:
                # A retry of an event already offered: its first attempt is the arrival.
                if duration is not None:
                    observed.setdefault(index_of[key], []).append(duration)
                continue
            seen_events.add(request)
        found = index_of.get(key)
        if found is None:
            found = index_of[key] = len(streams)
            account, region, function, qualifier, _ = key
            streams.append(
                Stream(
                    id=f"{account}/{region}/{function}" + (f":{qualifier}" if qualifier else ""),
                    name=function,
                    invocation=kind,
                    account=account or None,
                    region=region or None,
                    qualifier=qualifier or None,
                )
            )
        if duration is not None:
            observed.setdefault(found, []).append(duration)
        if init is not None:
            inits.setdefault(found, []).append(init)
        if megabytes is not None:
            tally = memory.setdefault(found, {})
            tally[megabytes] = tally.get(megabytes, 0) + 1
        raw.append((timestamp, found, duration))
    if not raw:
        raise TraceProblem(f"{path}: no invocations")
    rng = random.Random(0)
    for index, stream in enumerate(streams):
        stream.has_durations = bool(observed.get(index))
        if inits.get(index):
            stream.init_ms = statistics.median(inits[index])
        if memory.get(index):
            stream.memory_mb = max(memory[index].items(), key=lambda item: item[1])[0]
    start = min(row[0] for row in raw)
    rows: list[tuple[float, int, float]] = []
    for timestamp, index, duration in raw:
        if duration is None:  # throttled: never ran; drawn from the function's others
            choices = observed.get(index)
            duration = rng.choice(choices) if choices else default_duration(streams[index])
        rows.append((timestamp - start, index, duration))
    times, indexes, durations = sorted_columns(rows)
    for index in indexes:
        streams[index].invocations += 1
    return Columns("lamina", streams, times, indexes, durations, _span(times), start, start % 86400)

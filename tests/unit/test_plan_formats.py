"""Trace formats `lamina plan` reads (the examples in tests/data/traces, see its README),
the command line, its progress, and a day of the Azure 2019 example in under a second."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from pathlib import Path

import pytest

from lamina.cli import main
from lamina.plan import formats
from lamina.plan.command import plan
from lamina.plan.settings import Settings, parse
from lamina.plan.setup import default_duration

TRACES = Path(__file__).resolve().parent.parent / "data" / "traces"
AZURE2019 = TRACES / "azure2019-example-invocations.csv"
AZURE2021 = TRACES / "azure2021-example-200.csv"


def rows(trace: formats.Trace, seed: int = 1) -> list[tuple[float, int, float]]:
    found = []
    for times, indexes, durations in trace.batches(seed):
        found.extend(zip(times, indexes, durations, strict=True))
    return found


def test_azure_2019_counts_durations_and_memory() -> None:
    trace = formats.read(AZURE2019)
    assert trace.format == "azure2019" and trace.span == 1440 * 60
    assert [s.invocations for s in trace.streams] == [1150, 1125, 1125, 1125]
    assert trace.total == 4525
    assert [s.trigger for s in trace.streams] == ["queue", "queue", "queue", "timer"]
    assert [s.invocation for s in trace.streams] == ["sync", "sync", "sync", "async"]
    assert [s.memory_mb for s in trace.streams] == [192, 256, 320, 128]  # p99, to 64 MB
    drawn = rows(trace)
    assert len(drawn) == 4525
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(drawn))  # in time order
    by_stream: dict[int, list[float]] = {}
    for _, index, duration in drawn:
        by_stream.setdefault(index, []).append(duration)
    # Durations drawn between each function's 0th and 100th percentile, around its median.
    for index, (low, median, high) in enumerate(
        ((0.099, 0.1, 0.101), (0.499, 0.5, 0.501), (0.249, 0.25, 0.251), (0.124, 0.125, 0.126))
    ):
        values = by_stream[index]
        assert low <= min(values) and max(values) <= high
        assert statistics.median(values) == pytest.approx(median, abs=0.0006)


def test_azure_2019_arrivals_per_minute_seeded() -> None:
    trace = formats.read(AZURE2019)
    first, again, other = rows(trace, 1), rows(trace, 1), rows(trace, 2)
    assert first == again and first != other
    per_minute: dict[tuple[int, int], list[float]] = {}
    for t, index, _ in first:
        per_minute.setdefault((index, int(t // 60)), []).append(t)
    counts = trace.counts  # type: ignore[attr-defined]
    for (index, minute), times in per_minute.items():
        assert len(times) == counts[index][minute]  # the minute's count, within the minute
    # The timer function fires evenly spaced from the minute's start; the others do not.
    timer = [times for (index, _), times in per_minute.items() if index == 3]
    assert all(times[0] % 60 == 0 for times in timer)
    assert all(
        max(b - a for a, b in itertools.pairwise(t)) == pytest.approx(60 / len(t))
        for t in timer
        if len(t) > 1
    )
    queued = [times for (index, _), times in per_minute.items() if index == 0 and len(times) > 2]
    assert any(
        max(b - a for a, b in itertools.pairwise(t)) > 1.5 * 60 / len(t) for t in queued
    )  # Poisson: uneven gaps


def test_azure_2021_arrival_is_end_minus_duration() -> None:
    trace = formats.read(AZURE2021)
    assert trace.format == "azure2021" and trace.total == 199
    drawn = rows(trace)
    assert drawn[0][0] == 0.0  # times from the trace's first arrival
    longest = max(drawn, key=lambda row: row[2])
    assert longest[2] == pytest.approx(60.041) or longest[2] > 60
    assert sum(s.invocations for s in trace.streams) == 199


def test_lamina_export_replays_throttled_requests_and_async_events_once(tmp_path: Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text(
        ",".join(formats.EXPORT_COLUMNS) + "\n"
        "1700000000.0,000000000000,us-east-1,f,,RequestResponse,256,100.0,30.0,Success,,a\n"
        "1700000000.5,000000000000,us-east-1,f,,RequestResponse,256,,,Throttled,"
        "ReservedFunctionConcurrentInvocationLimitExceeded,b\n"
        "1700000001.0,000000000000,us-east-1,f,,Event,256,,,Throttled,"
        "ReservedFunctionConcurrentInvocationLimitExceeded,c\n"
        "1700000003.0,000000000000,us-east-1,f,,Event,256,300.0,,Success,,c\n"
    )
    trace = formats.read(export)
    assert trace.format == "lamina" and trace.start_epoch == 1700000000.0
    assert [(s.name, s.invocation, s.memory_mb) for s in trace.streams] == [
        ("f", "sync", 256),
        ("f", "async", 256),
    ]
    assert trace.streams[0].init_ms == 30.0
    drawn = rows(trace)
    assert [round(t, 3) for t, _, _ in drawn] == [0.0, 0.5, 1.0]  # the event once, at first
    assert drawn[1][2] == 0.1  # a throttled request's duration: drawn from the others
    assert drawn[2][2] == 0.3


def test_unknown_or_broken_traces_are_refused_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(formats.TraceProblem, match="unknown trace format"):
        formats.read(bad)
    with pytest.raises(formats.TraceProblem, match="cannot read"):
        formats.read(tmp_path / "missing.csv")
    broken = tmp_path / "broken.csv"
    broken.write_text("app,func,end_timestamp,duration\nx,y,soon,1\n")
    with pytest.raises(formats.TraceProblem, match=r"broken\.csv:2"):
        formats.read(broken)


def test_a_day_of_the_2019_example_plans_in_under_a_second() -> None:
    settings = Settings()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        trace = formats.read(AZURE2019, default_duration(settings))  # type: ignore[arg-type]
        planned = plan(AZURE2019, settings, trace=trace)
        best = min(best, time.perf_counter() - started)
    assert planned.report["trace"]["invocations"] == 4525
    assert planned.report["trace"]["span_s"] == 86400
    assert best < 1.0, best


def test_the_command_prints_a_table_writes_files_and_shows_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("account: {limit: 50, unreserved_floor: 10}\nseed: 3\n")
    out = tmp_path / "out"
    status = main(
        [
            "plan",
            str(AZURE2019),
            "--settings",
            str(settings),
            "--out",
            str(out),
            "--json",
            str(tmp_path / "r.json"),
            "--progress",
        ]
    )
    captured = capsys.readouterr()
    assert status == 0
    assert "4,525 invocations over 24:00:00, 4 functions" in captured.out
    assert "account 000000000000 (limit 50)" in captured.out
    assert "replayed 4,525 of 4,525 (100%)" in captured.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["settings"]["seed"] == 3
    assert {p.name for p in out.iterdir()} == {"report.json", "report.html", "concurrency.png"}
    assert main(["plan", str(tmp_path / "nothing.csv")]) == 2
    assert "lamina plan: cannot read" in capsys.readouterr().err
    settings.write_text("account: {limit: many}\n")
    assert main(["plan", str(AZURE2019), "--settings", str(settings)]) == 2
    assert "account: limit: expected a number" in capsys.readouterr().err


def test_defaults_apply_where_the_trace_says_nothing(tmp_path: Path) -> None:
    settings = parse({"defaults": {"memory_mb": 512, "init_ms": 800, "architecture": "arm64"}})
    report = plan(AZURE2021, settings).report
    assert {f["memory_mb"] for f in report["functions"]} == {512}
    assert {f["init_ms"] for f in report["functions"]} == {800}
    assert {f["architecture"] for f in report["functions"]} == {"arm64"}

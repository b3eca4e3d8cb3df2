"""`lamina plan TRACE [--settings FILE] [--recommend] [--validate] [--out DIR] [--json FILE]`:
replay a traffic trace through the engine's rules in virtual time and say what it
costs, where it throttles and where it starts cold."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from lamina.plan import formats, prices
from lamina.plan.replay import Outcome, Replay
from lamina.plan.report import Costing, build_report, table
from lamina.plan.settings import Settings, SettingsProblem, load
from lamina.plan.setup import Setup, build, default_duration
from lamina.plan.trace import Trace

PROGRESS_AFTER_S = 1.0  # a replay that takes longer shows its progress


@dataclass
class Planned:
    settings: Settings
    trace: Trace
    setup: Setup
    replay: Replay
    outcome: Outcome
    report: dict[str, Any]


class Progress:
    """Prints how far a replay is, at most twice a second, once it has run a second."""

    def __init__(self, total: int, stream: TextIO, forced: bool | None) -> None:
        self.total, self.stream, self.forced = total, stream, forced
        self.started = time.monotonic()
        self.shown = 0.0
        self.printed = False
        self.done = 0

    def __call__(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self.forced is False or now - self.shown < 0.5:
            return
        if self.forced is None and now - self.started < PROGRESS_AFTER_S:
            return
        self.shown = now
        self.show(done, now)

    def show(self, done: int, now: float) -> None:
        rate = done / max(now - self.started, 1e-9)
        share = f" of {self.total:,} ({100 * done / self.total:.0f}%)" if self.total else ""
        self.stream.write(f"\rreplayed {done:,}{share}, {rate:,.0f} invocations/s")
        self.stream.flush()
        self.printed = True

    def close(self) -> None:
        if self.printed:
            self.show(self.done, time.monotonic())  # where it ended
            self.stream.write("\n")


def plan(
    trace_path: Path,
    settings: Settings,
    *,
    trace: Trace | None = None,
    progress: Progress | None = None,
) -> Planned:
    trace = trace or formats.read(trace_path, default_duration(settings))
    setup = build(settings, trace)
    costing = Costing(prices.load(settings.prices), settings.region)
    for architecture in {function.architecture for function in setup.functions}:
        costing.rates(architecture)  # a missing price stops the plan before the replay
    started = time.perf_counter()
    replay = Replay(setup, trace.span, trace.day_offset)
    outcome = replay.run(trace.batches(settings.seed), progress)
    wall = time.perf_counter() - started
    info = {"file": trace_path.name, "format": trace.format, "start_epoch": trace.start_epoch}
    report = build_report(outcome, replay, costing, info, wall)
    return Planned(settings, trace, setup, replay, outcome, report)


def run(args: argparse.Namespace) -> int:
    out = sys.stderr if args.json_out == "-" else sys.stdout
    try:
        settings = load(args.settings)
        if args.seed is not None:
            settings = replace(settings, seed=args.seed)
        trace = formats.read(args.trace, default_duration(settings))
        progress = Progress(trace.total, sys.stderr, args.progress)
        planned = plan(args.trace, settings, trace=trace, progress=progress)
        progress.close()
    except (SettingsProblem, formats.TraceProblem, prices.PriceError) as exc:
        print(f"lamina plan: {exc}", file=sys.stderr)
        return 2
    print(table(planned.report), file=out)
    if args.json_out == "-":
        json.dump(planned.report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif args.json_out:
        Path(args.json_out).write_text(json.dumps(planned.report, indent=1))
    if args.out is not None:
        from lamina.plan.page import write

        files = write(args.out, planned.report, planned.outcome)
        print(f"wrote {', '.join(str(path) for path in files.values())}", file=out)
    status = 0
    if args.recommend:
        from lamina.plan.recommend import recommend_command

        status = recommend_command(planned, args, out)
    if args.validate:
        from lamina.plan.validate import validate_command

        status = validate_command(planned, args, out) or status
    return status

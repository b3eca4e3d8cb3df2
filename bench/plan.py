"""How fast `lamina plan` replays: a synthetic trace of 10 million invocations through the
real counting service and pool policy, against a baseline measured in the same run: the
bare event loop any replay needs (one heap push and pop per invocation over the same
arrays, nothing decided). Also a day of the Azure 2019 example trace (4 functions).

The synthetic trace: 20 functions of one account (limit 1,000, floor 100) over two
hours, Poisson-like arrivals at ~1,400/s with bursts that pass the limits every few
minutes (so there are throttles and cold starts), durations exponential around
20-400 ms; one function reserved, one with provisioned concurrency, one asynchronous.
It is drawn before the clock starts (a block of a million, repeated).

Run: .venv/bin/python bench/plan.py [--invocations N] [--rounds N]
(bench/run.py runs it as `plan`: make bench)
"""

from __future__ import annotations

import heapq
import json
import math
import random
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lamina.plan import formats  # noqa: E402
from lamina.plan.replay import Outcome, Replay  # noqa: E402
from lamina.plan.settings import parse  # noqa: E402
from lamina.plan.setup import build, default_duration  # noqa: E402
from lamina.plan.trace import Columns, Stream  # noqa: E402

EXAMPLE = ROOT / "tests" / "data" / "traces" / "azure2019-example-invocations.csv"
FUNCTIONS = 20
SPAN = 7200  # seconds
BLOCK = 1_000_000  # drawn once, then repeated
TARGET = 200_000  # invocations per second of wall time
SETTINGS = {
    "account": {"limit": 1000, "unreserved_floor": 100},
    "functions": {
        "fn00": {"reserved": 150},
        "fn05": {"provisioned": 10},
        "fn06": {"invocation": "async"},
    },
}


def synthetic(invocations: int, seed: int = 7) -> Columns:
    """Drawn as a block of at most a million invocations, repeated (shifted in time) as
    often as needed: drawing ten million one by one would take longer than replaying them."""
    rng = random.Random(seed)
    streams = [Stream(id=f"fn{i:02d}", name=f"fn{i:02d}") for i in range(FUNCTIONS)]
    weights = [1.0 / (i + 1) for i in range(FUNCTIONS)]  # a few busy functions, a long tail
    cumulative, total = [], 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    means = [0.02 + 0.38 * rng.random() for _ in range(FUNCTIONS)]  # seconds
    block = min(invocations, BLOCK)
    block_span = SPAN * block / invocations
    rate = block / block_span
    times, indexes, durations = array("d"), array("i"), array("d")
    second = 0
    while len(times) < block:
        burst = 3.0 if second % 300 < 20 else 1.0  # 20 s of three times the traffic
        count = min(max(1, int(rate * (0.8 if burst == 1.0 else burst))), block - len(times))
        picks = rng.choices(range(FUNCTIONS), cum_weights=cumulative, k=count)
        times.extend(sorted(second + rng.random() for _ in range(count)))
        indexes.extend(picks)
        durations.extend(rng.expovariate(1.0 / means[f]) for f in picks)
        second += 1
    period = float(second)
    all_times, all_indexes, all_durations = (
        array("d", times),
        array("i", indexes),
        array("d", durations),
    )
    repeat = 1
    while len(all_times) < invocations:
        take = min(block, invocations - len(all_times))
        shift = repeat * period
        all_times.extend(t + shift for t in times[:take])
        all_indexes.extend(indexes[:take])
        all_durations.extend(durations[:take])
        repeat += 1
    for index in all_indexes:
        streams[index].invocations += 1
    span = float(math.ceil(all_times[-1] + 1)) if len(all_times) else 0.0
    return Columns("synthetic", streams, all_times, all_indexes, all_durations, span)


def bare_loop(trace: Columns) -> float:
    """The least any replay does per invocation: pop what ended, push what starts."""
    heap: list[tuple[float, int]] = []
    started = time.perf_counter()
    order = 0
    for times, _, durations in trace.batches(0):
        for t, d in zip(times, durations, strict=True):
            while heap and heap[0][0] <= t:
                heapq.heappop(heap)
            order += 1
            heapq.heappush(heap, (t + d, order))
    return time.perf_counter() - started


def replay(trace: Columns, settings_document: dict) -> tuple[float, Outcome]:
    settings = parse(settings_document)
    setup = build(settings, trace)
    started = time.perf_counter()
    outcome = Replay(setup, trace.span, trace.day_offset).run(trace.batches(settings.seed))
    return time.perf_counter() - started, outcome


def example_day() -> float:
    settings = parse({})
    started = time.perf_counter()
    trace = formats.read(EXAMPLE, default_duration(settings))
    Replay(build(settings, trace), trace.span).run(trace.batches(settings.seed))
    return time.perf_counter() - started


def main() -> None:
    invocations = 10_000_000
    if "--invocations" in sys.argv:
        invocations = int(sys.argv[sys.argv.index("--invocations") + 1])
    drawn = time.perf_counter()
    trace = synthetic(invocations)
    print(f"drew {trace.total:,} invocations in {time.perf_counter() - drawn:.1f} s", flush=True)
    rounds = []
    for _ in range(int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 1):
        took, outcome = replay(trace, SETTINGS)
        bare = bare_loop(trace)
        rounds.append((took, bare, outcome))
        print(
            f"  replay {took:.2f} s ({trace.total / took:,.0f}/s); bare loop {bare:.2f} s "
            f"({trace.total / bare:,.0f}/s)",
            flush=True,
        )
    took, bare, outcome = min(rounds, key=lambda r: r[0])
    streams = outcome.streams
    day = min(example_day() for _ in range(3))
    result = {
        "invocations": trace.total,
        "replay_s": took,
        "rate": trace.total / took,
        "bare_s": bare,
        "bare_rate": trace.total / bare,
        "target_rate": TARGET,
        "throttles": sum(sum(f.counts.throttles.values()) for f in outcome.functions),
        "cold_starts": sum(s.cold for s in streams),
        "example_day_s": day,
    }
    print(
        f"planned {result['rate']:,.0f} invocations/s (target {TARGET:,}); the bare loop "
        f"{result['bare_rate']:,.0f}/s; a day of the 2019 example {day * 1000:.0f} ms"
    )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()

"""A replay's figures, per function and per account, with their cost: the JSON report
for scripts and the table printed in a terminal.

- invocations: requests the trace offers (a client's retry is not another one);
  runs: those that ran; throttles: attempts refused, by AWS's reason; throttle rate:
  refused attempts over all attempts; failed: requests that never ran (a synchronous one
  out of retries, an asynchronous event past its age or with reserved concurrency 0).
- cold starts: runs on a new on-demand environment; cold start rate over runs.
- peak and p99 concurrency: over the trace's seconds, of each second's peak.
- added latency p50/p99: what cold starts add to the runs (their init duration);
  throttle delay p99: what runs waited in client retries or the async queue.
- GB-seconds and dollars from the price table: requests, on-demand duration (init of
  on-demand cold starts included where the table says), duration on provisioned
  environments, and provisioned concurrency for the time it is configured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from lamina.plan.prices import PriceTable, Rates
from lamina.plan.replay import FunctionRun, Outcome, Replay
from lamina.plan.settings import as_document

BILLING_ROUNDING_S = 0.0005  # duration is billed in whole ms: half of one more, on average


def quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[index])


def mixture_quantile(total: int, extras: list[tuple[float, int]], q: float) -> float:
    """The q-quantile of `total` values that are 0 except `count` of each `value`."""
    if total <= 0:
        return 0.0
    rank = max(1, math.ceil(q * total))
    zeros = total - sum(count for _, count in extras)
    if rank <= zeros:
        return 0.0
    seen = zeros
    for value, count in sorted(extras):
        seen += count
        if rank <= seen:
            return value
    return max((value for value, _ in extras), default=0.0)


def peaks_quantile(peaks: Iterable[int], seconds: int, q: float) -> int:
    """The q-quantile of per-second peaks given only the non-zero ones."""
    values = sorted(peaks)
    zeros = max(0, seconds - len(values))
    rank = max(1, math.ceil(q * (zeros + len(values))))
    return 0 if rank <= zeros else int(values[rank - zeros - 1])


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}") if value else 0.0


class Costing:
    def __init__(self, table: PriceTable, region: str) -> None:
        self.table = table
        self.region = region

    def rates(self, architecture: str) -> Rates:
        return self.table.rates(self.region, architecture)


def provisioned_seconds(replay: Replay, fn: FunctionRun, span: float) -> float:
    """Concurrency-seconds of provisioned concurrency configured over the trace, each
    period rounded up to five minutes as billed."""
    settings = fn.setup.settings
    level = settings.provisioned_at(replay.day_offset % 86400)
    start, total = 0.0, 0.0
    for at, next_level in [*replay.schedule_steps(fn), (span, -1)]:
        if at > start and level > 0:
            total += level * math.ceil((at - start) / 300 - 1e-9) * 300
        start, level = at, next_level
    return total


def function_figures(
    outcome: Outcome, replay: Replay, fn: FunctionRun, costing: Costing
) -> dict[str, Any]:
    setup = fn.setup
    streams = [outcome.streams[index] for index in setup.streams]
    seconds = max(1, math.ceil(outcome.span))
    counts = fn.counts
    throttles = {
        reason.value: count
        for reason, count in sorted(counts.throttles.items(), key=lambda item: item[0].value)
    }
    throttled = sum(throttles.values())
    offered = sum(st.offered for st in streams)
    runs = sum(st.runs for st in streams)
    cold = sum(st.cold for st in streams)
    dropped = sum(st.dropped_age + st.dropped_zero for st in streams)
    failed = offered - runs
    delays = sorted(d for st in streams for d in st.delays)
    extras = [(st.init * 1000, st.cold) for st in streams if st.cold]
    rates = costing.rates(setup.architecture)
    gb = setup.memory_mb / 1024
    init_busy = sum(st.cold * st.init for st in streams) if rates.bill_init_on_demand else 0.0
    on_demand_runs = sum(st.runs - st.provisioned_runs for st in streams)
    provisioned_runs = sum(st.provisioned_runs for st in streams)
    on_demand_s = sum(st.busy for st in streams) + init_busy + on_demand_runs * BILLING_ROUNDING_S
    provisioned_busy_s = (
        sum(st.busy_provisioned for st in streams) + provisioned_runs * BILLING_ROUNDING_S
    )
    configured_s = provisioned_seconds(replay, fn, outcome.span)
    gb_seconds = {
        "on_demand": _round(on_demand_s * gb),
        "provisioned_duration": _round(provisioned_busy_s * gb),
        "provisioned_configured": _round(configured_s * gb),
    }
    cost = {
        "requests": runs * rates.request,
        "duration": on_demand_s * gb * rates.duration_gb_s,
        "provisioned_duration": provisioned_busy_s * gb * rates.provisioned_duration_gb_s,
        "provisioned": configured_s * gb * rates.provisioned_gb_s,
    }
    cost["total"] = sum(cost.values())
    settings = setup.settings
    return {
        "function": setup.name,
        "account": setup.key.account,
        "region": setup.key.region,
        "id": streams[0].setup.stream.id if streams else setup.name,
        "invocation": "/".join(sorted({st.setup.invocation for st in streams})),
        "memory_mb": setup.memory_mb,
        "architecture": setup.architecture,
        "init_ms": _round(max((st.init for st in streams), default=0.0) * 1000),
        "reserved": settings.reserved,
        "provisioned": settings.provisioned_peak,
        "invocations": offered,
        "runs": runs,
        "throttles": throttles,
        "throttled": throttled,
        "throttle_rate": _round(throttled / (runs + throttled)) if runs + throttled else 0.0,
        "failed": failed,
        "dropped_events": dropped,
        "client_retries": sum(st.retried for st in streams),
        "cold_starts": cold,
        "cold_start_rate": _round(cold / runs) if runs else 0.0,
        "provisioned_invocations": counts.provisioned_invocations,
        "spillover_invocations": counts.spillover_invocations,
        "peak_concurrency": max(fn.peaks, default=0),
        "p99_concurrency": peaks_quantile(fn.peaks, seconds, 0.99),
        "added_latency_ms": {
            "p50": _round(mixture_quantile(runs, extras, 0.50)),
            "p99": _round(mixture_quantile(runs, extras, 0.99)),
        },
        "throttle_delay_ms": {
            "p99": _round(mixture_quantile(runs, [(d * 1000, 1) for d in delays], 0.99))
        },
        "gb_seconds": gb_seconds,
        "cost": {name: _round(value) for name, value in cost.items()},
    }


def account_figures(outcome: Outcome, functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    settings = outcome.setup.settings
    seconds = max(1, math.ceil(outcome.span))
    found = []
    for account in outcome.accounts:
        mine = [f for f in functions if (f["account"], f["region"]) == (account.id, account.region)]
        throttles: dict[str, int] = {}
        for f in mine:
            for reason, count in f["throttles"].items():
                throttles[reason] = throttles.get(reason, 0) + count
        runs = sum(f["runs"] for f in mine)
        throttled = sum(throttles.values())
        cold = sum(f["cold_starts"] for f in mine)
        extras = [(f["init_ms"], f["cold_starts"]) for f in mine if f["cold_starts"]]
        peaks = sorted(account.peaks)
        totals = {
            name: _round(sum(f["cost"][name] for f in mine))
            for name in ("requests", "duration", "provisioned_duration", "provisioned", "total")
        }
        found.append(
            {
                "account": account.id,
                "region": account.region,
                "limit": settings.account.limit,
                "unreserved_floor": settings.account.unreserved_floor,
                "unreserved_pool": account.counter.unreserved_pool,
                "functions": len(mine),
                "invocations": sum(f["invocations"] for f in mine),
                "runs": runs,
                "throttles": dict(sorted(throttles.items())),
                "throttled": throttled,
                "throttle_rate": _round(throttled / (runs + throttled)) if runs + throttled else 0,
                "failed": sum(f["failed"] for f in mine),
                "cold_starts": cold,
                "cold_start_rate": _round(cold / runs) if runs else 0.0,
                "peak_concurrency": peaks[-1] if peaks else 0,
                "p99_concurrency": peaks_quantile([p for p in peaks if p], seconds, 0.99),
                "peak_unreserved_in_use": max(account.unreserved, default=0),
                "added_latency_ms": {
                    "p50": _round(mixture_quantile(runs, extras, 0.50)),
                    "p99": _round(mixture_quantile(runs, extras, 0.99)),
                },
                "gb_seconds": {
                    name: _round(sum(f["gb_seconds"][name] for f in mine))
                    for name in ("on_demand", "provisioned_duration", "provisioned_configured")
                },
                "cost": totals,
            }
        )
    return found


def build_report(
    outcome: Outcome,
    replay: Replay,
    costing: Costing,
    trace_info: dict[str, Any],
    wall_s: float,
) -> dict[str, Any]:
    functions = [function_figures(outcome, replay, fn, costing) for fn in outcome.functions]
    functions.sort(key=lambda f: (-f["invocations"], f["function"]))
    return {
        "trace": {**trace_info, "span_s": outcome.span, "invocations": outcome.invocations},
        "settings": as_document(outcome.setup.settings),
        "prices": {
            "source": costing.table.source,
            "region": costing.region,
            "currency": costing.table.currency,
        },
        "accounts": account_figures(outcome, functions),
        "functions": functions,
        "replay": {
            "wall_s": round(wall_s, 4),
            "invocations_per_s": round(outcome.invocations / wall_s) if wall_s > 0 else None,
        },
    }


# The terminal ----------------------------------------------------------------------------
def _throttle_text(throttles: dict[str, int]) -> str:
    short = {
        "ReservedFunctionConcurrentInvocationLimitExceeded": "reserved",
        "ConcurrentInvocationLimitExceeded": "account",
        "ReservedFunctionInvocationRateLimitExceeded": "reserved rate",
        "FunctionInvocationRateLimitExceeded": "rate",
    }
    return ", ".join(f"{short.get(k, k)} {v:,}" for k, v in throttles.items()) or "-"


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def table(report: dict[str, Any], limit: int = 30) -> str:
    trace = report["trace"]
    lines = [
        f"{trace.get('file', 'trace')}: {trace['format']}, {trace['invocations']:,} invocations "
        f"over {_duration(trace['span_s'])}, {len(report['functions'])} functions",
    ]
    header = (
        "function",
        "invocations",
        "throttled",
        "by reason",
        "failed",
        "cold",
        "cold %",
        "peak",
        "p99",
        "+ms p50",
        "+ms p99",
        "GB-s",
        "cost $",
    )
    rows: list[tuple[str, ...]] = [header]

    def row(name: str, f: dict[str, Any]) -> tuple[str, ...]:
        gb = sum(f["gb_seconds"].values())
        return (
            name,
            f"{f['invocations']:,}",
            f"{f['throttled']:,}",
            _throttle_text(f["throttles"]),
            f"{f['failed']:,}",
            f"{f['cold_starts']:,}",
            f"{f['cold_start_rate'] * 100:.2f}",
            str(f["peak_concurrency"]),
            str(f["p99_concurrency"]),
            f"{f['added_latency_ms']['p50']:g}",
            f"{f['added_latency_ms']['p99']:g}",
            f"{gb:,.1f}",
            f"{f['cost']['total']:.4f}",
        )

    for f in report["functions"][:limit]:
        limits = []
        if f["reserved"] is not None:
            limits.append(f"r{f['reserved']}")
        if f["provisioned"]:
            limits.append(f"p{f['provisioned']}")
        rows.append(row(f["function"] + (f" [{' '.join(limits)}]" if limits else ""), f))
    hidden = len(report["functions"]) - limit
    for account in report["accounts"]:
        rows.append(row(f"account {account['account']} (limit {account['limit']})", account))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for index, r in enumerate(rows):
        cells = [c.ljust(widths[i]) if i in (0, 3) else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if index == 0 or (hidden <= 0 and index == len(rows) - len(report["accounts"]) - 1):
            lines.append("  ".join("-" * w for w in widths))
    if hidden > 0:
        lines.append(f"... and {hidden} more functions (the JSON report has them all)")
    wall = report["replay"]
    lines.append(
        f"planned in {wall['wall_s']:.3f} s ({wall['invocations_per_s'] or 0:,} invocations/s)"
    )
    return "\n".join(lines)

"""Cumulative totals of one account, as a node stores them for the others (JSON), and
the totals of every node added up: what Prometheus's counters show on any node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lamina.observe.metrics import Account, AsyncTotals, Metrics, Scope, Totals


def encode(account: Account) -> dict[str, Any]:
    return {
        "targets": [
            [
                *key,
                t.totals.invocations,
                t.totals.errors,
                t.totals.cold_starts,
                t.totals.init_ms,
                t.totals.duration_sum,
                t.totals.duration_buckets,
            ]
            for key, t in account.targets.items()
        ],
        "throttles": [[*key, count] for key, count in account.throttles.items()],
        "async": [
            [
                *key,
                a.received,
                a.dropped,
                a.age_count,
                a.age_sum_ms,
                a.dead_letter_errors,
                a.destination_failures,
                a.iterator_age_ms,
            ]
            for key, a in account.async_totals.items()
        ],
    }


@dataclass
class ScopeTotals:
    targets: dict[tuple[str, str, str], Totals] = field(default_factory=dict)
    throttles: dict[tuple[str, str, str], int] = field(default_factory=dict)
    async_totals: dict[tuple[str, str], AsyncTotals] = field(default_factory=dict)


def _add_target(into: Totals, other: Totals) -> None:
    into.invocations += other.invocations
    into.errors += other.errors
    into.cold_starts += other.cold_starts
    into.init_ms += other.init_ms
    into.duration_sum += other.duration_sum
    for index, count in enumerate(other.duration_buckets[: len(into.duration_buckets)]):
        into.duration_buckets[index] += count


def _add_async(into: AsyncTotals, other: AsyncTotals) -> None:
    into.received += other.received
    into.dropped += other.dropped
    into.age_count += other.age_count
    into.age_sum_ms += other.age_sum_ms
    into.dead_letter_errors += other.dead_letter_errors
    into.destination_failures += other.destination_failures
    into.iterator_age_ms = max(into.iterator_age_ms, other.iterator_age_ms)


def merged(metrics: Metrics) -> dict[Scope, ScopeTotals]:
    """Each scope's totals: this node's and every other node's stored ones, added."""
    found: dict[Scope, ScopeTotals] = {}
    for scope, account in metrics.accounts.items():
        mine = found[scope] = ScopeTotals()
        for key, target in account.targets.items():
            _add_target(mine.targets.setdefault(key, Totals()), target.totals)
        mine.throttles.update(account.throttles)
        for pair, events in account.async_totals.items():
            _add_async(mine.async_totals.setdefault(pair, AsyncTotals()), events)
    for (_, scope), body in metrics.remote_totals.items():
        theirs = found.setdefault(scope, ScopeTotals())
        for row in body.get("targets", ()):
            key = (str(row[0]), str(row[1]), str(row[2]))
            _add_target(
                theirs.targets.setdefault(key, Totals()),
                Totals(row[3], row[4], row[5], row[6], row[7], list(row[8])),
            )
        for row in body.get("throttles", ()):
            key = (str(row[0]), str(row[1]), str(row[2]))
            theirs.throttles[key] = theirs.throttles.get(key, 0) + int(row[3])
        for row in body.get("async", ()):
            events = theirs.async_totals.setdefault((str(row[0]), str(row[1])), AsyncTotals())
            _add_async(events, AsyncTotals(*row[2:9]))
    return found

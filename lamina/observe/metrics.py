"""Metrics with CloudWatch's names, recorded where things happen.

Events come from their source: an invocation finished (the engine's observer), a throttle,
an async event received, dropped or aged (the async queue), a dead-letter or destination
failure, an iterator age (pollers). Gauges are sampled once a second from the counting
service (observe/gauges.py): peak concurrency since the last sample, so a minute's Maximum
is the exact peak; in a cluster, the peak of every node's executions together.

Three views of the same events, each O(1) to write:
- `MinuteSeries`: CloudWatch statistics (SampleCount, Sum, Minimum, Maximum) per minute,
  per metric and dimension set, kept for RETENTION_MINUTES (a little over a day). This is
  what GetMetricStatistics and GetMetricData read.
- cumulative totals per finest key (function, resource, executed version): what the
  Prometheus endpoint exposes (see observe/prometheus.py).
- `Live`: per-second buckets per function and per account for the last LIVE_SECONDS,
  for the console's charts and `lamina top`.

Dimension sets in AWS/Lambda, as CloudWatch has them: none (the account and region),
FunctionName, FunctionName + Resource (`name:qualifier`, for qualified invocations) and
FunctionName + Resource + ExecutedVersion (invocations through an alias). Lamina's own
figures that CloudWatch has no name for (cold starts, init duration, throttles by reason)
are in the namespace `Lamina`.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lamina.keys import FunctionKey
from lamina.observe.series import Dimensions, MergedSeries, MinuteSeries, RemoteSeries, dimensions

NAMESPACE = "AWS/Lambda"
LAMINA_NAMESPACE = "Lamina"
LIVE_SECONDS = 300  # per-second buckets kept for the console and `lamina top`

UNITS = {
    "Invocations": "Count",
    "Errors": "Count",
    "Throttles": "Count",
    "Duration": "Milliseconds",
    "ConcurrentExecutions": "Count",
    "UnreservedConcurrentExecutions": "Count",
    "ClaimedAccountConcurrency": "Count",
    "ProvisionedConcurrentExecutions": "Count",
    "ProvisionedConcurrencyUtilization": "None",
    "ProvisionedConcurrencyInvocations": "Count",
    "ProvisionedConcurrencySpilloverInvocations": "Count",
    "AsyncEventsReceived": "Count",
    "AsyncEventAge": "Milliseconds",
    "AsyncEventsDropped": "Count",
    "DeadLetterErrors": "Count",
    "DestinationDeliveryFailures": "Count",
    "IteratorAge": "Milliseconds",
    "ColdStarts": "Count",
    "InitDuration": "Milliseconds",
}

# Upper bounds (ms) of the Prometheus duration histogram.
DURATION_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 900000)


@dataclass(slots=True)
class Second:
    """One second of one function (or of the whole account) for the live views."""

    t: int
    concurrency: int = 0  # peak in-flight during the second
    provisioned_busy: int = 0
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    cold_starts: int = 0
    duration_sum: float = 0.0
    duration_max: float = 0.0


class Live:
    """The last LIVE_SECONDS seconds, one bucket per second that saw anything."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: deque[Second] = deque()

    def at(self, now: float) -> Second:
        t = int(now)
        seconds = self.seconds
        if seconds and seconds[-1].t >= t:
            return seconds[-1]
        bucket = Second(t)
        seconds.append(bucket)
        while seconds[0].t <= t - LIVE_SECONDS:
            seconds.popleft()
        return bucket

    def since(self, t: float) -> list[Second]:
        return [second for second in self.seconds if second.t >= t]


@dataclass(slots=True)
class Totals:
    """Cumulative figures of one (function, resource, executed version), for Prometheus."""

    invocations: int = 0
    errors: int = 0
    cold_starts: int = 0
    init_ms: float = 0.0
    duration_sum: float = 0.0
    # Counts per DURATION_BUCKETS bound, and a last one for longer: a histogram.
    duration_buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))


@dataclass(slots=True, eq=False)
class Target:
    """What one finished invocation of (function, resource, executed version) updates:
    resolved once, so the hot path is a dict lookup and a few additions."""

    scope: Scope
    totals: Totals
    invocations: list[MinuteSeries]
    errors: list[MinuteSeries]
    duration: list[MinuteSeries]
    cold_starts: list[MinuteSeries]
    init_duration: list[MinuteSeries]
    live: Live
    account_live: Live

    def series(self) -> list[MinuteSeries]:
        return [
            *self.invocations,
            *self.errors,
            *self.duration,
            *self.cold_starts,
            *self.init_duration,
        ]


@dataclass(slots=True)
class FunctionGauges:
    """The latest sample of one function's concurrency, from the counting service."""

    concurrent: int = 0
    reserved: int | None = None
    provisioned: int = 0
    provisioned_ready: int = 0
    provisioned_busy: int = 0
    provisioned_invocations: int = 0  # cumulative
    spillover_invocations: int = 0  # cumulative
    throttles: dict[str, int] = field(default_factory=dict)  # cumulative, by reason


@dataclass(slots=True)
class AccountGauges:
    concurrent: int = 0
    limit: int = 0
    unreserved_pool: int = 0
    unreserved_in_use: int = 0
    claimed: int = 0
    functions: dict[str, FunctionGauges] = field(default_factory=dict)


@dataclass(slots=True)
class AsyncTotals:
    received: int = 0
    dropped: int = 0
    age_count: int = 0
    age_sum_ms: float = 0.0
    dead_letter_errors: int = 0
    destination_failures: int = 0
    iterator_age_ms: float = 0.0


Scope = tuple[str, str]  # (account, region)
SeriesKey = tuple[str, str, Dimensions]  # (namespace, metric, dimensions)


class Account:
    """Everything recorded for one account and region."""

    def __init__(
        self,
        scope: Scope = ("", ""),
        changed: set[MinuteSeries] | None = None,
        names: dict[MinuteSeries, tuple[Scope, SeriesKey]] | None = None,
    ) -> None:
        self.scope = scope
        # The recorder's: series written to (the keeper stores their minutes), and the
        # name of each series.
        self.changed = changed if changed is not None else set()
        self.names = names if names is not None else {}
        self.series: dict[SeriesKey, MinuteSeries] = {}
        self.targets: dict[tuple[str, str, str], Target] = {}  # (function, resource, version)
        self.throttles: dict[tuple[str, str, str], int] = {}  # (function, resource, reason)
        self.async_totals: dict[tuple[str, str], AsyncTotals] = {}  # (function, resource)
        self.live: dict[str, Live] = {}  # by function name; "" = the whole account
        self.gauges = AccountGauges()
        self.seen_cumulative: dict[str, tuple[int, int]] = {}  # provisioned, spillover

    def series_for(self, namespace: str, name: str, dims: Dimensions) -> MinuteSeries:
        key = (namespace, name, dims)
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = MinuteSeries(UNITS.get(name, "None"))
            self.names[found] = (self.scope, key)
        self.changed.add(found)  # written now or soon
        return found

    def live_for(self, function: str) -> Live:
        found = self.live.get(function)
        if found is None:
            found = self.live[function] = Live()
        return found


def _resource_dims(function: str, qualifier: str | None) -> list[Dimensions]:
    """The dimension sets one event of `function` (invoked as `qualifier`) counts in."""
    sets = [(), dimensions(FunctionName=function)]
    if qualifier:
        sets.append(dimensions(FunctionName=function, Resource=f"{function}:{qualifier}"))
    return sets


def qualifier_of(arn: str) -> str | None:
    """The qualifier of a qualified function ARN (`...:function:name:qualifier`), else None."""
    parts = arn.split(":")
    return parts[7] if len(parts) == 8 and parts[7] else None


class Metrics:
    """The recorder: one per server, written on the event loop.

    The invocation path calls `invocation()` and `throttle()`; the async queue calls
    `async_event_received()`, `async_event_dropped()` and `async_event_age()`; pollers
    `iterator_age()`; destinations `dead_letter_error()` and `destination_delivery_failure()`.
    A Sampler (observe/gauges.py) calls `sample()` once a second with the counting
    service's figures.
    """

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self.accounts: dict[Scope, Account] = {}
        self.started = wall()
        # What the keeper (metric_keeper.py) stores at its next flush: series written to,
        # targets invoked (their series and totals), scopes whose totals changed.
        self.changed: set[MinuteSeries] = set()
        self.names: dict[MinuteSeries, tuple[Scope, SeriesKey]] = {}
        self.changed_targets: set[Target] = set()
        self.changed_scopes: set[Scope] = set()
        self.past: set[tuple[MinuteSeries, int]] = set()
        # What other nodes (or this node before a restart) stored, read by the keeper.
        self.remote: dict[Scope, dict[SeriesKey, RemoteSeries]] = {}
        self.remote_totals: dict[tuple[str, Scope], dict[str, Any]] = {}  # (node, scope)

    def account(self, account: str, region: str) -> Account:
        scope = (account, region)
        found = self.accounts.get(scope)
        if found is None:
            found = self.accounts[scope] = Account(scope, self.changed, self.names)
        return found

    # Events --------------------------------------------------------------------------
    def invocation(
        self,
        key: FunctionKey,
        qualifier: str | None,
        executed_version: str,
        duration_ms: float,
        error: bool,
        init_ms: float | None = None,
    ) -> None:
        """One invocation finished. `init_ms` is set when it started an environment."""
        account = self.account(key.account, key.region)
        target = account.targets.get((key.name, qualifier or "", executed_version))
        if target is None:
            target = self._target(
                (key.account, key.region), account, key.name, qualifier, executed_version
            )
        now = self.wall()
        self.changed_targets.add(target)
        totals = target.totals
        totals.invocations += 1
        totals.duration_sum += duration_ms
        totals.duration_buckets[bisect.bisect_left(DURATION_BUCKETS, duration_ms)] += 1
        errors = 1.0 if error else 0.0
        for series in target.invocations:
            series.add(now, 1.0)
        for series in target.errors:
            series.add(now, errors)
        for series in target.duration:
            series.add(now, duration_ms)
        cold = init_ms is not None
        if cold:
            totals.cold_starts += 1
            totals.init_ms += init_ms or 0.0
            for series in target.cold_starts:
                series.add(now, 1.0)
            for series in target.init_duration:
                series.add(now, init_ms or 0.0)
        if error:
            totals.errors += 1
        for live in (target.live, target.account_live):
            second = live.at(now)
            second.invocations += 1
            second.errors += int(error)
            second.cold_starts += int(cold)
            second.duration_sum += duration_ms
            if duration_ms > second.duration_max:
                second.duration_max = duration_ms

    def throttle(self, key: FunctionKey, qualifier: str | None, reason: str) -> None:
        """The counting service refused one invocation, for `reason` (AWS's Reason)."""
        account = self.account(key.account, key.region)
        now = self.wall()
        name = key.name
        for dims in _resource_dims(name, qualifier):
            account.series_for(NAMESPACE, "Throttles", dims).add(now, 1.0)
        account.series_for(LAMINA_NAMESPACE, "Throttles", dimensions(Reason=reason)).add(now, 1.0)
        account.series_for(
            LAMINA_NAMESPACE, "Throttles", dimensions(FunctionName=name, Reason=reason)
        ).add(now, 1.0)
        total_key = (name, qualifier or "", reason)
        self.changed_scopes.add((key.account, key.region))
        account.throttles[total_key] = account.throttles.get(total_key, 0) + 1
        account.live_for(name).at(now).throttles += 1
        account.live_for("").at(now).throttles += 1

    def async_event_received(self, key: FunctionKey, qualifier: str | None = None) -> None:
        """The async queue accepted an event for the function (AsyncEventsReceived)."""
        self._async_count(key, qualifier, "AsyncEventsReceived").received += 1

    def async_event_dropped(self, key: FunctionKey, qualifier: str | None = None) -> None:
        """An async event was dropped without being processed (AsyncEventsDropped)."""
        self._async_count(key, qualifier, "AsyncEventsDropped").dropped += 1

    def async_event_age(
        self, key: FunctionKey, seconds: float, qualifier: str | None = None
    ) -> None:
        """An async event was handed to the function `seconds` after it was received
        (AsyncEventAge, recorded in milliseconds as CloudWatch does)."""
        milliseconds = seconds * 1000.0
        self._async_value(key, qualifier, "AsyncEventAge", milliseconds)
        totals = self._async_totals(key, qualifier)
        totals.age_count += 1
        totals.age_sum_ms += milliseconds

    def dead_letter_error(self, key: FunctionKey, qualifier: str | None = None) -> None:
        """An event could not be sent to the dead-letter queue (DeadLetterErrors)."""
        self._async_count(key, qualifier, "DeadLetterErrors").dead_letter_errors += 1

    def destination_delivery_failure(self, key: FunctionKey, qualifier: str | None = None) -> None:
        """An invocation record could not be sent to its destination."""
        self._async_count(key, qualifier, "DestinationDeliveryFailures").destination_failures += 1

    def iterator_age(
        self, key: FunctionKey, milliseconds: float, qualifier: str | None = None
    ) -> None:
        """Age of the last record of a stream batch when the function got it (IteratorAge)."""
        self._async_value(key, qualifier, "IteratorAge", milliseconds)
        self._async_totals(key, qualifier).iterator_age_ms = milliseconds

    def put(
        self,
        account: str,
        region: str,
        namespace: str,
        name: str,
        dims: Dimensions,
        value: float,
        timestamp: float | None = None,
        unit: str | None = None,
    ) -> None:
        """A datapoint from outside (CloudWatch PutMetricData)."""
        series = self.account(account, region).series_for(namespace, name, dims)
        if unit and series.unit == "None":
            series.unit = unit
        series.add(self.wall() if timestamp is None else timestamp, value)

    def put_stats(
        self,
        account: str,
        region: str,
        key: SeriesKey,
        unit: str | None,
        when: float,
        stats: tuple[float, float, float, float],
    ) -> None:
        """Already-aggregated values at `when`, perhaps in the past (PutMetricData)."""
        series = self.account(account, region).series_for(*key)
        if unit and series.unit == "None":
            series.unit = unit
        series.add_stats(when, *stats)
        self.past.add((series, int(when // 60)))  # a minute the keeper may have stored

    def _async_totals(self, key: FunctionKey, qualifier: str | None) -> AsyncTotals:
        account = self.account(key.account, key.region)
        self.changed_scopes.add((key.account, key.region))
        total_key = (key.name, qualifier or "")
        found = account.async_totals.get(total_key)
        if found is None:
            found = account.async_totals[total_key] = AsyncTotals()
        return found

    def _async_count(self, key: FunctionKey, qualifier: str | None, name: str) -> AsyncTotals:
        self._async_value(key, qualifier, name, 1.0)
        return self._async_totals(key, qualifier)

    def _async_value(
        self, key: FunctionKey, qualifier: str | None, name: str, value: float
    ) -> None:
        account = self.account(key.account, key.region)
        now = self.wall()
        for dims in _resource_dims(key.name, qualifier):
            account.series_for(NAMESPACE, name, dims).add(now, value)

    def _target(
        self, scope: Scope, account: Account, function: str, qualifier: str | None, version: str
    ) -> Target:
        sets = _resource_dims(function, qualifier)
        if qualifier and not qualifier.isdigit() and qualifier != "$LATEST":
            sets.append(
                dimensions(
                    FunctionName=function,
                    Resource=f"{function}:{qualifier}",
                    ExecutedVersion=version,
                )
            )

        def each(namespace: str, name: str) -> list[MinuteSeries]:
            return [account.series_for(namespace, name, dims) for dims in sets]

        target = Target(
            scope=scope,
            totals=Totals(),
            invocations=each(NAMESPACE, "Invocations"),
            errors=each(NAMESPACE, "Errors"),
            duration=each(NAMESPACE, "Duration"),
            cold_starts=each(LAMINA_NAMESPACE, "ColdStarts"),
            init_duration=each(LAMINA_NAMESPACE, "InitDuration"),
            live=account.live_for(function),
            account_live=account.live_for(""),
        )
        account.targets[(function, qualifier or "", version)] = target
        return target

    # Gauges --------------------------------------------------------------------------
    def sample(self, counters: Iterable[dict[str, Any]], gauges: bool = True) -> None:
        """Record one sample of the counting service (`Counters.sample()`: the shape of
        `Counters.stats()` with the peaks since the previous sample). `gauges` False: the
        CloudWatch concurrency gauges come from `sample_gauges` (a cluster's counts); this
        node's figures still feed the live view, /metrics and the provisioned invocations."""
        now = self.wall()
        for figures in counters:
            account = self.account(figures["Account"], figures["Region"])
            self._sample_account(account, figures, now)
            if gauges:
                self._gauges(account, figures, now)

    def sample_gauges(self, counters: Iterable[dict[str, Any]]) -> None:
        """The CloudWatch concurrency gauges alone, from the counts of a whole cluster (the
        same shape; a function's figures need only its concurrency and provisioned keys)."""
        now = self.wall()
        for figures in counters:
            self._gauges(self.account(figures["Account"], figures["Region"]), figures, now)

    def _gauges(self, account: Account, figures: dict[str, Any], now: float) -> None:
        """ConcurrentExecutions and its kin: each sample's peaks, so a minute's Maximum is
        the exact peak."""
        limit, pool = figures["AccountLimit"], figures["UnreservedConcurrentExecutions"]
        peak = figures.get("PeakConcurrentExecutions", figures["ConcurrentExecutions"])
        unreserved_peak = figures.get("PeakUnreservedInUse", figures["UnreservedInUse"])
        account.series_for(NAMESPACE, "ConcurrentExecutions", ()).add(now, peak)
        account.series_for(NAMESPACE, "UnreservedConcurrentExecutions", ()).add(
            now, unreserved_peak
        )
        account.series_for(NAMESPACE, "ClaimedAccountConcurrency", ()).add(
            now, limit - pool + unreserved_peak
        )
        provisioned_busy_total = 0
        any_provisioned = False
        for name, counts in figures["Functions"].items():
            concurrent = counts["ConcurrentExecutions"]
            function_peak = counts.get("PeakConcurrentExecutions", concurrent)
            provisioned = counts["ProvisionedConcurrency"]
            provisioned_peak = counts.get(
                "PeakProvisionedConcurrentExecutions", counts["ProvisionedConcurrentExecutions"]
            )
            provisioned_busy_total += provisioned_peak
            function_dims = dimensions(FunctionName=name)
            if function_peak or concurrent:
                account.series_for(NAMESPACE, "ConcurrentExecutions", function_dims).add(
                    now, function_peak
                )
            if provisioned:
                any_provisioned = True
                account.series_for(NAMESPACE, "ProvisionedConcurrentExecutions", function_dims).add(
                    now, provisioned_peak
                )
                account.series_for(
                    NAMESPACE, "ProvisionedConcurrencyUtilization", function_dims
                ).add(now, provisioned_peak / provisioned)
        if provisioned_busy_total or any_provisioned:
            account.series_for(NAMESPACE, "ProvisionedConcurrentExecutions", ()).add(
                now, provisioned_busy_total
            )

    def _sample_account(self, account: Account, figures: dict[str, Any], now: float) -> None:
        """This node's figures: the latest gauges (/metrics, the console), the live view's
        peaks, and the provisioned invocations since the previous sample."""
        gauges = account.gauges
        gauges.concurrent = figures["ConcurrentExecutions"]
        gauges.limit = figures["AccountLimit"]
        gauges.unreserved_pool = figures["UnreservedConcurrentExecutions"]
        gauges.unreserved_in_use = figures["UnreservedInUse"]
        gauges.claimed = gauges.limit - gauges.unreserved_pool + gauges.unreserved_in_use
        peak = figures.get("PeakConcurrentExecutions", gauges.concurrent)
        account_second = account.live_for("").at(now)
        account_second.concurrency = max(account_second.concurrency, peak)
        provisioned_busy_total = 0
        functions: dict[str, FunctionGauges] = {}
        for name, counts in figures["Functions"].items():
            function = functions[name] = FunctionGauges(
                concurrent=counts["ConcurrentExecutions"],
                reserved=counts["ReservedConcurrentExecutions"],
                provisioned=counts["ProvisionedConcurrency"],
                provisioned_ready=counts["ProvisionedReady"],
                provisioned_busy=counts["ProvisionedConcurrentExecutions"],
                provisioned_invocations=counts["ProvisionedConcurrencyInvocations"],
                spillover_invocations=counts["ProvisionedConcurrencySpilloverInvocations"],
                throttles=dict(counts["Throttles"]),
            )
            function_peak = counts.get("PeakConcurrentExecutions", function.concurrent)
            provisioned_peak = counts.get(
                "PeakProvisionedConcurrentExecutions", function.provisioned_busy
            )
            provisioned_busy_total += provisioned_peak
            if function_peak or name in account.live:
                second = account.live_for(name).at(now)
                second.concurrency = max(second.concurrency, function_peak)
                second.provisioned_busy = max(second.provisioned_busy, provisioned_peak)
            # Counts, not gauges: each node's own, added up across nodes when read.
            function_dims = dimensions(FunctionName=name)
            seen = account.seen_cumulative.get(name, (0, 0))
            served = function.provisioned_invocations - seen[0]
            spilled = function.spillover_invocations - seen[1]
            for metric, count in (
                ("ProvisionedConcurrencyInvocations", served),
                ("ProvisionedConcurrencySpilloverInvocations", spilled),
            ):
                if count > 0:
                    for dims in ((), function_dims):
                        account.series_for(NAMESPACE, metric, dims).add(now, count)
            account.seen_cumulative[name] = (
                function.provisioned_invocations,
                function.spillover_invocations,
            )
        account_second.provisioned_busy = max(
            account_second.provisioned_busy, provisioned_busy_total
        )
        gauges.functions = functions

    # Reading -------------------------------------------------------------------------
    def find(
        self, account: str, region: str, namespace: str, name: str, dims: Dimensions
    ) -> MinuteSeries | MergedSeries | None:
        """The series as this node recorded it, with what other nodes stored of it."""
        found = self.accounts.get((account, region))
        key = (namespace, name, dims)
        local = found.series.get(key) if found else None
        remote = self.remote.get((account, region), {}).get(key)
        if remote is None:
            return local
        return MergedSeries(local, remote)

    def listing(self, account: str, region: str) -> list[SeriesKey]:
        found = self.accounts.get((account, region))
        keys = set(found.series) if found else set()
        keys.update(self.remote.get((account, region), ()))
        return sorted(keys)

    def peak(self, account: str, region: str, function: str, seconds: float) -> tuple[int, int]:
        """Highest concurrency and provisioned concurrency in use over the last `seconds`
        ("" = the whole account), from the live buckets."""
        found = self.accounts.get((account, region))
        if found is None or function not in found.live:
            return 0, 0
        since = self.wall() - seconds
        concurrency = provisioned_busy = 0
        for bucket in reversed(found.live[function].seconds):  # newest first: the window only
            if bucket.t < since:
                break
            concurrency = max(concurrency, bucket.concurrency)
            provisioned_busy = max(provisioned_busy, bucket.provisioned_busy)
        return concurrency, provisioned_busy

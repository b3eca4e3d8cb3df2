"""The metrics recorder and each surface that reads it (Prometheus text, CloudWatch's
GetMetricStatistics / GetMetricData / ListMetrics, the console's live view), in virtual
time: exact counts, CloudWatch's dimension sets, peaks from the counting service."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lamina.console.live import LiveView
from lamina.context import RequestContext
from lamina.engine.concurrency import Counters, Kind, Limits
from lamina.errors import AwsError
from lamina.keys import FunctionKey
from lamina.observe.logs import LogStore
from lamina.observe.metrics import Metrics, qualifier_of
from lamina.observe.prometheus import PrometheusView, labels
from lamina.observe.series import RETENTION_MINUTES, MinuteSeries
from lamina.observe.traces import TraceStore
from lamina.services.cloudwatch.provider import CloudWatch

ACCOUNT, REGION = "000000000000", "us-east-1"
KEY = FunctionKey(ACCOUNT, REGION, "fn")
CTX = RequestContext(ACCOUNT, REGION, "req", "http://127.0.0.1")
T0 = 1_800_000_000.0  # a whole minute


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> Metrics:
    return Metrics(wall=clock)


def prometheus(metrics: Metrics) -> dict[str, float]:
    """Prometheus text → {"name{labels}": value}, label sets sorted as rendered."""
    text = PrometheusView(metrics).render().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def sample(values: dict[str, float], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = []
    for series, value in values.items():
        base, _, rest = series.partition("{")
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if base == name and all(pairs.get(k) == v for k, v in labels.items()):
            found.append(value)
    assert len(found) == 1, (name, labels, found)
    return found[0]


def statistics(
    metrics: Metrics, name: str, dims: dict[str, str], namespace: str = "AWS/Lambda"
) -> list[dict[str, Any]]:
    params = {
        "Namespace": namespace,
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
        "StartTime": dt.datetime.fromtimestamp(T0 - 600, dt.UTC),
        "EndTime": dt.datetime.fromtimestamp(T0 + 600, dt.UTC),
        "Period": 60,
        "Statistics": ["SampleCount", "Sum", "Minimum", "Maximum", "Average"],
    }
    result = asyncio.run(CloudWatch(metrics).GetMetricStatistics(CTX, params))
    datapoints: list[dict[str, Any]] = result["Datapoints"]
    return datapoints


def test_an_invocation_counts_in_each_of_cloudwatchs_dimension_sets(
    metrics: Metrics, clock: Clock
) -> None:
    metrics.invocation(KEY, None, "$LATEST", 12.0, False, init_ms=80.0)
    metrics.invocation(KEY, None, "$LATEST", 4.0, True)
    clock.now += 1
    metrics.invocation(KEY, "live", "3", 8.0, False)
    metrics.invocation(KEY, "3", "3", 2.0, False)
    (account,) = statistics(metrics, "Invocations", {})
    assert account["Sum"] == 4 and account["SampleCount"] == 4
    (function,) = statistics(metrics, "Invocations", {"FunctionName": "fn"})
    assert function["Sum"] == 4
    (alias,) = statistics(metrics, "Invocations", {"FunctionName": "fn", "Resource": "fn:live"})
    assert alias["Sum"] == 1
    (version,) = statistics(metrics, "Invocations", {"FunctionName": "fn", "Resource": "fn:3"})
    assert version["Sum"] == 1
    (executed,) = statistics(
        metrics,
        "Invocations",
        {"FunctionName": "fn", "Resource": "fn:live", "ExecutedVersion": "3"},
    )
    assert executed["Sum"] == 1
    (errors,) = statistics(metrics, "Errors", {"FunctionName": "fn"})
    assert (errors["Sum"], errors["SampleCount"], errors["Average"]) == (1, 4, 0.25)
    (duration,) = statistics(metrics, "Duration", {"FunctionName": "fn"})
    assert (duration["Minimum"], duration["Maximum"], duration["Sum"]) == (2.0, 12.0, 26.0)
    assert duration["Unit"] == "Milliseconds"
    (cold,) = statistics(metrics, "ColdStarts", {"FunctionName": "fn"}, namespace="Lamina")
    assert cold["Sum"] == 1
    values = prometheus(metrics)
    assert sample(values, "aws_lambda_invocations_total", resource="fn") == 2
    assert sample(values, "aws_lambda_errors_total", resource="fn") == 1
    assert sample(values, "aws_lambda_invocations_total", resource="fn:live") == 1
    assert sample(values, "lamina_cold_starts_total", resource="fn") == 1
    assert sample(values, "aws_lambda_duration_milliseconds_count", resource="fn") == 2
    assert sample(values, "aws_lambda_duration_milliseconds_sum", resource="fn") == 16.0
    assert sample(values, "aws_lambda_duration_milliseconds_bucket", resource="fn", le="5.0") == 1


def test_throttles_by_reason_through_every_surface(metrics: Metrics) -> None:
    for _ in range(3):
        metrics.throttle(KEY, None, "ReservedFunctionConcurrentInvocationLimitExceeded")
    metrics.throttle(KEY, "live", "ConcurrentInvocationLimitExceeded")
    (total,) = statistics(metrics, "Throttles", {"FunctionName": "fn"})
    assert total["Sum"] == 4
    (reserved,) = statistics(
        metrics,
        "Throttles",
        {"FunctionName": "fn", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"},
        namespace="Lamina",
    )
    assert reserved["Sum"] == 3
    values = prometheus(metrics)
    reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert sample(values, "aws_lambda_throttles_total", resource="fn", reason=reason) == 3
    assert (
        sample(
            values,
            "aws_lambda_throttles_total",
            resource="fn:live",
            reason="ConcurrentInvocationLimitExceeded",
        )
        == 1
    )


def test_async_events_received_dropped_and_aged_through_every_surface(
    metrics: Metrics,
) -> None:
    for _ in range(5):
        metrics.async_event_received(KEY)
    metrics.async_event_dropped(KEY)
    metrics.async_event_dropped(KEY)
    metrics.async_event_age(KEY, 0.25)
    metrics.async_event_age(KEY, 1.75)
    (received,) = statistics(metrics, "AsyncEventsReceived", {"FunctionName": "fn"})
    (dropped,) = statistics(metrics, "AsyncEventsDropped", {"FunctionName": "fn"})
    (age,) = statistics(metrics, "AsyncEventAge", {"FunctionName": "fn"})
    assert (received["Sum"], dropped["Sum"]) == (5, 2)
    assert (age["Maximum"], age["Average"], age["Unit"]) == (1750.0, 1000.0, "Milliseconds")
    values = prometheus(metrics)
    assert sample(values, "aws_lambda_async_events_received_total", function_name="fn") == 5
    assert sample(values, "aws_lambda_async_events_dropped_total", function_name="fn") == 2
    assert sample(values, "aws_lambda_async_event_age_milliseconds_sum", function_name="fn") == 2000
    view = LiveView(
        OneFunction(),
        metrics,
        LogStore(),
        TraceStore(),
        wall=metrics.wall,
    )
    (entry,) = view.snapshot(ACCOUNT, REGION, "fn", 60)["functions"]
    assert entry["async_events"] == {"received": 5, "dropped": 2}


class OneFunction:
    """The live view's catalogue of a store holding the function `fn`."""

    record: ClassVar[dict[str, Any]] = {"config": {"FunctionName": "fn"}}

    def list_functions(
        self, account: str, region: str, after: str = "", limit: int = -1
    ) -> list[dict[str, Any]]:
        return [self.record]

    def function_view(self, key: FunctionKey) -> dict[str, Any] | None:
        return self.record if key.name == "fn" else None

    def usage(self, account: str, region: str) -> tuple[int, int]:
        return 1, 0


def test_gauges_record_the_exact_peak_between_samples(metrics: Metrics, clock: Clock) -> None:
    counters = Counters(Limits(account=50, floor=10, rate_per_unit=0))
    counter = counters.of(KEY)
    other = FunctionKey(ACCOUNT, REGION, "other")
    counter.set_reserved(other, 5)
    leases = [counter.acquire(KEY, 0.0).lease for _ in range(7)]
    for lease in leases[:6]:
        assert lease is not None
        counter.release(lease)  # the peak of 7 is gone before anyone samples
    metrics.sample(counters.sample())
    clock.now += 1
    metrics.sample(counters.sample())  # in flight: 1, peak since the last sample: 1
    (peak,) = statistics(metrics, "ConcurrentExecutions", {"FunctionName": "fn"})
    assert (peak["Maximum"], peak["Minimum"], peak["SampleCount"]) == (7, 1, 2)
    (account,) = statistics(metrics, "ConcurrentExecutions", {})
    assert account["Maximum"] == 7
    (unreserved,) = statistics(metrics, "UnreservedConcurrentExecutions", {})
    assert unreserved["Maximum"] == 7
    (claimed,) = statistics(metrics, "ClaimedAccountConcurrency", {})
    assert claimed["Maximum"] == 5 + 7  # the reservation plus the unreserved in use
    values = prometheus(metrics)
    assert sample(values, "aws_lambda_concurrent_executions", function_name="fn") == 1
    assert sample(values, "aws_lambda_concurrent_executions_max", function_name="fn") == 7
    assert sample(values, "aws_lambda_account_concurrency_limit") == 50


def test_a_clusters_node_records_the_clusters_gauges_not_its_own(
    metrics: Metrics, clock: Clock
) -> None:
    counters = Counters(Limits(account=50, floor=10, rate_per_unit=0))
    leases = [counters.of(KEY).acquire(KEY, 0.0).lease for _ in range(3)]
    assert all(leases)
    metrics.sample(counters.sample(), gauges=False)  # this node's own three
    assert statistics(metrics, "ConcurrentExecutions", {}) == []
    assert metrics.peak(ACCOUNT, REGION, "fn", 60) == (3, 0)  # the live view: the node's
    cluster = {
        "Account": ACCOUNT,
        "Region": REGION,
        "ConcurrentExecutions": 4,
        "AccountLimit": 50,
        "UnreservedConcurrentExecutions": 45,
        "UnreservedInUse": 4,
        "PeakConcurrentExecutions": 8,
        "PeakUnreservedInUse": 8,
        "Functions": {
            "fn": {
                "ConcurrentExecutions": 4,
                "PeakConcurrentExecutions": 8,
                "ProvisionedConcurrency": 2,
                "ProvisionedConcurrentExecutions": 0,
                "PeakProvisionedConcurrentExecutions": 1,
            }
        },
    }
    metrics.sample_gauges([cluster])  # every node's executions together
    assert statistics(metrics, "ConcurrentExecutions", {"FunctionName": "fn"})[0]["Maximum"] == 8
    assert statistics(metrics, "ConcurrentExecutions", {})[0]["Maximum"] == 8
    assert statistics(metrics, "ClaimedAccountConcurrency", {})[0]["Maximum"] == 5 + 8
    utilization = statistics(metrics, "ProvisionedConcurrencyUtilization", {"FunctionName": "fn"})
    assert utilization[0]["Maximum"] == 0.5


def test_the_max_gauges_look_back_one_minute(metrics: Metrics, clock: Clock) -> None:
    counters = Counters(Limits(account=50, floor=10, rate_per_unit=0))
    counter = counters.of(KEY)
    leases = [counter.acquire(KEY, 0.0).lease for _ in range(4)]
    metrics.sample(counters.sample())  # T0: 4 in flight
    for lease in leases:
        assert lease is not None
        counter.release(lease)
    for _ in range(3):  # T0+1 still sees the 4 of its interval; then none
        clock.now += 1
        metrics.sample(counters.sample())

    def peak() -> float:
        return sample(
            prometheus(metrics), "aws_lambda_concurrent_executions_max", function_name="fn"
        )

    clock.now = T0 + 61
    assert peak() == 4
    clock.now = T0 + 62
    assert peak() == 0


def test_the_text_reads_back_with_prometheus_clients_parser(metrics: Metrics) -> None:
    metrics.invocation(KEY, None, "$LATEST", 12.0, False, init_ms=80.0)
    metrics.invocation(KEY, "live", "3", 3000.0, True)
    metrics.throttle(KEY, None, "ConcurrentInvocationLimitExceeded")
    families = {
        family.name: family
        for family in text_string_to_metric_families(PrometheusView(metrics).render().decode())
    }
    assert families["aws_lambda_invocations"].type == "counter"
    duration = families["aws_lambda_duration_milliseconds"]
    assert duration.type == "histogram"
    live = [s for s in duration.samples if s.labels.get("resource") == "fn:live"]
    buckets = [s for s in live if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets][-2:] == ["900000.0", "+Inf"]
    assert [s.value for s in buckets if s.labels["le"] in ("2500.0", "5000.0")] == [0, 1]
    assert {s.name: s.value for s in live if not s.name.endswith("_bucket")} == {
        "aws_lambda_duration_milliseconds_count": 1,
        "aws_lambda_duration_milliseconds_sum": 3000.0,
    }
    assert live[0].labels == {
        "account": ACCOUNT,
        "region": REGION,
        "function_name": "fn",
        "resource": "fn:live",
        "executed_version": "3",
        "le": "1.0",
    }
    (throttle,) = families["aws_lambda_throttles"].samples
    assert throttle.labels["reason"] == "ConcurrentInvocationLimitExceeded"
    assert labels(["a", "b"], ['say "hi"\n', "back\\slash"]) == (
        'a="say \\"hi\\"\\n",b="back\\\\slash"'
    )


def test_provisioned_utilization_and_spillover(metrics: Metrics, clock: Clock) -> None:
    counters = Counters(Limits(account=50, floor=10, rate_per_unit=0))
    counter = counters.of(KEY)
    counter.set_provisioned(KEY, 2)
    counter.set_provisioned_ready(KEY, 2)
    served = [counter.acquire(KEY, 0.0, kind=Kind.PROVISIONED).lease for _ in range(3)]
    assert all(lease is not None for lease in served)  # the third spilled over
    metrics.sample(counters.sample())
    (invocations,) = statistics(
        metrics, "ProvisionedConcurrencyInvocations", {"FunctionName": "fn"}
    )
    (spillover,) = statistics(
        metrics, "ProvisionedConcurrencySpilloverInvocations", {"FunctionName": "fn"}
    )
    (busy,) = statistics(metrics, "ProvisionedConcurrentExecutions", {"FunctionName": "fn"})
    (utilization,) = statistics(
        metrics, "ProvisionedConcurrencyUtilization", {"FunctionName": "fn"}
    )
    assert (invocations["Sum"], spillover["Sum"], busy["Maximum"]) == (2, 1, 2)
    assert utilization["Maximum"] == 1.0
    clock.now += 1
    metrics.sample(counters.sample())  # nothing new: the sums stay
    (invocations,) = statistics(
        metrics, "ProvisionedConcurrencyInvocations", {"FunctionName": "fn"}
    )
    assert invocations["Sum"] == 2
    values = prometheus(metrics)
    assert sample(values, "aws_lambda_provisioned_concurrency_spillover_invocations_total") == 1
    assert sample(values, "aws_lambda_provisioned_concurrency_utilization_max") == 1.0


def test_periods_align_to_the_epoch_and_skip_empty_ones() -> None:
    series = MinuteSeries("Count")
    for minute in (0, 1, 4, 5, 9):
        series.add(T0 + minute * 60 + 5, 1.0)
    periods = list(series.periods(T0, T0 + 600, 300))
    assert [(int(t - T0), stats[0]) for t, stats in periods] == [(0, 3), (300, 2)]
    assert list(series.periods(T0 + 120, T0 + 240, 60)) == []


def test_one_minute_data_is_kept_a_day_and_no_longer() -> None:
    series = MinuteSeries("Count")
    series.add(T0, 1.0)
    series.add(T0 + 24 * 3600, 1.0)
    assert len(series.kept()) == 2  # a day later the first is still there
    series.add(T0 + (RETENTION_MINUTES + 1) * 60, 1.0)
    assert series.kept() == [int(T0 // 60) + 24 * 60, int(T0 // 60) + RETENTION_MINUTES + 1]


def test_put_metric_data_in_the_past_lands_in_its_minute(metrics: Metrics) -> None:
    cloudwatch = CloudWatch(metrics)
    put = {
        "Namespace": "App",
        "MetricData": [
            {
                "MetricName": "Latency",
                "Value": 3.0,
                "Timestamp": dt.datetime.fromtimestamp(T0 + 120, dt.UTC),
            },
            {
                "MetricName": "Latency",
                "Value": 1.0,
                "Timestamp": dt.datetime.fromtimestamp(T0, dt.UTC),
            },
            {
                "MetricName": "Latency",
                "StatisticValues": {"SampleCount": 4, "Sum": 10, "Minimum": 1, "Maximum": 4},
                "Timestamp": dt.datetime.fromtimestamp(T0 + 60, dt.UTC),
            },
        ],
    }
    asyncio.run(cloudwatch.PutMetricData(CTX, put))
    points = statistics(metrics, "Latency", {}, namespace="App")
    assert [(p["SampleCount"], p["Sum"]) for p in points] == [(1, 1.0), (4, 10.0), (1, 3.0)]
    with pytest.raises(AwsError) as refused:
        asyncio.run(cloudwatch.PutMetricData(CTX, {**put, "Namespace": "AWS/Lambda"}))
    assert refused.value.code == "InvalidParameterValue"


def test_cloudwatch_refuses_what_it_cannot_answer_exactly(metrics: Metrics) -> None:
    cloudwatch = CloudWatch(metrics)
    window = {
        "StartTime": dt.datetime.fromtimestamp(T0, dt.UTC),
        "EndTime": dt.datetime.fromtimestamp(T0 + 60, dt.UTC),
    }
    base = {"Namespace": "AWS/Lambda", "MetricName": "Invocations", **window}
    cases = [
        ({**base, "Period": 60, "ExtendedStatistics": ["p99"]}, "InvalidParameterValue"),
        ({**base, "Period": 30, "Statistics": ["Sum"]}, "InvalidParameterValue"),
        ({**base, "Period": 60}, "InvalidParameterCombination"),
        (
            {**base, "Period": 60, "Statistics": ["Sum"], "EndTime": window["StartTime"]},
            "InvalidParameterValue",
        ),
    ]
    for params, code in cases:
        with pytest.raises(AwsError) as refused:
            asyncio.run(cloudwatch.GetMetricStatistics(CTX, params))
        assert refused.value.code == code, params
    query = {"Id": "a", "MetricStat": {"Metric": {}, "Period": 60, "Stat": "p90"}}
    with pytest.raises(AwsError):
        asyncio.run(cloudwatch.GetMetricData(CTX, {**window, "MetricDataQueries": [query]}))


def test_list_metrics_filters_by_dimension(metrics: Metrics) -> None:
    metrics.invocation(KEY, "live", "1", 1.0, False)
    listed = asyncio.run(
        CloudWatch(metrics).ListMetrics(
            CTX,
            {
                "Namespace": "AWS/Lambda",
                "MetricName": "Invocations",
                "Dimensions": [{"Name": "Resource", "Value": "fn:live"}],
            },
        )
    )["Metrics"]
    assert sorted(len(m["Dimensions"]) for m in listed) == [2, 3]


def test_qualifier_of_an_invoked_arn() -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert qualifier_of(arn) is None
    assert qualifier_of(arn + ":live") == "live"
    assert qualifier_of(arn + ":7") == "7"

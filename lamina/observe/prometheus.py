"""The Prometheus view of the metrics (`GET /metrics`), rendered by prometheus_client.

Names are CloudWatch's, in Prometheus style under `aws_lambda_` (the convention of the
CloudWatch exporters): `Invocations` → `aws_lambda_invocations_total`, `Duration` →
the histogram `aws_lambda_duration_milliseconds`, `ConcurrentExecutions` →
`aws_lambda_concurrent_executions` (now) and `..._max` (the peak of the last minute).
Series carry the finest labels (account, region, function_name, resource,
executed_version); sum() them for coarser views. Lamina's own figures are `lamina_*`.
Collected at scrape time from the one store: nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from lamina.observe.metrics import DURATION_BUCKETS, Metrics

CONTENT_TYPE = CONTENT_TYPE_LATEST
PEAK_WINDOW = 60.0  # seconds the `_max` gauges look back

SCOPE = ["account", "region"]
FUNCTION = [*SCOPE, "function_name"]
TARGET = [*FUNCTION, "resource", "executed_version"]
RESOURCE = [*FUNCTION, "resource"]


def _resource(function: str, qualifier: str) -> str:
    return f"{function}:{qualifier}" if qualifier else function


class MetricsCollector(Collector):
    def __init__(self, metrics: Metrics, account: str | None = None) -> None:
        self.metrics = metrics
        self.account = account  # only this account's series (None: every account's)

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        invocations = CounterMetricFamily(
            "aws_lambda_invocations", "CloudWatch AWS/Lambda Invocations", labels=TARGET
        )
        errors = CounterMetricFamily(
            "aws_lambda_errors", "CloudWatch AWS/Lambda Errors", labels=TARGET
        )
        duration = HistogramMetricFamily(
            "aws_lambda_duration_milliseconds",
            "CloudWatch AWS/Lambda Duration (ms)",
            labels=TARGET,
        )
        cold = CounterMetricFamily(
            "lamina_cold_starts", "Invocations that started an environment", labels=TARGET
        )
        init = SummaryMetricFamily(
            "lamina_init_duration_milliseconds", "Init duration of cold starts (ms)", labels=TARGET
        )
        throttles = CounterMetricFamily(
            "aws_lambda_throttles",
            "CloudWatch AWS/Lambda Throttles, by the Reason of the 429",
            labels=[*RESOURCE, "reason"],
        )
        concurrent = GaugeMetricFamily(
            "aws_lambda_concurrent_executions",
            "CloudWatch AWS/Lambda ConcurrentExecutions of a function, now",
            labels=FUNCTION,
        )
        concurrent_max = GaugeMetricFamily(
            "aws_lambda_concurrent_executions_max",
            "Peak ConcurrentExecutions of a function over the last minute",
            labels=FUNCTION,
        )
        account_concurrent = GaugeMetricFamily(
            "aws_lambda_account_concurrent_executions",
            "CloudWatch AWS/Lambda ConcurrentExecutions of the account and region, now",
            labels=SCOPE,
        )
        account_concurrent_max = GaugeMetricFamily(
            "aws_lambda_account_concurrent_executions_max",
            "Peak ConcurrentExecutions of the account and region over the last minute",
            labels=SCOPE,
        )
        account_limit = GaugeMetricFamily(
            "aws_lambda_account_concurrency_limit",
            "The account's concurrency limit (GetAccountSettings ConcurrentExecutions)",
            labels=SCOPE,
        )
        unreserved = GaugeMetricFamily(
            "aws_lambda_unreserved_concurrent_executions",
            "CloudWatch AWS/Lambda UnreservedConcurrentExecutions: in use by functions "
            "without a reservation",
            labels=SCOPE,
        )
        claimed = GaugeMetricFamily(
            "aws_lambda_claimed_account_concurrency",
            "CloudWatch AWS/Lambda ClaimedAccountConcurrency",
            labels=SCOPE,
        )
        reserved = GaugeMetricFamily(
            "lamina_reserved_concurrency",
            "A function's reserved concurrency (absent: none)",
            labels=FUNCTION,
        )
        provisioned_config = GaugeMetricFamily(
            "lamina_provisioned_concurrency",
            "A function's configured provisioned concurrency, all versions and aliases",
            labels=FUNCTION,
        )
        provisioned = GaugeMetricFamily(
            "aws_lambda_provisioned_concurrent_executions",
            "CloudWatch AWS/Lambda ProvisionedConcurrentExecutions, now",
            labels=FUNCTION,
        )
        provisioned_max = GaugeMetricFamily(
            "aws_lambda_provisioned_concurrent_executions_max",
            "Peak ProvisionedConcurrentExecutions over the last minute",
            labels=FUNCTION,
        )
        utilization = GaugeMetricFamily(
            "aws_lambda_provisioned_concurrency_utilization",
            "CloudWatch AWS/Lambda ProvisionedConcurrencyUtilization, now",
            labels=FUNCTION,
        )
        utilization_max = GaugeMetricFamily(
            "aws_lambda_provisioned_concurrency_utilization_max",
            "Peak ProvisionedConcurrencyUtilization over the last minute",
            labels=FUNCTION,
        )
        provisioned_invocations = CounterMetricFamily(
            "aws_lambda_provisioned_concurrency_invocations",
            "CloudWatch AWS/Lambda ProvisionedConcurrencyInvocations",
            labels=FUNCTION,
        )
        spillover = CounterMetricFamily(
            "aws_lambda_provisioned_concurrency_spillover_invocations",
            "CloudWatch AWS/Lambda ProvisionedConcurrencySpilloverInvocations",
            labels=FUNCTION,
        )
        received = CounterMetricFamily(
            "aws_lambda_async_events_received",
            "CloudWatch AWS/Lambda AsyncEventsReceived",
            labels=RESOURCE,
        )
        dropped = CounterMetricFamily(
            "aws_lambda_async_events_dropped",
            "CloudWatch AWS/Lambda AsyncEventsDropped",
            labels=RESOURCE,
        )
        age = SummaryMetricFamily(
            "aws_lambda_async_event_age_milliseconds",
            "CloudWatch AWS/Lambda AsyncEventAge (ms)",
            labels=RESOURCE,
        )
        dead_letter = CounterMetricFamily(
            "aws_lambda_dead_letter_errors",
            "CloudWatch AWS/Lambda DeadLetterErrors",
            labels=RESOURCE,
        )
        destination = CounterMetricFamily(
            "aws_lambda_destination_delivery_failures",
            "CloudWatch AWS/Lambda DestinationDeliveryFailures",
            labels=RESOURCE,
        )
        iterator_age = GaugeMetricFamily(
            "aws_lambda_iterator_age_milliseconds",
            "CloudWatch AWS/Lambda IteratorAge of the last batch (ms)",
            labels=RESOURCE,
        )
        bounds = [str(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]
        for (account, region), scope in metrics.accounts.items():
            if self.account is not None and account != self.account:
                continue
            for (function, qualifier, version), target in scope.targets.items():
                labels = [account, region, function, _resource(function, qualifier), version]
                totals = target.totals
                invocations.add_metric(labels, totals.invocations)
                errors.add_metric(labels, totals.errors)
                cumulative, running = [], 0
                for bound, count in zip(bounds, totals.duration_buckets, strict=True):
                    running += count
                    cumulative.append((bound, running))
                duration.add_metric(labels, cumulative, totals.duration_sum)
                cold.add_metric(labels, totals.cold_starts)
                init.add_metric(labels, totals.cold_starts, totals.init_ms)
            for (function, qualifier, reason), count in scope.throttles.items():
                labels = [account, region, function, _resource(function, qualifier), reason]
                throttles.add_metric(labels, count)
            gauges = scope.gauges
            account_concurrent.add_metric([account, region], gauges.concurrent)
            account_concurrent_max.add_metric(
                [account, region], metrics.peak(account, region, "", PEAK_WINDOW)[0]
            )
            account_limit.add_metric([account, region], gauges.limit)
            unreserved.add_metric([account, region], gauges.unreserved_in_use)
            claimed.add_metric([account, region], gauges.claimed)
            for function, figures in gauges.functions.items():
                labels = [account, region, function]
                peak, provisioned_peak = metrics.peak(account, region, function, PEAK_WINDOW)
                concurrent.add_metric(labels, figures.concurrent)
                concurrent_max.add_metric(labels, max(peak, figures.concurrent))
                if figures.reserved is not None:
                    reserved.add_metric(labels, figures.reserved)
                if figures.provisioned:
                    provisioned_config.add_metric(labels, figures.provisioned)
                    provisioned.add_metric(labels, figures.provisioned_busy)
                    provisioned_max.add_metric(labels, provisioned_peak)
                    utilization.add_metric(labels, figures.provisioned_busy / figures.provisioned)
                    utilization_max.add_metric(labels, provisioned_peak / figures.provisioned)
                provisioned_invocations.add_metric(labels, figures.provisioned_invocations)
                spillover.add_metric(labels, figures.spillover_invocations)
            for (function, qualifier), events in scope.async_totals.items():
                labels = [account, region, function, _resource(function, qualifier)]
                received.add_metric(labels, events.received)
                dropped.add_metric(labels, events.dropped)
                age.add_metric(labels, events.age_count, events.age_sum_ms)
                dead_letter.add_metric(labels, events.dead_letter_errors)
                destination.add_metric(labels, events.destination_failures)
                iterator_age.add_metric(labels, events.iterator_age_ms)
        yield from (
            invocations,
            errors,
            duration,
            throttles,
            cold,
            init,
            concurrent,
            concurrent_max,
            account_concurrent,
            account_concurrent_max,
            account_limit,
            unreserved,
            claimed,
            reserved,
            provisioned_config,
            provisioned,
            provisioned_max,
            utilization,
            utilization_max,
            provisioned_invocations,
            spillover,
            received,
            dropped,
            age,
            dead_letter,
            destination,
            iterator_age,
        )


class PrometheusView:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MetricsCollector(metrics))

    def render(self, account: str | None = None) -> bytes:
        """Every account's series, or with `account` that account's only."""
        if account is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(self.metrics, account))
        return generate_latest(registry)

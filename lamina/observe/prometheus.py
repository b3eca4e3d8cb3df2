"""The Prometheus view of the metrics (`GET /metrics`) in Prometheus's text format.

Names are CloudWatch's, in Prometheus style under `aws_lambda_` (the convention of the
CloudWatch exporters): `Invocations` → `aws_lambda_invocations_total`, `Duration` →
the histogram `aws_lambda_duration_milliseconds`, `ConcurrentExecutions` →
`aws_lambda_concurrent_executions` (now) and `..._max` (the peak of the last minute).
Series carry the finest labels (account, region, function_name, resource,
executed_version); sum() them for coarser views. Lamina's own figures are `lamina_*`.
Collected at scrape time from the one store: nothing is counted twice. Counters add up
every node's stored totals (a cluster's, or this node's before a restart: observe/totals.py);
gauges are this node's. The text is
written here, each series' label set once (prometheus_client's generate_latest checks
and escapes every label name of every sample again: five times the cost at a hundred
functions); prometheus_client formats the numbers and its parser reads the result back
in the tests.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from lamina.observe.metrics import DURATION_BUCKETS, Account, Metrics
from lamina.observe.totals import merged as totals_of

CONTENT_TYPE = CONTENT_TYPE_LATEST
PEAK_WINDOW = 60.0  # seconds the `_max` gauges look back

SCOPE = ["account", "region"]
FUNCTION = [*SCOPE, "function_name"]
TARGET = [*FUNCTION, "resource", "executed_version"]
RESOURCE = [*FUNCTION, "resource"]


def _resource(function: str, qualifier: str) -> str:
    return f"{function}:{qualifier}" if qualifier else function


class Family:
    """One metric family's text: its HELP and TYPE lines, then a line per sample."""

    __slots__ = ("lines", "name")

    def __init__(self, name: str, kind: str, documentation: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"]

    def add(self, labels: str, value: float, suffix: str = "") -> None:
        self.lines.append(f"{self.name}{suffix}{{{labels}}} {floatToGoString(value)}\n")

    def add_count_sum(self, labels: str, count: float, total: float) -> None:
        self.add(labels, count, "_count")
        self.add(labels, total, "_sum")


def counter(name: str, documentation: str) -> Family:
    return Family(f"{name}_total", "counter", documentation)


def gauge(name: str, documentation: str) -> Family:
    return Family(name, "gauge", documentation)


def _quote(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def labels(names: list[str], values: list[str]) -> str:
    """A label set as the text format writes it between braces."""
    return ",".join(f'{name}="{_quote(value)}"' for name, value in zip(names, values, strict=True))


LE = [f',le="{float(bound)}"' for bound in DURATION_BUCKETS] + [',le="+Inf"']


class MetricsText:
    def __init__(self, metrics: Metrics, account: str | None = None) -> None:
        self.metrics = metrics
        self.account = account  # only this account's series (None: every account's)

    def render(self) -> str:
        metrics = self.metrics
        invocations = counter("aws_lambda_invocations", "CloudWatch AWS/Lambda Invocations")
        errors = counter("aws_lambda_errors", "CloudWatch AWS/Lambda Errors")
        duration = Family(
            "aws_lambda_duration_milliseconds", "histogram", "CloudWatch AWS/Lambda Duration (ms)"
        )
        cold = counter("lamina_cold_starts", "Invocations that started an environment")
        init = Family(
            "lamina_init_duration_milliseconds", "summary", "Init duration of cold starts (ms)"
        )
        throttles = counter(
            "aws_lambda_throttles", "CloudWatch AWS/Lambda Throttles, by the Reason of the 429"
        )
        concurrent = gauge(
            "aws_lambda_concurrent_executions",
            "CloudWatch AWS/Lambda ConcurrentExecutions of a function, now",
        )
        concurrent_max = gauge(
            "aws_lambda_concurrent_executions_max",
            "Peak ConcurrentExecutions of a function over the last minute",
        )
        account_concurrent = gauge(
            "aws_lambda_account_concurrent_executions",
            "CloudWatch AWS/Lambda ConcurrentExecutions of the account and region, now",
        )
        account_concurrent_max = gauge(
            "aws_lambda_account_concurrent_executions_max",
            "Peak ConcurrentExecutions of the account and region over the last minute",
        )
        account_limit = gauge(
            "aws_lambda_account_concurrency_limit",
            "The account's concurrency limit (GetAccountSettings ConcurrentExecutions)",
        )
        unreserved = gauge(
            "aws_lambda_unreserved_concurrent_executions",
            "CloudWatch AWS/Lambda UnreservedConcurrentExecutions: in use by functions "
            "without a reservation",
        )
        claimed = gauge(
            "aws_lambda_claimed_account_concurrency",
            "CloudWatch AWS/Lambda ClaimedAccountConcurrency",
        )
        reserved = gauge(
            "lamina_reserved_concurrency", "A function's reserved concurrency (absent: none)"
        )
        provisioned_config = gauge(
            "lamina_provisioned_concurrency",
            "A function's configured provisioned concurrency, all versions and aliases",
        )
        provisioned = gauge(
            "aws_lambda_provisioned_concurrent_executions",
            "CloudWatch AWS/Lambda ProvisionedConcurrentExecutions, now",
        )
        provisioned_max = gauge(
            "aws_lambda_provisioned_concurrent_executions_max",
            "Peak ProvisionedConcurrentExecutions over the last minute",
        )
        utilization = gauge(
            "aws_lambda_provisioned_concurrency_utilization",
            "CloudWatch AWS/Lambda ProvisionedConcurrencyUtilization, now",
        )
        utilization_max = gauge(
            "aws_lambda_provisioned_concurrency_utilization_max",
            "Peak ProvisionedConcurrencyUtilization over the last minute",
        )
        provisioned_invocations = counter(
            "aws_lambda_provisioned_concurrency_invocations",
            "CloudWatch AWS/Lambda ProvisionedConcurrencyInvocations",
        )
        spillover = counter(
            "aws_lambda_provisioned_concurrency_spillover_invocations",
            "CloudWatch AWS/Lambda ProvisionedConcurrencySpilloverInvocations",
        )
        received = counter(
            "aws_lambda_async_events_received", "CloudWatch AWS/Lambda AsyncEventsReceived"
        )
        dropped = counter(
            "aws_lambda_async_events_dropped", "CloudWatch AWS/Lambda AsyncEventsDropped"
        )
        age = Family(
            "aws_lambda_async_event_age_milliseconds",
            "summary",
            "CloudWatch AWS/Lambda AsyncEventAge (ms)",
        )
        dead_letter = counter(
            "aws_lambda_dead_letter_errors", "CloudWatch AWS/Lambda DeadLetterErrors"
        )
        destination = counter(
            "aws_lambda_destination_delivery_failures",
            "CloudWatch AWS/Lambda DestinationDeliveryFailures",
        )
        iterator_age = gauge(
            "aws_lambda_iterator_age_milliseconds",
            "CloudWatch AWS/Lambda IteratorAge of the last batch (ms)",
        )
        empty = Account()
        for (account, region), summed in totals_of(metrics).items():
            if self.account is not None and account != self.account:
                continue
            scope = metrics.accounts.get((account, region), empty)
            for (function, qualifier, version), totals in summed.targets.items():
                names = labels(
                    TARGET, [account, region, function, _resource(function, qualifier), version]
                )
                invocations.add(names, totals.invocations)
                errors.add(names, totals.errors)
                running = 0
                for le, count in zip(LE, totals.duration_buckets, strict=True):
                    running += count
                    duration.add(names + le, running, "_bucket")
                duration.add_count_sum(names, running, totals.duration_sum)
                cold.add(names, totals.cold_starts)
                init.add_count_sum(names, totals.cold_starts, totals.init_ms)
            for (function, qualifier, reason), count in summed.throttles.items():
                names = labels(
                    [*RESOURCE, "reason"],
                    [account, region, function, _resource(function, qualifier), reason],
                )
                throttles.add(names, count)
            gauges = scope.gauges
            names = labels(SCOPE, [account, region])
            account_concurrent.add(names, gauges.concurrent)
            account_concurrent_max.add(names, metrics.peak(account, region, "", PEAK_WINDOW)[0])
            account_limit.add(names, gauges.limit)
            unreserved.add(names, gauges.unreserved_in_use)
            claimed.add(names, gauges.claimed)
            for function, figures in gauges.functions.items():
                names = labels(FUNCTION, [account, region, function])
                peak, provisioned_peak = metrics.peak(account, region, function, PEAK_WINDOW)
                concurrent.add(names, figures.concurrent)
                concurrent_max.add(names, max(peak, figures.concurrent))
                if figures.reserved is not None:
                    reserved.add(names, figures.reserved)
                if figures.provisioned:
                    provisioned_config.add(names, figures.provisioned)
                    provisioned.add(names, figures.provisioned_busy)
                    provisioned_max.add(names, provisioned_peak)
                    utilization.add(names, figures.provisioned_busy / figures.provisioned)
                    utilization_max.add(names, provisioned_peak / figures.provisioned)
                provisioned_invocations.add(names, figures.provisioned_invocations)
                spillover.add(names, figures.spillover_invocations)
            for (function, qualifier), events in summed.async_totals.items():
                names = labels(
                    RESOURCE, [account, region, function, _resource(function, qualifier)]
                )
                received.add(names, events.received)
                dropped.add(names, events.dropped)
                age.add_count_sum(names, events.age_count, events.age_sum_ms)
                dead_letter.add(names, events.dead_letter_errors)
                destination.add(names, events.destination_failures)
                iterator_age.add(names, events.iterator_age_ms)
        families = (
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
        return "".join(line for family in families for line in family.lines)


class PrometheusView:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def render(self, account: str | None = None) -> bytes:
        """Every account's series, or with `account` that account's only."""
        return MetricsText(self.metrics, account).render().encode()

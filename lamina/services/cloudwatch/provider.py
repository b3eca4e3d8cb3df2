"""CloudWatch's metric operations a user calls: GetMetricStatistics, GetMetricData,
ListMetrics and PutMetricData, over the one-minute store of observe/metrics.py.

Periods are whole minutes (the store's resolution), aligned to multiples of the period
since the epoch, as CloudWatch aligns them; only periods with data are answered.
Percentiles and metric math are refused with a clear message rather than answered wrong.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.observe.metrics import Metrics
from lamina.observe.series import RESOLUTION, Dimensions, MergedSeries, MinuteSeries

STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
MAX_DATAPOINTS = 1440  # GetMetricStatistics answers at most this many
LIST_PAGE = 500
MAX_DIMENSIONS = 30


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterValue", message, 400)


def _shown(value: float) -> str:
    """A double as CloudWatch writes it in its messages (Java's NaN, Infinity)."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _check_finite(data: list[dict[str, Any]]) -> None:
    """CloudWatch refuses NaN and infinite values, naming the first one."""
    for index, datum in enumerate(data, 1):
        where = f"MetricData.member.{index}"
        fields: list[tuple[str, Any]] = [("Value", datum.get("Value"))]
        for n, value in enumerate(datum.get("Values") or [], 1):
            fields.append((f"Values.member.{n}", value))
        for n, value in enumerate(datum.get("Counts") or [], 1):
            fields.append((f"Counts.member.{n}", value))
        for name, value in (datum.get("StatisticValues") or {}).items():
            fields.append((f"StatisticValues.{name}", value))
        for name, value in fields:
            if isinstance(value, float) and not math.isfinite(value):
                raise invalid(f"The value {_shown(value)} for parameter {where}.{name} is invalid.")


def combination(message: str) -> AwsError:
    return AwsError("InvalidParameterCombination", message, 400)


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    return float(value)


def _dimensions(items: list[dict[str, Any]] | None) -> Dimensions:
    items = items or []
    if len(items) > MAX_DIMENSIONS:
        raise invalid(
            f"The collection Dimensions must not have a size greater than {MAX_DIMENSIONS}."
        )
    pairs = {}
    for item in items:
        name, value = item.get("Name"), item.get("Value")
        if not name or value is None:
            raise invalid("Each dimension needs a Name and a Value.")
        if name in pairs:
            raise combination(f"No metric may have duplicate dimension names: {name}")
        pairs[name] = value
    return tuple(sorted(pairs.items()))


def _period(period: int) -> int:
    if period <= 0 or period % RESOLUTION:
        raise invalid(
            f"The parameter Period must be a multiple of {RESOLUTION}: Lamina keeps "
            "one-minute datapoints."
        )
    return period


def _statistic(name: str, stats: list[float]) -> float:
    count, total, low, high = stats
    if name == "SampleCount":
        return count
    if name == "Sum":
        return total
    if name == "Average":
        return total / count if count else 0.0
    if name == "Minimum":
        return low
    return high


def _window(params: dict[str, Any]) -> tuple[float, float]:
    start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
    if end <= start:
        raise invalid("The parameter StartTime must be less than the parameter EndTime.")
    return start, end


class CloudWatch:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _series(
        self, ctx: RequestContext, namespace: str, name: str, dims: Dimensions
    ) -> MinuteSeries | MergedSeries | None:
        return self.metrics.find(ctx.account, ctx.region, namespace, name, dims)

    async def GetMetricStatistics(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        statistics = params.get("Statistics") or []
        if params.get("ExtendedStatistics"):
            raise invalid("ExtendedStatistics (percentiles) are not supported by Lamina.")
        if not statistics:
            raise combination("Must specify either Statistics or ExtendedStatistics.")
        start, end = _window(params)
        period = _period(params["Period"])
        requested = math.ceil((end - start) / period)
        if requested > MAX_DATAPOINTS:
            raise combination(
                f"You have requested up to {requested:,} datapoints, which exceeds the limit "
                f"of {MAX_DATAPOINTS:,}. You may reduce the datapoints requested by increasing "
                "Period, or decreasing the time range."
            )
        name = params["MetricName"]
        series = self._series(ctx, params["Namespace"], name, _dimensions(params.get("Dimensions")))
        datapoints = []
        unit = params.get("Unit")
        if series is not None and (unit is None or unit == series.unit):
            for slot, stats in series.periods(start, end, period):
                point: dict[str, Any] = {
                    "Timestamp": dt.datetime.fromtimestamp(slot, dt.UTC),
                    "Unit": series.unit,
                }
                for statistic in statistics:
                    point[statistic] = _statistic(statistic, stats)
                datapoints.append(point)
        return {"Label": name, "Datapoints": datapoints}

    async def GetMetricData(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        start, end = _window(params)
        descending = params.get("ScanBy", "TimestampDescending") == "TimestampDescending"
        limit = params.get("MaxDatapoints") or 100_800
        queries = params["MetricDataQueries"]
        ids = [query["Id"] for query in queries]
        if len(set(ids)) != len(ids):
            raise invalid("The values for parameter Id in MetricDataQueries are not unique.")
        results = []
        remaining = limit
        for query in queries:
            if query.get("Expression"):
                raise invalid(
                    f"Metric math (the Expression of query {query['Id']}) is not supported by "
                    "Lamina; ask for MetricStat queries."
                )
            stat = query.get("MetricStat")
            if stat is None:
                raise invalid(f"The query {query['Id']} must have a MetricStat or an Expression.")
            statistic = stat["Stat"]
            if statistic not in STATISTICS:
                raise invalid(
                    f"The statistic {statistic} is not supported by Lamina: use one of "
                    f"{', '.join(STATISTICS)}."
                )
            period = _period(stat["Period"])
            metric = stat["Metric"]
            series = self._series(
                ctx,
                metric.get("Namespace", ""),
                metric.get("MetricName", ""),
                _dimensions(metric.get("Dimensions")),
            )
            points: list[tuple[int, float]] = []
            unit = stat.get("Unit")
            if series is not None and (unit is None or unit == series.unit):
                points = [
                    (slot, _statistic(statistic, stats))
                    for slot, stats in series.periods(start, end, period)
                ]
            if descending:
                points.reverse()
            status = "Complete"
            if len(points) > remaining:
                points, status = points[:remaining], "PartialData"
            remaining -= len(points)
            if query.get("ReturnData", True):
                results.append(
                    {
                        "Id": query["Id"],
                        "Label": query.get("Label") or metric.get("MetricName", ""),
                        "Timestamps": [dt.datetime.fromtimestamp(t, dt.UTC) for t, _ in points],
                        "Values": [value for _, value in points],
                        "StatusCode": status,
                    }
                )
        return {"MetricDataResults": results, "Messages": []}

    async def ListMetrics(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        namespace = params.get("Namespace")
        name = params.get("MetricName")
        filters = params.get("Dimensions") or []
        recent = params.get("RecentlyActive") == "PT3H"
        horizon = self.metrics.wall() - 3 * 3600
        found = []
        for series_namespace, series_name, dims in self.metrics.listing(ctx.account, ctx.region):
            if namespace and series_namespace != namespace:
                continue
            if name and series_name != name:
                continue
            present = dict(dims)
            if any(
                f["Name"] not in present or ("Value" in f and present[f["Name"]] != f["Value"])
                for f in filters
            ):
                continue
            if recent:
                series = self._series(ctx, series_namespace, series_name, dims)
                if series is None or series.last_minute() < horizon - RESOLUTION:
                    continue
            found.append(
                {
                    "Namespace": series_namespace,
                    "MetricName": series_name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims],
                }
            )
        token = params.get("NextToken")
        offset = int(token) if token and token.isdigit() else 0
        page = found[offset : offset + LIST_PAGE]
        result: dict[str, Any] = {"Metrics": page}
        if offset + LIST_PAGE < len(found):
            result["NextToken"] = str(offset + LIST_PAGE)
        return result

    async def PutMetricData(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        namespace = params["Namespace"]
        if namespace.startswith("AWS/"):
            raise invalid(f"The value {namespace} for parameter Namespace is invalid.")
        now = self.metrics.wall()
        data = params.get("MetricData") or []
        _check_finite(data)  # before anything is recorded: all or nothing
        for datum in data:
            name = datum["MetricName"]
            dims = _dimensions(datum.get("Dimensions"))
            when = _epoch(datum["Timestamp"]) if datum.get("Timestamp") else now
            unit = datum.get("Unit")
            key = (namespace, name, dims)
            points: list[tuple[float, float, float, float]] = []
            if "StatisticValues" in datum:
                stats = datum["StatisticValues"]
                points.append(
                    (stats["SampleCount"], stats["Sum"], stats["Minimum"], stats["Maximum"])
                )
            elif datum.get("Values"):
                counts = datum.get("Counts") or [1.0] * len(datum["Values"])
                if len(counts) != len(datum["Values"]):
                    raise invalid("The parameters Values and Counts must be of the same size.")
                for value, count in zip(datum["Values"], counts, strict=True):
                    points.append((count, value * count, value, value))
            elif "Value" in datum:
                value = datum["Value"]
                points.append((1, value, value, value))
            else:
                raise combination("Each MetricData entry needs a Value, Values or StatisticValues.")
            for point in points:
                self.metrics.put_stats(ctx.account, ctx.region, key, unit, when, point)
        return {}

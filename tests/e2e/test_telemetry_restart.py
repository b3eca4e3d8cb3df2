"""Metrics and traces live in the store: after a `kill -9` of the server and a restart on
the same data directory, GetMetricStatistics, ListMetrics, /metrics and X-Ray answer what
was recorded before (the keepers flush every half second: at most that is lost)."""

from __future__ import annotations

import datetime as dt
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import Server, python_function

ARGS = ["--isolation", "none"]


def invocations(server: Server, function: str) -> float:
    now = dt.datetime.now(dt.UTC)
    points = server.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Invocations",
        Dimensions=[{"Name": "FunctionName", "Value": function}],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=1),
        Period=600,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(point["Sum"] for point in points)


def traces(server: Server) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    found: list[dict[str, Any]] = server.client("xray").get_trace_summaries(
        StartTime=now - dt.timedelta(minutes=10), EndTime=now + dt.timedelta(minutes=1)
    )["TraceSummaries"]
    return found


def scrape(server: Server) -> str:
    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def test_metrics_and_traces_survive_kill_9(tmp_path: Path) -> None:
    first = Server(tmp_path / "data", args=ARGS).start()
    try:
        lam = first.client()
        python_function(
            lam, "kept", "def handler(e, c):\n    return e\n", TracingConfig={"Mode": "Active"}
        )
        for _ in range(3):
            lam.invoke(FunctionName="kept", Payload=b"{}")
        first.client("cloudwatch").put_metric_data(
            Namespace="Mine", MetricData=[{"MetricName": "Orders", "Value": 5.0}]
        )
        assert invocations(first, "kept") == 3
        ids = {summary["Id"] for summary in traces(first)}
        assert len(ids) == 3
        time.sleep(1.2)  # two flushes
    finally:
        first.kill()
    second = Server(tmp_path / "data", args=ARGS).start()
    try:
        assert invocations(second, "kept") == 3
        assert {summary["Id"] for summary in traces(second)} == ids
        got = second.client("xray").batch_get_traces(TraceIds=sorted(ids))
        assert {trace["Id"] for trace in got["Traces"]} == ids
        listed = second.client("cloudwatch").list_metrics(Namespace="Mine")["Metrics"]
        assert [metric["MetricName"] for metric in listed] == ["Orders"]
        assert 'aws_lambda_invocations_total{account="000000000000"' in scrape(second)
        # Recorded after the restart: added to what was before.
        second.client().invoke(FunctionName="kept", Payload=b"{}")
        assert invocations(second, "kept") == 4
    finally:
        second.stop()

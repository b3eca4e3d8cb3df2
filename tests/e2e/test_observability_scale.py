"""The metrics endpoints answer in under 50 ms with 100 functions deployed and invoked:
Prometheus /metrics, the console's /_lamina/live, and CloudWatch's GetMetricStatistics,
GetMetricData and ListMetrics through boto3. Prints the figures (pytest -s)."""

from __future__ import annotations

import datetime as dt
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.helpers import Server, python_function

# Its figures are the machine's: measured alone, after the suite's parallel part.
pytestmark = pytest.mark.alone

FUNCTIONS = 100
ROUNDS = 20
LIMIT_MS = 50.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("scale") / "data", args=["--keep-alive", "2"]).start()
    lam = running.client()

    def deploy(index: int) -> None:
        name = f"scale-{index:03d}"
        python_function(lam, name, "def handler(e, c):\n    return e\n")
        lam.invoke(FunctionName=name, Payload=b"{}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(deploy, range(FUNCTIONS)))
    time.sleep(1.2)  # one gauge sample over all of them
    yield running
    running.stop()


def timed(call: Callable[[], Any]) -> list[float]:
    call()  # warm: connections, caches
    spent = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def report(name: str, spent: list[float]) -> None:
    print(
        f"\n{name}: median {statistics.median(spent):.1f} ms, max {max(spent):.1f} ms "
        f"({FUNCTIONS} functions, {ROUNDS} requests)"
    )
    assert statistics.median(spent) < LIMIT_MS, (name, spent)


def fetch(url: str) -> Callable[[], bytes]:
    def call() -> bytes:
        with urllib.request.urlopen(url, timeout=10) as answer:
            body: bytes = answer.read()
            return body

    return call


def test_prometheus_endpoint(server: Server) -> None:
    text = fetch(server.endpoint + "/metrics")().decode()
    assert text.count("aws_lambda_invocations_total{") == FUNCTIONS
    report("/metrics", timed(fetch(server.endpoint + "/metrics")))


def test_live_view_endpoint(server: Server) -> None:
    report("/_lamina/live", timed(fetch(server.endpoint + "/_lamina/live?function=scale-042")))


def test_cloudwatch_api(server: Server) -> None:
    cloudwatch = server.client("cloudwatch")
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=1438), now + dt.timedelta(minutes=1)

    def statistics_call() -> None:
        answer = cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            StartTime=start,
            EndTime=end,
            Period=60,
            Statistics=["Sum", "SampleCount", "Maximum"],
        )
        assert sum(p["Sum"] for p in answer["Datapoints"]) == FUNCTIONS

    def data_call() -> None:
        answer = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": f"q{index}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/Lambda",
                            "MetricName": "Duration",
                            "Dimensions": [{"Name": "FunctionName", "Value": f"scale-{index:03d}"}],
                        },
                        "Period": 300,
                        "Stat": "Average",
                    },
                }
                for index in range(0, FUNCTIONS, 10)
            ],
            StartTime=start,
            EndTime=end,
        )
        assert len(answer["MetricDataResults"]) == FUNCTIONS // 10

    def list_call() -> None:
        assert cloudwatch.list_metrics(Namespace="AWS/Lambda")["Metrics"]

    report("GetMetricStatistics (24 h, 1-minute periods)", timed(statistics_call))
    report("GetMetricData (10 queries)", timed(data_call))
    report("ListMetrics", timed(list_call))

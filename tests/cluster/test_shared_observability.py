"""Two `lamina serve --database` nodes on one PostgreSQL of the suite's own: metrics and
traces recorded through node A are answered by node B (GetMetricStatistics, ListMetrics,
/metrics, GetTraceSummaries, BatchGetTraces), added to B's own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.cluster.test_shared_store import node
from tests.e2e.test_telemetry_restart import invocations, scrape, traces
from tests.helpers import Server, python_function

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    url = fresh_database(postgres)
    root: Path = tmp_path_factory.mktemp("observed")
    a = node(root, "a", url)
    b = node(root, "b", url, first=a)
    yield a, b
    for server in (a, b):
        server.stop()


def eventually(read: Callable[[], T], done: Callable[[T], bool], seconds: float = 5.0) -> T:
    deadline = time.monotonic() + seconds
    found = read()
    while not done(found) and time.monotonic() < deadline:
        time.sleep(0.1)
        found = read()
    return found


def test_metrics_and_traces_of_one_node_are_answered_by_the_other(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    python_function(
        a.client(), "seen", "def handler(e, c):\n    return e\n", TracingConfig={"Mode": "Active"}
    )
    for _ in range(2):
        a.client().invoke(FunctionName="seen", Payload=b"{}")
    started = time.monotonic()
    assert eventually(lambda: invocations(b, "seen"), lambda n: n == 2) == 2
    print(f"\nA's invocations answered by B after {time.monotonic() - started:.2f} s")
    ids = {s["Id"] for s in eventually(lambda: traces(b), lambda found: len(found) == 2)}
    assert len(ids) == 2
    got = b.client("xray").batch_get_traces(TraceIds=sorted(ids))
    assert {trace["Id"] for trace in got["Traces"]} == ids
    listed = b.client("cloudwatch").list_metrics(
        Namespace="AWS/Lambda",
        MetricName="Invocations",
        Dimensions=[{"Name": "FunctionName", "Value": "seen"}],
    )["Metrics"]
    assert len(listed) == 1
    # B's own invocation adds to A's, on both nodes.
    b.client().invoke(FunctionName="seen", Payload=b"{}")
    assert invocations(b, "seen") == 3
    assert eventually(lambda: invocations(a, "seen"), lambda n: n == 3) == 3
    line = next(
        line
        for line in scrape(b).splitlines()
        if line.startswith("aws_lambda_invocations_total{") and 'function_name="seen"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == 3.0

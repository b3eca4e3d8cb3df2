"""Two `lamina serve --database` nodes on one PostgreSQL of the suite's own share what
they record and write:
- metrics and traces recorded through node A are answered by node B (GetMetricStatistics,
  ListMetrics, /metrics, GetTraceSummaries, BatchGetTraces), added to B's own;
- a table with a stream on, written through both nodes, makes one stream: the database
  numbers its records, unique and in the order of the writes, read alike through either;
- code no function of either node uses any more leaves the database once its grace has
  passed (60 platform seconds: 3 s at the nodes' time scale), and code another node's
  function still uses stays.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest

from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.cluster.test_shared_store import node
from tests.e2e.test_telemetry_restart import invocations, scrape, traces
from tests.helpers import Server, make_zip, python_function

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server, str]]:
    url = fresh_database(postgres)
    root = tmp_path_factory.mktemp("two")
    a = node(root, "a", url)
    b = node(root, "b", url, first=a)
    yield a, b, url
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
    cluster: tuple[Server, Server, str],
) -> None:
    a, b, _ = cluster
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


def stream_records(server: Server, arn: str) -> list[dict[str, Any]]:
    streams = server.client("dynamodbstreams")
    found: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        found += streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return found


def test_writes_through_both_nodes_make_one_stream(cluster: tuple[Server, Server, str]) -> None:
    a, b, _ = cluster
    a.client("dynamodb").create_table(
        TableName="both",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )
    arn = a.client("dynamodb").describe_table(TableName="both")["Table"]["LatestStreamArn"]
    for i in range(20):  # by turns: A, B, A, ...
        (a, b)[i % 2].client("dynamodb").put_item(
            TableName="both", Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}}
        )
    for reader in (a, b):
        records = stream_records(reader, arn)
        written = [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in records]
        sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        assert written == list(range(20))
        assert sequences == sorted(set(sequences))  # unique, in the order written


def blobs(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT digest FROM code_blobs")}


def test_unused_code_leaves_the_database(cluster: tuple[Server, Server, str]) -> None:
    a, b, url = cluster
    first = "def handler(e, c):\n    return 1\n"
    second = "def handler(e, c):\n    return 2\n"
    old = hashlib.sha256(make_zip({"app.py": first})).hexdigest()
    new = hashlib.sha256(make_zip({"app.py": second})).hexdigest()
    python_function(a.client(), "mine", first)
    python_function(b.client(), "twin", first)  # the same code, through the other node
    assert old in blobs(url)
    a.client().update_function_code(FunctionName="mine", ZipFile=make_zip({"app.py": second}))
    time.sleep(4.5)  # past the grace: the code stays, "twin" on B uses it
    assert {old, new} <= blobs(url)
    b.client().delete_function(FunctionName="twin")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and old in blobs(url):
        time.sleep(0.2)
    assert old not in blobs(url)
    assert new in blobs(url)
    assert b.client().invoke(FunctionName="mine")["Payload"].read() == b"2"

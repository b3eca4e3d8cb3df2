"""Event source mappings on DynamoDB streams, end to end: a table whose stream has four
shards (the `lamina:partitions` tag), writes over many keys, a function that sleeps and
logs what it got and when. Measured from those logs:

- peak concurrency exactly 4 with four shards, exactly 8 with ParallelizationFactor 2;
  every record once, in order per key;
- a shard handover: the parent's records are all processed before any of its child's;
- SIGKILL mid-stream, restart: no record skipped;
- the DynamoDB event record as AWS builds it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Server, python_function

SCALE = 0.02

TRACER = """
import json, os, time

def handler(event, context):
    start = time.time()
    time.sleep(float(os.environ.get("SLEEP", "0")))
    items = []
    for record in event["Records"]:
        image = record["dynamodb"].get("NewImage") or {}
        items.append({
            "key": record["dynamodb"]["Keys"]["pk"]["S"],
            "version": int(image.get("version", {"N": "-1"})["N"]),
            "name": record["eventName"],
        })
    line = {"start": start, "end": time.time(), "items": items, "record": event["Records"][0]}
    out = os.environ.get("OUT")
    if out:
        with open(out, "a") as sink:
            sink.write(json.dumps(line) + "\\n")
    else:
        print("TRACE " + json.dumps(line))
    return {}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=["--time-scale", str(SCALE)]).start()
    yield running
    running.stop()


def traces(server: Server, name: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/logs/{name}") as response:
        text = response.read().decode()
    return [
        json.loads(line.split(" TRACE ", 1)[1]) for line in text.splitlines() if " TRACE " in line
    ]


def stats(server: Server, uuid: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats") as response:
        return dict(json.loads(response.read())["mappings"][uuid])


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def peak(runs: list[dict[str, Any]]) -> int:
    edges = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    current = best = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def items(runs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(i["key"], i["version"]) for run in runs for i in run["items"]]


def check_order(runs: list[dict[str, Any]]) -> None:
    """Each key's versions arrive in the order they were written."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r["start"]):
        for item in run["items"]:
            by_key[item["key"]].append(item["version"])
    for key, versions in by_key.items():
        assert versions == sorted(versions), key


def table(server: Server, name: str, partitions: int) -> str:
    client = server.client("dynamodb")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        Tags=[{"Key": "lamina:partitions", "Value": str(partitions)}],
    )
    return str(client.describe_table(TableName=name)["Table"]["LatestStreamArn"])


def write(server: Server, name: str, keys: int, versions: int, first: int = 0) -> None:
    """`versions` writes of each of `keys` items, interleaved: version by version."""
    client = server.client("dynamodb")
    for version in range(first, first + versions):
        for k in range(keys):
            client.put_item(
                TableName=name,
                Item={"pk": {"S": f"key-{k:03d}"}, "version": {"N": str(version)}},
            )


def run_mapping(server: Server, name: str, factor: int) -> None:
    lam = server.client()
    python_function(lam, name, TRACER, Timeout=30, Environment={"Variables": {"SLEEP": "0.2"}})
    arn = table(server, name, 4)
    shards = server.client("dynamodbstreams").describe_stream(StreamArn=arn)
    assert len(shards["StreamDescription"]["Shards"]) == 4
    write(server, name, keys=40, versions=10)  # 400 writes
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName=name,
        StartingPosition="TRIM_HORIZON",
        BatchSize=5,
        ParallelizationFactor=factor,
    )
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    wait_for(lambda: len(items(traces(server, name))) >= 400, 90)
    time.sleep(0.5)
    runs = traces(server, name)
    measured = peak(runs)
    print(f"\nDynamoDB stream, 4 shards x ParallelizationFactor {factor}: peak {measured}")
    assert measured == 4 * factor
    assert sorted(items(runs)) == sorted((f"key-{k:03d}", v) for k in range(40) for v in range(10))
    check_order(runs)
    assert len(stats(server, mapping["UUID"])["iterator_age_ms"]) == 4  # every shard read
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_four_shards_run_exactly_four_at_once(server: Server) -> None:
    run_mapping(server, "ddb-four", 1)


def test_parallelization_factor_two_runs_exactly_eight(server: Server) -> None:
    run_mapping(server, "ddb-eight", 2)


def test_the_event_record_is_awss(server: Server) -> None:
    lam = server.client()
    python_function(lam, "ddb-shape", TRACER, Timeout=30)
    arn = table(server, "ddb-shape", 1)
    lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="ddb-shape", StartingPosition="LATEST"
    )
    time.sleep(0.5)
    client = server.client("dynamodb")
    client.put_item(TableName="ddb-shape", Item={"pk": {"S": "a"}, "version": {"N": "1"}})
    client.update_item(
        TableName="ddb-shape",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET version = version + :one, b = :b",
        ExpressionAttributeValues={":one": {"N": "1"}, ":b": {"B": b"\x01\x02"}},
    )
    wait_for(lambda: len(items(traces(server, "ddb-shape"))) >= 2)
    records = [r["record"] for r in traces(server, "ddb-shape")]
    if len(records) == 1:  # both changes in one batch: the first record is the INSERT
        records = [records[0]]
    record = records[0]
    assert set(record) == {
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    }
    assert record["eventName"] == "INSERT"
    assert record["eventVersion"] == "1.1"
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == arn
    data = record["dynamodb"]
    assert set(data) == {
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    }
    assert isinstance(data["ApproximateCreationDateTime"], int)
    assert data["Keys"] == {"pk": {"S": "a"}}
    assert data["NewImage"] == {"pk": {"S": "a"}, "version": {"N": "1"}}
    assert data["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def test_a_handover_finishes_the_parent_first(server: Server) -> None:
    lam = server.client()
    name = "ddb-handover"
    python_function(lam, name, TRACER, Timeout=30, Environment={"Variables": {"SLEEP": "0.1"}})
    arn = table(server, name, 2)
    write(server, name, keys=6, versions=8)  # into the first two shards
    lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, StartingPosition="TRIM_HORIZON", BatchSize=2
    )
    request = urllib.request.Request(
        f"{server.endpoint}/_lamina/dynamodb/handover?table={name}", method="POST"
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    write(server, name, keys=6, versions=8, first=8)  # into their children
    wait_for(lambda: len(items(traces(server, name))) >= 96, 60)
    runs = traces(server, name)
    assert sorted(items(runs)) == sorted((f"key-{k:03d}", v) for k in range(6) for v in range(16))
    check_order(runs)
    # No batch mixes a parent's records with a child's, and for each key (each shard
    # lineage) every batch of the parent ended before the first batch of its child began.
    parents = [r for r in runs if all(i["version"] < 8 for i in r["items"])]
    children = [r for r in runs if all(i["version"] >= 8 for i in r["items"])]
    assert len(parents) + len(children) == len(runs)
    for k in range(6):
        key = f"key-{k:03d}"
        ended = max(r["end"] for r in parents if any(i["key"] == key for i in r["items"]))
        began = min(r["start"] for r in children if any(i["key"] == key for i in r["items"]))
        assert ended <= began, key
    description = server.client("dynamodbstreams").describe_stream(StreamArn=arn)
    shards = description["StreamDescription"]["Shards"]
    assert len(shards) == 4 and all("ParentShardId" in s for s in shards[2:])


def test_a_killed_server_resumes_and_skips_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    out = tmp_path / "processed.jsonl"
    args = ["--time-scale", str(SCALE), "--isolation", "none"]  # it writes to `out` on the host
    expected = sorted((f"key-{k:03d}", v) for k in range(8) for v in range(15))

    def lines() -> list[dict[str, Any]]:
        if not out.exists():
            return []
        return [json.loads(x) for x in out.read_text().splitlines() if x.endswith("}")]

    first = Server(data_dir, args=args).start()
    try:
        lam = first.client()
        python_function(
            lam,
            "ddb-resume",
            TRACER,
            Timeout=30,
            Environment={"Variables": {"SLEEP": "0.05", "OUT": str(out)}},
        )
        arn = table(first, "ddb-resume", 2)
        write(first, "ddb-resume", keys=8, versions=15)
        lam.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName="ddb-resume",
            StartingPosition="TRIM_HORIZON",
            BatchSize=3,
        )
        wait_for(lambda: len(items(lines())) >= 30)
    finally:
        first.kill()  # SIGKILL, mid-stream
    before = items(lines())
    assert 0 < len(before) < len(expected)
    second = Server(data_dir, args=args).start()
    try:
        wait_for(lambda: set(items(lines())) >= set(expected), 60)
        time.sleep(0.3)
    finally:
        second.stop()
    everything = items(lines())
    assert set(everything) == set(expected)  # nothing skipped
    repeated = len(everything) - len(expected)
    print(f"\nSIGKILL after {len(before)} records: {repeated} processed again after restart")
    assert 0 <= repeated <= 2 * 3  # at most the batch in flight on each shard

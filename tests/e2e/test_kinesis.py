"""Kinesis-compatible streams through boto3's own `kinesis` client (json 1.1)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server

ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def kinesis(server: Server) -> Any:
    return server.client("kinesis")


def error_of(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    return dict(info.value.response["Error"])


def expected_shard(partition_key: str, shards: list[dict[str, Any]]) -> str:
    """AWS's rule: the MD5 of the key, as a 128-bit number, falls in one hash key range."""
    value = int.from_bytes(hashlib.md5(partition_key.encode()).digest())
    for shard in shards:
        key_range = shard["HashKeyRange"]
        if int(key_range["StartingHashKey"]) <= value <= int(key_range["EndingHashKey"]):
            return str(shard["ShardId"])
    raise AssertionError("no shard holds the key")


def read_all(kinesis: Any, stream: str, shard: str, **start: Any) -> list[dict[str, Any]]:
    kind = start.pop("kind", "TRIM_HORIZON")
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType=kind, **start
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    for _ in range(20):
        page = kinesis.get_records(ShardIterator=iterator, Limit=3)
        records += page["Records"]
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            break
    return records


def test_stream_lifecycle(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="life", ShardCount=3)
    kinesis.get_waiter("stream_exists").wait(StreamName="life", WaiterConfig={"Delay": 0.1})
    description = kinesis.describe_stream(StreamName="life")["StreamDescription"]
    assert description["StreamStatus"] == "ACTIVE"
    assert description["StreamARN"] == f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/life"
    assert description["RetentionPeriodHours"] == 24
    assert description["HasMoreShards"] is False
    shards = description["Shards"]
    assert [s["ShardId"] for s in shards] == [f"shardId-{i:012d}" for i in range(3)]
    # The hash key space is split evenly and completely.
    assert shards[0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert shards[-1]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
    for left, right in itertools.pairwise(shards):
        assert int(left["HashKeyRange"]["EndingHashKey"]) + 1 == int(
            right["HashKeyRange"]["StartingHashKey"]
        )
    summary = kinesis.describe_stream_summary(StreamName="life")["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 3
    listed = kinesis.list_shards(StreamName="life", MaxResults=2)
    assert [s["ShardId"] for s in listed["Shards"]] == [s["ShardId"] for s in shards[:2]]
    rest = kinesis.list_shards(NextToken=listed["NextToken"])
    assert [s["ShardId"] for s in rest["Shards"]] == [shards[2]["ShardId"]]
    assert "life" in kinesis.list_streams()["StreamNames"]
    error = error_of(kinesis.create_stream, StreamName="life", ShardCount=1)
    assert error["Code"] == "ResourceInUseException"
    kinesis.increase_stream_retention_period(StreamName="life", RetentionPeriodHours=48)
    assert (
        kinesis.describe_stream_summary(StreamARN=description["StreamARN"])[
            "StreamDescriptionSummary"
        ]["RetentionPeriodHours"]
        == 48
    )
    kinesis.delete_stream(StreamName="life")
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException) as info:
        kinesis.describe_stream(StreamName="life")
    assert info.value.response["Error"]["Message"] == (
        f"Stream life under account {ACCOUNT} not found."
    )


def test_on_demand_streams_get_four_shards(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="ondemand", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    summary = kinesis.describe_stream_summary(StreamName="ondemand")["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}


def test_partition_keys_go_to_shards_by_md5(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="hashing", ShardCount=4)
    shards = kinesis.describe_stream(StreamName="hashing")["StreamDescription"]["Shards"]
    keys = [f"key-{i}" for i in range(40)]
    for key in keys[:10]:
        put = kinesis.put_record(StreamName="hashing", Data=key.encode(), PartitionKey=key)
        assert put["ShardId"] == expected_shard(key, shards)
    batch = kinesis.put_records(
        StreamName="hashing",
        Records=[{"Data": key.encode(), "PartitionKey": key} for key in keys[10:]],
    )
    assert batch["FailedRecordCount"] == 0
    for key, result in zip(keys[10:], batch["Records"], strict=True):
        assert result["ShardId"] == expected_shard(key, shards)
    # ExplicitHashKey overrides the key's hash.
    explicit = kinesis.put_record(
        StreamName="hashing", Data=b"x", PartitionKey="any", ExplicitHashKey=str(2**128 - 1)
    )
    assert explicit["ShardId"] == shards[-1]["ShardId"]
    # Every shard holds exactly its keys, in the order they were put.
    for shard in shards:
        records = read_all(kinesis, "hashing", shard["ShardId"])
        mine = [k for k in keys if expected_shard(k, shards) == shard["ShardId"]]
        got = [r["PartitionKey"] for r in records if r["PartitionKey"] != "any"]
        assert got == mine
        sequences = [int(r["SequenceNumber"]) for r in records]
        assert sequences == sorted(sequences)


def test_iterators(kinesis: Any) -> None:
    kinesis.create_stream(StreamName="iterators", ShardCount=1)
    shard = "shardId-000000000000"
    puts = [
        kinesis.put_record(StreamName="iterators", Data=f"r{i}".encode(), PartitionKey="k")
        for i in range(5)
    ]
    sequences = [p["SequenceNumber"] for p in puts]
    assert all(len(s) == 56 for s in sequences)

    def data(records: list[dict[str, Any]]) -> list[bytes]:
        return [r["Data"] for r in records]

    assert data(read_all(kinesis, "iterators", shard)) == [f"r{i}".encode() for i in range(5)]
    at = read_all(
        kinesis, "iterators", shard, kind="AT_SEQUENCE_NUMBER", StartingSequenceNumber=sequences[2]
    )
    assert data(at) == [b"r2", b"r3", b"r4"]
    after = read_all(
        kinesis,
        "iterators",
        shard,
        kind="AFTER_SEQUENCE_NUMBER",
        StartingSequenceNumber=sequences[2],
    )
    assert data(after) == [b"r3", b"r4"]
    latest = kinesis.get_shard_iterator(
        StreamName="iterators", ShardId=shard, ShardIteratorType="LATEST"
    )["ShardIterator"]
    assert kinesis.get_records(ShardIterator=latest)["Records"] == []
    kinesis.put_record(StreamName="iterators", Data=b"new", PartitionKey="k")
    assert data(kinesis.get_records(ShardIterator=latest)["Records"]) == [b"new"]
    time.sleep(0.05)
    cut = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    kinesis.put_record(StreamName="iterators", Data=b"after-cut", PartitionKey="k")
    stamped = read_all(kinesis, "iterators", shard, kind="AT_TIMESTAMP", Timestamp=cut)
    assert data(stamped) == [b"after-cut"]
    # MillisBehindLatest: 0 at the tip, more when a page stops short of it.
    iterator = kinesis.get_shard_iterator(
        StreamName="iterators", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    page = kinesis.get_records(ShardIterator=iterator, Limit=1)
    assert page["MillisBehindLatest"] > 0
    page = kinesis.get_records(ShardIterator=page["NextShardIterator"], Limit=100)
    assert page["MillisBehindLatest"] == 0
    # Errors as AWS words them.
    other = "shardId-000000000007"
    assert (
        error_of(
            kinesis.get_shard_iterator,
            StreamName="iterators",
            ShardId=other,
            ShardIteratorType="LATEST",
        )["Code"]
        == "ResourceNotFoundException"
    )
    assert (
        error_of(
            kinesis.get_shard_iterator,
            StreamName="iterators",
            ShardId=shard,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
        )["Code"]
        == "InvalidArgumentException"
    )
    assert error_of(kinesis.get_records, ShardIterator="not-an-iterator")["Code"] == (
        "InvalidArgumentException"
    )
    assert (
        error_of(kinesis.put_record, StreamName="nope", Data=b"x", PartitionKey="k")["Code"]
        == "ResourceNotFoundException"
    )


def test_iterators_expire(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", args=["--time-scale", "0.002"]).start()  # 5 min = 0.6 s
    try:
        kinesis = server.client("kinesis")
        kinesis.create_stream(StreamName="expiring", ShardCount=1)
        iterator = kinesis.get_shard_iterator(
            StreamName="expiring", ShardId="shardId-000000000000", ShardIteratorType="LATEST"
        )["ShardIterator"]
        time.sleep(0.8)
        with pytest.raises(kinesis.exceptions.ExpiredIteratorException) as info:
            kinesis.get_records(ShardIterator=iterator)
        assert "tolerated delay of 600 milliseconds" in info.value.response["Error"]["Message"]
    finally:
        server.stop()


def test_records_survive_a_kill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Server(data_dir).start()
    try:
        kinesis = first.client("kinesis")
        kinesis.create_stream(StreamName="durable", ShardCount=2)
        put = kinesis.put_records(
            StreamName="durable",
            Records=[{"Data": f"d{i}".encode(), "PartitionKey": f"p{i}"} for i in range(20)],
        )
    finally:
        first.kill()
    second = Server(data_dir).start()
    try:
        kinesis = second.client("kinesis")
        found = {}
        for shard in ("shardId-000000000000", "shardId-000000000001"):
            for record in read_all(kinesis, "durable", shard):
                found[record["SequenceNumber"]] = record["Data"]
        records = put["Records"]
        assert found == {r["SequenceNumber"]: f"d{i}".encode() for i, r in enumerate(records)}
        # Sequence numbers keep growing in each shard after the restart.
        again = kinesis.put_record(StreamName="durable", Data=b"x", PartitionKey="p0")
        same_shard = [r for r in put["Records"] if r["ShardId"] == again["ShardId"]]
        assert int(again["SequenceNumber"]) > max(int(r["SequenceNumber"]) for r in same_shard)
    finally:
        second.stop()

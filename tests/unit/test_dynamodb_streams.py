"""DynamoDB Streams' state, with a clock the test moves: partitions follow AWS's rule and
the `lamina:partitions` tag, a throughput change hands shards over to children, records
are kept 24 hours, shard iterators last 15 minutes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.dynamodb.provider import DynamoDBProvider
from lamina.services.dynamodb.store import TableStore
from lamina.services.dynamodb.streams import partitions_for
from lamina.services.dynamodb.streams_api import StreamsProvider
from lamina.services.dynamodb.tables import Tables

CTX = RequestContext("000000000000", "us-east-1", "request", "")


class MovedClock(Clock):
    """Real time plus however far the test has moved it."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.ahead = 0.0

    def wall(self) -> float:
        return super().wall() + self.ahead


def run(call: Any) -> Any:
    return asyncio.run(call)


@pytest.mark.parametrize(
    ("record", "partitions"),
    [
        ({}, 1),
        ({"ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}}, 1),
        ({"ProvisionedThroughput": {"ReadCapacityUnits": 6000, "WriteCapacityUnits": 1}}, 3),
        ({"ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 3000}}, 4),
        ({"ProvisionedThroughput": {"ReadCapacityUnits": 3000, "WriteCapacityUnits": 1000}}, 2),
        ({"tags": {"lamina:partitions": "4"}}, 4),
        ({"tags": {"lamina:partitions": "0"}}, 1),
        ({"tags": {"lamina:partitions": "1000"}}, 64),
    ],
)
def test_partitions_follow_awss_rule_and_the_tag(record: dict[str, Any], partitions: int) -> None:
    assert partitions_for(record) == partitions


def setup(tmp_path: Path) -> tuple[MovedClock, Tables, DynamoDBProvider, StreamsProvider]:
    clock = MovedClock()
    tables = Tables(TableStore(tmp_path), clock)
    return clock, tables, DynamoDBProvider(tables, clock), StreamsProvider(tables, clock)


def create(provider: DynamoDBProvider, **extra: Any) -> str:
    run(
        provider.CreateTable(
            CTX,
            {
                "TableName": "table",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
                **extra,
            },
        )
    )
    described = run(provider.DescribeTable(CTX, {"TableName": "table"}))
    return str(described["Table"]["LatestStreamArn"])


def shards(streams: StreamsProvider, arn: str) -> list[dict[str, Any]]:
    answer = run(streams.DescribeStream(CTX, {"StreamArn": arn}))
    return list(answer["StreamDescription"]["Shards"])


def test_a_throughput_change_hands_shards_over(tmp_path: Path) -> None:
    _, _, provider, streams = setup(tmp_path)
    arn = create(
        provider, ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 900}
    )
    (only,) = shards(streams, arn)
    run(
        provider.UpdateTable(
            CTX,
            {
                "TableName": "table",
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 2500},
            },
        )
    )
    after = shards(streams, arn)
    assert len(after) == 4  # the closed parent and three children
    assert "EndingSequenceNumber" in after[0]["SequenceNumberRange"]
    assert [s.get("ParentShardId") for s in after[1:]] == [only["ShardId"]] * 3
    # The same partitions again: no handover.
    run(provider.UpdateTable(CTX, {"TableName": "table", "BillingMode": "PROVISIONED"}))
    assert len(shards(streams, arn)) == 4


def test_records_are_kept_24_hours_and_iterators_15_minutes(tmp_path: Path) -> None:
    clock, tables, provider, streams = setup(tmp_path)
    arn = create(provider, BillingMode="PAY_PER_REQUEST")
    for n in range(3):
        run(provider.PutItem(CTX, {"TableName": "table", "Item": {"pk": {"S": f"k{n}"}}}))
    shard = shards(streams, arn)[0]["ShardId"]

    def iterator() -> str:
        answer = run(
            streams.GetShardIterator(
                CTX, {"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}
            )
        )
        return str(answer["ShardIterator"])

    first = iterator()
    assert len(run(streams.GetRecords(CTX, {"ShardIterator": first}))["Records"]) == 3
    clock.ahead = 15 * 60 + 1
    with pytest.raises(AwsError) as expired:
        run(streams.GetRecords(CTX, {"ShardIterator": first}))
    assert expired.value.code == "ExpiredIteratorException"
    clock.ahead = 23 * 3600
    assert len(run(streams.GetRecords(CTX, {"ShardIterator": iterator()}))["Records"]) == 3
    clock.ahead = 24 * 3600 + 1
    assert run(streams.GetRecords(CTX, {"ShardIterator": iterator()}))["Records"] == []
    tables.trim()
    stream = tables.stream_by_arn(arn)
    assert stream is not None
    kept = tables.store.read(stream.id, 0, 0, 10)
    assert [r.n for r in kept] == [2]  # the newest stays, so positions keep counting


def test_a_restart_keeps_streams_positions_and_sequence_numbers(tmp_path: Path) -> None:
    _, tables, provider, streams = setup(tmp_path)
    arn = create(provider, BillingMode="PAY_PER_REQUEST")
    run(provider.PutItem(CTX, {"TableName": "table", "Item": {"pk": {"S": "a"}}}))
    tables.store.close()
    _, tables, provider, streams = setup(tmp_path)
    run(provider.PutItem(CTX, {"TableName": "table", "Item": {"pk": {"S": "b"}}}))
    shard = shards(streams, arn)[0]["ShardId"]
    answer = run(
        streams.GetShardIterator(
            CTX, {"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}
        )
    )
    records = run(streams.GetRecords(CTX, {"ShardIterator": answer["ShardIterator"]}))["Records"]
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in records]
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert keys == ["a", "b"]
    assert sequences[1] > sequences[0]

"""Two `lamina serve --database` nodes on one PostgreSQL of the suite's own write one table
with a stream on: the database numbers the stream's records, so writes through both
nodes make one stream, its sequence numbers unique and in the order of the writes, read
alike through either node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.cluster.test_shared_store import node
from tests.helpers import Server


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    url = fresh_database(postgres)
    root = tmp_path_factory.mktemp("tables")
    a = node(root, "a", url)
    b = node(root, "b", url, first=a)
    yield a, b
    for server in (a, b):
        server.stop()


def stream_records(server: Server, arn: str) -> list[dict[str, Any]]:
    streams = server.client("dynamodbstreams")
    found: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        found += streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return found


def test_writes_through_both_nodes_make_one_stream(cluster: tuple[Server, Server]) -> None:
    a, b = cluster
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

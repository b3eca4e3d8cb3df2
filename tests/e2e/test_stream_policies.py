"""A Kinesis stream's resource policy (PutResourcePolicy / GetResourcePolicy /
DeleteResourcePolicy) with `--auth on`: the only way another account reads or writes a
stream, and only the data operations it names; only the owner manages it. Event source
mappings stay within an account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("stream-policies") / "data",
        args=["--auth", "on", "--isolation", "none"],
    ).start()
    yield running
    running.stop()


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_another_account_reads_and_writes_what_the_policy_allows(server: Server) -> None:
    owner, owner_keys = server.new_account("stream-owner")
    other, other_keys = server.new_account("stream-reader")
    mine = server.client("kinesis", credentials=owner_keys)
    theirs = server.client("kinesis", credentials=other_keys)
    mine.create_stream(StreamName="shared-feed", ShardCount=2)
    arn = f"arn:aws:kinesis:us-east-1:{owner}:stream/shared-feed"
    me = f"arn:aws:iam::{other}:root"

    def denied(action: str) -> tuple[str, str]:
        return (
            "AccessDeniedException",
            f"User: {me} is not authorized to perform: kinesis:{action} on resource: {arn} "
            f"because no resource-based policy allows the kinesis:{action} action",
        )

    assert mine.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"
    assert error_of(theirs.put_record, StreamARN=arn, Data=b"x", PartitionKey="p") == denied(
        "PutRecord"
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "reader-writes-and-reads",
                "Effect": "Allow",
                "Principal": {"AWS": other},
                "Action": [
                    "kinesis:PutRecord",
                    "kinesis:ListShards",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                ],
                "Resource": arn,
            }
        ],
    }
    mine.put_resource_policy(ResourceARN=arn, Policy=json.dumps(policy))
    assert json.loads(mine.get_resource_policy(ResourceARN=arn)["Policy"]) == policy
    # Only the owner manages the policy.
    assert error_of(theirs.get_resource_policy, ResourceARN=arn) == denied("GetResourcePolicy")
    assert error_of(
        theirs.put_resource_policy, ResourceARN=arn, Policy=json.dumps(policy)
    ) == denied("PutResourcePolicy")

    put = theirs.put_record(StreamARN=arn, Data=b"from the reader", PartitionKey="p")
    shards = theirs.list_shards(StreamARN=arn, MaxResults=1)
    assert [s["ShardId"] for s in shards["Shards"]] == ["shardId-000000000000"]
    more = theirs.list_shards(NextToken=shards["NextToken"])  # the token names the ARN
    assert [s["ShardId"] for s in more["Shards"]] == ["shardId-000000000001"]
    iterator = theirs.get_shard_iterator(
        StreamARN=arn, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = theirs.get_records(ShardIterator=iterator, StreamARN=arn)["Records"]
    assert [r["Data"] for r in records] == [b"from the reader"]
    # What the policy does not name stays the owner's; a name alone is the caller's own.
    assert error_of(theirs.describe_stream_summary, StreamARN=arn) == denied(
        "DescribeStreamSummary"
    )
    assert error_of(theirs.delete_stream, StreamARN=arn) == denied("DeleteStream")
    assert (
        error_of(theirs.put_record, StreamName="shared-feed", Data=b"x", PartitionKey="p")[0]
        == "ResourceNotFoundException"
    )
    # An explicit Deny wins; then the policy is gone and so is the way in.
    policy["Statement"].append(
        {"Effect": "Deny", "Principal": "*", "Action": "kinesis:PutRecord", "Resource": arn}
    )
    mine.put_resource_policy(ResourceARN=arn, Policy=json.dumps(policy))
    assert error_of(theirs.put_record, StreamARN=arn, Data=b"x", PartitionKey="p") == denied(
        "PutRecord"
    )
    assert theirs.get_records(ShardIterator=iterator)["Records"]  # reading is still allowed
    mine.delete_resource_policy(ResourceARN=arn)
    assert error_of(theirs.get_records, ShardIterator=iterator)[0] == "ResourceNotFoundException"
    assert error_of(mine.delete_resource_policy, ResourceARN=arn)[0] == (
        "ResourceNotFoundException"
    )
    assert error_of(mine.put_resource_policy, ResourceARN=arn, Policy="{not json")[0] == (
        "InvalidArgumentException"
    )
    # The records the reader wrote are in the owner's stream.
    own_iterator = mine.get_shard_iterator(
        StreamName="shared-feed", ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert [r["Data"] for r in mine.get_records(ShardIterator=own_iterator)["Records"]] == [
        b"from the reader"
    ]


def test_mappings_never_cross_accounts(server: Server) -> None:
    """B maps neither A's queue or stream to its own function nor its own queue to A's
    function, and sees none of A's mappings. (Mappings of a queue or stream of another
    account that its policy opens, which AWS allows, are not built.)"""
    from tests.helpers import python_function

    owner, owner_keys = server.new_account("mapping-owner")
    other, other_keys = server.new_account("mapping-other")
    mine = server.client(credentials=owner_keys)
    theirs = server.client(credentials=other_keys)
    queue_url = server.client("sqs", credentials=owner_keys).create_queue(QueueName="a-queue")[
        "QueueUrl"
    ]
    queue_arn = f"arn:aws:sqs:us-east-1:{owner}:a-queue"
    kinesis = server.client("kinesis", credentials=owner_keys)
    kinesis.create_stream(StreamName="a-stream", ShardCount=1)
    stream_arn = f"arn:aws:kinesis:us-east-1:{owner}:stream/a-stream"
    a_function = python_function(mine, "a-fn", "def handler(e, c): return 1")["FunctionArn"]
    python_function(theirs, "b-fn", "def handler(e, c): return 1")
    mapping = mine.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName="a-fn")
    for source in (queue_arn, stream_arn):
        extra = {} if source == queue_arn else {"StartingPosition": "TRIM_HORIZON"}
        code, message = error_of(
            theirs.create_event_source_mapping, EventSourceArn=source, FunctionName="b-fn",
            **extra,
        )  # fmt: skip
        assert (code, message) == (
            "InvalidParameterValueException",
            f"The event source {source} is in another account or region than the function.",
        )
    b_queue = server.client("sqs", credentials=other_keys).create_queue(QueueName="b-queue")
    assert b_queue["QueueUrl"] != queue_url
    code, message = error_of(
        theirs.create_event_source_mapping,
        EventSourceArn=f"arn:aws:sqs:us-east-1:{other}:b-queue",
        FunctionName=a_function,
    )
    assert code == "AccessDeniedException"
    assert "lambda:CreateEventSourceMapping" in message
    assert theirs.list_event_source_mappings()["EventSourceMappings"] == []
    assert error_of(theirs.get_event_source_mapping, UUID=mapping["UUID"])[0] == (
        "ResourceNotFoundException"
    )
    assert error_of(theirs.delete_event_source_mapping, UUID=mapping["UUID"])[0] == (
        "ResourceNotFoundException"
    )
    assert mine.get_event_source_mapping(UUID=mapping["UUID"])["EventSourceArn"] == queue_arn

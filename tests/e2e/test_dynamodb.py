"""DynamoDB and DynamoDB Streams end to end: boto3's `dynamodb` resource and client
unmodified, the AWS CLI's `aws dynamodb put-item` and `aws dynamodbstreams get-records`,
and each stream view type's records compared field by field with AWS's documented shape."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from tests.e2e.test_aws_cli import AWS, cli_env
from tests.helpers import Server

KEYS = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
DEFINITIONS = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "N"},
]


def error_of(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    return dict(info.value.response["Error"]) | {"Response": info.value.response}


def resource(server: Server) -> Any:
    return boto3.resource(
        "dynamodb",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_boto3_resource_works_unmodified(server: Server) -> None:
    dynamodb = resource(server)
    table = dynamodb.create_table(
        TableName="people",
        KeySchema=KEYS,
        AttributeDefinitions=DEFINITIONS,
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    table.reload()
    assert table.table_status == "ACTIVE"
    table.put_item(Item={"pk": "ada", "sk": 1, "born": 1815, "tags": {"math"}, "m": {"x": [1]}})
    table.put_item(Item={"pk": "ada", "sk": 2, "note": "engine", "blob": b"\x00\xff"})
    table.put_item(Item={"pk": "bob", "sk": 1, "born": 1900})
    got = table.get_item(Key={"pk": "ada", "sk": 1})["Item"]
    assert got == {"pk": "ada", "sk": 1, "born": 1815, "tags": {"math"}, "m": {"x": [1]}}
    assert table.get_item(Key={"pk": "ada", "sk": 2})["Item"]["blob"].value == b"\x00\xff"
    updated = table.update_item(
        Key={"pk": "ada", "sk": 1},
        UpdateExpression="SET born = born + :one, m.x = list_append(m.x, :more) ADD tags :t",
        ExpressionAttributeValues={":one": 1, ":more": [2], ":t": {"poetry"}},
        ReturnValues="UPDATED_NEW",
    )["Attributes"]
    assert updated == {"born": Decimal(1816), "m": {"x": [1, 2]}, "tags": {"math", "poetry"}}
    found = table.query(KeyConditionExpression=Key("pk").eq("ada") & Key("sk").gte(1))
    assert [i["sk"] for i in found["Items"]] == [1, 2]
    found = table.query(KeyConditionExpression=Key("pk").eq("ada"), ScanIndexForward=False)
    assert [i["sk"] for i in found["Items"]] == [2, 1]
    page = table.query(KeyConditionExpression=Key("pk").eq("ada"), Limit=1)
    assert page["LastEvaluatedKey"] == {"pk": "ada", "sk": 1}
    rest = table.query(
        KeyConditionExpression=Key("pk").eq("ada"), ExclusiveStartKey=page["LastEvaluatedKey"]
    )
    assert [i["sk"] for i in rest["Items"]] == [2]
    scanned = table.scan(FilterExpression=Attr("born").between(1800, 1850))
    assert (scanned["Count"], scanned["ScannedCount"]) == (1, 3)
    projected = table.scan(ProjectionExpression="pk, note")["Items"]
    assert {"pk": "ada", "note": "engine"} in projected
    with table.batch_writer() as batch:
        for n in range(30):
            batch.put_item(Item={"pk": "many", "sk": n})
    assert table.query(KeyConditionExpression=Key("pk").eq("many"), Select="COUNT")["Count"] == 30
    answer = dynamodb.batch_get_item(
        RequestItems={"people": {"Keys": [{"pk": "bob", "sk": 1}, {"pk": "ada", "sk": 9}]}}
    )
    assert answer["Responses"]["people"] == [{"pk": "bob", "sk": 1, "born": 1900}]
    old = table.delete_item(Key={"pk": "bob", "sk": 1}, ReturnValues="ALL_OLD")["Attributes"]
    assert old["born"] == 1900
    assert "Item" not in table.get_item(Key={"pk": "bob", "sk": 1})
    table.delete()
    table.wait_until_not_exists()


def test_boto3_client_conditions_transactions_and_errors(server: Server) -> None:
    client = server.client("dynamodb")
    created = client.create_table(
        TableName="accounts",
        KeySchema=KEYS[:1],
        AttributeDefinitions=DEFINITIONS[:1],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )["TableDescription"]
    assert created["TableStatus"] == "CREATING"
    assert created["TableArn"] == "arn:aws:dynamodb:us-east-1:000000000000:table/accounts"
    assert "accounts" in client.list_tables()["TableNames"]
    client.put_item(TableName="accounts", Item={"pk": {"S": "a"}, "balance": {"N": "10"}})
    client.put_item(TableName="accounts", Item={"pk": {"S": "b"}, "balance": {"N": "0"}})
    error = error_of(
        client.put_item,
        TableName="accounts",
        Item={"pk": {"S": "a"}, "balance": {"N": "99"}},
        ConditionExpression="attribute_not_exists(pk)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    assert error["Code"] == "ConditionalCheckFailedException"
    assert error["Message"] == "The conditional request failed"
    assert error["Response"]["Item"] == {"pk": {"S": "a"}, "balance": {"N": "10"}}
    move = {
        "TableName": "accounts",
        "UpdateExpression": "SET balance = balance - :amount",
        "ConditionExpression": "balance >= :amount",
        "ExpressionAttributeValues": {":amount": {"N": "7"}},
    }
    client.transact_write_items(
        TransactItems=[
            {"Update": {**move, "Key": {"pk": {"S": "a"}}}},
            {
                "Update": {
                    "TableName": "accounts",
                    "Key": {"pk": {"S": "b"}},
                    "UpdateExpression": "ADD balance :amount",
                    "ExpressionAttributeValues": {":amount": {"N": "7"}},
                }
            },
        ]
    )
    error = error_of(
        client.transact_write_items,
        TransactItems=[
            {"Update": {**move, "Key": {"pk": {"S": "a"}}}},  # 3 left: fails
            {"Delete": {"TableName": "accounts", "Key": {"pk": {"S": "b"}}}},
        ],
    )
    assert error["Code"] == "TransactionCanceledException"
    assert error["Message"] == (
        "Transaction cancelled, please refer cancellation reasons for specific reasons "
        "[ConditionalCheckFailed, None]"
    )
    assert [r["Code"] for r in error["Response"]["CancellationReasons"]] == [
        "ConditionalCheckFailed",
        "None",
    ]
    balances = {i["pk"]["S"]: i["balance"]["N"] for i in client.scan(TableName="accounts")["Items"]}
    assert balances == {"a": "3", "b": "7"}  # the cancelled transaction changed nothing
    error = error_of(
        client.update_item,
        TableName="accounts",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET balance = = :x",
        ExpressionAttributeValues={":x": {"N": "1"}},
    )
    assert (error["Code"], error["Message"]) == (
        "ValidationException",
        'Invalid UpdateExpression: Syntax error; token: "=", near: "= = :x"',
    )
    error = error_of(client.get_item, TableName="missing", Key={"pk": {"S": "a"}})
    assert (error["Code"], error["Message"]) == (
        "ResourceNotFoundException",
        "Requested resource not found",
    )
    error = error_of(client.describe_table, TableName="missing")
    assert error["Message"] == "Requested resource not found: Table: missing not found"
    error = error_of(client.get_item, TableName="accounts", Key={"pk": {"N": "1"}})
    assert error["Message"] == (
        "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N"
    )
    error = error_of(
        client.put_item,
        TableName="accounts",
        Item={"pk": {"S": "big"}, "data": {"S": "x" * 410_000}},
    )
    assert error["Message"] == "Item size has exceeded the maximum allowed size"
    error = error_of(
        client.create_table,
        TableName="accounts",
        KeySchema=KEYS[:1],
        AttributeDefinitions=DEFINITIONS[:1],
        BillingMode="PAY_PER_REQUEST",
    )
    assert (error["Code"], error["Message"]) == (
        "ResourceInUseException",
        "Table already exists: accounts",
    )


def cli(server: Server, tmp_path: Path, *args: str) -> Any:
    result = subprocess.run(
        [str(AWS), "--endpoint-url", server.endpoint, *args, "--output", "json"],
        env=cli_env(tmp_path, "us-east-1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_aws_cli_put_item_and_get_records(server: Server, tmp_path: Path) -> None:
    cli(
        server,
        tmp_path,
        "dynamodb",
        "create-table",
        "--table-name",
        "cli-table",
        "--attribute-definitions",
        "AttributeName=id,AttributeType=S",
        "--key-schema",
        "AttributeName=id,KeyType=HASH",
        "--billing-mode",
        "PAY_PER_REQUEST",
        "--stream-specification",
        "StreamEnabled=true,StreamViewType=NEW_IMAGE",
    )
    item = {"id": {"S": "from-cli"}, "n": {"N": "42"}}
    cli(
        server,
        tmp_path,
        "dynamodb",
        "put-item",
        "--table-name",
        "cli-table",
        "--item",
        json.dumps(item),
    )
    got = cli(
        server,
        tmp_path,
        "dynamodb",
        "get-item",
        "--table-name",
        "cli-table",
        "--key",
        json.dumps({"id": {"S": "from-cli"}}),
    )
    assert got["Item"] == item
    streams = cli(server, tmp_path, "dynamodbstreams", "list-streams", "--table-name", "cli-table")
    arn = streams["Streams"][0]["StreamArn"]
    shards = cli(server, tmp_path, "dynamodbstreams", "describe-stream", "--stream-arn", arn)
    shard = shards["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = cli(
        server,
        tmp_path,
        "dynamodbstreams",
        "get-shard-iterator",
        "--stream-arn",
        arn,
        "--shard-id",
        shard,
        "--shard-iterator-type",
        "TRIM_HORIZON",
    )["ShardIterator"]
    records = cli(server, tmp_path, "dynamodbstreams", "get-records", "--shard-iterator", iterator)
    (record,) = records["Records"]
    assert record["eventName"] == "INSERT"
    assert record["dynamodb"]["NewImage"] == item
    assert record["dynamodb"]["StreamViewType"] == "NEW_IMAGE"
    assert "NextShardIterator" in records


# The four view types: AWS's record shape, field by field ------------------------------------
RECORD_FIELDS = {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb"}
IMAGES = {
    "KEYS_ONLY": (False, False),
    "NEW_IMAGE": (True, False),
    "OLD_IMAGE": (False, True),
    "NEW_AND_OLD_IMAGES": (True, True),
}


def read_all(server: Server, table: str) -> list[dict[str, Any]]:
    streams = server.client("dynamodbstreams")
    arn = streams.list_streams(TableName=table)["Streams"][0]["StreamArn"]
    out = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out.extend(streams.get_records(ShardIterator=iterator)["Records"])
    return sorted(out, key=lambda r: int(r["dynamodb"]["SequenceNumber"]))


@pytest.mark.parametrize("view", list(IMAGES))
def test_each_view_type_gives_awss_record_shape(server: Server, view: str) -> None:
    client = server.client("dynamodb")
    name = f"view-{view.lower().replace('_', '-')}"
    client.create_table(
        TableName=name,
        KeySchema=KEYS,
        AttributeDefinitions=DEFINITIONS,
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    key = {"pk": {"S": "k"}, "sk": {"N": "1"}}
    first = {**key, "a": {"S": "one"}, "gone": {"BOOL": True}}
    client.put_item(TableName=name, Item=first)
    client.put_item(TableName=name, Item=first)  # the same item: no record
    client.update_item(
        TableName=name,
        Key=key,
        UpdateExpression="SET a = :two, c = :n REMOVE gone",
        ExpressionAttributeValues={":two": {"S": "two"}, ":n": {"N": "3"}},
    )
    second = {**key, "a": {"S": "two"}, "c": {"N": "3"}}
    client.delete_item(TableName=name, Key=key)
    client.delete_item(TableName=name, Key=key)  # nothing there: no record
    records = read_all(server, name)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    new, old = IMAGES[view]
    expected_images = [(first, None), (second, first), (None, second)]
    sequences = []
    for record, (new_image, old_image) in zip(records, expected_images, strict=True):
        assert set(record) == RECORD_FIELDS
        assert record["eventVersion"] == "1.1"
        assert record["eventSource"] == "aws:dynamodb"
        assert record["awsRegion"] == "us-east-1"
        assert len(record["eventID"]) == 32
        data = record["dynamodb"]
        fields = {"ApproximateCreationDateTime", "Keys", "SequenceNumber", "SizeBytes"}
        fields.add("StreamViewType")
        if new and new_image is not None:
            fields.add("NewImage")
            assert data["NewImage"] == new_image
        if old and old_image is not None:
            fields.add("OldImage")
            assert data["OldImage"] == old_image
        assert set(data) == fields
        assert data["Keys"] == key
        assert data["StreamViewType"] == view
        assert isinstance(data["ApproximateCreationDateTime"], dt.datetime)
        assert data["SizeBytes"] > 0
        sequences.append(int(data["SequenceNumber"]))
    assert sequences == sorted(sequences) and len(set(sequences)) == 3


def test_streams_describe_iterators_and_handover(server: Server) -> None:
    client = server.client("dynamodb")
    streams = server.client("dynamodbstreams")
    client.create_table(
        TableName="handed",
        KeySchema=KEYS[:1],
        AttributeDefinitions=DEFINITIONS[:1],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
        Tags=[{"Key": "lamina:partitions", "Value": "2"}],
    )
    arn = client.describe_table(TableName="handed")["Table"]["LatestStreamArn"]
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert description["StreamStatus"] == "ENABLED"
    assert len(description["Shards"]) == 2
    for n in range(10):
        client.put_item(TableName="handed", Item={"pk": {"S": f"k{n}"}})
    import urllib.request

    request = urllib.request.Request(
        f"{server.endpoint}/_lamina/dynamodb/handover?table=handed", method="POST"
    )
    with urllib.request.urlopen(request) as response:
        assert len(json.loads(response.read())["OpenShards"]) == 2
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    assert len(shards) == 4
    parents, children = shards[:2], shards[2:]
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in parents)
    assert [c["ParentShardId"] for c in children] == [p["ShardId"] for p in parents]
    # A closed shard read to its end gives no next iterator.
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=parents[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    answer = streams.get_records(ShardIterator=iterator)
    assert "NextShardIterator" not in answer
    first = answer["Records"][0]["dynamodb"]["SequenceNumber"]
    after = streams.get_shard_iterator(
        StreamArn=arn,
        ShardId=parents[0]["ShardId"],
        ShardIteratorType="AFTER_SEQUENCE_NUMBER",
        SequenceNumber=first,
    )["ShardIterator"]
    assert len(streams.get_records(ShardIterator=after)["Records"]) == len(answer["Records"]) - 1
    error = error_of(streams.describe_stream, StreamArn=arn + "x")
    assert error["Code"] == "ResourceNotFoundException"
    client.update_table(TableName="handed", StreamSpecification={"StreamEnabled": False})
    assert streams.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == (
        "DISABLED"
    )

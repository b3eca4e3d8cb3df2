"""Event filtering (FilterCriteria) end to end: on each source, a mapping per operator
keeps exactly the records its pattern matches; the others never reach the function (SQS
messages are deleted, stream records are checkpointed past)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

SCALE = 0.02

# Prints one GOT line per record: the id of the JSON document the record carries.
RECORDER = """
import base64, json

def handler(event, context):
    for record in event["Records"]:
        if "dynamodb" in record:
            print("GOT " + json.dumps(int(record["dynamodb"]["Keys"]["pk"]["S"])))
            continue
        if "kinesis" in record:
            text = base64.b64decode(record["kinesis"]["data"]).decode()
        else:
            text = record["body"]
        try:
            ident = json.loads(text)["id"]
        except (ValueError, TypeError, KeyError):
            ident = text
        print("GOT " + json.dumps(ident))
    return {}
"""

DOCUMENTS: list[Any] = [
    {"id": 0, "kind": "order", "price": 100, "city": "Seattle"},
    {"id": 1, "kind": "order", "price": 150.5, "city": "seattle", "note": "x"},
    {"id": 2, "kind": "refund", "price": 0, "city": "Portland"},
    {"id": 3, "kind": "ORDER", "price": "100", "city": "Boston", "note": None},
    {"id": 4, "kind": "ordered", "price": -5},
    "plain text, not JSON",
]

# Operator → (pattern of the document, ids kept). Written from AWS's rules, by hand.
CASES: dict[str, tuple[dict[str, Any], list[int]]] = {
    "exact": ({"kind": ["order"]}, [0, 1]),
    "number": ({"price": [100]}, [0]),
    "prefix": ({"kind": [{"prefix": "ord"}]}, [0, 1, 4]),
    "suffix": ({"city": [{"suffix": "land"}]}, [2]),
    "ignorecase": ({"kind": [{"equals-ignore-case": "ORDER"}]}, [0, 1, 3]),
    "anythingbut": ({"kind": [{"anything-but": ["order", "refund"]}]}, [3, 4]),
    "numeric": ({"price": [{"numeric": [">", 0, "<=", 150.5]}]}, [0, 1]),
    "exists": ({"note": [{"exists": True}]}, [1, 3]),
    "absent": ({"note": [{"exists": False}]}, [0, 2, 4]),
    "or": ({"$or": [{"kind": ["refund"]}, {"price": [{"numeric": ["<", 0]}]}]}, [2, 4]),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=["--time-scale", str(SCALE)]).start()
    yield running
    running.stop()


def received(server: Server, name: str) -> list[Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/logs/{name}") as response:
        text = response.read().decode()
    return [json.loads(line.split(" GOT ", 1)[1]) for line in text.splitlines() if " GOT " in line]


def mapping_stats(server: Server, uuid: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats") as response:
        return dict(json.loads(response.read())["mappings"][uuid])


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def filters(pattern: dict[str, Any]) -> dict[str, Any]:
    return {"Filters": [{"Pattern": json.dumps(pattern)}]}


def encoded(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


def check_kept(server: Server, uuids: dict[str, str], prefix: str) -> None:
    """Every mapping saw all six records; each function got exactly its pattern's."""
    for name, uuid in uuids.items():
        expected = CASES[name][1]
        wait_for(lambda n=name, e=expected: sorted(received(server, f"{prefix}-{n}")) == e)
        dropped = len(DOCUMENTS) - len(expected)
        wait_for(lambda u=uuid, d=dropped: mapping_stats(server, u)["filtered"] == d)
        wait_for(lambda u=uuid, e=expected: mapping_stats(server, u)["records"] == len(e))
    time.sleep(0.5)  # nothing more arrives later
    for name in uuids:
        assert sorted(received(server, f"{prefix}-{name}")) == CASES[name][1], name


def test_sqs_filters_keep_exactly_the_matching_messages(lam: Any, server: Server) -> None:
    sqs = server.client("sqs")
    uuids: dict[str, str] = {}
    urls = []
    for name, (pattern, _) in CASES.items():
        python_function(lam, f"sqs-{name}", RECORDER)
        url = sqs.create_queue(QueueName=f"filtered-{name}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        mapping = lam.create_event_source_mapping(
            EventSourceArn=arn["Attributes"]["QueueArn"],
            FunctionName=f"sqs-{name}",
            BatchSize=10,
            FilterCriteria=filters({"body": pattern}),
        )
        assert json.loads(mapping["FilterCriteria"]["Filters"][0]["Pattern"]) == {"body": pattern}
        uuids[name] = mapping["UUID"]
        urls.append(url)
    for url in urls:
        for document in DOCUMENTS:
            sqs.send_message(QueueUrl=url, MessageBody=encoded(document))
    check_kept(server, uuids, "sqs")
    # Messages that matched no filter were deleted, not left to come back.
    for url in urls:
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert found["ApproximateNumberOfMessages"] == "0"
        assert found["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_sqs_filters_on_message_metadata(lam: Any, server: Server) -> None:
    sqs = server.client("sqs")
    python_function(lam, "sqs-meta", RECORDER)
    url = sqs.create_queue(QueueName="filtered-meta")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    pattern = {"messageAttributes": {"color": {"stringValue": ["red"]}}}
    lam.create_event_source_mapping(
        EventSourceArn=arn["Attributes"]["QueueArn"],
        FunctionName="sqs-meta",
        FilterCriteria=filters(pattern),
    )
    for ident, color in ((10, "red"), (11, "blue"), (12, "red")):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"id": ident}),
            MessageAttributes={"color": {"DataType": "String", "StringValue": color}},
        )
    wait_for(lambda: sorted(received(server, "sqs-meta")) == [10, 12])


def test_kinesis_filters_keep_exactly_the_matching_records(lam: Any, server: Server) -> None:
    kinesis = server.client("kinesis")
    kinesis.create_stream(StreamName="filtered", ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName="filtered")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    uuids: dict[str, str] = {}
    for name, (pattern, _) in CASES.items():
        python_function(lam, f"kin-{name}", RECORDER)
        mapping = lam.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName=f"kin-{name}",
            StartingPosition="TRIM_HORIZON",
            FilterCriteria=filters({"data": pattern}),
        )
        uuids[name] = mapping["UUID"]
    for index, document in enumerate(DOCUMENTS):
        kinesis.put_record(
            StreamName="filtered", Data=encoded(document).encode(), PartitionKey=f"k{index}"
        )
    check_kept(server, uuids, "kin")
    # The checkpoint moved past the filtered records: a restart would not re-read them.
    for uuid in uuids.values():
        assert mapping_stats(server, uuid)["batches"] >= 1


def test_filter_criteria_are_checked_and_can_be_changed(lam: Any, server: Server) -> None:
    sqs = server.client("sqs")
    python_function(lam, "sqs-check", RECORDER)
    url = sqs.create_queue(QueueName="filtered-check")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    for bad in ('{"body": "x"}', "not json", '{"body": [{"numeric": ["<", "x"]}]}', "[]"):
        with pytest.raises(ClientError) as info:
            lam.create_event_source_mapping(
                EventSourceArn=arn,
                FunctionName="sqs-check",
                FilterCriteria={"Filters": [{"Pattern": bad}]},
            )
        error = info.value.response["Error"]
        assert error["Code"] == "InvalidParameterValueException"
        assert error["Message"] == "Invalid filter pattern definition."
    with pytest.raises(ClientError) as info:
        lam.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName="sqs-check",
            FilterCriteria={"Filters": [{"Pattern": '{"body": ["a"]}'}] * 6},
        )
    assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="sqs-check",
        FilterCriteria=filters({"body": {"id": [20]}}),
        Enabled=False,
    )
    assert "FilterCriteria" in lam.get_event_source_mapping(UUID=mapping["UUID"])
    updated = lam.update_event_source_mapping(
        UUID=mapping["UUID"], FilterCriteria=filters({"body": {"id": [21]}})
    )
    assert json.loads(updated["FilterCriteria"]["Filters"][0]["Pattern"]) == {"body": {"id": [21]}}
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    for ident in (20, 21):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": ident}))
    wait_for(lambda: received(server, "sqs-check") == [21])
    cleared = lam.update_event_source_mapping(UUID=mapping["UUID"], FilterCriteria={"Filters": []})
    assert "FilterCriteria" not in cleared
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": 22}))
    wait_for(lambda: received(server, "sqs-check") == [21, 22])


# DynamoDB: patterns see the record, images in DynamoDB's JSON (numbers are strings there,
# so `numeric` applies to the record's own numbers, such as SizeBytes).
ITEMS: list[dict[str, Any]] = [
    {"kind": "order", "city": "Seattle", "pad": "x" * 400},
    {"kind": "order", "city": "seattle", "note": "x", "pad": "x" * 400},
    {"kind": "refund", "city": "Portland"},
    {"kind": "ORDER", "city": "Boston", "note": "y"},
    {"kind": "ordered"},
]
DYNAMODB_CASES: dict[str, tuple[dict[str, Any], list[int]]] = {
    "exact": ({"kind": {"S": ["order"]}}, [0, 1]),
    "prefix": ({"kind": {"S": [{"prefix": "ord"}]}}, [0, 1, 4]),
    "suffix": ({"city": {"S": [{"suffix": "land"}]}}, [2]),
    "ignorecase": ({"kind": {"S": [{"equals-ignore-case": "ORDER"}]}}, [0, 1, 3]),
    "anythingbut": ({"kind": {"S": [{"anything-but": ["order", "refund"]}]}}, [3, 4]),
    "exists": ({"note": {"S": [{"exists": True}]}}, [1, 3]),
    "absent": ({"note": {"S": [{"exists": False}]}}, [0, 2, 2, 4]),  # and the REMOVE
    "or": ({"$or": [{"kind": {"S": ["refund"]}}, {"city": {"S": ["Boston"]}}]}, [2, 3]),
}


def test_dynamodb_filters_keep_exactly_the_matching_records(lam: Any, server: Server) -> None:
    client = server.client("dynamodb")
    client.create_table(
        TableName="filtered-table",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        Tags=[{"Key": "lamina:partitions", "Value": "2"}],
    )
    arn = client.describe_table(TableName="filtered-table")["Table"]["LatestStreamArn"]
    patterns = {
        name: {"dynamodb": {"NewImage": pattern}} for name, (pattern, _) in DYNAMODB_CASES.items()
    }
    patterns["numeric"] = {"dynamodb": {"SizeBytes": [{"numeric": [">", 300]}]}}
    patterns["event"] = {"eventName": ["INSERT"], "dynamodb": {"Keys": {"pk": {"S": ["2"]}}}}
    expected = {name: ids for name, (_, ids) in DYNAMODB_CASES.items()}
    expected["numeric"] = [0, 1]
    expected["event"] = [2]
    uuids = {}
    for name, pattern in patterns.items():
        python_function(lam, f"ddb-{name}", RECORDER)
        mapping = lam.create_event_source_mapping(
            EventSourceArn=arn,
            FunctionName=f"ddb-{name}",
            StartingPosition="TRIM_HORIZON",
            FilterCriteria=filters(pattern),
        )
        uuids[name] = mapping["UUID"]
    for index, item in enumerate(ITEMS):
        shown = {k: {"S": value} for k, value in item.items()}
        client.put_item(TableName="filtered-table", Item={"pk": {"S": str(index)}, **shown})
    client.delete_item(TableName="filtered-table", Key={"pk": {"S": "2"}})  # a REMOVE
    for name, uuid in uuids.items():
        wait_for(lambda n=name, e=expected[name]: sorted(received(server, f"ddb-{n}")) == e)
        dropped = len(ITEMS) + 1 - len(expected[name])
        wait_for(lambda u=uuid, d=dropped: mapping_stats(server, u)["filtered"] == d)
    time.sleep(0.5)
    for name in uuids:
        assert sorted(received(server, f"ddb-{name}")) == expected[name], name

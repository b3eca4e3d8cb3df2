"""Event source mappings end to end: boto3's lambda, sqs and kinesis clients against a real
server, functions that log when they ran and what they got, and the figures the issue
asks for measured from those logs:

- 4 shards → peak concurrency exactly 4; ParallelizationFactor 2 → exactly 8; a
  partition key's records always in order.
- MaximumConcurrency 3 → never more than 3; reserved concurrency 2 → throttled, yet every
  message processed exactly once; partial batch failures re-deliver only the failed.
- SIGKILL mid-stream → the restarted server resumes from the checkpoint, skipping nothing.

The server runs with --time-scale 0.02 (a 30 s visibility timeout lasts 0.6 s).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

SCALE = 0.02
REGION_ACCOUNT = "us-east-1:000000000000"

# Logs one TRACE line per invocation: when it ran and what it got. MODE picks a failure.
TRACER = """
import base64, json, os, time

def handler(event, context):
    start = time.time()
    time.sleep(float(os.environ.get("SLEEP", "0")))
    items = []
    for record in event["Records"]:
        if "kinesis" in record:
            items.append({
                "id": record["kinesis"]["sequenceNumber"],
                "body": base64.b64decode(record["kinesis"]["data"]).decode(),
                "key": record["kinesis"]["partitionKey"],
                "shard": record["eventID"].split(":")[0],
            })
        else:
            items.append({
                "id": record["messageId"],
                "body": record["body"],
                "count": int(record["attributes"]["ApproximateReceiveCount"]),
                "group": record["attributes"].get("MessageGroupId"),
            })
    mode = os.environ.get("MODE", "")
    failed = mode == "raise" and any(i["body"].startswith("poison") for i in items)
    line = {"start": start, "end": time.time(), "items": items, "failed": failed}
    out = os.environ.get("OUT")
    if out:
        with open(out, "a") as sink:
            sink.write(json.dumps(line) + "\\n")
    else:
        print("TRACE " + json.dumps(line))
    if failed:
        raise RuntimeError("poison")
    if mode == "report":
        return {"batchItemFailures": [
            {"itemIdentifier": i["id"]}
            for i in items if i["body"].startswith("fail") and i["count"] == 1
        ]}
    return {"processed": len(items)}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=["--time-scale", str(SCALE)]).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sqs(server: Server) -> Any:
    return server.client("sqs")


@pytest.fixture(scope="module")
def kinesis(server: Server) -> Any:
    return server.client("kinesis")


@pytest.fixture
def tracer(lam: Any) -> Callable[..., str]:
    def make(name: str, **variables: str) -> str:
        python_function(lam, name, TRACER, Timeout=30, Environment={"Variables": dict(variables)})
        return name

    return make


def traces(server: Server, name: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/logs/{name}") as response:
        text = response.read().decode()
    return [
        json.loads(line.split(" TRACE ", 1)[1]) for line in text.splitlines() if " TRACE " in line
    ]


def stats(server: Server, uuid: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats") as response:
        return dict(json.loads(response.read())["mappings"][uuid])


def peak(runs: list[dict[str, Any]]) -> int:
    """The most invocations running at one moment, from their start and end times."""
    edges = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    current = best = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start
        current += step
        best = max(best, current)
    return best


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def processed(runs: list[dict[str, Any]]) -> list[str]:
    return [item["body"] for run in runs for item in run["items"]]


def queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(found["ApproximateNumberOfMessages"]), int(
        found["ApproximateNumberOfMessagesNotVisible"]
    )


def send_all(sqs: Any, url: str, bodies: list[str], **extra: Any) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": f"m{i}", "MessageBody": body, **extra}
            for i, body in enumerate(bodies[start : start + 10])
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries)["Failed"]


def error_of(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    return dict(info.value.response["Error"]) | {
        "Status": info.value.response["ResponseMetadata"]["HTTPStatusCode"]
    }


# The API -----------------------------------------------------------------------------------
def test_deleting_the_function_disables_its_mappings(lam: Any, sqs: Any, tracer: Any) -> None:
    tracer("doomed-fn")
    url, arn = queue(sqs, "doomed-queue")
    uuid = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="doomed-fn")["UUID"]
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"
    lam.delete_function(FunctionName="doomed-fn")
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Disabled"
    sqs.send_message(QueueUrl=url, MessageBody="kept")
    time.sleep(0.5)  # nothing polls it: the message stays in the queue
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"


def test_mapping_operations_and_states(
    lam: Any, sqs: Any, kinesis: Any, tracer: Any, server: Server
) -> None:
    tracer("api-fn")
    _url, arn = queue(sqs, "api-queue")
    created = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="api-fn", BatchSize=5, Enabled=False
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating"
    uuid = created["UUID"]
    assert created["FunctionArn"] == f"arn:aws:lambda:{REGION_ACCOUNT}:function:api-fn"
    assert created["EventSourceArn"] == arn
    assert created["BatchSize"] == 5
    assert created["MaximumBatchingWindowInSeconds"] == 0
    assert created["EventSourceMappingArn"] == (
        f"arn:aws:lambda:{REGION_ACCOUNT}:event-source-mapping:{uuid}"
    )
    assert "StartingPosition" not in created and "ParallelizationFactor" not in created
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Disabled"
    assert got["StateTransitionReason"] == "USER_INITIATED"
    listed = lam.list_event_source_mappings(FunctionName="api-fn")["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid]
    assert [
        m["UUID"] for m in lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
    ] == [uuid]
    updated = lam.update_event_source_mapping(
        UUID=uuid,
        Enabled=True,
        BatchSize=20,
        MaximumBatchingWindowInSeconds=1,
        ScalingConfig={"MaximumConcurrency": 2},
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    assert updated["State"] == "Updating"
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Enabled"
    assert got["BatchSize"] == 20
    assert got["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert got["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    error = error_of(lam.create_event_source_mapping, EventSourceArn=arn, FunctionName="api-fn")
    assert (error["Code"], error["Status"]) == ("ResourceConflictException", 409)
    assert uuid in error["Message"]
    missing_queue = arn + "-missing"
    error = error_of(
        lam.create_event_source_mapping, EventSourceArn=missing_queue, FunctionName="api-fn"
    )
    assert error["Code"] == "InvalidParameterValueException"
    assert "AWS.SimpleQueueService.NonExistentQueue" in error["Message"]
    error = error_of(lam.create_event_source_mapping, EventSourceArn=arn, FunctionName="nope")
    assert (error["Code"], error["Status"]) == ("ResourceNotFoundException", 404)
    error = error_of(
        lam.create_event_source_mapping, EventSourceArn=arn, FunctionName="api-fn", BatchSize=11
    )
    assert error["Message"] == (
        "Maximum batch window in seconds must be greater than 0 if maximum batch size is "
        "greater than 10"
    )
    _, fifo_arn = queue(sqs, "api-queue.fifo", FifoQueue="true")
    error = error_of(
        lam.create_event_source_mapping,
        EventSourceArn=fifo_arn,
        FunctionName="api-fn",
        BatchSize=11,
        MaximumBatchingWindowInSeconds=1,
    )
    assert error["Code"] == "InvalidParameterValueException"
    error = error_of(
        lam.create_event_source_mapping,
        EventSourceArn=fifo_arn,
        FunctionName="api-fn",
        FilterCriteria={"Filters": [{"Pattern": '{"body": "x"}'}]},
    )
    assert error["Message"] == "Invalid filter pattern definition."
    error = error_of(
        lam.create_event_source_mapping,
        EventSourceArn=fifo_arn,
        FunctionName="api-fn",
        StartingPosition="LATEST",
    )
    assert error["Code"] == "InvalidParameterValueException"
    dynamo = "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/2024-01-01T00:00:00.000"
    error = error_of(lam.create_event_source_mapping, EventSourceArn=dynamo, FunctionName="api-fn")
    assert error["Message"] == f"Stream not found: {dynamo}"
    topic = "arn:aws:sns:us-east-1:000000000000:topic"
    error = error_of(lam.create_event_source_mapping, EventSourceArn=topic, FunctionName="api-fn")
    assert error["Message"].startswith(f"Unsupported event source {topic}")
    # ScalingConfig bounds come from the model (2-1000); botocore checks them too.
    unchecked = server.client(parameter_validation=False)
    error = error_of(
        unchecked.create_event_source_mapping,
        EventSourceArn=fifo_arn,
        FunctionName="api-fn",
        ScalingConfig={"MaximumConcurrency": 1},
    )
    assert error["Code"] == "ValidationException"

    kinesis.create_stream(StreamName="api-stream", ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName="api-stream")[
        "StreamDescriptionSummary"
    ]["StreamARN"]
    error = error_of(
        lam.create_event_source_mapping, EventSourceArn=stream_arn, FunctionName="api-fn"
    )
    assert "StartingPosition" in error["Message"]
    stream_mapping = lam.create_event_source_mapping(
        EventSourceArn=stream_arn,
        FunctionName="api-fn",
        StartingPosition="LATEST",
        ParallelizationFactor=3,
        MaximumRetryAttempts=2,
    )
    assert stream_mapping["StartingPosition"] == "LATEST"
    assert stream_mapping["BatchSize"] == 100
    assert stream_mapping["ParallelizationFactor"] == 3
    assert stream_mapping["MaximumRetryAttempts"] == 2
    assert stream_mapping["MaximumRecordAgeInSeconds"] == -1
    assert stream_mapping["BisectBatchOnFunctionError"] is False
    assert stream_mapping["DestinationConfig"] == {"OnFailure": {}}
    assert stream_mapping["LastProcessingResult"] == "No records processed"
    error = error_of(
        lam.create_event_source_mapping,
        EventSourceArn="arn:aws:kinesis:us-east-1:000000000000:stream/none",
        FunctionName="api-fn",
        StartingPosition="LATEST",
    )
    assert error["Code"] == "InvalidParameterValueException"
    error = error_of(
        lam.update_event_source_mapping, UUID=stream_mapping["UUID"], MaximumRecordAgeInSeconds=5
    )
    assert error["Code"] == "InvalidParameterValueException"

    deleted = lam.delete_event_source_mapping(UUID=uuid)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert deleted["State"] == "Deleting"
    error = error_of(lam.get_event_source_mapping, UUID=uuid)
    assert (error["Code"], error["Status"]) == ("ResourceNotFoundException", 404)
    assert error["Message"] == "The resource you requested does not exist."
    lam.delete_event_source_mapping(UUID=stream_mapping["UUID"])
    assert lam.list_event_source_mappings(FunctionName="api-fn")["EventSourceMappings"] == []


def test_list_pages(lam: Any, sqs: Any, tracer: Any) -> None:
    tracer("pages-fn")
    made = []
    for i in range(3):
        _, arn = queue(sqs, f"pages-{i}")
        made.append(
            lam.create_event_source_mapping(
                EventSourceArn=arn, FunctionName="pages-fn", Enabled=False
            )["UUID"]
        )
    first = lam.list_event_source_mappings(FunctionName="pages-fn", MaxItems=2)
    assert [m["UUID"] for m in first["EventSourceMappings"]] == made[:2]
    rest = lam.list_event_source_mappings(
        FunctionName="pages-fn", MaxItems=2, Marker=first["NextMarker"]
    )
    assert [m["UUID"] for m in rest["EventSourceMappings"]] == made[2:]
    assert "NextMarker" not in rest
    for uuid in made:
        lam.delete_event_source_mapping(UUID=uuid)


# SQS ------------------------------------------------------------------------------------------
def test_sqs_batches_are_deleted_on_success(
    lam: Any, sqs: Any, server: Server, tracer: Any
) -> None:
    tracer("sqs-ok")
    url, arn = queue(sqs, "sqs-ok")
    sqs.send_message(
        QueueUrl=url,
        MessageBody="first",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )
    bodies = [f"m{i}" for i in range(24)]
    send_all(sqs, url, bodies)
    mapping = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="sqs-ok")
    wait_for(lambda: len(processed(traces(server, "sqs-ok"))) >= 25)
    wait_for(lambda: queue_counts(sqs, url) == (0, 0))
    runs = traces(server, "sqs-ok")
    assert sorted(processed(runs)) == sorted(["first", *bodies])
    assert all(len(run["items"]) <= 10 for run in runs)
    assert stats(server, mapping["UUID"])["deleted"] == 25
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)

    # The event itself, exactly as AWS builds it.
    events = []
    python_function(
        lam, "sqs-shape", "import json\ndef handler(e, c):\n    print('EVENT ' + json.dumps(e))\n"
    )
    sqs.send_message(
        QueueUrl=url,
        MessageBody="shape",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
    )
    shape = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="sqs-shape")

    def captured() -> bool:
        with urllib.request.urlopen(f"{server.endpoint}/_lamina/logs/sqs-shape") as response:
            lines = [x for x in response.read().decode().splitlines() if " EVENT " in x]
        events.extend(json.loads(x.split(" EVENT ", 1)[1]) for x in lines)
        return bool(events)

    wait_for(captured)
    record = events[0]["Records"][0]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["body"] == "shape"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == "us-east-1"
    assert set(record["attributes"]) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["messageAttributes"] == {
        "kind": {
            "stringValue": "test",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    }
    lam.delete_event_source_mapping(UUID=shape["UUID"])
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_sqs_partial_batch_failures_redeliver_only_the_failed(
    lam: Any, sqs: Any, server: Server, tracer: Any
) -> None:
    tracer("sqs-partial", MODE="report")
    url, arn = queue(sqs, "sqs-partial")
    bodies = [f"{'fail' if i % 3 == 0 else 'ok'}-{i}" for i in range(30)]
    send_all(sqs, url, bodies)
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="sqs-partial",
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    failing = [b for b in bodies if b.startswith("fail")]
    wait_for(lambda: len(processed(traces(server, "sqs-partial"))) >= len(bodies) + len(failing))
    wait_for(lambda: queue_counts(sqs, url) == (0, 0))
    seen: dict[str, list[int]] = defaultdict(list)
    for run in traces(server, "sqs-partial"):
        for item in run["items"]:
            seen[item["body"]].append(item["count"])
    for body in bodies:
        # The failed messages came back once (second receive); the others never did.
        assert seen[body] == ([1, 2] if body.startswith("fail") else [1]), body
    assert stats(server, mapping["UUID"])["retried_items"] == len(failing)
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_sqs_function_errors_redeliver_then_redrive(
    lam: Any, sqs: Any, server: Server, tracer: Any
) -> None:
    tracer("sqs-poison", MODE="raise")
    dead_url, dead_arn = queue(sqs, "sqs-poison-dlq")
    policy = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2})
    url, arn = queue(sqs, "sqs-poison", RedrivePolicy=policy)
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="sqs-poison", BatchSize=1
    )
    # Received twice (visible again after each failure), then moved to the DLQ.
    got = sqs.receive_message(QueueUrl=dead_url, WaitTimeSeconds=10, AttributeNames=["All"])
    assert got["Messages"][0]["Body"] == "poison"
    assert [i["count"] for r in traces(server, "sqs-poison") for i in r["items"]] == [1, 2]
    assert stats(server, mapping["UUID"])["function_errors"] == 2
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_sqs_maximum_concurrency_caps_batches_in_flight(
    lam: Any, sqs: Any, server: Server, tracer: Any
) -> None:
    tracer("sqs-capped", SLEEP="0.2")
    url, arn = queue(sqs, "sqs-capped")
    bodies = [f"c{i}" for i in range(30)]
    send_all(sqs, url, bodies)
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="sqs-capped",
        BatchSize=2,
        ScalingConfig={"MaximumConcurrency": 3},
    )
    wait_for(lambda: len(processed(traces(server, "sqs-capped"))) >= len(bodies))
    runs = traces(server, "sqs-capped")
    measured = peak(runs)
    print(f"\nSQS MaximumConcurrency 3: peak {measured} over {len(runs)} batches")
    assert measured == 3
    assert stats(server, mapping["UUID"])["peak_in_flight"] <= 3
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_sqs_reserved_concurrency_throttles_but_loses_nothing(
    lam: Any, sqs: Any, server: Server, tracer: Any
) -> None:
    tracer("sqs-reserved", SLEEP="0.1")
    lam.put_function_concurrency(FunctionName="sqs-reserved", ReservedConcurrentExecutions=2)
    url, arn = queue(sqs, "sqs-reserved")
    bodies = [f"r{i}" for i in range(40)]
    send_all(sqs, url, bodies)
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="sqs-reserved", BatchSize=1
    )
    wait_for(lambda: len(processed(traces(server, "sqs-reserved"))) >= len(bodies), 30)
    wait_for(lambda: queue_counts(sqs, url) == (0, 0))
    runs = traces(server, "sqs-reserved")
    counted = stats(server, mapping["UUID"])
    print(
        f"\nSQS reserved 2: peak {peak(runs)}, {counted['throttles']} throttles, "
        f"{counted['deleted']} deleted of {len(bodies)}"
    )
    assert sorted(processed(runs)) == sorted(bodies)  # each exactly once
    assert all(item["count"] == 1 for run in runs for item in run["items"])  # never redelivered
    assert counted["throttles"] > 0
    assert counted["function_errors"] == 0
    assert counted["deleted"] == len(bodies)
    assert peak(runs) <= 2
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_sqs_fifo_groups_stay_in_order(lam: Any, sqs: Any, server: Server, tracer: Any) -> None:
    tracer("sqs-fifo", SLEEP="0.05")
    url, arn = queue(sqs, "sqs-fifo.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    bodies = [f"g{g}-{i:02d}" for i in range(8) for g in range(4)]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=body[:2])
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="sqs-fifo", BatchSize=3
    )
    wait_for(lambda: len(processed(traces(server, "sqs-fifo"))) >= len(bodies))
    runs = sorted(traces(server, "sqs-fifo"), key=lambda r: r["start"])
    by_group: dict[str, list[str]] = defaultdict(list)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        for item in run["items"]:
            by_group[item["group"]].append(item["body"])
        for group in {item["group"] for item in run["items"]}:
            spans[group].append((run["start"], run["end"]))
    for group, seen in by_group.items():
        assert seen == sorted(seen), group
        assert len(seen) == 8
        # Never two batches of one group at once.
        for (_, end), (start, _) in zip(spans[group], spans[group][1:], strict=False):
            assert start >= end
    assert peak(runs) > 1  # the groups themselves ran in parallel
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_disabled_mappings_stop_polling(lam: Any, sqs: Any, server: Server, tracer: Any) -> None:
    tracer("sqs-toggle")
    url, arn = queue(sqs, "sqs-toggle")
    mapping = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="sqs-toggle")
    sqs.send_message(QueueUrl=url, MessageBody="while-enabled")
    wait_for(lambda: processed(traces(server, "sqs-toggle")) == ["while-enabled"])
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    sqs.send_message(QueueUrl=url, MessageBody="while-disabled")
    time.sleep(0.5)
    assert queue_counts(sqs, url) == (1, 0)  # nobody took it
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    wait_for(lambda: len(processed(traces(server, "sqs-toggle"))) == 2)
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.send_message(QueueUrl=url, MessageBody="after-delete")
    time.sleep(0.5)
    assert queue_counts(sqs, url) == (1, 0)


# Kinesis ----------------------------------------------------------------------------------------
def stream(kinesis: Any, name: str, shards: int) -> tuple[str, list[str]]:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    description = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    return description["StreamARN"], [s["ShardId"] for s in description["Shards"]]


def put_spread(kinesis: Any, name: str, keys: int, per_key: int) -> dict[str, set[str]]:
    """`per_key` records for each of `keys` partition keys, interleaved; the shards used."""
    records = [
        {"Data": f"k{k:03d}-{i:03d}".encode(), "PartitionKey": f"k{k:03d}"}
        for i in range(per_key)
        for k in range(keys)
    ]
    shards: dict[str, set[str]] = defaultdict(set)
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        result = kinesis.put_records(StreamName=name, Records=chunk)
        for record, placed in zip(chunk, result["Records"], strict=True):
            shards[placed["ShardId"]].add(record["PartitionKey"])
    return shards


def check_key_order(runs: list[dict[str, Any]]) -> None:
    by_key: dict[str, list[str]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: r["start"]):
        for item in run["items"]:
            by_key[item["key"]].append(item["body"])
    for key, bodies in by_key.items():
        assert bodies == sorted(bodies), key


def test_four_shards_run_exactly_four_at_once(
    lam: Any, kinesis: Any, server: Server, tracer: Any
) -> None:
    tracer("shards-4", SLEEP="0.3")
    arn, shard_ids = stream(kinesis, "shards-4", 4)
    used = put_spread(kinesis, "shards-4", keys=16, per_key=3)
    assert set(used) == set(shard_ids)  # records in every shard
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="shards-4", StartingPosition="TRIM_HORIZON", BatchSize=3
    )
    wait_for(lambda: len(processed(traces(server, "shards-4"))) >= 48, 30)
    runs = traces(server, "shards-4")
    measured = peak(runs)
    print(f"\nKinesis 4 shards: peak {measured} over {len(runs)} batches")
    assert measured == 4
    assert sorted(processed(runs)) == sorted(
        f"k{k:03d}-{i:03d}" for i in range(3) for k in range(16)
    )
    for run in runs:  # a batch comes from one shard
        assert len({item["shard"] for item in run["items"]}) == 1
    check_key_order(runs)
    counted = stats(server, mapping["UUID"])
    assert set(counted["iterator_age_ms"]) == set(shard_ids)
    # The IteratorAge metric, one value per batch, in CloudWatch.
    now = dt.datetime.now(dt.UTC)
    ages = server.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="IteratorAge",
        Dimensions=[{"Name": "FunctionName", "Value": "shards-4"}],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=2),
        Period=60,
        Statistics=["SampleCount", "Maximum"],
    )["Datapoints"]
    assert sum(point["SampleCount"] for point in ages) == len(runs)
    assert all(point["Maximum"] >= 0 for point in ages)
    got = lam.get_event_source_mapping(UUID=mapping["UUID"])
    assert got["LastProcessingResult"] == "OK"
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_parallelization_factor_two_runs_eight_at_once(
    lam: Any, kinesis: Any, server: Server, tracer: Any
) -> None:
    tracer("shards-8", SLEEP="0.3")
    arn, shard_ids = stream(kinesis, "shards-8", 4)
    used = put_spread(kinesis, "shards-8", keys=64, per_key=2)
    assert set(used) == set(shard_ids)
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="shards-8",
        StartingPosition="TRIM_HORIZON",
        BatchSize=4,
        ParallelizationFactor=2,
    )
    wait_for(lambda: len(processed(traces(server, "shards-8"))) >= 128, 30)
    runs = traces(server, "shards-8")
    measured = peak(runs)
    print(f"\nKinesis 4 shards x ParallelizationFactor 2: peak {measured} over {len(runs)} batches")
    assert measured == 8
    check_key_order(runs)
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_retries_bisect_and_the_on_failure_destination(
    lam: Any, sqs: Any, kinesis: Any, server: Server, tracer: Any
) -> None:
    tracer("stream-poison", MODE="raise")
    arn, _ = stream(kinesis, "stream-poison", 1)
    destination_url, destination_arn = queue(sqs, "stream-poison-failures")
    bodies = [f"r{i}" for i in range(8)]
    bodies[5] = "poison"
    put = kinesis.put_records(
        StreamName="stream-poison",
        Records=[{"Data": b.encode(), "PartitionKey": "one-key"} for b in bodies],
    )
    poison_sequence = put["Records"][5]["SequenceNumber"]
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="stream-poison",
        StartingPosition="TRIM_HORIZON",
        BatchSize=8,
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": destination_arn}},
    )
    got = sqs.receive_message(QueueUrl=destination_url, WaitTimeSeconds=10)["Messages"]
    failure = json.loads(got[0]["Body"])
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["functionArn"].endswith(":function:stream-poison")
    assert failure["responseContext"]["functionError"] == "Unhandled"
    info = failure["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000"
    assert info["batchSize"] == 1  # bisected down to the bad record
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == poison_sequence
    assert info["streamArn"] == arn
    # Every good record succeeded once, in order, and the stream moved on past the poison.
    kinesis.put_record(StreamName="stream-poison", Data=b"after", PartitionKey="one-key")

    def succeeded() -> list[str]:
        return processed([r for r in traces(server, "stream-poison") if not r["failed"]])

    wait_for(lambda: "after" in succeeded())
    assert succeeded() == [b for b in bodies if b != "poison"] + ["after"]
    counted = stats(server, mapping["UUID"])
    assert counted["discarded"] == 1
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_a_killed_server_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    out = tmp_path / "processed.jsonl"
    args = ["--time-scale", str(SCALE), "--isolation", "none"]  # it writes to `out` on the host
    expected = [f"k{k:03d}-{i:03d}" for i in range(15) for k in range(8)]

    def lines() -> list[dict[str, Any]]:
        if not out.exists():
            return []
        return [json.loads(x) for x in out.read_text().splitlines() if x.endswith("}")]

    first = Server(data_dir, args=args).start()
    try:
        lam, kinesis = first.client(), first.client("kinesis")
        python_function(
            lam,
            "resumer",
            TRACER,
            Timeout=30,
            Environment={"Variables": {"SLEEP": "0.05", "OUT": str(out)}},
        )
        arn, _ = stream(kinesis, "resume", 2)
        put_spread(kinesis, "resume", keys=8, per_key=15)
        lam.create_event_source_mapping(
            EventSourceArn=arn, FunctionName="resumer", StartingPosition="TRIM_HORIZON", BatchSize=3
        )
        wait_for(lambda: len(processed(lines())) >= 30)
    finally:
        first.kill()  # SIGKILL, mid-stream
    before = processed(lines())
    assert 0 < len(before) < len(expected)
    second = Server(data_dir, args=args).start()
    try:
        wait_for(lambda: set(processed(lines())) >= set(expected), 30)
        time.sleep(0.3)
    finally:
        second.stop()
    everything = processed(lines())
    assert set(everything) == set(expected)  # nothing skipped
    repeated = len(everything) - len(expected)
    # At-least-once: only batches that were in flight (not yet checkpointed) run again.
    print(f"\nSIGKILL after {len(before)} records: {repeated} processed again after restart")
    assert 0 <= repeated <= 2 * 3  # at most one batch per shard


def test_records_too_old_go_to_the_destination(
    lam: Any, sqs: Any, kinesis: Any, server: Server, tracer: Any
) -> None:
    tracer("stream-aging", MODE="raise")
    arn, _ = stream(kinesis, "stream-aging", 1)
    destination_url, destination_arn = queue(sqs, "stream-aging-failures")
    put = kinesis.put_record(StreamName="stream-aging", Data=b"poison", PartitionKey="k")
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="stream-aging",
        StartingPosition="TRIM_HORIZON",
        MaximumRecordAgeInSeconds=60,  # 1.2 s here; retries are unlimited (-1)
        DestinationConfig={"OnFailure": {"Destination": destination_arn}},
    )
    got = sqs.receive_message(QueueUrl=destination_url, WaitTimeSeconds=10)["Messages"]
    failure = json.loads(got[0]["Body"])
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["KinesisBatchInfo"]["startSequenceNumber"] == put["SequenceNumber"]
    assert failure["requestContext"]["approximateInvokeCount"] >= 1
    assert len(traces(server, "stream-aging")) >= 1
    lam.delete_event_source_mapping(UUID=mapping["UUID"])

"""S3 event notifications against a real server: AWS's event records delivered to a
function (through its resource policy and the async queue), a queue and a topic; filters;
destination validation; a throttled function gets every event or its dead-letter queue
does; nothing is lost across a `kill -9`.

Functions report each event over UDP to a recorder on the test's loopback (the servers run
without isolation, as test_async's do); platform delays run 100x fast.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lamina.services.s3.notifications import BATCH
from tests.e2e.test_async import Recorder, prometheus_value
from tests.helpers import Server, python_function

ARGS = ["--time-scale", "0.01", "--account-concurrency", "20", "--unreserved-floor", "5",
        "--isolation", "none"]  # fmt: skip
ACCOUNT = "000000000000"
REPORTER = """
import json, os, socket, time
ADDRESS = ("127.0.0.1", int(os.environ["RECORDER_PORT"]))
OUT = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

def handler(event, context):
    OUT.sendto(json.dumps({"fn": context.function_name, "event": event}).encode(), ADDRESS)
    time.sleep(float(os.environ.get("SLEEP", "0")))
    return "ok"
"""


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("lamina") / "data", args=ARGS).start()
    yield running
    running.stop()


def reporter(server: Server, recorder: Recorder, name: str, bucket: str, **env: str) -> str:
    """A function that reports its events, which S3 may invoke for `bucket`; its ARN."""
    lam = server.client()
    made = python_function(
        lam,
        name,
        REPORTER,
        Environment={"Variables": {"RECORDER_PORT": str(recorder.port), **env}},
        Timeout=30,
    )
    lam.add_permission(
        FunctionName=name,
        StatementId="s3-invoke",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn=f"arn:aws:s3:::{bucket}",
        SourceAccount=ACCOUNT,
    )
    return str(made["FunctionArn"])


def queue(sqs: Any, name: str, allow: dict[str, Any] | None = None) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    if allow is not None:
        statement = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": arn, **allow}
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url, arn


def drain(sqs: Any, url: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            found.append(json.loads(message["Body"]))
    return found


def keys_of(reports: list[dict[str, Any]]) -> list[str]:
    return [r["event"]["Records"][0]["s3"]["object"]["key"] for r in reports]


def test_filtered_events_reach_the_function_as_aws_writes_them(
    server: Server, recorder: Recorder
) -> None:
    s3 = server.client("s3")
    s3.create_bucket(Bucket="notify-bucket")
    lam = server.client()
    variables = {"Variables": {"RECORDER_PORT": str(recorder.port)}}
    made = python_function(lam, "s3-events", REPORTER, Environment=variables)
    arn = made["FunctionArn"]
    configuration = {
        "LambdaFunctionConfigurations": [
            {
                "Id": "uploads",
                "LambdaFunctionArn": arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"},
                                                   {"Name": "suffix", "Value": ".csv"}]}},
            },
            {
                "Id": "removals",
                "LambdaFunctionArn": arn,
                "Events": ["s3:ObjectRemoved:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
            },
        ]
    }  # fmt: skip
    # Without a policy that lets S3 invoke the function, S3 refuses the configuration.
    with pytest.raises(ClientError) as refused:
        s3.put_bucket_notification_configuration(
            Bucket="notify-bucket", NotificationConfiguration=configuration
        )
    assert refused.value.response["Error"]["Code"] == "InvalidArgument"
    assert refused.value.response["Error"]["Message"] == (
        "Unable to validate the following destination configurations"
    )
    lam.add_permission(
        FunctionName="s3-events",
        StatementId="s3-invoke",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn="arn:aws:s3:::notify-bucket",
        SourceAccount=ACCOUNT,
    )
    s3.put_bucket_notification_configuration(
        Bucket="notify-bucket", NotificationConfiguration=configuration
    )
    stored = s3.get_bucket_notification_configuration(Bucket="notify-bucket")
    assert stored["LambdaFunctionConfigurations"] == configuration["LambdaFunctionConfigurations"]
    before = time.time()
    s3.put_object(Bucket="notify-bucket", Key="other/x.csv", Body=b"outside the prefix")
    s3.put_object(Bucket="notify-bucket", Key="incoming/x.txt", Body=b"outside the suffix")
    body = b"a,b\n1,2\n"
    s3.put_object(Bucket="notify-bucket", Key="incoming/day 1.csv", Body=body)
    s3.copy_object(Bucket="notify-bucket", Key="incoming/copy.csv",
                   CopySource="notify-bucket/incoming/day 1.csv")  # fmt: skip
    s3.delete_object(Bucket="notify-bucket", Key="incoming/x.txt")
    upload = s3.create_multipart_upload(Bucket="notify-bucket", Key="incoming/multi.csv")
    part = s3.upload_part(Bucket="notify-bucket", Key="incoming/multi.csv", PartNumber=1,
                          UploadId=upload["UploadId"], Body=b"one part")  # fmt: skip
    done = s3.complete_multipart_upload(
        Bucket="notify-bucket", Key="incoming/multi.csv", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    reports = recorder.wait("s3-events", 4)
    assert sorted(keys_of(reports)) == ["incoming/copy.csv", "incoming/day+1.csv",
                                        "incoming/multi.csv", "incoming/x.txt"]  # fmt: skip
    multi = next(r["event"]["Records"][0] for r in reports
                 if keys_of([r]) == ["incoming/multi.csv"])  # fmt: skip
    assert multi["eventName"] == "ObjectCreated:CompleteMultipartUpload"
    assert multi["s3"]["object"]["eTag"] == done["ETag"].strip('"')
    assert multi["s3"]["object"]["size"] == len(b"one part")
    put = next(r["event"] for r in reports if keys_of([r]) == ["incoming/day+1.csv"])
    assert len(put["Records"]) == 1
    record = put["Records"][0]
    assert set(record) == {"eventVersion", "eventSource", "awsRegion", "eventTime",
                           "eventName", "userIdentity", "requestParameters",
                           "responseElements", "s3"}  # fmt: skip
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["awsRegion"] == "us-east-1"
    assert record["eventName"] == "ObjectCreated:Put"
    when = dt.datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(when.replace(tzinfo=dt.UTC).timestamp() - before) < 30
    assert set(record["userIdentity"]) == {"principalId"}
    assert record["requestParameters"] == {"sourceIPAddress": "127.0.0.1"}
    assert set(record["responseElements"]) == {"x-amz-request-id", "x-amz-id-2"}
    s3_part = record["s3"]
    assert s3_part["s3SchemaVersion"] == "1.0"
    assert s3_part["configurationId"] == "uploads"
    assert s3_part["bucket"]["name"] == "notify-bucket"
    assert s3_part["bucket"]["arn"] == "arn:aws:s3:::notify-bucket"
    assert set(s3_part["bucket"]["ownerIdentity"]) == {"principalId"}
    assert s3_part["object"]["key"] == "incoming/day+1.csv"
    assert s3_part["object"]["size"] == len(body)
    assert s3_part["object"]["eTag"] == hashlib.md5(body).hexdigest()
    int(s3_part["object"]["sequencer"], 16)
    names = sorted(r["event"]["Records"][0]["eventName"] for r in reports)
    assert names == ["ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy",
                     "ObjectCreated:Put", "ObjectRemoved:Delete"]  # fmt: skip
    removed = next(r["event"]["Records"][0] for r in reports if keys_of([r]) == ["incoming/x.txt"])
    assert removed["s3"]["configurationId"] == "removals"
    assert "size" not in removed["s3"]["object"] and "eTag" not in removed["s3"]["object"]
    # Overlapping configurations of one event type are refused, as S3 refuses them.
    overlapping = {"LambdaFunctionConfigurations": [
        {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:Put"]},
        {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "a/"}]}}},
    ]}  # fmt: skip
    with pytest.raises(ClientError) as overlap:
        s3.put_bucket_notification_configuration(
            Bucket="notify-bucket", NotificationConfiguration=overlapping
        )
    assert "Configurations overlap" in overlap.value.response["Error"]["Message"]


def test_queue_and_topic_targets(server: Server) -> None:
    s3, sqs, sns = server.client("s3"), server.client("sqs"), server.client("sns")
    s3.create_bucket(Bucket="fan-bucket")
    bucket_arn = "arn:aws:s3:::fan-bucket"
    closed_url, closed_arn = queue(sqs, "s3-closed")
    with pytest.raises(ClientError) as refused:
        s3.put_bucket_notification_configuration(
            Bucket="fan-bucket",
            NotificationConfiguration={"QueueConfigurations": [
                {"QueueArn": closed_arn, "Events": ["s3:ObjectCreated:*"]}]},
        )  # fmt: skip
    assert refused.value.response["Error"]["Code"] == "InvalidArgument"
    from_s3 = {"Principal": {"Service": "s3.amazonaws.com"},
               "Condition": {"ArnLike": {"aws:SourceArn": bucket_arn}}}  # fmt: skip
    direct_url, direct_arn = queue(sqs, "s3-direct", from_s3)
    topic_arn = sns.create_topic(Name="s3-topic")["TopicArn"]
    sns.set_topic_attributes(
        TopicArn=topic_arn,
        AttributeName="Policy",
        AttributeValue=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
             "Action": "sns:Publish", "Resource": topic_arn,
             "Condition": {"ArnLike": {"aws:SourceArn": bucket_arn}}}]}),
    )  # fmt: skip
    via_url, via_arn = queue(sqs, "s3-via-topic", {
        "Principal": {"Service": "sns.amazonaws.com"},
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}})  # fmt: skip
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=via_arn)
    s3.put_bucket_notification_configuration(
        Bucket="fan-bucket",
        NotificationConfiguration={
            "QueueConfigurations": [{"Id": "to-queue", "QueueArn": direct_arn,
                                     "Events": ["s3:ObjectCreated:Put"]}],
            "TopicConfigurations": [{"Id": "to-topic", "TopicArn": topic_arn,
                                     "Events": ["s3:ObjectRemoved:*"]}],
        },
    )  # fmt: skip
    # Each destination first gets S3's test event.
    test_event = drain(sqs, direct_url, 1)[0]
    assert (test_event["Service"], test_event["Event"], test_event["Bucket"]) == (
        "Amazon S3",
        "s3:TestEvent",
        "fan-bucket",
    )
    envelope = drain(sqs, via_url, 1)[0]
    assert envelope["Subject"] == "Amazon S3 Notification"
    assert json.loads(envelope["Message"])["Event"] == "s3:TestEvent"
    s3.put_object(Bucket="fan-bucket", Key="k", Body=b"v")
    s3.delete_object(Bucket="fan-bucket", Key="k")
    created = drain(sqs, direct_url, 1)[0]["Records"][0]
    assert (created["eventName"], created["s3"]["configurationId"]) == ("ObjectCreated:Put",
                                                                        "to-queue")  # fmt: skip
    published = drain(sqs, via_url, 1)[0]
    assert published["Type"] == "Notification"
    assert published["TopicArn"] == topic_arn
    assert published["Subject"] == "Amazon S3 Notification"
    removed = json.loads(published["Message"])["Records"][0]
    assert (removed["eventName"], removed["s3"]["object"]["key"]) == ("ObjectRemoved:Delete", "k")
    assert drain(sqs, closed_url, 1, timeout=0.5) == []


def test_a_throttled_function_gets_every_event_or_its_dead_letter_queue_does(
    server: Server, recorder: Recorder
) -> None:
    s3, sqs, lam = server.client("s3"), server.client("sqs"), server.client()
    s3.create_bucket(Bucket="busy-bucket")
    dead_url, dead_arn = queue(sqs, "s3-dead-letters")
    arn = reporter(server, recorder, "s3-busy", "busy-bucket", SLEEP="0.2")
    lam.update_function_configuration(FunctionName="s3-busy",
                                      DeadLetterConfig={"TargetArn": dead_arn})  # fmt: skip
    lam.get_waiter("function_updated_v2").wait(FunctionName="s3-busy")
    s3.put_bucket_notification_configuration(
        Bucket="busy-bucket",
        NotificationConfiguration={"LambdaFunctionConfigurations": [
            {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )  # fmt: skip
    # Reserved concurrency 0: every event goes straight to the dead-letter queue.
    lam.put_function_concurrency(FunctionName="s3-busy", ReservedConcurrentExecutions=0)
    for index in range(5):
        s3.put_object(Bucket="busy-bucket", Key=f"zero/{index}", Body=b"x")
    dead = drain(sqs, dead_url, 5)
    assert sorted(d["Records"][0]["s3"]["object"]["key"] for d in dead) == [
        f"zero/{i}" for i in range(5)
    ]
    assert recorder.of("s3-busy") == []
    # Reserved concurrency 1, 0.2 s a run, 12 events at once: most are throttled at first
    # and run later, through the queue's retries; every one of them runs.
    lam.put_function_concurrency(FunctionName="s3-busy", ReservedConcurrentExecutions=1)
    for index in range(12):
        s3.put_object(Bucket="busy-bucket", Key=f"one/{index}", Body=b"x")
    reports = recorder.wait("s3-busy", 12, timeout=40)
    assert sorted(keys_of(reports)) == sorted(f"one/{i}" for i in range(12))
    assert drain(sqs, dead_url, 1, timeout=0.5) == []
    # Async invocations like any other: the function's metrics count every event.
    received = "aws_lambda_async_events_received_total"
    assert prometheus_value(server, received, "s3-busy") == 17
    assert prometheus_value(server, "aws_lambda_async_events_dropped_total", "s3-busy") == 5


def test_no_event_is_lost_to_a_crash(tmp_path: Path, recorder: Recorder) -> None:
    objects = tmp_path / "objects"  # object bytes outside the data dir (--s3-objects)
    args = [*ARGS, "--s3-objects", str(objects)]
    first = Server(tmp_path / "data", args=args).start()
    total = 24
    try:
        s3 = first.client("s3")
        s3.create_bucket(Bucket="crash-bucket")
        arn = reporter(first, recorder, "s3-crash", "crash-bucket", SLEEP="0.05")
        first.client().put_function_concurrency(
            FunctionName="s3-crash", ReservedConcurrentExecutions=1
        )
        s3.put_bucket_notification_configuration(
            Bucket="crash-bucket",
            NotificationConfiguration={"LambdaFunctionConfigurations": [
                {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
        )  # fmt: skip
        for index in range(total):
            s3.put_object(Bucket="crash-bucket", Key=f"k{index}", Body=b"x")
    finally:
        first.kill()  # SIGKILL: most events still queued (one at a time, 50 ms each)
    before = set(keys_of(recorder.of("s3-crash")))
    assert len(before) < total, "the crash came too late to test anything"
    stray = objects / "00"
    stray.mkdir(exist_ok=True)
    (stray / "00stray.part").write_bytes(b"an upload the crash cut short")
    second = Server(tmp_path / "data", args=args).start()
    try:
        wanted = {f"k{i}" for i in range(total)}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and set(keys_of(recorder.of("s3-crash"))) != wanted:
            time.sleep(0.1)
        ran = keys_of(recorder.of("s3-crash"))
        assert set(ran) == wanted, f"lost: {sorted(wanted - set(ran))}"
        # At least once: only the batch being handed to the queue at the kill, and the
        # invocation running then, may run twice.
        assert len(ran) - total <= BATCH + 1
        s3 = second.client("s3")
        assert s3.list_objects_v2(Bucket="crash-bucket")["KeyCount"] == total
        files = [p for p in objects.rglob("*") if p.is_file()]
        assert len(files) == total  # one file an object; none left over
    finally:
        second.stop()


def test_events_to_eventbridge(server: Server) -> None:
    s3, sqs, events = server.client("s3"), server.client("sqs"), server.client("events")
    s3.create_bucket(Bucket="bus-bucket")
    rule = events.put_rule(
        Name="s3-created",
        EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"],
                                 "detail": {"bucket": {"name": ["bus-bucket"]}}}),
    )  # fmt: skip
    url, arn = queue(sqs, "s3-bus-events", {
        "Principal": {"Service": "events.amazonaws.com"},
        "Condition": {"ArnEquals": {"aws:SourceArn": rule["RuleArn"]}}})  # fmt: skip
    events.put_targets(Rule="s3-created", Targets=[{"Id": "queue", "Arn": arn}])
    s3.put_bucket_notification_configuration(
        Bucket="bus-bucket", NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    stored = s3.get_bucket_notification_configuration(Bucket="bus-bucket")
    assert stored["EventBridgeConfiguration"] == {}
    s3.put_object(Bucket="bus-bucket", Key="a b.txt", Body=b"12345")
    s3.delete_object(Bucket="bus-bucket", Key="a b.txt")  # "Object Deleted": not the rule's
    event = drain(sqs, url, 1)[0]
    assert (event["source"], event["detail-type"]) == ("aws.s3", "Object Created")
    assert (event["account"], event["region"]) == (ACCOUNT, "us-east-1")
    assert event["resources"] == ["arn:aws:s3:::bus-bucket"]
    detail = event["detail"]
    assert detail["bucket"] == {"name": "bus-bucket"}
    assert detail["object"]["key"] == "a b.txt"
    assert (detail["object"]["size"], detail["object"]["etag"]) == (
        5,
        hashlib.md5(b"12345").hexdigest(),
    )
    assert detail["reason"] == "PutObject"
    assert detail["source-ip-address"] == "127.0.0.1"
    assert drain(sqs, url, 1, timeout=1) == []

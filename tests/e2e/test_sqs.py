"""SQS-compatible queues through boto3's own `sqs` client (json 1.0) against a real server.

The server runs with --time-scale 0.01: a 30-second visibility timeout lasts 0.3 s, the
5-minute FIFO deduplication window 3 s, the 60-second purge cool-down 0.6 s.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server

SCALE = 0.01


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=["--time-scale", str(SCALE)]).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sqs(server: Server) -> Any:
    return server.client("sqs")


def arn_of(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def counts(sqs: Any, url: str) -> tuple[int, int, int]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return tuple(int(found[n]) for n in names)  # type: ignore[return-value]


def error_of(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    return dict(info.value.response["Error"])


def test_queue_lifecycle(sqs: Any, server: Server) -> None:
    url = sqs.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
    assert url == f"{server.endpoint}/000000000000/life"
    # Same name, same attributes: the same queue. Different attributes: an error.
    assert (
        sqs.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
        == url
    )
    error = error_of(sqs.create_queue, QueueName="life", Attributes={"VisibilityTimeout": "46"})
    assert error["Code"] == "QueueAlreadyExists"
    assert sqs.get_queue_url(QueueName="life")["QueueUrl"] == url
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "45"
    assert attributes["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:life"
    assert attributes["MessageRetentionPeriod"] == "345600"
    assert attributes["MaximumMessageSize"] == "1048576"
    assert "FifoQueue" not in attributes
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "5"})
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])[
        "Attributes"
    ] == {"DelaySeconds": "5"}
    error = error_of(sqs.set_queue_attributes, QueueUrl=url, Attributes={"DelaySeconds": "901"})
    assert error["Code"] == "InvalidAttributeValue"
    sqs.tag_queue(QueueUrl=url, Tags={"team": "lamina"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "lamina"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
    assert url in sqs.list_queues(QueueNamePrefix="li")["QueueUrls"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as info:
        sqs.get_queue_url(QueueName="life")
    assert info.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")
    # AWS makes you wait 60 seconds (0.6 s here) before reusing the name.
    error = error_of(sqs.create_queue, QueueName="life")
    assert error["Code"] == "AWS.SimpleQueueService.QueueDeletedRecently"
    time.sleep(60 * SCALE + 0.2)
    sqs.create_queue(QueueName="life")


def test_names_are_checked(sqs: Any) -> None:
    assert error_of(sqs.create_queue, QueueName="bad name")["Code"] == "InvalidParameterValue"
    assert error_of(sqs.create_queue, QueueName="x" * 81)["Code"] == "InvalidParameterValue"
    error = error_of(sqs.create_queue, QueueName="nofifo", Attributes={"FifoQueue": "true"})
    assert error["Code"] == "InvalidParameterValue"
    assert error_of(sqs.create_queue, QueueName="plain.fifo")["Code"] == "InvalidParameterValue"


def test_list_queues_pages(sqs: Any) -> None:
    for i in range(5):
        sqs.create_queue(QueueName=f"page-{i}")
    first = sqs.list_queues(QueueNamePrefix="page-", MaxResults=3)
    assert [u.rsplit("/", 1)[1] for u in first["QueueUrls"]] == ["page-0", "page-1", "page-2"]
    second = sqs.list_queues(QueueNamePrefix="page-", MaxResults=3, NextToken=first["NextToken"])
    assert [u.rsplit("/", 1)[1] for u in second["QueueUrls"]] == ["page-3", "page-4"]
    assert "NextToken" not in second


def test_send_receive_delete_with_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="basic")["QueueUrl"]
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="héllo",
        MessageAttributes={
            "meta.color": {"DataType": "String", "StringValue": "blue"},
            "size": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
        MessageSystemAttributes={
            "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe"}
        },
    )
    assert sent["MD5OfMessageBody"] == hashlib.md5("héllo".encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"]  # checked against AWS's algorithm in unit tests
    assert sent["MD5OfMessageSystemAttributes"]
    received = sqs.receive_message(
        QueueUrl=url,
        MessageAttributeNames=["meta.*", "size"],
        MessageSystemAttributeNames=["ApproximateReceiveCount", "AWSTraceHeader"],
    )["Messages"]
    assert len(received) == 1
    message = received[0]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == "héllo"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["Attributes"] == {
        "ApproximateReceiveCount": "1",
        "AWSTraceHeader": "Root=1-5759e988-bd862e3fe",
    }
    assert set(message["MessageAttributes"]) == {"meta.color", "size"}
    assert message["MessageAttributes"]["size"] == {"StringValue": "42", "DataType": "Number"}
    # Hidden while in flight.
    assert counts(sqs, url) == (0, 1, 0)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])  # idempotent
    assert counts(sqs, url) == (0, 0, 0)
    error = error_of(sqs.delete_message, QueueUrl=url, ReceiptHandle="garbage")
    assert error["Code"] == "ReceiptHandleIsInvalid"
    all_attributes = sqs.send_message(
        QueueUrl=url,
        MessageBody="b",
        MessageAttributes={"blob": {"DataType": "Binary", "BinaryValue": b"\xff"}},
    )
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"])[
        "Messages"
    ][0]
    assert got["MD5OfMessageAttributes"] == all_attributes["MD5OfMessageAttributes"]
    assert got["MessageAttributes"]["blob"]["BinaryValue"] == b"\xff"
    assert set(got["Attributes"]) == {
        "SenderId",
        "SentTimestamp",
        "ApproximateReceiveCount",
        "ApproximateFirstReceiveTimestamp",
    }


def test_bad_messages_are_refused(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="strict", Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    assert error_of(sqs.send_message, QueueUrl=url, MessageBody="x" * 1025)["Code"] == (
        "InvalidParameterValue"
    )
    assert error_of(sqs.send_message, QueueUrl=url, MessageBody="bad \x00 char")["Code"] == (
        "InvalidMessageContents"
    )
    error = error_of(
        sqs.send_message,
        QueueUrl=url,
        MessageBody="x",
        MessageAttributes={"n": {"DataType": "Number", "StringValue": "forty"}},
    )
    assert error["Code"] == "InvalidParameterValue"
    error = error_of(sqs.receive_message, QueueUrl=url, MaxNumberOfMessages=11)
    assert error["Code"] == "InvalidParameterValue"
    assert "MaxNumberOfMessages" in error["Message"]
    assert counts(sqs, url) == (0, 0, 0)


def test_visibility_timeout_and_receive_count(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="visible", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    assert first["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    time.sleep(30 * SCALE + 0.2)  # the visibility timeout (0.3 s) runs out
    second = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    message = second["Messages"][0]
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"
    # The old receipt handle no longer deletes it.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["Messages"][0]["ReceiptHandle"])
    assert counts(sqs, url) == (0, 1, 0)
    # ChangeMessageVisibility to 0 makes it visible at once; per-receive timeouts work too.
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    third = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1000)["Messages"][0]
    time.sleep(30 * SCALE + 0.2)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)  # still hidden (1000 s)
    result = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok", "ReceiptHandle": third["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "bad", "ReceiptHandle": "garbage", "VisibilityTimeout": 0},
        ],
    )
    assert [e["Id"] for e in result["Successful"]] == ["ok"]
    assert [(e["Id"], e["Code"]) for e in result["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]
    visible = sqs.receive_message(QueueUrl=url)["Messages"][0]
    error = error_of(
        sqs.change_message_visibility,
        QueueUrl=url,
        ReceiptHandle=third["ReceiptHandle"],
        VisibilityTimeout=10,
    )
    assert error["Code"] == "InvalidParameterValue"  # a stale handle
    sqs.delete_message(QueueUrl=url, ReceiptHandle=visible["ReceiptHandle"])


def test_long_polling_waits_for_a_message(sqs: Any, server: Server) -> None:
    url = sqs.create_queue(QueueName="long")["QueueUrl"]
    started = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert 0.9 < time.monotonic() - started < 3  # WaitTimeSeconds is not scaled

    other = server.client("sqs")
    timer = threading.Timer(0.3, lambda: other.send_message(QueueUrl=url, MessageBody="late"))
    timer.start()
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
    timer.join()
    assert got["Messages"][0]["Body"] == "late"
    assert time.monotonic() - started < 3


def test_delay_seconds(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="delayed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=100)  # 1 s here
    assert counts(sqs, url) == (0, 0, 1)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)  # woken when it shows up
    assert got["Messages"][0]["Body"] == "later"


def test_batches(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="batches")["QueueUrl"]
    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(10)] + [],
    )
    assert sorted(e["Id"] for e in sent["Successful"]) == sorted(f"m{i}" for i in range(10))
    assert sent["Failed"] == []
    mixed = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "good", "MessageBody": "fine"},
            {"Id": "bad", "MessageBody": "x", "DelaySeconds": 901},
        ],
    )
    assert [e["Id"] for e in mixed["Successful"]] == ["good"]
    assert mixed["Failed"][0]["Id"] == "bad" and mixed["Failed"][0]["SenderFault"] is True
    too_many = [{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)]
    assert error_of(sqs.send_message_batch, QueueUrl=url, Entries=too_many)["Code"] == (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    )
    twice = [{"Id": "same", "MessageBody": "x"}, {"Id": "same", "MessageBody": "y"}]
    assert error_of(sqs.send_message_batch, QueueUrl=url, Entries=twice)["Code"] == (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    )
    received: list[dict[str, Any]] = []
    for _ in range(5):
        received += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert len(received) == 11
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(received[:10])
        ],
    )
    assert len(deleted["Successful"]) == 10
    assert counts(sqs, url) == (0, 1, 0)


def test_purge(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="purged")["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.purge_queue(QueueUrl=url)
    assert counts(sqs, url) == (0, 0, 0)
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress):
        sqs.purge_queue(QueueUrl=url)
    time.sleep(60 * SCALE + 0.2)
    sqs.purge_queue(QueueUrl=url)


def test_redrive_to_a_dead_letter_queue(sqs: Any) -> None:
    dead_url = sqs.create_queue(QueueName="dead")["QueueUrl"]
    dead_arn = arn_of(sqs, dead_url)
    policy = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(
        QueueName="source", Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "10"}
    )["QueueUrl"]
    error = error_of(
        sqs.set_queue_attributes,
        QueueUrl=url,
        Attributes={
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dead_arn + "-missing", "maxReceiveCount": 2}
            )
        },
    )
    assert error["Code"] == "InvalidAttributeValue"
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison")
    for attempt in (1, 2):
        got = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
        assert got["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == str(attempt)
        time.sleep(10 * SCALE + 0.1)
    # The third receive moves it to the dead-letter queue instead.
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    moved = sqs.receive_message(
        QueueUrl=dead_url, MessageSystemAttributeNames=["All"], WaitTimeSeconds=2
    )["Messages"][0]
    assert moved["MessageId"] == sent["MessageId"]
    assert moved["Body"] == "poison"
    assert moved["Attributes"]["DeadLetterQueueSourceArn"] == arn_of(sqs, url)
    assert sqs.list_dead_letter_source_queues(QueueUrl=dead_url)["queueUrls"] == [url]
    assert counts(sqs, url) == (0, 0, 0)


def test_fifo_groups_stay_in_order(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="orders.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "60"},
    )["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert attributes["ContentBasedDeduplication"] == "false"
    error = error_of(sqs.send_message, QueueUrl=url, MessageBody="x", MessageGroupId="a")
    assert error["Code"] == "InvalidParameterValue"  # no deduplication id, none derived
    error = error_of(sqs.send_message, QueueUrl=url, MessageBody="x", MessageDeduplicationId="1")
    assert error["Code"] == "MissingParameter"
    sequences = []
    for i in range(6):
        sent = sqs.send_message(
            QueueUrl=url,
            MessageBody=f"{'ab'[i % 2]}{i}",
            MessageGroupId="ab"[i % 2],
            MessageDeduplicationId=f"d{i}",
        )
        sequences.append(int(sent["SequenceNumber"]))
    assert sequences == sorted(sequences)
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, AttributeNames=["All"])
    bodies = [m["Body"] for m in first["Messages"]]
    assert bodies == ["a0", "a2"]  # a group's messages come together, in order
    assert first["Messages"][0]["Attributes"]["MessageGroupId"] == "a"
    # Group a is blocked while a message of it is in flight: only b comes out.
    second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in second["Messages"]] == ["b1", "b3", "b5"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    # Delete a0 only: a2 is still in flight, so a4 must still wait.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["Messages"][0]["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    # When a2's visibility runs out it comes back first, ahead of a4.
    time.sleep(60 * SCALE + 0.2)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again][:2] == ["a2", "a4"]


def test_fifo_deduplication(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="dedup.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    first = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    again = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    assert again["MessageId"] == first["MessageId"]
    explicit = sqs.send_message(
        QueueUrl=url, MessageBody="same", MessageGroupId="g", MessageDeduplicationId="other"
    )
    assert explicit["MessageId"] != first["MessageId"]
    assert counts(sqs, url) == (2, 0, 0)
    time.sleep(300 * SCALE + 0.3)  # the 5-minute window (3 s here) is over
    later = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    assert later["MessageId"] != first["MessageId"]
    assert counts(sqs, url) == (3, 0, 0)
    error = error_of(
        sqs.send_message, QueueUrl=url, MessageBody="x", MessageGroupId="g", DelaySeconds=5
    )
    assert error["Code"] == "InvalidParameterValue"


def test_messages_survive_a_kill(tmp_path: Path) -> None:
    # A deduplication window of 30 s (5 minutes scaled): a restart on a loaded machine
    # takes seconds, and the FIFO send after it must still fall inside the window.
    scale = 0.1
    data_dir = tmp_path / "data"
    first = Server(data_dir, args=["--time-scale", str(scale)]).start()
    try:
        sqs = first.client("sqs")
        url = sqs.create_queue(QueueName="durable")["QueueUrl"]
        fifo = sqs.create_queue(
            QueueName="durable.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )["QueueUrl"]
        ids = {sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")["MessageId"] for i in range(5)}
        taken = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
        sqs.send_message(QueueUrl=fifo, MessageBody="once", MessageGroupId="g")
    finally:
        first.kill()
    second = Server(data_dir, args=["--time-scale", str(scale)]).start()
    try:
        sqs = second.client("sqs")
        url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
        time.sleep(30 * scale + 0.2)
        seen: dict[str, str] = {}
        for _ in range(5):
            for m in sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
            ).get("Messages", []):
                seen[m["MessageId"]] = m["Attributes"]["ApproximateReceiveCount"]
        assert set(seen) == ids
        # The receive count of the message received before the kill was kept.
        assert seen[taken["Messages"][0]["MessageId"]] == "2"
        fifo = sqs.get_queue_url(QueueName="durable.fifo")["QueueUrl"]
        sqs.send_message(QueueUrl=fifo, MessageBody="once", MessageGroupId="g")  # deduplicated
        assert counts(sqs, fifo) == (1, 0, 0)
    finally:
        second.stop()

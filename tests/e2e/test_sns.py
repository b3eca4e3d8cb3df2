"""SNS against a real server: topics and subscriptions, filter policies, deliveries to a
function (AWS's SNS event record through the async queue), to SQS queues (the JSON
envelope, or raw) and to an HTTP endpoint with the confirmation handshake and retries.

Platform delays run 100x fast (time scale 0.01): HTTP retries 20 s apart take 0.2 s.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_async import WORKER, Recorder
from tests.e2e.test_aws_cli import AWS, cli_env
from tests.e2e.test_observability import cloudwatch_figure
from tests.helpers import Server, python_function

ARGS = ["--time-scale", "0.01", "--isolation", "none"]
ACCOUNT = "000000000000"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=ARGS).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


@pytest.fixture
def sns(server: Server) -> Any:
    return server.client("sns")


@pytest.fixture
def sqs(server: Server) -> Any:
    return server.client("sqs")


def worker(lam: Any, recorder: Recorder, name: str) -> str:
    made = python_function(
        lam,
        name,
        WORKER,
        Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
    )
    return str(made["FunctionArn"])


def queue_for(sqs: Any, name: str, topic_arn: str, **attributes: str) -> tuple[str, str]:
    """A queue whose policy lets the topic send to it (AWS requires one); (url, arn)."""
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url, arn


def drain(sqs: Any, url: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])  # fmt: skip
        for message in got:  # visibility timeouts are scaled too: take each one for good
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        found.extend(got)
    return found


def attribute(kind: str, value: str) -> dict[str, str]:
    return {"DataType": kind, "StringValue": value}


def test_filtered_fan_out_to_a_function_and_queues(
    server: Server, sns: Any, sqs: Any, recorder: Recorder
) -> None:
    lam = server.client()
    topic = sns.create_topic(Name="orders")["TopicArn"]
    assert topic == f"arn:aws:sns:us-east-1:{ACCOUNT}:orders"
    assert sns.create_topic(Name="orders")["TopicArn"] == topic  # idempotent
    function = worker(lam, recorder, "sns-orders")
    lam.add_permission(
        FunctionName="sns-orders", StatementId="sns", Action="lambda:InvokeFunction",
        Principal="sns.amazonaws.com", SourceArn=topic,
    )  # fmt: skip
    policy = json.dumps({"store": ["eu-west", "us-east"], "price": [{"numeric": [">", 100]}]})
    to_function = sns.subscribe(
        TopicArn=topic, Protocol="lambda", Endpoint=function,
        Attributes={"FilterPolicy": policy},
    )["SubscriptionArn"]  # fmt: skip
    url, queue_arn = queue_for(sqs, "orders-all", topic)
    to_queue = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]
    raw_url, raw_arn = queue_for(sqs, "orders-raw", topic)
    body_policy = json.dumps({"kind": [{"prefix": "big"}]})
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=raw_arn, ReturnSubscriptionArn=True,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": body_policy,
                    "FilterPolicyScope": "MessageBody"},
    )  # fmt: skip

    sent = [
        ({"store": "eu-west", "price": 150}, {"kind": "big-order", "n": 1}),  # both
        ({"store": "eu-west", "price": 50}, {"kind": "small", "n": 2}),  # neither filter
        ({"store": "ap-south", "price": 500}, {"kind": "bigger", "n": 3}),  # body only
        ({"store": "us-east", "price": 101.5}, {"kind": "tiny", "n": 4}),  # function only
    ]
    ids = []
    for attrs, body in sent:
        ids.append(
            sns.publish(
                TopicArn=topic, Message=json.dumps(body), Subject="order",
                MessageAttributes={
                    "store": attribute("String", attrs["store"]),
                    "price": attribute("Number", str(attrs["price"])),
                },
            )["MessageId"]
        )  # fmt: skip

    # The function: exactly messages 1 and 4, each as AWS's SNS event record.
    runs = recorder.wait("sns-orders", 2)
    time.sleep(0.5)
    runs = recorder.of("sns-orders")
    assert len(runs) == 2
    records = sorted((r["event"]["Records"] for r in runs), key=lambda r: r[0]["Sns"]["Message"])
    got = [json.loads(r[0]["Sns"]["Message"])["n"] for r in records]
    assert got == [1, 4]
    record = records[0][0]
    assert record["EventSource"] == "aws:sns"
    assert record["EventVersion"] == "1.0"
    assert record["EventSubscriptionArn"] == to_function
    shown = record["Sns"]
    assert shown["Type"] == "Notification"
    assert shown["MessageId"] == ids[0]
    assert shown["TopicArn"] == topic
    assert shown["Subject"] == "order"
    assert shown["Timestamp"].endswith("Z")
    assert shown["SignatureVersion"] == "1"
    assert {"Signature", "SigningCertUrl", "UnsubscribeUrl"} <= set(shown)
    assert shown["MessageAttributes"] == {
        "store": {"Type": "String", "Value": "eu-west"},
        "price": {"Type": "Number", "Value": "150"},
    }

    # The unfiltered queue: all four, in the JSON envelope.
    envelopes = [json.loads(m["Body"]) for m in drain(sqs, url, 4)]
    assert sorted(json.loads(e["Message"])["n"] for e in envelopes) == [1, 2, 3, 4]
    first = next(e for e in envelopes if e["MessageId"] == ids[0])
    assert first["Type"] == "Notification"
    assert first["TopicArn"] == topic
    assert first["Subject"] == "order"
    assert {"SigningCertURL", "UnsubscribeURL", "Signature"} <= set(first)
    assert first["MessageAttributes"]["price"] == {"Type": "Number", "Value": "150"}
    assert to_queue.startswith(topic + ":")

    # The raw queue, filtered on the body: messages 1 and 3, the body itself, attributes
    # as SQS message attributes.
    raw = drain(sqs, raw_url, 2)
    time.sleep(0.3)
    raw += drain(sqs, raw_url, 1, timeout=1)
    assert sorted(json.loads(m["Body"])["n"] for m in raw) == [1, 3]
    assert raw[0]["MessageAttributes"]["store"]["DataType"] == "String"

    listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert len(listed) == 3
    attributes = sns.get_subscription_attributes(SubscriptionArn=to_function)["Attributes"]
    assert attributes["FilterPolicy"] == policy
    assert attributes["FilterPolicyScope"] == "MessageAttributes"
    assert attributes["PendingConfirmation"] == "false"
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsConfirmed"] == "3"

    # CloudWatch's AWS/SNS figures: 4 published, 8 delivered (2 + 4 + 2), 4 filtered out.
    def figure(name: str) -> float:
        return cloudwatch_figure(server, name, "Sum", "AWS/SNS", TopicName="orders")

    assert figure("NumberOfMessagesPublished") == 4
    assert figure("NumberOfNotificationsDelivered") == 8
    assert figure("NumberOfNotificationsFilteredOut") == 4
    assert figure("NumberOfNotificationsFilteredOut-MessageBody") == 2


def test_without_permission_nothing_is_delivered(
    server: Server, sns: Any, sqs: Any, recorder: Recorder
) -> None:
    """No resource policy for SNS on the function or the queue: AWS does not deliver, and
    the message goes to the subscription's dead-letter queue."""
    lam = server.client()
    topic = sns.create_topic(Name="closed")["TopicArn"]
    function = worker(lam, recorder, "sns-closed")
    url = sqs.create_queue(QueueName="closed-q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    dead_url, dead_arn = queue_for(sqs, "closed-dlq", topic)
    sns.subscribe(
        TopicArn=topic, Protocol="lambda", Endpoint=function,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn})},
    )  # fmt: skip
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sns.publish(TopicArn=topic, Message="hello")
    dead = drain(sqs, dead_url, 1)
    assert len(dead) == 1 and json.loads(dead[0]["Body"])["Message"] == "hello"
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None
    assert recorder.of("sns-closed") == []


def test_errors_as_aws_answers(sns: Any) -> None:
    missing = f"arn:aws:sns:us-east-1:{ACCOUNT}:nope"
    cases = [
        (lambda: sns.publish(TopicArn=missing, Message="x"), "NotFound", "Topic does not exist"),
        (lambda: sns.create_topic(Name="bad name"), "InvalidParameter",
         "Invalid parameter: Topic Name"),
        (lambda: sns.get_subscription_attributes(SubscriptionArn=missing + ":" + "0" * 36),
         "NotFound", "Subscription does not exist"),
    ]  # fmt: skip
    topic = sns.create_topic(Name="errs")["TopicArn"]
    cases += [
        (lambda: sns.publish(TopicArn=topic, Message=""), "InvalidParameter",
         "Invalid parameter: Empty message"),
        (lambda: sns.subscribe(TopicArn=topic, Protocol="carrier-pigeon", Endpoint="x"),
         "InvalidParameter",
         "Invalid parameter: Amazon SNS does not support this protocol string: carrier-pigeon"),
        (lambda: sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint="not-an-arn"),
         "InvalidParameter", "Invalid parameter: SQS endpoint ARN"),
        (lambda: sns.subscribe(TopicArn=topic, Protocol="sqs",
                               Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:q.fifo"),
         "InvalidParameter", "Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS "
         "Queues can not be subscribed to standard SNS topics"),
        (lambda: sns.publish(TopicArn=topic, Message="x", MessageAttributes={
            "n": {"DataType": "Number", "StringValue": "many"}}),
         "ParameterValueInvalid", "Could not cast message attribute 'n' value to number."),
        (lambda: sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=QUEUE,
                               Attributes={"FilterPolicy": "{not json"}),
         "InvalidParameter", "Invalid parameter: FilterPolicy: failed to parse JSON."),
        (lambda: sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=QUEUE,
                               Attributes={"FilterPolicy": '{"a": {"b": ["c"]}}'}),
         "InvalidParameter", "Invalid parameter: Filter policy scope MessageAttributes does not "
         "support nested filter policy"),
        (lambda: sns.publish(TopicArn=topic, Message="{}", MessageStructure="json"),
         "InvalidParameter",
         "Invalid parameter: Message Structure - No default entry in JSON message body"),
    ]  # fmt: skip
    for call, code, message in cases:
        with pytest.raises(ClientError) as raised:
            call()
        assert raised.value.response["Error"]["Code"] == code
        assert raised.value.response["Error"]["Message"] == message


def test_fifo_topic_to_fifo_queue(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(
        Name="ledger.fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )["TopicArn"]
    url, arn = queue_for(sqs, "ledger.fifo", topic, FifoQueue="true")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    with pytest.raises(ClientError) as raised:
        sns.publish(TopicArn=topic, Message="no group")
    assert "MessageGroupId" in raised.value.response["Error"]["Message"]
    first = sns.publish(TopicArn=topic, Message="one", MessageGroupId="g")
    again = sns.publish(TopicArn=topic, Message="one", MessageGroupId="g")  # a duplicate
    second = sns.publish(TopicArn=topic, Message="two", MessageGroupId="g")
    assert again["MessageId"] == first["MessageId"]
    assert int(second["SequenceNumber"]) > int(first["SequenceNumber"])
    batch = sns.publish_batch(
        TopicArn=topic,
        PublishBatchRequestEntries=[
            {"Id": "a", "Message": "three", "MessageGroupId": "g"},
            {"Id": "b", "Message": "four"},  # no group: this entry fails alone
        ],
    )
    assert [s["Id"] for s in batch["Successful"]] == ["a"]
    assert batch["Failed"][0]["Id"] == "b" and batch["Failed"][0]["Code"] == "InvalidParameter"
    got = drain(sqs, url, 3)
    assert [json.loads(m["Body"])["Message"] for m in got] == ["one", "two", "three"]


class Endpoint(BaseHTTPRequestHandler):
    """An HTTP subscriber: records every POST; answers 500 while `failures` lasts."""

    received: ClassVar[list[tuple[dict[str, str], dict[str, Any] | str]]] = []
    failures = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        cls = type(self)
        if cls.failures > 0:
            cls.failures -= 1
            self.send_response(500)
            self.end_headers()
            return
        try:
            parsed: dict[str, Any] | str = json.loads(body)
        except ValueError:
            parsed = body
        cls.received.append(({k.lower(): v for k, v in self.headers.items()}, parsed))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_http_subscription_handshake_and_retries(sns: Any) -> None:
    http = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}/hook"
        topic = sns.create_topic(Name="hooks")["TopicArn"]
        pending = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=url)
        assert pending["SubscriptionArn"] == "pending confirmation"
        deadline = time.monotonic() + 10
        while not Endpoint.received and time.monotonic() < deadline:
            time.sleep(0.05)
        headers, confirm = Endpoint.received.pop(0)
        assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
        assert isinstance(confirm, dict) and confirm["TopicArn"] == topic
        listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        assert listed[0]["SubscriptionArn"] == "PendingConfirmation"
        sns.publish(TopicArn=topic, Message="before")  # not delivered: unconfirmed
        with urllib.request.urlopen(confirm["SubscribeURL"], timeout=5) as answer:
            assert b"<SubscriptionArn>" in answer.read()
        subscription = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"][0]
        assert subscription["SubscriptionArn"].startswith(topic + ":")

        Endpoint.failures = 2  # two 500s, then the third attempt (second retry) lands
        sns.publish(TopicArn=topic, Message="after", Subject="s")
        deadline = time.monotonic() + 10
        while not Endpoint.received and time.monotonic() < deadline:
            time.sleep(0.05)
        headers, note = Endpoint.received.pop(0)
        assert Endpoint.failures == 0
        assert headers["x-amz-sns-message-type"] == "Notification"
        assert headers["x-amz-sns-subscription-arn"] == subscription["SubscriptionArn"]
        assert isinstance(note, dict) and note["Message"] == "after" and note["Subject"] == "s"
        time.sleep(0.3)
        assert Endpoint.received == []  # "before" never came
    finally:
        http.shutdown()
        http.server_close()


def test_aws_cli_publish(server: Server, sns: Any, sqs: Any, tmp_path: Path) -> None:
    topic = sns.create_topic(Name="cli")["TopicArn"]
    url, arn = queue_for(sqs, "cli-q", topic)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn,
        Attributes={"FilterPolicy": json.dumps({"kind": ["wanted"]})},
    )  # fmt: skip
    done = subprocess.run(
        [str(AWS), "--endpoint-url", server.endpoint, "sns", "publish", "--topic-arn", topic,
         "--message", "from the cli", "--message-attributes",
         '{"kind": {"DataType": "String", "StringValue": "wanted"}}', "--output", "json"],
        env=cli_env(tmp_path, "us-east-1"), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    message_id = json.loads(done.stdout)["MessageId"]
    got = drain(sqs, url, 1)
    envelope = json.loads(got[0]["Body"])
    assert envelope["MessageId"] == message_id and envelope["Message"] == "from the cli"


def test_links_work_unsigned_with_auth_on(tmp_path: Path) -> None:
    """With `--auth on` an endpoint confirms (SubscribeURL) and leaves (UnsubscribeURL)
    with the plain links it was sent, as on AWS; any other unsigned call is refused."""
    server = Server(tmp_path / "data", args=["--auth", "on", *ARGS]).start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        _, keys = server.new_account("alice")
        sns = server.client("sns", credentials=keys)
        topic = sns.create_topic(Name="signed")["TopicArn"]
        Endpoint.received.clear()
        sns.subscribe(TopicArn=topic, Protocol="http",
                      Endpoint=f"http://127.0.0.1:{http.server_address[1]}/")  # fmt: skip
        confirm = wait_for_post()
        with urllib.request.urlopen(confirm["SubscribeURL"], timeout=5) as answer:
            assert answer.status == 200
        sns.publish(TopicArn=topic, Message="hello")
        note = wait_for_post()
        assert note["Message"] == "hello"
        with urllib.request.urlopen(note["UnsubscribeURL"], timeout=5) as answer:
            assert answer.status == 200
        assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
        unsigned = f"{server.endpoint}/?Action=ListTopics&Version=2010-03-31"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(unsigned, timeout=5)
        assert refused.value.code == 403
    finally:
        http.shutdown()
        http.server_close()
        server.stop()


def wait_for_post(timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not Endpoint.received and time.monotonic() < deadline:
        time.sleep(0.05)
    _, body = Endpoint.received.pop(0)
    assert isinstance(body, dict)
    return body

"""Walls between accounts with `--auth on`, in every service: account B sees, reads and
changes nothing of account A's queues, streams, logs, metrics and traces, nor through
Lamina's own endpoints (/_lamina/*, /metrics, code links); SQS queue policies (the
`Policy` attribute, AddPermission / RemovePermission) are the way in for another account.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

Keys = dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("walls") / "data",
        args=["--auth", "on", "--isolation", "none", "--time-scale", "0.01"],
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def owner(server: Server) -> tuple[str, Keys]:
    return server.new_account("wall-owner")


@pytest.fixture(scope="module")
def other(server: Server) -> tuple[str, Keys]:
    return server.new_account("wall-other")


def error_of(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_sqs_queues_of_another_account_need_its_policy(
    server: Server, owner: tuple[str, Keys], other: tuple[str, Keys]
) -> None:
    mine_id, mine_keys = owner
    theirs_id, theirs_keys = other
    mine = server.client("sqs", credentials=mine_keys)
    theirs = server.client("sqs", credentials=theirs_keys)
    url = mine.create_queue(QueueName="walled")["QueueUrl"]
    assert url == f"{server.endpoint}/{mine_id}/walled"
    denied = ("AccessDenied", f"Access to the resource {url} is denied.", 403)
    assert "QueueUrls" not in theirs.list_queues()
    assert error_of(theirs.get_queue_url, QueueName="walled", QueueOwnerAWSAccountId=mine_id) == (
        denied
    )
    assert error_of(theirs.send_message, QueueUrl=url, MessageBody="in?") == denied
    assert error_of(theirs.receive_message, QueueUrl=url) == denied
    assert error_of(theirs.get_queue_attributes, QueueUrl=url, AttributeNames=["All"]) == denied
    # A queue that does not exist is answered alike: nothing leaks.
    ghost = f"{server.endpoint}/{mine_id}/ghost"
    assert error_of(theirs.send_message, QueueUrl=ghost, MessageBody="x") == (
        "AccessDenied",
        f"Access to the resource {ghost} is denied.",
        403,
    )

    # The queue's policy lets B send, and nothing else.
    arn = f"arn:aws:sqs:us-east-1:{mine_id}:walled"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "b-sends",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{theirs_id}:root"},
                "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
                "Resource": arn,
            }
        ],
    }
    mine.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    sent = theirs.send_message(QueueUrl=url, MessageBody="from b")
    assert theirs.get_queue_url(QueueName="walled", QueueOwnerAWSAccountId=mine_id)["QueueUrl"]
    assert error_of(theirs.receive_message, QueueUrl=url) == denied
    received = mine.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    assert [(m["MessageId"], m["Body"]) for m in received] == [(sent["MessageId"], "from b")]
    # A statement that only a service acting for a resource matches lets no direct call in.
    policy["Statement"][0]["Condition"] = {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:x"}}
    mine.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    assert error_of(theirs.send_message, QueueUrl=url, MessageBody="x") == denied
    # An explicit Deny wins over an Allow.
    policy["Statement"] = [
        {**policy["Statement"][0], "Sid": "all", "Action": "sqs:*"},
        {"Sid": "no", "Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage"},
    ]
    del policy["Statement"][0]["Condition"]
    mine.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    assert error_of(theirs.send_message, QueueUrl=url, MessageBody="x") == denied
    assert theirs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"] == {
        "QueueArn": arn
    }
    # Only the owner changes a queue, whatever its policy says (sqs:* above).
    assert (
        error_of(theirs.set_queue_attributes, QueueUrl=url, Attributes={"DelaySeconds": "1"})
        == denied
    )
    assert error_of(theirs.delete_queue, QueueUrl=url) == denied
    assert error_of(
        mine.set_queue_attributes, QueueUrl=url, Attributes={"Policy": "{not json"}
    ) == ("InvalidAttributeValue", "Invalid value for the parameter Policy.", 400)
    mine.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""})
    assert error_of(theirs.send_message, QueueUrl=url, MessageBody="x") == denied

    # AddPermission writes AWS's statement; RemovePermission takes it away.
    mine.add_permission(
        QueueUrl=url, Label="b-may-send", AWSAccountIds=[theirs_id], Actions=["SendMessage"]
    )
    document = json.loads(
        mine.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    assert document == {
        "Version": "2012-10-17",
        "Id": f"{arn}/SQSDefaultPolicy",
        "Statement": [
            {
                "Sid": "b-may-send",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{theirs_id}:root"},
                "Action": "SQS:SendMessage",
                "Resource": arn,
            }
        ],
    }
    theirs.send_message(QueueUrl=url, MessageBody="by permission")
    assert error_of(
        mine.add_permission,
        QueueUrl=url,
        Label="b-may-send",
        AWSAccountIds=[theirs_id],
        Actions=["ReceiveMessage"],
    ) == (
        "InvalidParameterValue",
        "Value b-may-send for parameter Label is invalid. Reason: Already exists.",
        400,
    )
    assert error_of(
        mine.add_permission,
        QueueUrl=url,
        Label="owner-only",
        AWSAccountIds=[theirs_id],
        Actions=["DeleteQueue"],
    ) == (
        "InvalidParameterValue",
        "Value SQS:DeleteQueue for parameter ActionName is invalid. Reason: Only the queue owner "
        "is allowed to invoke this action.",
        400,
    )
    mine.remove_permission(QueueUrl=url, Label="b-may-send")
    assert error_of(theirs.send_message, QueueUrl=url, MessageBody="x") == denied
    assert error_of(mine.remove_permission, QueueUrl=url, Label="b-may-send") == (
        "InvalidParameterValue",
        "Value b-may-send for parameter Label is invalid. Reason: can't find label on existing "
        "policy.",
        400,
    )


FAILS = "def handler(event, context):\n    raise RuntimeError('to the destination')\n"


def test_a_destination_in_another_account_needs_its_queue_policy(
    server: Server, owner: tuple[str, Keys], other: tuple[str, Keys]
) -> None:
    """A's function sends its failures to B's queue only once B's policy allows it."""
    mine_id, mine_keys = owner
    theirs_id, theirs_keys = other
    lam = server.client(credentials=mine_keys)
    theirs = server.client("sqs", credentials=theirs_keys)
    url = theirs.create_queue(QueueName="b-inbox")["QueueUrl"]
    arn = f"arn:aws:sqs:us-east-1:{theirs_id}:b-inbox"
    python_function(lam, "fails", FAILS)
    config = {"OnFailure": {"Destination": arn}}
    assert error_of(
        lam.put_function_event_invoke_config,
        FunctionName="fails",
        MaximumRetryAttempts=0,
        DestinationConfig=config,
    ) == (
        "InvalidParameterValueException",
        f"The function's execution role does not have permissions to call SendMessage on {arn}",
        400,
    )
    theirs.add_permission(
        QueueUrl=url, Label="a-fails-here", AWSAccountIds=[mine_id], Actions=["SendMessage"]
    )
    lam.put_function_event_invoke_config(
        FunctionName="fails", MaximumRetryAttempts=0, DestinationConfig=config
    )
    lam.invoke(FunctionName="fails", InvocationType="Event", Payload=b'{"n": 1}')
    deadline = time.monotonic() + 30
    messages: list[dict[str, Any]] = []
    while not messages:
        assert time.monotonic() < deadline, "the failure never reached B's queue"
        messages = theirs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"n": 1}


def test_streams_logs_metrics_and_traces_of_another_account(
    server: Server, owner: tuple[str, Keys], other: tuple[str, Keys]
) -> None:
    mine_id, mine_keys = owner
    theirs_id, theirs_keys = other
    kinesis = server.client("kinesis", credentials=mine_keys)
    kinesis.create_stream(StreamName="walled-stream", ShardCount=1)
    stream_arn = f"arn:aws:kinesis:us-east-1:{mine_id}:stream/walled-stream"
    other_kinesis = server.client("kinesis", credentials=theirs_keys)
    assert other_kinesis.list_streams()["StreamNames"] == []

    def kinesis_denied(action: str) -> tuple[str, str, int]:
        return (
            "AccessDeniedException",
            f"User: arn:aws:iam::{theirs_id}:root is not authorized to perform: "
            f"kinesis:{action} on resource: {stream_arn} because no resource-based policy "
            f"allows the kinesis:{action} action",
            400,
        )

    assert error_of(other_kinesis.describe_stream, StreamARN=stream_arn) == kinesis_denied(
        "DescribeStream"
    )
    assert error_of(
        other_kinesis.put_record, StreamARN=stream_arn, Data=b"x", PartitionKey="p"
    ) == kinesis_denied("PutRecord")
    shard = kinesis.list_shards(StreamName="walled-stream")["Shards"][0]["ShardId"]
    assert error_of(
        other_kinesis.get_shard_iterator,
        StreamARN=stream_arn,
        ShardId=shard,
        ShardIteratorType="TRIM_HORIZON",
    ) == kinesis_denied("GetShardIterator")
    iterator = kinesis.get_shard_iterator(
        StreamName="walled-stream", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert error_of(other_kinesis.get_records, ShardIterator=iterator)[0] == (
        "ResourceNotFoundException"
    )

    # A function of A's, invoked: its logs and metrics are A's.
    lam = server.client(credentials=mine_keys)
    python_function(lam, "walled-fn", "def handler(e, c):\n    print('secret line')\n")
    lam.invoke(FunctionName="walled-fn", Payload=b"{}")
    group = "/aws/lambda/walled-fn"
    logs = server.client("logs", credentials=mine_keys)
    other_logs = server.client("logs", credentials=theirs_keys)
    deadline = time.monotonic() + 10
    while not any(
        "secret line" in e["message"]
        for e in logs.filter_log_events(logGroupName=group).get("events", [])
    ):
        assert time.monotonic() < deadline, "A's log line never arrived"
        time.sleep(0.1)
    assert group not in [g["logGroupName"] for g in other_logs.describe_log_groups()["logGroups"]]
    group_arn = f"arn:aws:logs:us-east-1:{mine_id}:log-group:{group}"
    missing = ("ResourceNotFoundException", "The specified log group does not exist.", 400)
    assert error_of(other_logs.filter_log_events, logGroupName=group) == missing
    assert error_of(other_logs.describe_log_streams, logGroupIdentifier=group_arn) == missing
    cloudwatch = server.client("cloudwatch", credentials=mine_keys)
    other_cloudwatch = server.client("cloudwatch", credentials=theirs_keys)
    cloudwatch.put_metric_data(Namespace="Walls", MetricData=[{"MetricName": "m", "Value": 1}])
    deadline = time.monotonic() + 10
    while not cloudwatch.list_metrics(Namespace="AWS/Lambda")["Metrics"]:
        assert time.monotonic() < deadline, "A's Lambda metrics never appeared"
        time.sleep(0.1)
    assert other_cloudwatch.list_metrics(Namespace="Walls")["Metrics"] == []
    assert other_cloudwatch.list_metrics(Namespace="AWS/Lambda")["Metrics"] == []
    assert cloudwatch.list_metrics(Namespace="Walls")["Metrics"]

    # A name that also exists in B is B's own group, never A's.
    their_lambda = server.client(credentials=theirs_keys)
    python_function(their_lambda, "walled-fn", "def handler(e, c):\n    print('b line')\n")
    their_lambda.invoke(FunctionName="walled-fn", Payload=b"{}")
    assert not any(
        "secret line" in e["message"]
        for e in other_logs.filter_log_events(logGroupName=group).get("events", [])
    )

    dynamodb = server.client("dynamodb", credentials=mine_keys)
    other_dynamodb = server.client("dynamodb", credentials=theirs_keys)
    table = dynamodb.create_table(
        TableName="walled-table",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    )["TableDescription"]
    dynamodb.put_item(TableName="walled-table", Item={"k": {"S": "secret"}})
    assert other_dynamodb.list_tables()["TableNames"] == []
    assert (
        error_of(other_dynamodb.get_item, TableName="walled-table", Key={"k": {"S": "secret"}})[0]
        == "ResourceNotFoundException"
    )
    assert error_of(other_dynamodb.list_tags_of_resource, ResourceArn=table["TableArn"])[0] == (
        "ResourceNotFoundException"
    )
    other_streams = server.client("dynamodbstreams", credentials=theirs_keys)
    assert other_streams.list_streams()["Streams"] == []
    assert error_of(other_streams.describe_stream, StreamArn=table["LatestStreamArn"])[0] == (
        "ResourceNotFoundException"
    )

    xray = server.client("xray", credentials=mine_keys)
    other_xray = server.client("xray", credentials=theirs_keys)
    trace_id = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    segment = {
        "trace_id": trace_id,
        "id": secrets.token_hex(8),
        "name": "a-service",
        "start_time": time.time() - 1,
        "end_time": time.time(),
    }
    put = xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(segment)])
    assert put["UnprocessedTraceSegments"] == []
    window = {"StartTime": time.time() - 600, "EndTime": time.time() + 60}
    assert trace_id not in [s["Id"] for s in other_xray.get_trace_summaries(**window)[
        "TraceSummaries"]]  # fmt: skip
    assert other_xray.batch_get_traces(TraceIds=[trace_id])["Traces"] == []
    # B cannot move A's trace into its own view by sending a segment with its id.
    stolen = {**segment, "id": secrets.token_hex(8), "name": "b-service"}
    answer = other_xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(stolen)])
    assert [u["Message"] for u in answer["UnprocessedTraceSegments"]] == [
        "the trace belongs to another account"
    ]
    assert other_xray.batch_get_traces(TraceIds=[trace_id])["Traces"] == []
    assert [t["Id"] for t in xray.batch_get_traces(TraceIds=[trace_id])["Traces"]] == [trace_id]


def signed(url: str, keys: Keys, method: str = "GET") -> urllib.request.Request:
    request = AWSRequest(method, url)
    credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    return urllib.request.Request(url, headers=dict(request.headers.items()), method=method)


def fetch(request: urllib.request.Request | str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_laminas_own_endpoints_answer_the_signing_account_only(
    server: Server, owner: tuple[str, Keys], other: tuple[str, Keys]
) -> None:
    mine_id, mine_keys = owner
    theirs_id, theirs_keys = other
    lam = server.client(credentials=mine_keys)
    python_function(lam, "endpoint-fn", "def handler(e, c):\n    print('for my eyes')\n")
    lam.invoke(FunctionName="endpoint-fn", Payload=b"{}")
    base = server.endpoint

    assert fetch(f"{base}/_lamina/health")[0] == 200  # open: a health check
    for path in ("/_lamina/logs/endpoint-fn", "/_lamina/live", "/_lamina/stats", "/metrics"):
        status, body = fetch(base + path)
        assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
    forged = signed(f"{base}/_lamina/logs/endpoint-fn", {**mine_keys, "aws_secret_access_key": "x"})
    assert fetch(forged)[0] == 403

    status, text = fetch(signed(f"{base}/_lamina/logs/endpoint-fn", mine_keys))
    assert status == 200 and b"for my eyes" in text
    status, text = fetch(signed(f"{base}/_lamina/logs/endpoint-fn", theirs_keys))
    assert status == 200 and b"for my eyes" not in text

    status, body = fetch(signed(f"{base}/_lamina/live?account={mine_id}", theirs_keys))
    assert status == 403 and json.loads(body)["message"].startswith(
        f"User: arn:aws:iam::{theirs_id}:root is not authorized to read account {mine_id}"
    )
    status, body = fetch(signed(f"{base}/_lamina/live", theirs_keys))
    assert status == 200 and json.loads(body)["account"] == theirs_id
    assert "endpoint-fn" not in [f["name"] for f in json.loads(body)["functions"]]
    status, body = fetch(signed(f"{base}/_lamina/live", mine_keys))
    assert "endpoint-fn" in [f["name"] for f in json.loads(body)["functions"]]
    status, body = fetch(signed(f"{base}/_lamina/live/logs?function=endpoint-fn", theirs_keys))
    assert status == 200 and json.loads(body)["lines"] == []

    status, body = fetch(signed(f"{base}/_lamina/stats", theirs_keys))
    assert {entry["Account"] for entry in json.loads(body)["concurrency"]} <= {theirs_id}
    status, body = fetch(signed(f"{base}/_lamina/stats", mine_keys))
    assert {entry["Account"] for entry in json.loads(body)["concurrency"]} == {mine_id}

    status, text = fetch(signed(f"{base}/metrics", theirs_keys))
    assert status == 200 and b"endpoint-fn" not in text
    status, text = fetch(signed(f"{base}/metrics", mine_keys))
    assert status == 200 and b'function_name="endpoint-fn"' in text

    # Code links: signed, expiring, and the only way to the code without a signature.
    location = lam.get_function(FunctionName="endpoint-fn")["Code"]["Location"]
    assert "X-Lamina-Signature=" in location
    status, blob = fetch(location)
    assert status == 200 and blob[:2] == b"PK"
    bare = location.split("?", 1)[0]
    assert fetch(bare)[0] == 403
    expires = location.split("X-Lamina-Expires=", 1)[1].split("&", 1)[0]
    assert fetch(location.replace(expires, str(int(expires) + 600)))[0] == 403

    # Lamina's command-line clients sign with the credentials found as boto3 finds them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def cli(keys: Keys, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lamina.cli", *args, "--endpoint", base],
            env={
                **env,
                "AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"],
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    shown = cli(mine_keys, "logs", "endpoint-fn")
    assert shown.returncode == 0 and "for my eyes" in shown.stdout, shown.stderr
    assert "for my eyes" not in cli(theirs_keys, "logs", "endpoint-fn").stdout
    top = cli(theirs_keys, "top", "--once")
    assert top.returncode == 0 and "endpoint-fn" not in top.stdout, top.stderr
    top = cli(mine_keys, "top", "--once")
    assert top.returncode == 0 and "endpoint-fn" in top.stdout, top.stderr
    invoked = cli(mine_keys, "invoke", "endpoint-fn")
    assert invoked.returncode == 0 and "for my eyes" in invoked.stderr, invoked.stderr


def test_layers_of_another_account_need_their_versions_permission(
    server: Server, owner: tuple[str, Keys], other: tuple[str, Keys]
) -> None:
    from tests.helpers import make_zip

    mine_id, mine_keys = owner
    theirs_id, theirs_keys = other
    mine = server.client(credentials=mine_keys)
    theirs = server.client(credentials=theirs_keys)
    published = mine.publish_layer_version(
        LayerName="walled-layer",
        Content={"ZipFile": make_zip({"python/walled_helper.py": "VALUE = 'from a layer'\n"})},
    )
    arn = published["LayerVersionArn"]
    layer_arn = arn.rsplit(":", 1)[0]
    assert arn == f"arn:aws:lambda:us-east-1:{mine_id}:layer:walled-layer:1"

    def denied(action: str, resource: str = arn) -> tuple[str, str, int]:
        return (
            "AccessDeniedException",
            f"User: arn:aws:iam::{theirs_id}:root is not authorized to perform: {action} on "
            f"resource: {resource} because no resource-based policy allows the {action} action",
            403,
        )

    assert error_of(theirs.get_layer_version, LayerName=layer_arn, VersionNumber=1) == denied(
        "lambda:GetLayerVersion"
    )
    assert error_of(theirs.get_layer_version_by_arn, Arn=arn) == denied("lambda:GetLayerVersion")
    assert theirs.list_layer_versions(LayerName=layer_arn)["LayerVersions"] == []
    user = "import walled_helper\ndef handler(e, c):\n    return walled_helper.VALUE\n"
    assert error_of(
        python_function, client=theirs, name="uses-a-layer", source=user, Layers=[arn]
    ) == denied("lambda:GetLayerVersion")
    assert error_of(theirs.delete_layer_version, LayerName=layer_arn, VersionNumber=1) == denied(
        "lambda:DeleteLayerVersion", layer_arn
    )
    assert error_of(
        theirs.add_layer_version_permission,
        LayerName=layer_arn,
        VersionNumber=1,
        StatementId="self-service",
        Action="lambda:GetLayerVersion",
        Principal="*",
    ) == denied("lambda:AddLayerVersionPermission", layer_arn)

    # The owner shares version 1 with B: B reads it, and its functions use it.
    mine.add_layer_version_permission(
        LayerName="walled-layer",
        VersionNumber=1,
        StatementId="b-reads",
        Action="lambda:GetLayerVersion",
        Principal=theirs_id,
    )
    shared = theirs.get_layer_version_by_arn(Arn=arn)
    location = shared["Content"]["Location"]
    assert "X-Lamina-Signature=" in location  # auth on: the content link is signed too
    status, blob = fetch(location)
    assert status == 200 and blob[:2] == b"PK"
    python_function(theirs, "uses-a-layer", user, Layers=[arn])
    assert json.load(theirs.invoke(FunctionName="uses-a-layer")["Payload"]) == "from a layer"
    assert error_of(theirs.delete_layer_version, LayerName=layer_arn, VersionNumber=1)[0] == (
        "AccessDeniedException"
    )  # reading is all the permission gives
    assert mine.get_layer_version(LayerName="walled-layer", VersionNumber=1)["Version"] == 1


def signed_post(url: str, keys: Keys, body: bytes) -> urllib.request.Request:
    request = AWSRequest("POST", url, data=body)
    credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    return urllib.request.Request(
        url, data=body, headers=dict(request.headers.items()), method="POST"
    )


def test_an_aws_iam_function_url_takes_its_account_or_whom_its_policy_names(
    server: Server, owner: tuple[str, Keys], other: tuple[str, Keys]
) -> None:
    _, mine_keys = owner
    theirs_id, theirs_keys = other
    lam = server.client(credentials=mine_keys)
    python_function(
        lam, "iam-url", "def handler(e, c):\n    return {'statusCode': 200, 'body': 'inside'}\n"
    )
    made = lam.create_function_url_config(FunctionName="iam-url", AuthType="AWS_IAM")
    uid = made["FunctionUrl"].split("//", 1)[1].split(".", 1)[0]
    url = f"{server.endpoint}/_lamina/url/{uid}/hello"
    assert fetch(signed_post(url, mine_keys, b"{}")) == (200, b"inside")
    assert fetch(signed_post(url, theirs_keys, b"{}"))[0] == 403  # another account
    assert fetch(urllib.request.Request(url, data=b"{}", method="POST"))[0] == 403  # unsigned
    forged = {**mine_keys, "aws_secret_access_key": "not-the-secret"}
    assert fetch(signed_post(url, forged, b"{}"))[0] == 403  # auth on: verified
    # As for URLs made since October 2025, the policy must name both actions.
    lam.add_permission(
        FunctionName="iam-url",
        StatementId="b-calls-the-url",
        Action="lambda:InvokeFunctionUrl",
        Principal=theirs_id,
        FunctionUrlAuthType="AWS_IAM",
    )
    assert fetch(signed_post(url, theirs_keys, b"{}"))[0] == 403  # one of the two
    lam.add_permission(
        FunctionName="iam-url",
        StatementId="b-invokes-through-the-url",
        Action="lambda:InvokeFunction",
        Principal=theirs_id,
        InvokedViaFunctionUrl=True,
    )
    assert fetch(signed_post(url, theirs_keys, b"{}")) == (200, b"inside")
    lam.remove_permission(FunctionName="iam-url", StatementId="b-calls-the-url")
    assert fetch(signed_post(url, theirs_keys, b"{}"))[0] == 403


def test_an_http_api_of_another_account_invokes_a_function_only_if_its_policy_says_so(
    server: Server, owner: tuple[str, Keys], other: tuple[str, Keys]
) -> None:
    """API Gateway invokes a function as a service acting for an API: the function's policy
    must name the service and the API (SourceArn), as on AWS; the API's account alone is
    not enough."""
    _, mine_keys = owner
    theirs_id, theirs_keys = other
    lam = server.client(credentials=mine_keys)
    arn = python_function(
        lam, "behind-api", "def handler(e, c):\n    return {'statusCode': 200, 'body': 'api'}\n"
    )["FunctionArn"]
    apis = server.client("apigatewayv2", credentials=theirs_keys)
    api = apis.create_api(Name="b-api", ProtocolType="HTTP", Target=arn, RouteKey="GET /x")
    url = f"{server.endpoint}/_lamina/api/{api['ApiId']}/x"
    status, _ = fetch(url)
    assert status == 500  # API Gateway's answer when it may not invoke the integration
    lam.add_permission(
        FunctionName="behind-api",
        StatementId="b-api",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=f"arn:aws:execute-api:us-east-1:{theirs_id}:{api['ApiId']}/*",
    )
    assert fetch(url) == (200, b"api")
    lam.remove_permission(FunctionName="behind-api", StatementId="b-api")
    assert fetch(url)[0] == 500

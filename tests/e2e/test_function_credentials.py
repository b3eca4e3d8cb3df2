"""Functions call Lamina back as their own account: temporary credentials of the execution
role (verified with `--auth on`, expiring and renewed), AWS_ENDPOINT_URL, AWS_REGION, and
the boto3 the python3.x runtimes provide after the function's own code on sys.path."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import ROLE, Server, make_zip, python_function

CALLER = """
import json, os
import boto3

def handler(event, context):
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=event["queue"])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="from " + context.function_name)
    boto3.client("kinesis").put_record(
        StreamName=event["stream"], Data=b"record", PartitionKey="p"
    )
    names = [f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]]
    return {
        "names": names,
        "boto3": boto3.__file__,
        "region": os.environ["AWS_REGION"],
        "endpoint": os.environ["AWS_ENDPOINT_URL"],
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
        "token": os.environ["AWS_SESSION_TOKEN"],
    }
"""
WHO = """
import os, boto3
def handler(event, context):
    boto3.client("lambda").get_account_settings()
    return {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
            "token": os.environ["AWS_SESSION_TOKEN"]}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("creds") / "data", args=["--auth", "on"]).start()
    yield running
    running.stop()


def test_a_function_reaches_its_own_accounts_sqs_kinesis_and_lambda(server: Server) -> None:
    account, keys = server.new_account("caller-account")
    lam = server.client(credentials=keys)
    sqs = server.client("sqs", region="eu-west-1", credentials=keys)
    kinesis = server.client("kinesis", region="eu-west-1", credentials=keys)
    lam_eu = server.client(region="eu-west-1", credentials=keys)
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    kinesis.create_stream(StreamName="feed", ShardCount=1)
    python_function(lam_eu, "calls-back", CALLER, Timeout=30)
    python_function(lam, "elsewhere", "def handler(e, c): return 1")  # another region
    answer = lam_eu.invoke(
        FunctionName="calls-back", Payload=json.dumps({"queue": "inbox", "stream": "feed"})
    )
    result = json.load(answer["Payload"])
    assert "FunctionError" not in answer, result
    assert result["names"] == ["calls-back"]  # its own account, its own region
    assert result["region"] == "eu-west-1"
    # Lamina's API as the environment reaches it (its network's gateway under namespaces).
    assert result["endpoint"].startswith("http://")
    assert result["endpoint"].endswith(f":{server.port}")
    assert result["key"].startswith("ASIA") and result["token"]
    assert "/python-sdk/boto3/" in result["boto3"]
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
    assert [m["Body"] for m in messages] == ["from calls-back"]
    shard = kinesis.list_shards(StreamName="feed")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="feed", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]] == [
        b"record"
    ]
    # The credentials are the function's account's and nobody else's.
    stolen = server.client(
        "sqs",
        region="eu-west-1",
        credentials={
            "aws_access_key_id": result["key"],
            "aws_secret_access_key": result["secret"],
            "aws_session_token": result["token"],
        },
    )
    assert stolen.list_queues()["QueueUrls"] == [url]
    assert f"/{account}/inbox" in url
    forged = server.client(
        "sqs",
        credentials={
            "aws_access_key_id": result["key"],
            "aws_secret_access_key": result["secret"],
            "aws_session_token": "forged",
        },
    )
    with pytest.raises(ClientError) as caught:
        forged.list_queues()
    assert caught.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_a_boto3_bundled_with_the_function_wins(server: Server) -> None:
    _, keys = server.new_account("bundler")
    lam = server.client(credentials=keys)
    lam.create_function(
        FunctionName="bundled",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={
            "ZipFile": make_zip(
                {
                    "app.py": "import boto3\ndef handler(e, c): return boto3.__version__\n",
                    "boto3/__init__.py": "__version__ = 'bundled'\n",
                }
            )
        },
    )
    assert json.load(lam.invoke(FunctionName="bundled")["Payload"]) == "bundled"


def creds_client(server: Server, found: dict[str, Any], service: str = "lambda") -> Any:
    return server.client(
        service,
        credentials={
            "aws_access_key_id": found["key"],
            "aws_secret_access_key": found["secret"],
            "aws_session_token": found["token"],
        },
    )


def test_short_lived_credentials_are_renewed_and_old_ones_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = Server(
        tmp_path_factory.mktemp("short") / "data",
        args=["--auth", "on", "--credential-lifetime", "6", "--isolation", "none"],
    ).start()
    try:
        _, keys = server.new_account("short-lived")
        lam = server.client(credentials=keys)
        python_function(lam, "who", WHO, Timeout=3)
        first = json.load(lam.invoke(FunctionName="who")["Payload"])
        again = json.load(lam.invoke(FunctionName="who")["Payload"])
        assert again["key"] == first["key"]  # the same warm environment, still valid
        creds_client(server, first).get_account_settings()
        time.sleep(6.5)
        with pytest.raises(ClientError) as caught:
            creds_client(server, first).get_account_settings()
        assert caught.value.response["Error"] == {
            "Code": "ExpiredTokenException",
            "Message": "The security token included in the request is expired",
        }
        with pytest.raises(ClientError) as caught:  # the query family's code
            creds_client(server, first, "sqs").list_queues()
        assert (caught.value.response["Error"]["Code"], caught.value.response[
            "ResponseMetadata"]["HTTPStatusCode"]) == ("ExpiredToken", 403)  # fmt: skip
        renewed = lam.invoke(FunctionName="who")
        assert "FunctionError" not in renewed
        second = json.load(renewed["Payload"])
        assert second["key"] != first["key"]  # a new environment with new credentials
        creds_client(server, second).get_account_settings()
    finally:
        server.stop()

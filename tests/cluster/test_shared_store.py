"""Two `lamina serve --database` nodes, each with its own data directory, on one
PostgreSQL of the suite's own: what one node accepts, the other serves; what a killed node
accepted runs elsewhere; with PostgreSQL gone, nothing is acknowledged that is not stored.

Functions report their runs over UDP to a recorder on the test's loopback (the nodes run
without isolation so that environments reach it), so what ran is known across a SIGKILL.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from botocore.exceptions import ClientError, ConnectionClosedError

from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.e2e.test_async import WORKER, Recorder
from tests.helpers import Server, make_zip, python_function
from tests.web import public_url, url_id

SCALE = 0.05
ARGS = ["--time-scale", str(SCALE), "--isolation", "none"]


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


def node(root: Path, name: str, url: str, first: Server | None = None) -> Server:
    """A node with a data directory of its own; every node after the first gets the
    first one's secrets key (accounts.key), as an operator copies it."""
    data = root / name
    if first is not None:
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(first.data_dir / "accounts.key", data / "accounts.key")
    return Server(data, args=[*ARGS, "--database", url]).start()


@pytest.fixture(scope="module")
def cluster(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server, str]]:
    url = fresh_database(postgres)
    root = tmp_path_factory.mktemp("cluster")
    a = node(root, "a", url)
    b = node(root, "b", url, first=a)
    yield a, b, url
    for server in (a, b):
        server.stop()


def test_a_function_made_on_one_node_runs_at_once_on_the_other(
    cluster: tuple[Server, Server, str],
) -> None:
    a, b, _ = cluster
    la, lb = a.client(), b.client()
    python_function(la, "shared", "def handler(e, c):\n    return {'v': 1, 'e': e}\n")
    answer = lb.invoke(FunctionName="shared", Payload=b'{"n": 1}')
    assert json.loads(answer["Payload"].read()) == {"v": 1, "e": {"n": 1}}
    # B's data directory had no copy of the code: it came from the database.
    digest = lb.get_function(FunctionName="shared")["Configuration"]["CodeSha256"]
    assert digest == la.get_function(FunctionName="shared")["Configuration"]["CodeSha256"]
    assert list((b.data_dir / "code").glob("*.zip"))
    # New code through A: B drops its cached record (told by a notification).
    la.update_function_code(
        FunctionName="shared",
        ZipFile=make_zip({"app.py": "def handler(e, c):\n    return {'v': 2}\n"}),
    )
    deadline = time.monotonic() + 5
    seen = None
    while time.monotonic() < deadline:
        seen = json.loads(lb.invoke(FunctionName="shared")["Payload"].read())
        if seen == {"v": 2}:
            break
        time.sleep(0.05)
    assert seen == {"v": 2}
    names = {f["FunctionName"] for f in lb.list_functions()["Functions"]}
    assert "shared" in names
    lb.delete_function(FunctionName="shared")
    with pytest.raises(ClientError) as gone:
        la.get_function(FunctionName="shared")
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_queue_is_one_queue_whichever_node_is_asked(
    cluster: tuple[Server, Server, str],
) -> None:
    a, b, _ = cluster
    qa, qb = a.client("sqs"), b.client("sqs")
    url = qa.create_queue(QueueName="shared", Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    assert qb.get_queue_url(QueueName="shared")["QueueUrl"] == url.replace(str(a.port), str(b.port))
    qa.send_message(QueueUrl=url, MessageBody="from a")
    got = qb.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    assert [m["Body"] for m in got] == ["from a"]
    # Received on B, the message is in flight for A too; B's receipt deletes it.
    assert qa.receive_message(QueueUrl=url).get("Messages", []) == []
    qb.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    # A long poll on A is woken by a send on B.
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(qa.receive_message, QueueUrl=url, WaitTimeSeconds=10)
        time.sleep(0.5)
        started = time.monotonic()
        qb.send_message(QueueUrl=url, MessageBody="from b")
        woken = waiting.result(timeout=15)
    assert [m["Body"] for m in woken["Messages"]] == ["from b"]
    assert time.monotonic() - started < 3
    qa.delete_message(QueueUrl=url, ReceiptHandle=woken["Messages"][0]["ReceiptHandle"])
    # Both nodes receiving at once: every message once, none twice.
    for batch in range(3):
        qa.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": f"m{batch}-{i}"} for i in range(10)],
        )
    seen: list[str] = []

    def drain(client: Any) -> list[str]:
        bodies: list[str] = []
        for _ in range(10):
            found = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            bodies += [m["Body"] for m in found]
        return bodies

    with ThreadPoolExecutor(2) as pool:
        for bodies in pool.map(drain, (qa, qb)):
            seen += bodies
    assert sorted(seen) == sorted(f"m{b}-{i}" for b in range(3) for i in range(10))
    attributes = qb.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "30"
    # A FIFO deduplication id taken through one node is taken for the other.
    fifo = qa.create_queue(QueueName="shared.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    once = {"MessageGroupId": "g", "MessageDeduplicationId": "once"}
    first = qa.send_message(QueueUrl=fifo, MessageBody="1", **once)
    again = qb.send_message(QueueUrl=fifo, MessageBody="2", **once)
    assert again["MessageId"] == first["MessageId"]
    assert again["SequenceNumber"] == first["SequenceNumber"]
    got = qb.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10, WaitTimeSeconds=2)
    assert [m["Body"] for m in got["Messages"]] == ["1"]
    qb.delete_queue(QueueUrl=url)
    # A hears of the deletion by a notification (as AWS, a deleted queue may take a moment
    # to disappear everywhere): within a few seconds, sends are refused.
    deadline = time.monotonic() + 5
    refused = None
    while refused is None and time.monotonic() < deadline:
        try:
            qa.send_message(QueueUrl=url, MessageBody="gone")
            time.sleep(0.05)
        except ClientError as error:
            refused = error.response["Error"]["Code"]
    assert refused == "AWS.SimpleQueueService.NonExistentQueue"


def test_logs_of_one_node_are_read_on_the_other(cluster: tuple[Server, Server, str]) -> None:
    a, b, _ = cluster
    python_function(a.client(), "talker", "def handler(e, c):\n    print('from a', e['n'])\n")
    a.client().invoke(FunctionName="talker", Payload=b'{"n": 7}')
    logs = b.client("logs")
    deadline = time.monotonic() + 5
    found: list[str] = []
    while time.monotonic() < deadline and "from a 7" not in found:
        try:
            events = logs.filter_log_events(logGroupName="/aws/lambda/talker")["events"]
            found = [e["message"] for e in events]
        except ClientError:
            pass  # no group on B yet
        time.sleep(0.1)
    assert "from a 7" in found


def test_a_function_url_made_on_one_node_is_served_by_the_other(
    cluster: tuple[Server, Server, str],
) -> None:
    a, b, _ = cluster
    python_function(
        a.client(), "page", "def handler(e, c):\n    return {'statusCode': 200, 'body': 'hi'}\n"
    )
    uid = url_id(public_url(a.client(), "page"))
    deadline = time.monotonic() + 5
    answer = None
    while time.monotonic() < deadline:
        answer = requests.get(f"{b.endpoint}/_lamina/url/{uid}/", timeout=30)
        if answer.status_code == 200:
            break
        time.sleep(0.1)
    assert answer is not None and answer.status_code == 200 and answer.text == "hi"
    a.client().delete_function_url_config(FunctionName="page")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer = requests.get(f"{b.endpoint}/_lamina/url/{uid}/", timeout=30)
        if answer.status_code != 200:
            break
        time.sleep(0.1)
    assert answer.status_code == 403


def test_a_stream_takes_records_through_both_nodes(cluster: tuple[Server, Server, str]) -> None:
    a, b, _ = cluster
    ka, kb = a.client("kinesis"), b.client("kinesis")
    ka.create_stream(StreamName="shared-stream", ShardCount=1)
    # Puts through both nodes at once: every record gets a position of its own.
    with ThreadPoolExecutor(2) as pool:
        puts = list(
            pool.map(
                lambda job: job[0].put_record(
                    StreamName="shared-stream", Data=job[1].encode(), PartitionKey="k"
                ),
                [(ka if i % 2 else kb, f"r{i}") for i in range(20)],
            )
        )
    sequences = [p["SequenceNumber"] for p in puts]
    assert len(set(sequences)) == 20
    shard = kb.describe_stream(StreamName="shared-stream")["StreamDescription"]["Shards"][0]
    iterator = kb.get_shard_iterator(
        StreamName="shared-stream", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kb.get_records(ShardIterator=iterator, Limit=100)["Records"]
    assert sorted(r["Data"].decode() for r in records) == sorted(f"r{i}" for i in range(20))
    assert [r["SequenceNumber"] for r in records] == sorted(sequences, key=int)
    ka.delete_stream(StreamName="shared-stream")


def test_a_table_is_one_table_whichever_node_is_asked(
    cluster: tuple[Server, Server, str],
) -> None:
    a, b, _ = cluster
    da, db = a.client("dynamodb"), b.client("dynamodb")
    da.create_table(
        TableName="shared-table",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    da.put_item(TableName="shared-table", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    got = db.get_item(TableName="shared-table", Key={"pk": {"S": "a"}})
    assert got["Item"] == {"pk": {"S": "a"}, "v": {"N": "1"}}
    db.put_item(TableName="shared-table", Item={"pk": {"S": "b"}, "v": {"N": "2"}})
    assert da.scan(TableName="shared-table")["Count"] == 2
    db.delete_table(TableName="shared-table")
    deadline = time.monotonic() + 5
    gone = None
    while gone is None and time.monotonic() < deadline:
        try:
            da.describe_table(TableName="shared-table")
            time.sleep(0.05)
        except ClientError as error:
            gone = error.response["Error"]["Code"]
    assert gone == "ResourceNotFoundException"


def test_accounts_are_the_clusters(cluster: tuple[Server, Server, str]) -> None:
    a, b, url = cluster
    made = a.accounts("--database", url, "create", "team-shared", "--concurrency", "7")
    account = made["Account"]["Id"]
    listed = b.accounts("--database", url, "list")["Accounts"]
    assert [x["ConcurrentExecutions"] for x in listed if x["Id"] == account] == [7]
    # Both nodes apply the limit written by the CLI while they run (auth is off on
    # loopback: a 12-digit access key id names the account).
    for server in (a, b):
        client = server.client(
            credentials={"aws_access_key_id": account, "aws_secret_access_key": "x"}
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            limit = client.get_account_settings()["AccountLimit"]["ConcurrentExecutions"]
            if limit == 7:
                break
            time.sleep(0.1)
        assert limit == 7


def test_topics_and_rules_made_on_one_node_deliver_from_the_other(
    cluster: tuple[Server, Server, str],
) -> None:
    from tests.e2e.test_eventbridge import service_queue, take

    a, b, _ = cluster
    topic = a.client("sns").create_topic(Name="shared-topic")["TopicArn"]
    rule = a.client("events").put_rule(Name="shared-rule", EventPattern='{"source": ["x"]}')
    url, queue = service_queue(a.client("sqs"), "shared-sink", "sns.amazonaws.com", topic)
    a.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue,
                              Attributes={"RawMessageDelivery": "true"})  # fmt: skip
    policy = json.loads(
        a.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])[
            "Attributes"]["Policy"]
    )  # fmt: skip
    policy["Statement"].append({**policy["Statement"][0], "Principal": {
        "Service": "events.amazonaws.com"}, "Condition": {"ArnEquals": {
        "aws:SourceArn": rule["RuleArn"]}}})  # fmt: skip
    a.client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    a.client("events").put_targets(Rule="shared-rule", Targets=[{"Id": "q", "Arn": queue}])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # B hears of them (a notification) and reloads
        try:
            b.client("sns").publish(TopicArn=topic, Message="through b")
            break
        except ClientError:
            time.sleep(0.05)
    answer = b.client("events").put_events(
        Entries=[{"Source": "x", "DetailType": "d", "Detail": '{"k": 1}'}]
    )
    assert answer["FailedEntryCount"] == 0
    bodies = sorted(m["Body"] for m in take(a.client("sqs"), url, 2))
    assert bodies[0] == "through b"
    assert json.loads(bodies[1])["detail"] == {"k": 1}


# The last two: they kill node A, then stop PostgreSQL under node B.
def stream_data(recorder: Recorder, function: str) -> list[str]:
    """The data of every Kinesis record the function was given, in the order seen."""
    return [
        base64.b64decode(record["kinesis"]["data"]).decode()
        for report in recorder.of(function)
        for record in report["event"].get("Records", [])
    ]


def test_async_events_and_stream_shards_of_a_killed_node_go_on_on_the_other(
    cluster: tuple[Server, Server, str], recorder: Recorder
) -> None:
    a, b, url = cluster  # the module's last tests: A is killed here
    la = a.client()
    # A stream mapping: its pollers run on one node, the holder of its lease.
    ka = a.client("kinesis")
    ka.create_stream(StreamName="moving", ShardCount=1)
    arn = ka.describe_stream(StreamName="moving")["StreamDescription"]["StreamARN"]
    python_function(
        la,
        "reader",
        WORKER,
        Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
        Timeout=30,
    )
    la.create_event_source_mapping(
        FunctionName="reader", EventSourceArn=arn, StartingPosition="TRIM_HORIZON", BatchSize=5
    )
    for i in range(5):
        ka.put_record(StreamName="moving", Data=f"before-{i}".encode(), PartitionKey="k")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(set(stream_data(recorder, "reader"))) < 5:
        time.sleep(0.05)
    assert set(stream_data(recorder, "reader")) == {f"before-{i}" for i in range(5)}
    python_function(
        la,
        "slow",
        WORKER,
        Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
        Timeout=30,
    )
    la.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=1)
    sent = [
        la.invoke(
            FunctionName="slow",
            InvocationType="Event",
            Payload=json.dumps({"i": i, "sleep": 0.3}).encode(),
        )["ResponseMetadata"]["RequestId"]
        for i in range(6)
    ]
    time.sleep(0.2)  # A starts the first one: one at a time, the rest wait in its queue
    a.kill()
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()
    assert stored is not None and stored[0] >= 5  # accepted, so stored
    # B adopts them once A's heartbeat is 6 s old, and runs every one.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reports = recorder.of("slow")
        ran = {r["request"] for r in reports}
        if ran >= set(sent):
            break
        time.sleep(0.05)
    assert ran == set(sent)
    duplicates = len(reports) - len(ran)
    print(f"async events run twice after the kill: {duplicates}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            left = conn.execute("SELECT count(*) FROM events").fetchone()
        if left is not None and left[0] == 0:
            break
        time.sleep(0.1)
    assert left is not None and left[0] == 0
    # The stream's shard: B takes the mapping's lease once A's has run out (6 s) and reads
    # on from the checkpoint; no record is skipped.
    kb = b.client("kinesis")
    for i in range(5):
        kb.put_record(StreamName="moving", Data=f"after-{i}".encode(), PartitionKey="k")
    wanted = {f"before-{i}" for i in range(5)} | {f"after-{i}" for i in range(5)}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not set(stream_data(recorder, "reader")) >= wanted:
        time.sleep(0.05)
    seen = stream_data(recorder, "reader")
    assert set(seen) == wanted
    print(f"stream records processed twice after the kill: {len(seen) - len(set(seen))}")


def error_code(call: Any, **params: Any) -> tuple[str, int]:
    try:
        call(**params)
    except ClientError as error:
        return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the request was acknowledged")


def test_with_postgresql_gone_nothing_is_acknowledged_and_all_resumes(
    postgres: PostgresServer, cluster: tuple[Server, Server, str]
) -> None:
    _, a, _ = cluster  # B, the node still running
    lam, sqs = a.client(), a.client("sqs")
    python_function(lam, "steady", "def handler(e, c):\n    return 'ok'\n")
    assert lam.invoke(FunctionName="steady")["StatusCode"] == 200
    queue = sqs.create_queue(QueueName="kept")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="before")
    postgres.stop()
    try:
        # Writes that cannot be made durable are refused, with an error SDKs retry.
        refused = [
            error_code(sqs.send_message, QueueUrl=queue, MessageBody="during"),
            error_code(lam.invoke, FunctionName="steady", InvocationType="Event"),
            error_code(
                lam.create_function,
                FunctionName="new",
                Runtime="python3.11",
                Role="arn:aws:iam::000000000000:role/r",
                Handler="app.handler",
                Code={"ZipFile": make_zip({"app.py": "def handler(e, c): pass"})},
            ),
        ]
        assert refused == [("ServiceUnavailableException", 503)] * 3
        # What needs no write still runs: a known function's record is cached.
        assert lam.invoke(FunctionName="steady")["StatusCode"] == 200
    finally:
        postgres.start()
    back = time.monotonic()
    # Back by itself: writes succeed again within seconds (a refused one is retried,
    # as SDKs retry a 503).
    sent = until_stored(lambda: sqs.send_message(QueueUrl=queue, MessageBody="after"))
    assert sent["MessageId"]
    print(f"\nstored again {time.monotonic() - back:.2f} s after PostgreSQL was back")
    bodies = {
        m["Body"] for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    }
    assert bodies == {"before", "after"}
    accepted = until_stored(lambda: lam.invoke(FunctionName="steady", InvocationType="Event"))
    assert accepted["StatusCode"] == 202


def until_stored(call: Callable[[], Any], timeout: float = 15.0) -> Any:
    """`call`, retried as SDKs retry: a 503, or a kept-alive connection the server closed
    while the test waited for PostgreSQL."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ServiceUnavailableException"
            if time.monotonic() > deadline:
                raise
        except ConnectionClosedError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)

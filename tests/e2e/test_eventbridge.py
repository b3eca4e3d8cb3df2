"""EventBridge against a real server: rules with event patterns route PutEvents to a
function (through an InputTransformer) and a queue (InputPath); a rate(1 minute) rule fires
at the right intervals at time scale 0.01 (0.6 s); AWS's errors; the AWS CLI.
"""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_async import WORKER, Recorder
from tests.e2e.test_aws_cli import AWS, cli_env
from tests.e2e.test_observability import cloudwatch_figure
from tests.helpers import Server, python_function

SCALE = 0.01
ARGS = ["--time-scale", str(SCALE), "--isolation", "none"]
ACCOUNT = "000000000000"


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
def events(server: Server) -> Any:
    return server.client("events")


@pytest.fixture
def sqs(server: Server) -> Any:
    return server.client("sqs")


def service_queue(sqs: Any, name: str, service: str, source_arn: str) -> tuple[str, str]:
    """A queue whose policy lets `service` send to it for `source_arn`; (url, arn)."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url, arn


def take(sqs: Any, url: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            AttributeNames=["SentTimestamp"], MessageAttributeNames=["All"],
        ).get("Messages", [])  # fmt: skip
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        found.extend(got)
    return found


def order(source: str, kind: str, detail: dict[str, Any], bus: str = "orders") -> dict[str, Any]:
    return {"Source": source, "DetailType": kind, "Detail": json.dumps(detail),
            "EventBusName": bus}  # fmt: skip


def test_pattern_routes_events_through_an_input_transformer(
    server: Server, events: Any, sqs: Any, recorder: Recorder
) -> None:
    lam = server.client()
    bus = events.create_event_bus(Name="orders")["EventBusArn"]
    assert bus == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/orders"
    pattern = {
        "source": ["shop"],
        "detail-type": ["OrderPlaced"],
        "detail": {"total": [{"numeric": [">", 100]}]},
    }
    rule = events.put_rule(
        Name="big-orders", EventBusName="orders", EventPattern=json.dumps(pattern)
    )["RuleArn"]
    assert rule == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/orders/big-orders"
    function = python_function(
        lam, "eb-orders", WORKER,
        Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
    )["FunctionArn"]  # fmt: skip
    lam.add_permission(
        FunctionName="eb-orders", StatementId="events", Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com", SourceArn=rule,
    )  # fmt: skip
    url, queue = service_queue(sqs, "eb-details", "events.amazonaws.com", rule)
    template = '{"order": "<id>", "amount": <total>, "rule": "<aws.events.rule-name>"}'
    put = events.put_targets(
        Rule="big-orders", EventBusName="orders",
        Targets=[
            {"Id": "fn", "Arn": function, "InputTransformer": {
                "InputPathsMap": {"id": "$.detail.id", "total": "$.detail.total"},
                "InputTemplate": template}},
            {"Id": "q", "Arn": queue, "InputPath": "$.detail"},
        ],
    )  # fmt: skip
    assert put["FailedEntryCount"] == 0

    answer = events.put_events(
        Entries=[
            order("shop", "OrderPlaced", {"id": "a1", "total": 150}),
            order("shop", "OrderPlaced", {"id": "a2", "total": 50}),  # too small
            order("crm", "OrderPlaced", {"id": "a3", "total": 500}),  # another source
            order("shop", "OrderPlaced", {"id": "a4", "total": 101.5}),
            {**order("shop", "OrderPlaced", {}), "Detail": "not json"},
        ]
    )
    assert answer["FailedEntryCount"] == 1
    assert answer["Entries"][4] == {
        "ErrorCode": "MalformedDetail",
        "ErrorMessage": "Detail is malformed.",
    }
    assert all("EventId" in e for e in answer["Entries"][:4])

    recorder.wait("eb-orders", 2)
    time.sleep(0.3)
    got = sorted((r["event"] for r in recorder.of("eb-orders")), key=lambda e: e["order"])
    assert got == [
        {"order": "a1", "amount": 150, "rule": "big-orders"},
        {"order": "a4", "amount": 101.5, "rule": "big-orders"},
    ]
    bodies = sorted((json.loads(m["Body"]) for m in take(sqs, url, 2)), key=lambda d: d["id"])
    assert bodies == [{"id": "a1", "total": 150}, {"id": "a4", "total": 101.5}]

    # CloudWatch's AWS/Events figures: the rule triggered twice, 2 x 2 target invocations.
    def figure(name: str) -> float:
        dims = {"EventBusName": "orders", "RuleName": "big-orders"}
        return cloudwatch_figure(server, name, "Sum", "AWS/Events", **dims)

    assert figure("TriggeredRules") == 2
    assert figure("Invocations") == 4
    assert (
        cloudwatch_figure(server, "MatchedEvents", "Sum", "AWS/Events", EventBusName="orders") == 2
    )

    described = events.describe_rule(Name="big-orders", EventBusName="orders")
    assert described["State"] == "ENABLED" and described["EventBusName"] == "orders"
    assert json.loads(described["EventPattern"]) == pattern
    assert [t["Id"] for t in events.list_targets_by_rule(Rule="big-orders",
                                                         EventBusName="orders")["Targets"]] == [
        "fn", "q"]  # fmt: skip
    assert events.test_event_pattern(
        EventPattern=json.dumps(pattern),
        Event=json.dumps({"id": "1", "account": ACCOUNT, "source": "shop", "time":
                          "2026-12-01T00:00:00Z", "region": "us-east-1", "resources": [],
                          "detail-type": "OrderPlaced", "detail": {"total": 101}}),
    )["Result"] is True  # fmt: skip


def test_rate_rule_fires_at_the_right_intervals(events: Any, sqs: Any) -> None:
    """rate(1 minute) at time scale 0.01: every 0.6 s, measured by the queue's clock."""
    rule = events.put_rule(Name="tick", ScheduleExpression="rate(1 minute)")["RuleArn"]
    url, queue = service_queue(sqs, "ticks", "events.amazonaws.com", rule)
    events.put_targets(Rule="tick", Targets=[{"Id": "q", "Arn": queue}])
    time.sleep(60 * SCALE * 5.5)
    events.disable_rule(Name="tick")
    got = take(sqs, url, 5)
    time.sleep(60 * SCALE * 1.5)
    assert take(sqs, url, 1, timeout=0.5) == []  # disabled: no more
    sent = sorted(int(m["Attributes"]["SentTimestamp"]) / 1000 for m in got)
    assert len(sent) == 5, sent
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert abs(statistics.mean(gaps) - 0.6) < 0.1, gaps
    assert all(0.35 < gap < 0.9 for gap in gaps), gaps
    event = json.loads(got[0]["Body"])
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["resources"] == [rule]
    assert event["detail"] == {}


def test_errors_as_aws_answers(events: Any) -> None:
    cases = [
        (lambda: events.describe_rule(Name="nope"), "ResourceNotFoundException",
         "Rule nope does not exist on EventBus default."),
        (lambda: events.put_rule(Name="x"), "ValidationException",
         "Parameter(s) EventPattern or ScheduleExpression must be specified."),
        (lambda: events.put_rule(Name="x", ScheduleExpression="cron(0 12 * * * *)"),
         "ValidationException", "Parameter ScheduleExpression is not valid."),
        (lambda: events.put_rule(Name="x", EventPattern='{"source": "shop"}'),
         "InvalidEventPatternException", None),
        (lambda: events.describe_event_bus(Name="nope"), "ResourceNotFoundException",
         "Event bus nope does not exist."),
        (lambda: events.delete_event_bus(Name="default"), "ValidationException",
         "Cannot delete event bus default."),
    ]  # fmt: skip
    for call, code, message in cases:
        with pytest.raises(ClientError) as raised:
            call()
        assert raised.value.response["Error"]["Code"] == code
        if message is not None:
            assert raised.value.response["Error"]["Message"] == message
    events.create_event_bus(Name="dup")
    with pytest.raises(ClientError) as raised:
        events.create_event_bus(Name="dup")
    assert raised.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    events.put_rule(Name="with-target", EventPattern='{"source": ["a"]}')
    events.put_targets(Rule="with-target", Targets=[
        {"Id": "t", "Arn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"}])  # fmt: skip
    with pytest.raises(ClientError) as raised:
        events.delete_rule(Name="with-target")
    assert (
        raised.value.response["Error"]["Message"] == "Rule can't be deleted since it has targets."
    )


def test_aws_cli_put_events(server: Server, tmp_path: Path) -> None:
    entries = json.dumps([{"Source": "cli", "DetailType": "Ping", "Detail": '{"n": 1}'}])
    done = subprocess.run(
        [str(AWS), "--endpoint-url", server.endpoint, "events", "put-events", "--entries",
         entries, "--output", "json"],
        env=cli_env(tmp_path, "us-east-1"), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["FailedEntryCount"] == 0 and len(answer["Entries"][0]["EventId"]) == 36

"""SNS and EventBridge deliver to functions through the async queue: a function that
throttles (reserved concurrency 0, then 1 under load) gets every event exactly once or
its dead-letter queue does; nothing accepted is lost to a `kill -9` of the server; a
schedule that missed firings while the server was down fires once when it is back.

Platform delays run 100x fast (time scale 0.01).
"""

from __future__ import annotations

import itertools
import json
import math
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_async import WORKER, Recorder
from tests.e2e.test_eventbridge import service_queue, take
from tests.e2e.test_observability import cloudwatch_figure
from tests.helpers import Server, python_function

SCALE = 0.01
ARGS = ["--time-scale", str(SCALE), "--account-concurrency", "20", "--unreserved-floor", "5",
        "--isolation", "none"]  # fmt: skip

# Reports which event it got (an SNS record's message, or an EventBridge event's detail).
SLOW = """
import json, os, socket, time
ADDRESS = ("127.0.0.1", int(os.environ["RECORDER_PORT"]))
OUT = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

def handler(event, context):
    if "Records" in event:
        key = event["Records"][0]["Sns"]["Message"]
    else:
        key = event["detail"]["key"]
    OUT.sendto(json.dumps({"fn": context.function_name, "at": time.time(), "event": key}).encode(),
               ADDRESS)
    time.sleep(0.15)
    return key
"""


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=ARGS).start()
    yield running
    running.stop()


def wire(server: Server, recorder: Recorder, name: str, **extra: Any) -> tuple[str, str]:
    """A function subscribed to a topic and targeted by a rule (source `load`), both
    allowed by its policy; (topic arn, rule name)."""
    lam, sns, events = server.client(), server.client("sns"), server.client("events")
    function = python_function(
        lam, name, SLOW, Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
        **extra,
    )["FunctionArn"]  # fmt: skip
    topic = sns.create_topic(Name=name)["TopicArn"]
    rule = events.put_rule(
        Name=name, EventPattern=json.dumps({"source": ["load"], "detail": {"to": [name]}})
    )
    for service, source in (("sns", topic), ("events", rule["RuleArn"])):
        lam.add_permission(
            FunctionName=name, StatementId=service, Action="lambda:InvokeFunction",
            Principal=f"{service}.amazonaws.com", SourceArn=source,
        )  # fmt: skip
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=function)
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": function}])
    return topic, name


def send(server: Server, topic: str, name: str, keys: range) -> set[str]:
    """An SNS message and an EventBridge event per key; the keys the function should see."""
    sns, events = server.client("sns"), server.client("events")
    for key in keys:
        sns.publish(TopicArn=topic, Message=f"sns-{key}")
    entries = [
        {
            "Source": "load",
            "DetailType": "Load",
            "Detail": json.dumps({"key": f"eb-{k}", "to": name}),
        }
        for k in keys
    ]
    for start in range(0, len(entries), 10):
        answer = events.put_events(Entries=entries[start : start + 10])
        assert answer["FailedEntryCount"] == 0
    return {f"sns-{k}" for k in keys} | {f"eb-{k}" for k in keys}


def test_throttled_function_gets_every_event_or_its_dead_letter_queue(
    server: Server, recorder: Recorder
) -> None:
    lam, sqs = server.client(), server.client("sqs")
    dead = sqs.create_queue(QueueName="throttled-dlq")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    name = "throttled"
    topic, rule = wire(server, recorder, name, DeadLetterConfig={"TargetArn": dead_arn})

    # Reserved concurrency 0: every event goes straight to the function's DLQ.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    refused = send(server, topic, rule, range(3))
    bodies = [json.loads(m["Body"]) for m in take(sqs, dead, 6)]
    keys = {b["Records"][0]["Sns"]["Message"] if "Records" in b else b["detail"]["key"]
            for b in bodies}  # fmt: skip
    assert len(bodies) == 6 and keys == refused
    assert recorder.of(name) == []

    # Reserved concurrency 1 under load: throttled, retried by the async queue, each run once.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    wanted = send(server, topic, rule, range(10, 20))
    runs = recorder.wait(name, 20, timeout=40)
    time.sleep(0.5)
    runs = recorder.of(name)
    assert sorted(r["event"] for r in runs) == sorted(wanted)  # every one, exactly once
    starts = sorted(r["at"] for r in runs)
    assert all(b - a >= 0.14 for a, b in itertools.pairwise(starts))  # one at a time
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats", timeout=5) as answer:
        functions = json.loads(answer.read())["concurrency"][0]["Functions"]
    assert (
        functions[name]["Throttles"].get("ReservedFunctionConcurrentInvocationLimitExceeded", 0)
        >= 1
    )
    assert take(sqs, dead, 1, timeout=1) == []
    assert cloudwatch_figure(server, "AsyncEventsReceived", "Sum", FunctionName=name) == 26


def test_nothing_is_lost_to_a_kill_and_missed_schedules_fire_once(
    tmp_path: Path, recorder: Recorder
) -> None:
    data_dir = tmp_path / "data"
    first = Server(data_dir, args=ARGS).start()
    try:
        name = "survivor"
        topic, rule = wire(first, recorder, name)
        first.client().put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        events, sqs = first.client("events"), first.client("sqs")
        anchor = time.time()
        beat = events.put_rule(Name="beat", ScheduleExpression="rate(2 minutes)")["RuleArn"]
        url, queue = service_queue(sqs, "beats", "events.amazonaws.com", beat)
        events.put_targets(Rule="beat", Targets=[{"Id": "q", "Arn": queue}])
        wanted = send(first, topic, rule, range(10))
    finally:
        first.kill()
    killed = time.time()
    assert len(recorder.of(name)) < 20  # the kill came while events were still queued
    time.sleep(max(0.0, anchor + 120 * SCALE * 2.6 - time.time()))  # two beats missed, or more
    second = Server(data_dir, args=ARGS).start()
    restarted = time.time()
    try:
        deadline = time.monotonic() + 40
        while {r["event"] for r in recorder.of(name)} != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        # Every accepted event ran (those running at the kill may run again: at least once).
        assert {r["event"] for r in recorder.of(name)} == wanted
        sqs = second.client("sqs")
        url = sqs.get_queue_url(QueueName="beats")["QueueUrl"]
        period = 120 * SCALE
        got = take(sqs, url, 1)
        beats = [int(m["Attributes"]["SentTimestamp"]) / 1000 for m in got]
        catch = min(beats)  # the first beat after the kill: the catch-up
        grid = anchor + math.ceil((max(catch, time.time()) - anchor) / period) * period
        time.sleep(max(0.0, grid + period / 2 - time.time()))  # mid-way between two beats
        seen = time.time()
        got += take(sqs, url, 99, 1.5)
        beats = [int(m["Attributes"]["SentTimestamp"]) / 1000 for m in got]
        after = sorted(b for b in beats if killed < b <= seen)
        assert after[0] == catch and catch - restarted < 5, (restarted, after)
        regular = [anchor + k * period for k in range(1000)]
        # Once for everything missed, then on the rule's cadence again (not once per beat):
        # every later beat answers a grid time of its own, soon after it; each grid time
        # past the catch-up has its beat. The one grid time close to the catch-up may have
        # its own beat or not (the catch-up's SentTimestamp is its delivery, not its firing).
        nearest = [anchor + round((b - anchor) / period) * period for b in after[1:]]
        report = (after, [(m["MessageId"], m["Body"]) for m in got])
        assert all(0 <= b - g < 0.3 for b, g in zip(after[1:], nearest, strict=True)), report
        assert len(set(nearest)) == len(nearest), report
        due = {g for g in regular if catch + 0.3 < g <= seen}
        close = {g for g in regular if catch - 0.3 < g <= catch + 0.3}
        assert due <= set(nearest) <= due | close, report
    finally:
        second.stop()


def test_destinations_on_a_topic_and_a_bus(server: Server, recorder: Recorder) -> None:
    """An async invocation's outcome goes to an SNS topic (OnFailure) or an EventBridge bus
    (OnSuccess), as AWS sends them; a dead-letter topic gets the failed event."""
    lam, sns, sqs, events = (server.client(s) for s in ("lambda", "sns", "sqs", "events"))
    python_function(lam, "outcomes", WORKER,
                    Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}})  # fmt: skip
    failures = sns.create_topic(Name="failures")["TopicArn"]
    dead = sns.create_topic(Name="dead-events")["TopicArn"]
    failed_url, failed_queue = service_queue(sqs, "failures-q", "sns.amazonaws.com", failures)
    dead_url, dead_queue = service_queue(sqs, "dead-q", "sns.amazonaws.com", dead)
    sns.subscribe(TopicArn=failures, Protocol="sqs", Endpoint=failed_queue,
                  Attributes={"RawMessageDelivery": "true"})  # fmt: skip
    sns.subscribe(TopicArn=dead, Protocol="sqs", Endpoint=dead_queue,
                  Attributes={"RawMessageDelivery": "true"})  # fmt: skip
    bus = events.create_event_bus(Name="results")["EventBusArn"]
    rule = events.put_rule(Name="successes", EventBusName="results",
                           EventPattern=json.dumps({"source": ["lambda"]}))["RuleArn"]  # fmt: skip
    ok_url, ok_queue = service_queue(sqs, "successes-q", "events.amazonaws.com", rule)
    events.put_targets(Rule="successes", EventBusName="results",
                       Targets=[{"Id": "q", "Arn": ok_queue}])  # fmt: skip
    lam.update_function_configuration(FunctionName="outcomes", DeadLetterConfig={"TargetArn": dead})
    lam.put_function_event_invoke_config(
        FunctionName="outcomes", MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": bus},
                           "OnFailure": {"Destination": failures}},
    )  # fmt: skip
    lam.invoke(FunctionName="outcomes", InvocationType="Event", Payload=b'{"n": 1}')
    lam.invoke(FunctionName="outcomes", InvocationType="Event", Payload=b'{"fail": true}')

    success = json.loads(take(sqs, ok_url, 1)[0]["Body"])
    assert success["source"] == "lambda"
    assert success["detail-type"] == "Lambda Function Invocation Result - Success"
    assert success["detail"]["requestPayload"] == {"n": 1}
    assert success["detail"]["requestContext"]["condition"] == "Success"
    failure = json.loads(take(sqs, failed_url, 1)[0]["Body"])
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestPayload"] == {"fail": True}
    assert json.loads(take(sqs, dead_url, 1)[0]["Body"]) == {"fail": True}

"""Metrics, logs and traces of a real server under load driven with boto3, read back
exactly through every surface: Prometheus text, CloudWatch (boto3 over json, the AWS CLI
v1 over json, Debian's AWS CLI v2 over the query protocol), the console's live view,
CloudWatch Logs (boto3 and `aws logs tail`), X-Ray (with the real aws-xray-sdk inside a
function) and `lamina top`.

The account is small (limit 12, floor 2), so one burst of load gives every figure:
obs-work 5 at once (+2 failures), obs-capped (reserved 2) 4 at once → 2 throttled for its
reservation, obs-prov:live (2 provisioned) 3 at once → 1 spillover, then obs-hog 10 at once
against an unreserved pool of 8 → 2 throttled for the account.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

AWS_V1 = Path(sys.executable).parent / "aws"  # PyPI's awscli: cloudwatch over json
AWS_V2 = Path("/usr/bin/aws")  # Debian's awscli (v2): `logs tail`, cloudwatch over query
ARGS = [
    "--account-concurrency",
    "12",
    "--unreserved-floor",
    "2",
    "--request-rate",
    "0",
]
HOLD = 0.8  # seconds each loaded invocation holds its slot
WORK = """
import time
def handler(event, context):
    print("working", event.get("n"))
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    time.sleep(event.get("sleep", 0))
    return {"n": event.get("n")}
"""
XRAY = """
import os
from aws_xray_sdk.core import xray_recorder

def handler(event, context):
    with xray_recorder.in_subsegment("obs-subsegment") as subsegment:
        subsegment.put_annotation("answer", 42)
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID")}
"""
ECHO_TRACE = """
import os
def handler(event, context):
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID")}
"""
REASON_RESERVED = "ReservedFunctionConcurrentInvocationLimitExceeded"
REASON_ACCOUNT = "ConcurrentInvocationLimitExceeded"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("obs") / "data", args=ARGS).start()
    yield running
    running.stop()


def get(server: Server, path: str) -> bytes:
    with urllib.request.urlopen(server.endpoint + path, timeout=10) as answer:
        body: bytes = answer.read()
        return body


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    return env


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def prometheus(server: Server) -> dict[str, float]:
    values = {}
    for line in get(server, "/metrics").decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def prom(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for series, value in values.items():
        base, _, rest = series.partition("{")
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if base == name and all(pairs.get(k) == v for k, v in labels.items()):
            total += value
    return total


def window() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=10), now + dt.timedelta(minutes=2)


def cloudwatch_figure(
    server: Server, metric: str, statistic: str, namespace: str = "AWS/Lambda", **dims: str
) -> float:
    start, end = window()
    answer = server.client("cloudwatch").get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()],
        StartTime=start,
        EndTime=end,
        Period=60,
        Statistics=[statistic],
    )
    values = [point[statistic] for point in answer["Datapoints"]]
    return max(values, default=0.0) if statistic == "Maximum" else sum(values)


def cli_figure(
    cli: Path, server: Server, tmp_path: Path, metric: str, statistic: str, **dims: str
) -> float:
    start, end = window()
    command = [
        str(cli),
        "--endpoint-url",
        server.endpoint,
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        "AWS/Lambda",
        "--metric-name",
        metric,
        "--start-time",
        start.isoformat(),
        "--end-time",
        end.isoformat(),
        "--period",
        "60",
        "--statistics",
        statistic,
        "--output",
        "json",
    ]
    if dims:
        command += ["--dimensions", *(f"Name={k},Value={v}" for k, v in dims.items())]
    result = subprocess.run(
        command, env=cli_env(tmp_path), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    values = [point[statistic] for point in json.loads(result.stdout)["Datapoints"]]
    return max(values, default=0.0) if statistic == "Maximum" else sum(values)


def invoke(lam: Any, name: str, event: dict[str, Any]) -> str:
    """ "ok", "error" or the throttle Reason."""
    try:
        answer = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    except ClientError as error:
        assert error.response["Error"]["Code"] == "TooManyRequestsException"
        return str(error.response["Reason"])
    answer["Payload"].read()
    return "error" if answer.get("FunctionError") else "ok"


@pytest.fixture(scope="module")
def loaded(server: Server) -> dict[str, list[str]]:
    """Deploy the functions and run the load once for the module."""
    lam = server.client()
    for name in ("obs-work", "obs-capped", "obs-prov", "obs-hog"):
        python_function(lam, name, WORK, Timeout=10)
    lam.put_function_concurrency(FunctionName="obs-capped", ReservedConcurrentExecutions=2)
    version = lam.publish_version(FunctionName="obs-prov")["Version"]
    lam.create_alias(FunctionName="obs-prov", Name="live", FunctionVersion=version)
    lam.put_provisioned_concurrency_config(
        FunctionName="obs-prov", Qualifier="live", ProvisionedConcurrentExecutions=2
    )
    wait_for(
        lambda: (
            lam.get_provisioned_concurrency_config(FunctionName="obs-prov", Qualifier="live")[
                "Status"
            ]
            == "READY"
        ),
        what="provisioned concurrency READY",
    )
    calls = (
        [("obs-work", {"sleep": HOLD, "n": i}) for i in range(5)]
        + [("obs-capped", {"sleep": HOLD}) for _ in range(4)]
        + [("obs-prov:live", {"sleep": HOLD}) for _ in range(3)]
    )
    outcomes: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(calls))
    clients = [server.client() for _ in calls]

    def call(index: int) -> tuple[str, str]:
        name, event = calls[index]
        barrier.wait(10)
        return name, invoke(clients[index], name, event)

    with ThreadPoolExecutor(len(calls)) as pool:
        for name, outcome in pool.map(call, range(len(calls))):
            outcomes.setdefault(name, []).append(outcome)
    for _ in range(2):
        outcomes["obs-work"].append(invoke(lam, "obs-work", {"fail": True}))
    barrier = threading.Barrier(10)
    clients = [server.client() for _ in range(10)]

    def hog(index: int) -> str:
        barrier.wait(10)
        return invoke(clients[index], "obs-hog", {"sleep": HOLD})

    with ThreadPoolExecutor(10) as pool:
        outcomes["obs-hog"] = list(pool.map(hog, range(10)))
    # Gauges are sampled once a second: wait until the sampler has seen the last burst.
    wait_for(
        lambda: (
            prom(
                prometheus(server), "aws_lambda_concurrent_executions_max", function_name="obs-hog"
            )
            == 8
        ),
        what="the sampler to record obs-hog's peak",
    )
    return outcomes


def test_the_load_did_what_the_limits_say(loaded: dict[str, list[str]]) -> None:
    assert sorted(loaded["obs-work"]) == ["error", "error", "ok", "ok", "ok", "ok", "ok"]
    assert sorted(loaded["obs-capped"]) == sorted(["ok", "ok", REASON_RESERVED, REASON_RESERVED])
    assert loaded["obs-prov:live"] == ["ok", "ok", "ok"]
    assert sorted(loaded["obs-hog"]) == sorted(["ok"] * 8 + [REASON_ACCOUNT] * 2)


def test_prometheus_has_the_exact_counts(server: Server, loaded: dict[str, list[str]]) -> None:
    values = prometheus(server)
    assert prom(values, "aws_lambda_invocations_total", function_name="obs-work") == 7
    assert prom(values, "aws_lambda_errors_total", function_name="obs-work") == 2
    assert prom(values, "lamina_cold_starts_total", function_name="obs-work") == 5
    assert prom(values, "aws_lambda_concurrent_executions_max", function_name="obs-work") == 5
    assert prom(values, "aws_lambda_invocations_total", function_name="obs-capped") == 2
    assert (
        prom(
            values, "aws_lambda_throttles_total", function_name="obs-capped", reason=REASON_RESERVED
        )
        == 2
    )
    assert (
        prom(values, "aws_lambda_throttles_total", function_name="obs-hog", reason=REASON_ACCOUNT)
        == 2
    )
    assert prom(values, "aws_lambda_throttles_total") == 4
    assert prom(values, "aws_lambda_invocations_total", resource="obs-prov:live") == 3
    assert (
        prom(values, "aws_lambda_invocations_total", resource="obs-prov:live", executed_version="1")
        == 3
    )
    prov = {"function_name": "obs-prov"}
    assert prom(values, "aws_lambda_provisioned_concurrency_invocations_total", **prov) == 2
    assert (
        prom(values, "aws_lambda_provisioned_concurrency_spillover_invocations_total", **prov) == 1
    )
    assert prom(values, "aws_lambda_provisioned_concurrent_executions_max", **prov) == 2
    assert prom(values, "aws_lambda_provisioned_concurrency_utilization_max", **prov) == 1.0
    assert prom(values, "aws_lambda_account_concurrent_executions_max") == 10
    assert prom(values, "aws_lambda_account_concurrency_limit") == 12


def test_get_metric_statistics_has_the_exact_counts(
    server: Server, loaded: dict[str, list[str]]
) -> None:
    figure = cloudwatch_figure
    assert figure(server, "Invocations", "Sum") == 20
    assert figure(server, "Throttles", "Sum") == 4
    assert figure(server, "ConcurrentExecutions", "Maximum") == 10
    assert figure(server, "Invocations", "Sum", FunctionName="obs-work") == 7
    assert figure(server, "Errors", "Sum", FunctionName="obs-work") == 2
    assert figure(server, "ConcurrentExecutions", "Maximum", FunctionName="obs-work") == 5
    assert figure(server, "Throttles", "Sum", FunctionName="obs-capped") == 2
    assert figure(server, "Throttles", "Sum", FunctionName="obs-hog") == 2
    by_reason = {"namespace": "Lamina", "FunctionName": "obs-hog", "Reason": REASON_ACCOUNT}
    assert figure(server, "Throttles", "Sum", **by_reason) == 2
    live = {"FunctionName": "obs-prov", "Resource": "obs-prov:live"}
    assert figure(server, "Invocations", "Sum", **live) == 3
    assert figure(server, "Invocations", "Sum", **live, ExecutedVersion="1") == 3
    prov = {"FunctionName": "obs-prov"}
    assert figure(server, "ProvisionedConcurrencyInvocations", "Sum", **prov) == 2
    assert figure(server, "ProvisionedConcurrencySpilloverInvocations", "Sum", **prov) == 1
    assert figure(server, "ProvisionedConcurrentExecutions", "Maximum", **prov) == 2
    assert figure(server, "ProvisionedConcurrencyUtilization", "Maximum", **prov) == 1.0
    start, end = window()
    data = server.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Errors",
                        "Dimensions": [{"Name": "FunctionName", "Value": "obs-work"}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=start,
        EndTime=end,
    )["MetricDataResults"]
    assert sum(data[0]["Values"]) == 2
    listed = server.client("cloudwatch").list_metrics(
        Namespace="AWS/Lambda", Dimensions=[{"Name": "FunctionName", "Value": "obs-capped"}]
    )["Metrics"]
    assert {"Invocations", "Throttles", "ConcurrentExecutions"} <= {m["MetricName"] for m in listed}


@pytest.mark.parametrize("cli", [AWS_V1, AWS_V2], ids=["awscli-v1-json", "awscli-v2-query"])
def test_aws_cli_get_metric_statistics(
    cli: Path, server: Server, loaded: dict[str, list[str]], tmp_path: Path
) -> None:
    if not cli.exists():
        pytest.fail(f"{cli} is missing: `make test` installs it (Makefile system-packages)")
    assert cli_figure(cli, server, tmp_path, "Invocations", "Sum", FunctionName="obs-work") == 7
    assert cli_figure(cli, server, tmp_path, "Throttles", "Sum") == 4
    assert cli_figure(cli, server, tmp_path, "ConcurrentExecutions", "Maximum") == 10


def test_the_console_data_endpoint_has_the_exact_counts(
    server: Server, loaded: dict[str, list[str]]
) -> None:
    data = json.loads(get(server, "/_lamina/live?function=obs-prov&seconds=120"))
    functions = {f["name"]: f for f in data["functions"]}
    work = functions["obs-work"]["last_minute"]
    assert (work["invocations"], work["errors"], work["cold_starts"]) == (7, 2, 5)
    assert work["peak_concurrency"] == 5
    capped = functions["obs-capped"]
    assert capped["reserved"] == 2 and capped["last_minute"]["throttles"] == 2
    assert capped["throttles_by_reason"] == {REASON_RESERVED: 2}
    assert functions["obs-hog"]["throttles_by_reason"] == {REASON_ACCOUNT: 2}
    prov = functions["obs-prov"]
    assert (prov["provisioned"], prov["provisioned_ready"]) == (2, 2)
    assert (prov["provisioned_invocations"], prov["spillover_invocations"]) == (2, 1)
    assert data["totals"]["last_minute"]["peak_concurrency"] == 10
    assert data["totals"]["last_minute"]["throttles"] == 4
    assert data["totals"]["limit"] == 12
    assert data["selected"] == "obs-prov" and data["limits"]["provisioned"] == 2
    series = data["series"]
    assert len(series["t"]) == 120 and max(series["concurrency"]) == 3
    assert max(series["provisioned_busy"]) == 2 and sum(series["invocations"]) == 3


def test_async_events_received_and_dropped(server: Server, loaded: dict[str, list[str]]) -> None:
    lam = server.client()
    python_function(lam, "obs-async", WORK)
    lam.put_function_event_invoke_config(FunctionName="obs-async", MaximumRetryAttempts=0)
    for event in ({"n": 1}, {"n": 2}, {"fail": True}):
        answer = lam.invoke(
            FunctionName="obs-async", InvocationType="Event", Payload=json.dumps(event).encode()
        )
        assert answer["StatusCode"] == 202
    wait_for(
        lambda: (
            prom(prometheus(server), "aws_lambda_invocations_total", function_name="obs-async") == 3
        ),
        timeout=20,
        what="the three async events to run",
    )
    values = prometheus(server)
    received = prom(values, "aws_lambda_async_events_received_total", function_name="obs-async")
    assert received == 3
    assert cloudwatch_figure(server, "AsyncEventsReceived", "Sum", FunctionName="obs-async") == 3
    # The failed one is dropped once its (zero) retries are spent.
    wait_for(
        lambda: (
            prom(
                prometheus(server),
                "aws_lambda_async_events_dropped_total",
                function_name="obs-async",
            )
            == 1
        ),
        what="the failed event to be dropped",
    )
    assert cloudwatch_figure(server, "AsyncEventsDropped", "Sum", FunctionName="obs-async") == 1
    data = json.loads(get(server, "/_lamina/live"))
    entry = next(f for f in data["functions"] if f["name"] == "obs-async")
    assert entry["async_events"] == {"received": 3, "dropped": 1}


def test_log_groups_and_streams_through_boto3(server: Server, loaded: dict[str, list[str]]) -> None:
    logs = server.client("logs")
    groups = [
        g["logGroupName"]
        for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/obs-")["logGroups"]
    ]
    assert {"/aws/lambda/obs-work", "/aws/lambda/obs-capped"} <= set(groups)
    streams = logs.describe_log_streams(logGroupName="/aws/lambda/obs-work")["logStreams"]
    assert len(streams) == 5  # one per execution environment
    assert all(
        re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", s["logStreamName"])
        for s in streams
    )
    reports = logs.filter_log_events(logGroupName="/aws/lambda/obs-work", filterPattern="REPORT")[
        "events"
    ]
    assert len(reports) == 7
    assert sum("Init Duration" in e["message"] for e in reports) == 5
    errors = logs.filter_log_events(
        logGroupName="/aws/lambda/obs-work", filterPattern='"asked to fail"'
    )
    assert len({e["logStreamName"] for e in errors["events"]}) >= 1
    stream = streams[0]["logStreamName"]
    events = logs.get_log_events(
        logGroupName="/aws/lambda/obs-work", logStreamName=stream, startFromHead=True
    )
    messages = [e["message"] for e in events["events"]]
    assert messages[0].startswith("START RequestId: ") and any(
        m.startswith("REPORT") for m in messages
    )
    again = logs.get_log_events(
        logGroupName="/aws/lambda/obs-work",
        logStreamName=stream,
        nextToken=events["nextForwardToken"],
    )
    assert again["events"] == [] and again["nextForwardToken"] == events["nextForwardToken"]
    with pytest.raises(ClientError) as missing:
        logs.get_log_events(logGroupName="/aws/lambda/nope", logStreamName="x")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    logs.put_retention_policy(logGroupName="/aws/lambda/obs-work", retentionInDays=7)
    group = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/obs-work")["logGroups"][0]
    assert group["retentionInDays"] == 7


def test_aws_logs_tail_shows_start_end_report(server: Server, tmp_path: Path) -> None:
    if not AWS_V2.exists():
        pytest.fail(f"{AWS_V2} is missing: `make test` installs it (Makefile system-packages)")
    lam = server.client()
    python_function(lam, "obs-tail", WORK)
    first = lam.invoke(FunctionName="obs-tail", Payload=b'{"n": 1}')["ResponseMetadata"][
        "RequestId"
    ]
    base = [str(AWS_V2), "--endpoint-url", server.endpoint, "logs", "tail", "/aws/lambda/obs-tail"]
    done = subprocess.run(
        [*base, "--since", "5m"], env=cli_env(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    for kind in ("START", "END", "REPORT"):
        assert f"{kind} RequestId: {first}" in done.stdout
    # --follow polls: a later invocation shows up while it runs.
    follower = subprocess.Popen(
        [*base, "--follow", "--since", "1m", "--format", "short"],
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        time.sleep(0.5)
        second = lam.invoke(FunctionName="obs-tail", Payload=b'{"n": 2}')["ResponseMetadata"][
            "RequestId"
        ]
        assert follower.stdout is not None
        reader = threading.Thread(
            target=lambda: seen.extend(iter(follower.stdout.readline, "")), daemon=True
        )
        reader.start()
        wait_for(
            lambda: any(f"REPORT RequestId: {second}" in line for line in seen),
            timeout=20,
            what="aws logs tail --follow to show the new REPORT line",
        )
    finally:
        follower.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            follower.wait(10)
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert any(f"START RequestId: {second}" in line for line in seen)


def test_xray_sdk_subsegment_lands_under_laminas_segment(server: Server) -> None:
    lam = server.client()
    python_function(lam, "obs-xray", XRAY, TracingConfig={"Mode": "Active"})
    answer = json.loads(lam.invoke(FunctionName="obs-xray", Payload=b"{}")["Payload"].read())
    root = re.match(r"Root=([^;]+);Parent=([0-9a-f]{16});Sampled=1", answer["trace"])
    assert root is not None, answer
    xray = server.client("xray")
    start, end = window()
    summaries = xray.get_trace_summaries(
        StartTime=start, EndTime=end, FilterExpression='service("obs-xray")'
    )
    assert [s["Id"] for s in summaries["TraceSummaries"]] == [root.group(1)]

    def function_segment() -> dict[str, Any] | None:
        traces = xray.batch_get_traces(TraceIds=[root.group(1)])["Traces"]
        documents = [json.loads(s["Document"]) for s in traces[0]["Segments"]]
        found = next(d for d in documents if d.get("origin") == "AWS::Lambda::Function")
        names = [sub["name"] for sub in found.get("subsegments", [])]
        return found if "obs-subsegment" in names else None

    segment = wait_for(function_segment, timeout=5, what="the SDK's subsegment in the trace")
    assert segment["id"] == root.group(2)  # the function's Parent is Lamina's segment
    names = [sub["name"] for sub in segment["subsegments"]]
    assert names[:3] == ["Initialization", "Invocation", "Overhead"]
    mine = next(sub for sub in segment["subsegments"] if sub["name"] == "obs-subsegment")
    assert mine["annotations"] == {"answer": 42}
    invocation = segment["subsegments"][1]
    assert (
        invocation["start_time"] <= mine["start_time"] <= mine["end_time"] <= invocation["end_time"]
    )


def test_an_incoming_trace_header_is_continued(server: Server) -> None:
    lam = server.client()
    python_function(lam, "obs-passthrough", ECHO_TRACE)  # TracingConfig PassThrough

    def call(header: str | None) -> str:
        request = urllib.request.Request(
            f"{server.endpoint}/2015-03-31/functions/obs-passthrough/invocations",
            data=b"{}",
            method="POST",
            headers={"X-Amzn-Trace-Id": header} if header else {},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(json.load(answer)["trace"])

    untraced = call(None)
    assert untraced.endswith("Sampled=0")
    root = "1-6761e2a0-0123456789abcdef01234567"
    traced = call(f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1")
    assert traced.startswith(f"Root={root};Parent=") and traced.endswith("Sampled=1")
    trace = server.client("xray").batch_get_traces(TraceIds=[root])["Traces"]
    documents = [json.loads(s["Document"]) for s in trace[0]["Segments"]]
    service = next(d for d in documents if d["origin"] == "AWS::Lambda")
    assert service["parent_id"] == "53995c3f42cd8ad8"
    unsampled_root = re.match(r"Root=([^;]+)", untraced)
    assert unsampled_root is not None
    assert server.client("xray").batch_get_traces(TraceIds=[unsampled_root.group(1)])[
        "UnprocessedTraceIds"
    ] == [unsampled_root.group(1)]


def test_lamina_top_shows_functions_against_their_limits(
    server: Server, loaded: dict[str, list[str]]
) -> None:
    # Gauges are sampled once a second: let the last sample see the earlier tests' work end.
    wait_for(
        lambda: json.loads(get(server, "/_lamina/live"))["totals"]["concurrency"] == 0,
        what="the account to be idle",
    )
    result = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "top", "--once", "--endpoint", server.endpoint],
        env={**os.environ, "COLUMNS": "220", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "concurrent 0/12" in lines[0]
    capped = next(line for line in lines if line.startswith("obs-capped"))
    assert re.search(r"0/2\s+\d+\s+2\s", capped), capped  # now/limit, peak 1m, reserved
    prov = next(line for line in lines if line.startswith("obs-prov"))
    assert "0/2/2" in prov  # provisioned busy/ready/configured
    live = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "top", "--iterations", "2", "--interval", "0.2",
         "--endpoint", server.endpoint],
        env={**os.environ, "COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert live.returncode == 0 and "obs-hog" in live.stdout
    gone = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "top", "--once", "--endpoint", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert gone.returncode == 1 and "cannot reach Lamina" in gone.stdout

"""Durable functions: checkpoint round trips and executions per second (part of `make bench`).

1. Checkpoint round trip, as a function makes it: a handler inside an execution sends
   CheckpointDurableExecution 300 times in a row through boto3 (each closes a step:
   START and SUCCEED), timing each; baseline: the same client's cheapest call to the same
   server, GetFunctionConfiguration of itself, 300 times, in the same invocation.
2. A workflow of 10 steps (the real SDK, one checkpoint per step), run to completion by
   8 concurrent synchronous invokes: executions completed per second; baseline: the same
   10 step bodies invoked as a plain (not durable) function, same clients, same run.

Run alone: .venv/bin/python bench/run.py durable (run.py hands over its server and helpers)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import aws_durable_execution_sdk_python

CLIENTS = 8
EXECUTIONS = 160
ROUND_TRIPS = 300

PRELUDE = """
import json, os, time
"""

PROBE = (
    PRELUDE
    + """
import boto3

lam = boto3.client("lambda")


def handler(event, context):
    arn, token = event["DurableExecutionArn"], event["CheckpointToken"]
    checkpoints, reads = [], []
    for n in range(ROUND_TRIPS):
        step = [
            {"Id": f"s{n}", "Type": "STEP", "Action": "START", "SubType": "Step"},
            {"Id": f"s{n}", "Type": "STEP", "Action": "SUCCEED", "Payload": str(n)},
        ]
        started = time.perf_counter()
        answer = lam.checkpoint_durable_execution(
            DurableExecutionArn=arn, CheckpointToken=token, Updates=step
        )
        checkpoints.append(time.perf_counter() - started)
        token = answer["CheckpointToken"]
        started = time.perf_counter()
        lam.get_function_configuration(FunctionName=context.function_name)
        reads.append(time.perf_counter() - started)
    return {"Status": "SUCCEEDED", "Result": json.dumps([checkpoints, reads])}
"""
).replace("ROUND_TRIPS", str(ROUND_TRIPS))

WORKFLOW = (
    PRELUDE
    + """
from aws_durable_execution_sdk_python import DurableContext, durable_execution


def work(n, value):
    return value + n


@durable_execution
def durable(event, context: DurableContext):
    value = 0
    for n in range(10):
        value = context.step(lambda _, n=n, value=value: work(n, value), name=f"step-{n}")
    return value


def plain(event, context):
    value = 0
    for n in range(10):
        value = work(n, value)
    return value
"""
)


@cache
def sdk_files() -> dict[str, bytes]:
    """The SDK's package, bundled with the function as on Lambda."""
    root = Path(aws_durable_execution_sdk_python.__file__).parent
    return {
        f"{root.name}/{path.relative_to(root)}": path.read_bytes()
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _run(server: Any, name: str, count: int) -> float:
    """Synchronous invokes of `name`, `count` in all over CLIENTS threads: completions/s."""

    def one(_: int) -> None:
        answer = server.call("POST", f"/2015-03-31/functions/{name}/invocations", {})
        if answer != 45:
            raise RuntimeError(f"{name} answered {answer!r}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, range(CLIENTS * 2)))  # warm environments first
        started = time.monotonic()
        list(pool.map(one, range(count)))
        return count / (time.monotonic() - started)


def bench(
    server: Any,
    row: Callable[..., None],
    percentile: Callable[..., float],
    raw: dict[str, Any],
) -> None:
    """`server`: run.py's Lamina (a `lamina serve --isolation none` of its own)."""
    env: dict[str, Any] = {"Variables": {}}  # Lamina gives AWS_ENDPOINT_URL itself
    durable = {"ExecutionTimeout": 600}
    server.create(
        "probe", PROBE, Timeout=120, MemorySize=512, Environment=env, DurableConfig=durable
    )
    checkpoints, reads = server.call("POST", "/2015-03-31/functions/probe/invocations", {})
    checkpoint_ms = [t * 1000 for t in checkpoints[20:]]  # past the client's warm-up
    read_ms = [t * 1000 for t in reads[20:]]
    raw["durable_checkpoint_ms"] = {
        "p50": statistics.median(checkpoint_ms),
        "p99": percentile(checkpoint_ms, 99),
        "read_p50": statistics.median(read_ms),
    }
    row(
        "durable",
        "checkpoint round trip p50 (boto3 in a function)",
        statistics.median(checkpoint_ms),
        "ms",
        "GetFunctionConfiguration from the same client",
        statistics.median(read_ms),
    )
    row(
        "durable",
        "checkpoint round trip p99",
        percentile(checkpoint_ms, 99),
        "ms",
        "GetFunctionConfiguration p99",
        percentile(read_ms, 99),
    )

    common = {"Timeout": 60, "MemorySize": 512, "Environment": env}
    server.create(
        "ten-steps",
        WORKFLOW,
        files=sdk_files(),
        Handler="app.durable",
        DurableConfig=durable,
        **common,
    )
    server.create("ten-steps-plain", WORKFLOW, files=sdk_files(), Handler="app.plain", **common)
    plain_rate = _run(server, "ten-steps-plain", EXECUTIONS)
    durable_rate = _run(server, "ten-steps", EXECUTIONS)
    raw["durable_workflow"] = {"executions_per_s": durable_rate, "plain_per_s": plain_rate}
    row(
        "durable",
        f"10-step executions completed/s ({CLIENTS} clients)",
        durable_rate,
        "/s",
        "plain invokes of the same steps",
        plain_rate,
    )

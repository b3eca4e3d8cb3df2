"""EventBridge: events per second from PutEvents through a rule to a function, against
direct asynchronous invokes of the same function in the same run (part of `make bench`).

A no-op function reports each event it runs with one UDP datagram to the benchmark; a
rule on the default bus matches every event of source `bench` and targets it. 8 client
threads send EVENTS events, and the clock stops when the function has run the last one:
1. direct async invokes (InvocationType Event, one event per call): the baseline;
2. PutEvents with one entry per call (the same number of calls as the baseline);
3. PutEvents with ten entries per call.
Each figure is end to end (sent → accepted → queued → run); the accepted rate (202s and
PutEvents answers per second) is kept in the raw results too.

Run alone: .venv/bin/python bench/run.py eventbridge (run.py hands over its server)
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

CLIENTS = 8
EVENTS = 2000
SINK = """
import json, os, socket
ADDRESS = ("127.0.0.1", int(os.environ["REPORT_PORT"]))
OUT = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

def handler(event, context):
    OUT.sendto(b"1", ADDRESS)
"""


class Counter:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def wait(self, count: int, timeout: float) -> int:
        """Datagrams received until `count` or the timeout."""
        got = 0
        deadline = time.monotonic() + timeout
        while got < count and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.sock.recv(16)
            except TimeoutError:
                break
            got += 1
        return got


def _client(server: Any, service: str) -> Any:
    return boto3.client(
        service, endpoint_url=server.url(""), region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 0}, max_pool_connections=CLIENTS),
    )  # fmt: skip


def _run(counter: Counter, calls: list[Callable[[], None]], events: int) -> tuple[float, float]:
    """(events/s end to end, events/s accepted) for `calls` sent from CLIENTS threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda call: call(), calls))
    accepted = time.perf_counter() - started
    got = counter.wait(events, timeout=120)
    took = time.perf_counter() - started
    if got < events:
        raise RuntimeError(f"only {got} of {events} events ran")
    return events / took, events / accepted


def bench(server: Any, row: Callable[..., None], raw: dict[str, Any]) -> None:
    """`server`: run.py's Lamina (a `lamina serve --isolation none` of its own)."""
    counter = Counter()
    env = {"Variables": {"REPORT_PORT": str(counter.port)}}
    server.create("sink", SINK, Environment=env, MemorySize=128)
    lam, events = _client(server, "lambda"), _client(server, "events")
    rule = events.put_rule(Name="all", EventPattern=json.dumps({"source": ["bench"]}))
    lam.add_permission(
        FunctionName="sink", StatementId="events", Action="lambda:InvokeFunction",
        Principal="events.amazonaws.com", SourceArn=rule["RuleArn"],
    )  # fmt: skip
    arn = lam.get_function(FunctionName="sink")["Configuration"]["FunctionArn"]
    events.put_targets(Rule="all", Targets=[{"Id": "sink", "Arn": arn}])
    entry = {"Source": "bench", "DetailType": "Tick", "Detail": '{"n": 1}'}

    def invoke() -> None:
        lam.invoke(FunctionName="sink", InvocationType="Event", Payload=b'{"n": 1}')

    def put(size: int) -> Callable[[], None]:
        def call() -> None:
            answer = events.put_events(Entries=[entry] * size)
            assert answer["FailedEntryCount"] == 0

        return call

    _run(counter, [invoke] * 200, 200)  # warm: environments and connections
    direct, direct_accepted = _run(counter, [invoke] * EVENTS, EVENTS)
    single, single_accepted = _run(counter, [put(1)] * EVENTS, EVENTS)
    batched, batched_accepted = _run(counter, [put(10)] * (EVENTS // 10), EVENTS)
    raw["eventbridge"] = {
        "direct_async_per_s": direct,
        "direct_accepted_per_s": direct_accepted,
        "put_events_1_per_s": single,
        "put_events_1_accepted_per_s": single_accepted,
        "put_events_10_per_s": batched,
        "put_events_10_accepted_per_s": batched_accepted,
    }
    row("eventbridge", f"PutEvents (1 entry) → rule → function, events/s ({CLIENTS} clients)",
        single, "/s", "direct async invokes", direct)  # fmt: skip
    row("eventbridge", "PutEvents (10 entries) → rule → function, events/s",
        batched, "/s", "direct async invokes", direct)  # fmt: skip

"""S3: objects per second and notifications per second, each against a baseline measured
in the same run (part of `make bench`).

1. PutObject of 1 KB objects from 8 client threads, no notification configured: objects
   acknowledged per second, against SQS SendMessage of the same 1 KB bodies from the same
   clients (both durable before they answer).
2. PutObject with a notification to a no-op function: events per second end to end (put
   → outbox → async queue → the function has run), against direct async invokes of the
   same function from the same clients. The function reports each run with one UDP
   datagram.
3. GetObject of those 1 KB objects: objects per second, against SQS GetQueueUrl (the
   cheapest read of another service on the same endpoint).

Run alone: .venv/bin/python bench/run.py s3 (run.py hands over its server)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eventbridge import SINK, Counter, _client  # bench/eventbridge.py: the same harness

CLIENTS = 8
COUNT = 2000
BODY = b"x" * 1024


def _rate(calls: list[Callable[[], None]]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda call: call(), calls))
    return len(calls) / (time.perf_counter() - started)


def _end_to_end(counter: Counter, calls: list[Callable[[], None]]) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda call: call(), calls))
    got = counter.wait(len(calls), timeout=120)
    if got < len(calls):
        raise RuntimeError(f"only {got} of {len(calls)} events ran")
    return len(calls) / (time.perf_counter() - started)


def bench(server: Any, row: Callable[..., None], raw: dict[str, Any]) -> None:
    """`server`: run.py's Lamina (a `lamina serve --isolation none` of its own)."""
    counter = Counter()
    server.create("sink", SINK, Environment={"Variables": {"REPORT_PORT": str(counter.port)}},
                  MemorySize=128)  # fmt: skip
    lam, s3, sqs = _client(server, "lambda"), _client(server, "s3"), _client(server, "sqs")
    s3.create_bucket(Bucket="plain")
    s3.create_bucket(Bucket="notified")
    url = sqs.create_queue(QueueName="bench-baseline")["QueueUrl"]
    lam.add_permission(
        FunctionName="sink", StatementId="s3", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::notified",
    )  # fmt: skip
    arn = lam.get_function(FunctionName="sink")["Configuration"]["FunctionArn"]
    s3.put_bucket_notification_configuration(
        Bucket="notified",
        NotificationConfiguration={"LambdaFunctionConfigurations": [
            {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]},
    )  # fmt: skip

    def put(bucket: str, index: int) -> Callable[[], None]:
        return lambda: s3.put_object(Bucket=bucket, Key=f"k/{index}", Body=BODY)

    def send() -> None:
        sqs.send_message(QueueUrl=url, MessageBody=BODY.decode())

    def invoke() -> None:
        lam.invoke(FunctionName="sink", InvocationType="Event", Payload=b'{"n": 1}')

    def get(index: int) -> Callable[[], None]:
        return lambda: s3.get_object(Bucket="plain", Key=f"k/{index}")["Body"].read()

    def queue_url() -> None:
        sqs.get_queue_url(QueueName="bench-baseline")

    _end_to_end(counter, [invoke] * 200)  # warm: environments and connections
    _rate([put("plain", -i - 1) for i in range(200)] + [send] * 200)
    puts = _rate([put("plain", i) for i in range(COUNT)])
    sends = _rate([send] * COUNT)
    direct = _end_to_end(counter, [invoke] * COUNT)
    notified = _end_to_end(counter, [put("notified", i) for i in range(COUNT)])
    gets = _rate([get(i) for i in range(COUNT)])
    reads = _rate([queue_url] * COUNT)
    raw["s3"] = {
        "put_object_per_s": puts,
        "send_message_per_s": sends,
        "put_object_notified_events_per_s": notified,
        "direct_async_per_s": direct,
        "get_object_per_s": gets,
        "get_queue_url_per_s": reads,
    }
    row("s3", f"PutObject 1 KB, objects/s ({CLIENTS} clients)", puts, "/s",
        "SQS SendMessage 1 KB", sends)  # fmt: skip
    row("s3", "PutObject → notification → function, events/s", notified, "/s",
        "direct async invokes", direct)  # fmt: skip
    row("s3", "GetObject 1 KB, objects/s", gets, "/s", "SQS GetQueueUrl", reads)

"""Event source mapping throughput: messages and records a mapping drains per second into a
function that does nothing, against one boto3 client invoking that function in a loop
(the baseline, measured in the same run).

Run: .venv/bin/python bench/mappings.py [--messages 5000] [--records 20000]
Prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import Server, python_function  # noqa: E402

NOOP = "def handler(event, context):\n    return None\n"


def stats(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats") as response:
        return dict(json.loads(response.read())["mappings"])


def wait_until(check: Any, timeout: float = 300.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError
        time.sleep(0.01)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        server = Server(Path(scratch) / "data").start()
        try:
            lam, sqs, kinesis = server.client(), server.client("sqs"), server.client("kinesis")
            python_function(lam, "noop", NOOP)
            lam.invoke(FunctionName="noop")  # warm
            count = 0
            started = time.monotonic()
            while time.monotonic() - started < args.seconds:
                lam.invoke(FunctionName="noop", Payload=b"{}")
                count += 1
            baseline = count / (time.monotonic() - started)

            url = sqs.create_queue(QueueName="bench")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            for start in range(0, args.messages, 10):
                sqs.send_message_batch(
                    QueueUrl=url,
                    Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)],
                )
            sqs_mapping = lam.create_event_source_mapping(
                EventSourceArn=arn, FunctionName="noop", BatchSize=10
            )["UUID"]
            sqs_seconds = wait_until(
                lambda: stats(server).get(sqs_mapping, {}).get("deleted", 0) >= args.messages
            )
            sqs_stats = stats(server)[sqs_mapping]

            kinesis.create_stream(StreamName="bench", ShardCount=4)
            stream_arn = kinesis.describe_stream_summary(StreamName="bench")[
                "StreamDescriptionSummary"
            ]["StreamARN"]
            for start in range(0, args.records, 500):
                kinesis.put_records(
                    StreamName="bench",
                    Records=[
                        {"Data": b"x" * 100, "PartitionKey": f"k{start + i}"} for i in range(500)
                    ],
                )
            stream_mapping = lam.create_event_source_mapping(
                EventSourceArn=stream_arn,
                FunctionName="noop",
                StartingPosition="TRIM_HORIZON",
                BatchSize=100,
            )["UUID"]
            stream_seconds = wait_until(
                lambda: stats(server).get(stream_mapping, {}).get("records", 0) >= args.records
            )
            stream_stats = stats(server)[stream_mapping]
        finally:
            server.stop()
    sqs_rate = args.messages / sqs_seconds
    stream_rate = args.records / stream_seconds
    print(f"{'what':<52} {'per second':>12} {'vs baseline':>12}")
    label = "baseline: boto3 invoke loop (1 event per invoke)"
    print(f"{label:<52} {baseline:>12,.0f} {1:>11.1f}x")
    print(
        f"{'SQS mapping, batch 10, messages drained':<52} {sqs_rate:>12,.0f} "
        f"{sqs_rate / baseline:>11.1f}x   ({sqs_stats['batches']} batches, "
        f"peak {sqs_stats['peak_in_flight']} in flight)"
    )
    print(
        f"{'Kinesis mapping, 4 shards, batch 100, records':<52} {stream_rate:>12,.0f} "
        f"{stream_rate / baseline:>11.1f}x   ({stream_stats['batches']} batches, "
        f"peak {stream_stats['peak_in_flight']} in flight)"
    )


if __name__ == "__main__":
    main()

"""DynamoDB in `make bench` (bench/run.py calls `bench`): PutItem into a table whose
stream is on, and records per second through a DynamoDB stream mapping into a no-op
function, both against a bare SQLite insert loop measured in the same run (one INSERT
per transaction, WAL, synchronous=NORMAL: the durability a PutItem has).

Alone: .venv/bin/python bench/dynamodb.py
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httptools

PUTS = 4000
CLIENTS = 8
RECORDS = 8000
NOOP = "def handler(event, context):\n    return None\n"


def sqlite_inserts(count: int) -> float:
    """Inserts per second: one row of about an item's size per autocommitted INSERT."""
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as where:
        db = sqlite3.connect(Path(where) / "bare.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE items (k BLOB PRIMARY KEY, item TEXT NOT NULL) WITHOUT ROWID")
        rows = [
            (uuid.uuid4().bytes, json.dumps({"pk": {"S": str(n)}, "n": {"N": str(n)}}))
            for n in range(count)
        ]
        started = time.perf_counter()
        for key, item in rows:
            db.execute("INSERT INTO items (k, item) VALUES (?, ?)", (key, item))
        took = time.perf_counter() - started
        db.close()
    return count / took


class Client(asyncio.Protocol):
    """One kept-alive connection sending DynamoDB's JSON requests, one at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.answer is not None
        self.answer.set_result((self.parser.get_status_code(), b"".join(self.body)))

    async def call(self, target: str, document: dict[str, Any]) -> tuple[int, bytes]:
        assert self.transport is not None
        body = json.dumps(document).encode()
        self.body = []
        self.answer = asyncio.get_running_loop().create_future()
        head = (
            f"POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
            f"X-Amz-Target: DynamoDB_20120810.{target}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        return await self.answer


async def puts(port: int, table: str, count: int, clients: int) -> tuple[float, list[float]]:
    """PutItem of `count` items from `clients` connections: (items/s, latencies in ms)."""
    latencies: list[float] = []
    failures = 0
    next_item = iter(range(count))

    async def caller() -> None:
        nonlocal failures
        _, client = await asyncio.get_running_loop().create_connection(Client, "127.0.0.1", port)
        try:
            for n in next_item:
                item = {"pk": {"S": f"item-{n}"}, "n": {"N": str(n)}, "body": {"S": "x" * 64}}
                started = time.perf_counter()
                status, _ = await client.call("PutItem", {"TableName": table, "Item": item})
                latencies.append((time.perf_counter() - started) * 1000)
                failures += status != 200
        finally:
            assert client.transport is not None
            client.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(clients)))
    took = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} PutItem calls failed")
    return count / took, latencies


def create_table(server: Any, name: str, partitions: int) -> str:
    document = {
        "TableName": name,
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        "Tags": [{"Key": "lamina:partitions", "Value": str(partitions)}],
    }
    answer = asyncio.run(_one(server.port, "CreateTable", document))
    return str(answer["TableDescription"]["LatestStreamArn"])


async def _one(port: int, target: str, document: dict[str, Any]) -> Any:
    _, client = await asyncio.get_running_loop().create_connection(Client, "127.0.0.1", port)
    try:
        status, body = await client.call(target, document)
    finally:
        assert client.transport is not None
        client.transport.close()
    if status != 200:
        raise RuntimeError(f"{target}: {status} {body!r}")
    return json.loads(body)


async def fill(port: int, table: str, count: int) -> None:
    """`count` items by BatchWriteItem, 25 a request, 8 requests at a time."""
    batches = [list(range(start, min(start + 25, count))) for start in range(0, count, 25)]
    pending = iter(batches)

    async def writer() -> None:
        for batch in pending:
            requests = [
                {"PutRequest": {"Item": {"pk": {"S": f"r-{n}"}, "n": {"N": str(n)}}}} for n in batch
            ]
            await _one(port, "BatchWriteItem", {"RequestItems": {table: requests}})

    await asyncio.gather(*(writer() for _ in range(8)))


def mapping_records(server: Any, stats: Callable[[], dict[str, Any]]) -> float:
    """Records/s a mapping drains from a four-shard stream into a no-op function."""
    arn = create_table(server, "bench-stream", 4)
    asyncio.run(fill(server.port, "bench-stream", RECORDS))
    server.create("bench-noop", NOOP)
    mapping = server.call(
        "POST",
        "/2015-03-31/event-source-mappings/",
        {
            "EventSourceArn": arn,
            "FunctionName": "bench-noop",
            "StartingPosition": "TRIM_HORIZON",
            "BatchSize": 100,
            "ParallelizationFactor": 2,
        },
    )
    started = time.perf_counter()
    deadline = started + 300
    while time.perf_counter() < deadline:
        if stats().get(mapping["UUID"], {}).get("records", 0) >= RECORDS:
            return RECORDS / (time.perf_counter() - started)
        time.sleep(0.01)
    raise TimeoutError("the mapping did not drain the stream in 5 minutes")


def bench(
    server: Any,
    row: Callable[..., None],
    percentile: Callable[[list[float], float], float],
    raw: dict[str, Any],
) -> None:
    """Measure with `server` (a running Lamina from bench/run.py) and report with `row`."""
    baseline = sqlite_inserts(PUTS)
    create_table(server, "bench-puts", 1)
    rate, latencies = asyncio.run(puts(server.port, "bench-puts", PUTS, CLIENTS))
    row(
        "dynamodb",
        f"PutItem, stream on, {CLIENTS} clients",
        rate,
        "items/s",
        "bare SQLite INSERT loop",
        baseline,
    )
    row("dynamodb", "PutItem p50", percentile(latencies, 50), "ms", "bare INSERT", 1000 / baseline)

    def stats() -> dict[str, Any]:
        return dict(server.call("GET", "/_lamina/stats")["mappings"])

    drained = mapping_records(server, stats)
    row(
        "dynamodb",
        "stream mapping, 4 shards x 2 lanes",
        drained,
        "records/s",
        "bare SQLite INSERT loop",
        baseline,
    )
    raw["dynamodb"] = {
        "sqlite_inserts_per_s": baseline,
        "put_items_per_s": rate,
        "put_p50_ms": percentile(latencies, 50),
        "put_p99_ms": percentile(latencies, 99),
        "mapping_records_per_s": drained,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run  # type: ignore[import-not-found]

    lamina = run.Lamina()
    try:
        bench(lamina, run.row, run.percentile, run.RAW)
    finally:
        lamina.stop()

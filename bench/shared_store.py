"""The cluster's store in `make bench` (bench/run.py calls `bench`): what PostgreSQL costs
against the embedded SQLite, in the same run, on a PostgreSQL of the bench's own (initdb
in a temporary directory, fsync on).

1. One statement: a primary-key read through the store's database layer, SQLite against
   PostgreSQL (psycopg 3, synchronous, a pooled connection) and against psycopg's async
   connection awaited on the event loop: why the layer is synchronous.
2. A warm sync Invoke (wrk, one client) on a node with `--database` against a node on
   SQLite, alternately: the record comes from the store's cache on both (p50 within 1.1x).
3. Writes a caller waits for: SQS SendMessage and an async Invoke (202 once stored), p50
   at one client, PostgreSQL against SQLite.

Alone: .venv/bin/python bench/shared_store.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NOOP = "def handler(event, context):\n    return None\n"
STATEMENTS = 3000


def per_call_us(call: Callable[[], object], count: int) -> float:
    """p50 of `count` calls, microseconds."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2] * 1e6


def statements(url: str) -> dict[str, float]:
    import psycopg

    from lamina.store.database import PostgresDatabase, SqliteDatabase

    ddl = "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)"
    sqlite = SqliteDatabase(Path(tempfile.mkdtemp(prefix="lamina-bench-")) / "kv.db")
    postgres = PostgresDatabase(url)
    found: dict[str, float] = {}
    try:
        for label, db in (("sqlite", sqlite), ("postgresql", postgres)):
            db.execute(ddl)
            db.execute("INSERT INTO kv (k, v) VALUES ('a', 'b') ON CONFLICT (k) DO NOTHING")
            found[label] = per_call_us(
                lambda db=db: db.execute("SELECT v FROM kv WHERE k=?", ("a",)).fetchone(),  # type: ignore[misc]
                STATEMENTS,
            )

        async def awaited() -> float:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            times = []
            for _ in range(STATEMENTS):
                started = time.perf_counter()
                cursor = await conn.execute("SELECT v FROM kv WHERE k=%s", ("a",))
                await cursor.fetchone()
                times.append(time.perf_counter() - started)
            await conn.close()
            times.sort()
            return times[len(times) // 2] * 1e6

        import uvloop

        found["postgresql-async"] = uvloop.run(awaited())
    finally:
        sqlite.close()
        postgres.shutdown()
    return found


def timed_posts(server: Any, path: str, body: bytes, count: int, headers: dict[str, str]) -> float:
    """p50 of `count` POSTs one after another (a fresh connection each, as urllib does), ms."""
    times = []
    for _ in range(count):
        request = urllib.request.Request(server.url(path), data=body, method="POST")
        for name, value in headers.items():
            request.add_header(name, value)
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2] * 1000


def writes(server: Any) -> dict[str, float]:
    queue = json.dumps({"QueueName": "bench"}).encode()
    sqs = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.CreateQueue"}
    timed_posts(server, "/", queue, 1, sqs)
    url = f"http://127.0.0.1:{server.port}/000000000000/bench"
    send = json.dumps({"QueueUrl": url, "MessageBody": "x" * 100}).encode()
    sqs_send = {**sqs, "X-Amz-Target": "AmazonSQS.SendMessage"}
    event = {"X-Amz-Invocation-Type": "Event"}
    path = "/2015-03-31/functions/store-noop/invocations"
    timed_posts(server, path, b"{}", 20, event)  # warm
    return {
        "send_message": timed_posts(server, "/", send, 300, sqs_send),
        "async_invoke": timed_posts(server, path, b"{}", 300, event),
    }


def bench(
    lamina: Callable[..., Any],
    wrk: Callable[..., dict[str, Any]],
    row: Callable[..., None],
    rounds: int,
    seconds: int,
    raw: dict[str, Any],
) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.cluster.postgres_server import PostgresServer

    postgres = PostgresServer(durable=True).start()
    try:
        url = postgres.create_database("bench")
        found = statements(url)
        print(
            f"    one primary-key read: SQLite {found['sqlite']:.1f} µs, PostgreSQL "
            f"{found['postgresql']:.1f} µs (async {found['postgresql-async']:.1f} µs)",
            flush=True,
        )
        row("store", "PostgreSQL read, sync (µs)", found["postgresql"], "µs", "SQLite read",
            found["sqlite"])  # fmt: skip
        row("store", "PostgreSQL read, async awaited (µs)", found["postgresql-async"], "µs",
            "sync", found["postgresql"])  # fmt: skip
        nodes = {"sqlite": lamina(), "postgresql": lamina("--database", url)}
        try:
            path = "/2015-03-31/functions/store-noop/invocations"
            for server in nodes.values():
                server.create("store-noop", NOOP)
            tried: dict[str, list[dict[str, Any]]] = {label: [] for label in nodes}
            for _ in range(rounds):
                for label, server in nodes.items():
                    wrk(server.port, path, 1, 1)  # warm
                    tried[label].append(wrk(server.port, path, 1, seconds))
            warm = {label: min(r["p50_us"] for r in tried[label]) / 1000 for label in nodes}
            print(f"    warm Invoke p50, 1 client: {warm}", flush=True)
            met = warm["postgresql"] <= 1.1 * warm["sqlite"]
            row("store", "warm Invoke p50 on PostgreSQL, 1 client", warm["postgresql"], "ms",
                "on SQLite", warm["sqlite"], "≤ 1.1x", met)  # fmt: skip
            written = {label: writes(server) for label, server in nodes.items()}
            print(f"    writes p50 (ms): {written}", flush=True)
            for name in ("send_message", "async_invoke"):
                row("store", f"{name} p50 on PostgreSQL", written["postgresql"][name], "ms",
                    "on SQLite", written["sqlite"][name])  # fmt: skip
            raw["shared_store"] = {"statements_us": found, "warm_ms": warm, "writes_ms": written}
        finally:
            for server in nodes.values():
                server.stop()
    finally:
        postgres.remove()


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    import http_front  # the wrk runner
    import run  # bench/run.py

    bench(run.Lamina, http_front.wrk, run.row, run.ROUNDS, run.WARM_SECONDS, run.RAW)

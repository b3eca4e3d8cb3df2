"""Durable enqueue rate: asynchronous invokes accepted per second, each answered 202 only
after its event is fsynced, against a bare SQLite insert loop (one insert and one commit
per event, the same durability) measured in the same run.

Run: .venv/bin/python bench/enqueue.py [--seconds 5] [--connections 64]
Prints a table and writes bench/results-enqueue.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config

PYTHON_RUNTIME = f"python3.{sys.version_info.minor}"  # the interpreter running Lamina

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlite_baseline(seconds: float, directory: Path) -> float:
    """Events/s of the plainest durable loop: INSERT + COMMIT (WAL, synchronous=FULL)."""
    db = sqlite3.connect(directory / "baseline.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload BLOB)")
    payload = b'{"n": 1}'
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        db.execute("BEGIN")
        db.execute("INSERT INTO events (payload) VALUES (?)", (payload,))
        db.execute("COMMIT")
        count += 1
    took = time.perf_counter() - started
    db.close()
    return count / took


async def offer(port: int, seconds: float, connections: int) -> tuple[int, int]:
    """Keep `connections` keep-alive connections busy with Event invokes; (202s, others)."""
    request = (
        b"POST /2015-03-31/functions/sink/invocations HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nX-Amz-Invocation-Type: Event\r\n"
        b"Content-Type: application/json\r\nContent-Length: 8\r\n\r\n"
        b'{"n": 1}'
    )
    accepted = refused = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal accepted, refused
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                status = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                if b" 202 " in status:
                    accepted += 1
                else:
                    refused += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return accepted, refused


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        baseline = sqlite_baseline(args.seconds, directory)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lamina.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(directory / "data"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_lamina/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            client = boto3.client(
                "lambda",
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
                config=Config(retries={"max_attempts": 0}),
            )
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zipped:
                zipped.writestr("app.py", "import time\ndef handler(e, c):\n    time.sleep(60)\n")
            client.create_function(
                FunctionName="sink",
                Runtime=PYTHON_RUNTIME,
                Role="arn:aws:iam::000000000000:role/bench",
                Handler="app.handler",
                Code={"ZipFile": archive.getvalue()},
                Timeout=120,
            )
            # One slow run at a time: the backlog grows and the worker stays out of the way.
            client.put_function_concurrency(FunctionName="sink", ReservedConcurrentExecutions=1)
            started = time.perf_counter()
            accepted, refused = asyncio.run(offer(port, args.seconds, args.connections))
            rate = accepted / (time.perf_counter() - started)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait()
    results = {
        "durable_enqueue_events_per_s": round(rate),
        "sqlite_insert_commit_per_s": round(baseline),
        "ratio": round(rate / baseline, 2),
        "refused": refused,
        "connections": args.connections,
        "target_events_per_s": 5000,
    }
    print(f"{'measure':<38}{'value':>12}")
    print(f"{'durable enqueue (202 after fsync)':<38}{rate:>10.0f}/s")
    print(f"{'baseline: SQLite INSERT+COMMIT loop':<38}{baseline:>10.0f}/s")
    print(f"{'ratio':<38}{rate / baseline:>11.2f}x")
    print(f"{'target':<38}{'>= 5000/s':>12}  {'met' if rate >= 5000 else 'not met'}")
    (ROOT / "bench" / "results-enqueue.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

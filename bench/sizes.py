"""Figures at the sizes a shared server reaches (part of bench/run.py: `bench/run.py sizes`),
each against a baseline or a bound measured in the same run:

  functions     10,000 functions deployed through CreateFunction: server RSS, ListFunctions
                (every page), GetFunction, GetAccountSettings and /_lamina/live, and the
                start of `lamina serve` on that data directory, against a server with 10.
                A warm invoke's p50 at 10,000 functions against 10 (servers side by side,
                measured in alternating batches).
  environments  1,000 warm environments of 50 functions at once: server RSS, the server's
                CPU while they sit idle (the keep-alive sweep must not scan them all every
                tick), total PSS of the environments.
  queues        100,000 queued asynchronous events and 1,000,000 SQS messages on disk:
                `lamina serve`'s start and its RSS, against an empty data directory.

Environments run with --isolation none (PSS is read by host pid). Data for the queues is
written with the stores' own schemas, as a long-running server would have left it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from lamina.services.sqs.messages import Message
from lamina.services.sqs.store import QueueStore
from lamina.store.events import SCHEMA as EVENTS_SCHEMA

PYTHON = sys.executable
FUNCTIONS = 10_000
CREATORS = 8
ENV_FUNCTIONS = 50
ENVIRONMENTS = 1_000
EVENTS = 100_000
MESSAGES = 1_000_000
NOOP = "def handler(event, context):\n    return None\n"
SLEEPER = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('s', 0))\n"


class Server:
    """`lamina serve` on a data directory of the caller's, and the time its start took."""

    def __init__(self, data: Path, *args: str) -> None:
        from run import free_port  # bench/run.py

        self.port = free_port()
        self.data = data
        self.log = open(data.parent / f"server-{self.port}.log", "wb")  # noqa: SIM115
        command = [PYTHON, "-m", "lamina.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(data), "--request-rate", "0", "--xray-port", "0", *args]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"lamina serve exited: {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url("/_lamina/health"), timeout=1):
                    break
            except OSError:
                if time.perf_counter() - started > 300:
                    raise RuntimeError("lamina serve did not start in 300 s") from None
                time.sleep(0.02)
        self.startup = time.perf_counter() - started

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method: str, path: str, document: Any = None) -> Any:
        data = json.dumps(document).encode() if document is not None else None
        request = urllib.request.Request(self.url(path), data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:
            body = response.read()
        return json.loads(body) if body else None

    def rss_mb(self) -> float:
        return _status_kb(self.process.pid, "VmRSS") / 1024

    def settled_rss_mb(self, quiet_s: float = 1.0, limit_s: float = 60.0) -> float:
        """RSS once what the server reads after its start (queued events) is in: it has not
        grown for `quiet_s` (at most `limit_s`)."""
        deadline = time.monotonic() + limit_s
        last, since = self.rss_mb(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            time.sleep(0.1)
            now = self.rss_mb()
            if now > last * 1.01:
                last, since = now, time.monotonic()
        return self.rss_mb()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def code(source: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("app.py", (2026, 1, 1, 0, 0, 0)), source)
    return base64.b64encode(buffer.getvalue()).decode()


def create(server: Server, names: list[str], source: str = NOOP, **extra: Any) -> None:
    blob = code(source)
    runtime = f"python3.{sys.version_info.minor}"

    def creator(part: list[str]) -> None:
        for name in part:
            server.call(
                "POST",
                "/2015-03-31/functions",
                {
                    "FunctionName": name,
                    "Runtime": runtime,
                    "Role": "arn:aws:iam::000000000000:role/bench",
                    "Handler": "app.handler",
                    "Code": {"ZipFile": blob},
                    **extra,
                },
            )

    threads = [
        threading.Thread(target=creator, args=(names[i::CREATORS],)) for i in range(CREATORS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def timed(call: Any, count: int) -> float:
    """p50 in ms of `count` calls."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def alternating(calls: list[Any], rounds: int, batch: int) -> list[float]:
    """p50 in ms of each call, measured in alternating batches so that a slow moment of
    the machine hits every one of them."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for index, call in enumerate(calls):
            for _ in range(batch):
                started = time.perf_counter()
                call()
                times[index].append((time.perf_counter() - started) * 1000)
    return [statistics.median(series) for series in times]


def page_times(server: Server) -> list[float]:
    """ms of each ListFunctions page (50 a page), all pages in order."""
    times, marker = [], ""
    while True:
        started = time.perf_counter()
        page = server.call(
            "GET", "/2015-03-31/functions?MaxItems=50" + (f"&Marker={marker}" if marker else "")
        )
        times.append((time.perf_counter() - started) * 1000)
        marker = page.get("NextMarker") or ""
        if not marker:
            return times


def list_all(server: Server) -> int:
    found, marker = 0, ""
    while True:
        page = server.call(
            "GET", "/2015-03-31/functions?MaxItems=50" + (f"&Marker={marker}" if marker else "")
        )
        found += len(page["Functions"])
        marker = page.get("NextMarker") or ""
        if not marker:
            return found


def invoke_batches(
    bench: Any, servers: list[Server], rounds: int = 20, batch: int = 100
) -> list[float]:
    """p50 (ms) of warm invokes per server, measured in alternating batches on one kept
    connection each, so a slow moment of the machine hits both."""
    import uvloop

    async def measure() -> list[float]:
        connections = [await bench.connect(s.port) for s in servers]
        times: list[list[float]] = [[] for _ in servers]
        path = bench.invocations("fn-00000")
        for connection in connections:
            for _ in range(50):
                await connection.request(path)
        for _ in range(rounds):
            for index, connection in enumerate(connections):
                for _ in range(batch):
                    started = time.perf_counter()
                    status, _ = await connection.request(path)
                    times[index].append((time.perf_counter() - started) * 1000)
                    assert status == 200
        for connection in connections:
            connection.close()
        return [statistics.median(t) for t in times]

    result: list[float] = uvloop.run(measure())
    return result


# 1. Functions -------------------------------------------------------------------------------
def bench_functions(bench: Any, root: Path) -> None:
    from lamina.console.live import SHOWN  # functions the live view lists at most

    print(f"8a. {FUNCTIONS:,} functions", flush=True)
    empty = Server(root / "empty")
    small = Server(root / "small")
    shown = Server(root / "shown")
    big = Server(root / "big")
    try:
        create(small, [f"fn-{n:05d}" for n in range(10)])
        create(shown, [f"fn-{n:05d}" for n in range(SHOWN)])
        started = time.perf_counter()
        create(big, [f"fn-{n:05d}" for n in range(FUNCTIONS)])
        took = time.perf_counter() - started
        for server, count in ((small, 10), (shown, SHOWN), (big, FUNCTIONS)):
            assert list_all(server) == count
        figures: dict[str, Any] = {"create_s": took}
        pair = (small, big)
        get_function = alternating(
            [lambda s=s: s.call("GET", "/2015-03-31/functions/fn-00007") for s in pair], 10, 20
        )
        settings = alternating(
            [lambda s=s: s.call("GET", "/2016-08-19/account-settings") for s in pair], 10, 20
        )
        for index, (label, server) in enumerate((("10", small), ("10000", big))):
            figures[label] = {
                "rss_mb": server.rss_mb(),
                "list_all_ms": timed(lambda s=server: list_all(s), 3),
                "get_function_ms": get_function[index],
                "account_settings_ms": settings[index],
            }
        # A page of 50 and the live view's 100 functions, against the same on a server
        # that holds just that many.
        live = alternating(
            [lambda s=s: s.call("GET", "/_lamina/live") for s in (shown, big)], 5, 10
        )
        page_ms: list[list[float]] = [[], []]  # a page of 50, at SHOWN and 10,000 functions
        for _ in range(3):
            page_ms[1] += page_times(big)
            for _ in range(30):
                page_ms[0] += page_times(shown)
        figures[str(SHOWN)] = {
            "list_all_ms": timed(lambda: list_all(shown), 10),
            "page_ms": statistics.median(page_ms[0]),
            "live_ms": live[0],
        }
        figures["10000"]["page_ms"] = statistics.median(page_ms[1])
        figures["10000"]["live_ms"] = live[1]
        figures["10"]["live_ms"] = timed(lambda: small.call("GET", "/_lamina/live"), 20)
        small_p50, big_p50 = invoke_batches(bench, [small, big])
        figures["invoke_p50_ms"] = {"10": small_p50, "10000": big_p50}
        empty_rss = empty.rss_mb()
    finally:
        for server in (empty, small, shown, big):
            server.stop()
    restart_empty = Server(root / "empty")
    restart_empty.stop()
    restart_big = Server(root / "big")
    restart_rss = restart_big.rss_mb()
    restart_big.stop()
    figures["startup_s"] = {"empty": restart_empty.startup, "10000": restart_big.startup}
    figures["rss_after_restart_mb"] = restart_rss
    bench.RAW["functions"] = figures
    a, b, mid = figures["10"], figures["10000"], figures[str(SHOWN)]
    bench.row(
        "sizes",
        f"server RSS, {FUNCTIONS:,} functions",
        b["rss_mb"],
        "MB",
        "no functions",
        empty_rss,
    )
    bench.row(
        "sizes",
        f"ListFunctions, all {FUNCTIONS // 50} pages",
        b["list_all_ms"],
        "ms",
        "10 functions",
        a["list_all_ms"],
    )
    per_page, mid_per_page = b["page_ms"], mid["page_ms"]  # medians over every page fetched
    bench.row(
        "sizes",
        f"ListFunctions, a page of 50 (p50 over {FUNCTIONS // 50} pages, 3 times)",
        per_page,
        "ms",
        f"{SHOWN} functions",
        mid_per_page,
        "≤ 1.5x",
        per_page <= 1.5 * mid_per_page,
    )
    bench.row(
        "sizes",
        "GetFunction p50",
        b["get_function_ms"],
        "ms",
        "10 functions",
        a["get_function_ms"],
        "≤ 1.5x",
        b["get_function_ms"] <= 1.5 * a["get_function_ms"],
    )
    bench.row(
        "sizes",
        "GetAccountSettings p50",
        b["account_settings_ms"],
        "ms",
        "10 functions",
        a["account_settings_ms"],
        "≤ 1.5x",
        b["account_settings_ms"] <= 1.5 * a["account_settings_ms"],
    )
    bench.row(
        "sizes",
        f"/_lamina/live p50 (lists {SHOWN} functions)",
        b["live_ms"],
        "ms",
        f"{SHOWN} functions",
        mid["live_ms"],
        "≤ 2x",
        b["live_ms"] <= 2 * mid["live_ms"],
    )
    bench.row(
        "sizes",
        f"lamina serve start, {FUNCTIONS:,} functions",
        figures["startup_s"]["10000"],
        "s",
        "empty data dir",
        figures["startup_s"]["empty"],
        "< 5 s",
        figures["startup_s"]["10000"] < 5,
    )
    bench.row(
        "sizes",
        f"warm invoke p50, {FUNCTIONS:,} functions",
        big_p50,
        "ms",
        "10 functions",
        small_p50,
        "within 10%",
        big_p50 <= 1.1 * small_p50,
    )


# 2. Environments -----------------------------------------------------------------------------
def bench_environments(bench: Any, root: Path) -> None:
    import asyncio

    import uvloop

    per = ENVIRONMENTS // ENV_FUNCTIONS
    print(f"8b. {ENVIRONMENTS:,} warm environments of {ENV_FUNCTIONS} functions", flush=True)
    server = Server(
        root / "envs", "--isolation", "none", "--account-concurrency", str(ENVIRONMENTS + 100)
    )
    try:
        names = [f"env-{n:02d}" for n in range(ENV_FUNCTIONS)]
        create(server, names, SLEEPER, Timeout=60)
        before_rss = server.rss_mb()

        async def fill() -> set[int]:
            connections = await asyncio.gather(
                *(bench.connect(server.port) for _ in range(ENVIRONMENTS))
            )
            body = json.dumps({"s": 3}).encode()
            answers = await asyncio.gather(
                *(
                    c.request(bench.invocations(names[i // per]), body)
                    for i, c in enumerate(connections)
                )
            )
            for connection in connections:
                connection.close()
            assert all(status == 200 for status, _ in answers), answers[:3]
            return set()

        uvloop.run(fill())
        time.sleep(1.0)
        pids = [int(p) for p in _descendants(server.process.pid)]
        pss = sum(_pss_kb(pid) for pid in pids) / 1024
        rss = server.rss_mb()
        cpu_before, wall = _cpu_seconds(server.process.pid), time.perf_counter()
        time.sleep(10)
        idle_cpu = (_cpu_seconds(server.process.pid) - cpu_before) / (time.perf_counter() - wall)
    finally:
        server.stop()
    bench.RAW["environments"] = {
        "processes": len(pids),
        "pss_mb": pss,
        "rss_mb": rss,
        "idle_cpu": idle_cpu,
        "rss_before_mb": before_rss,
    }
    bench.row(
        "sizes",
        f"server RSS, {ENVIRONMENTS:,} warm environments",
        rss,
        "MB",
        "same server before them",
        before_rss,
    )
    bench.row(
        "sizes",
        f"total PSS of {len(pids):,} processes (environments, fork server)",
        pss,
        "MB",
        "per environment",
        pss / ENVIRONMENTS,
    )
    bench.row(
        "sizes",
        "server CPU while they sit idle",
        idle_cpu * 100,
        "% of a core",
        "bound",
        2.0,
        "< 2%",
        idle_cpu < 0.02,
    )


def _descendants(pid: int) -> list[str]:
    parents: dict[str, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[entry] = stat.read().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
    found, frontier = [], [str(pid)]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current:
                found.append(child)
                frontier.append(child)
    return found


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# 3. Queues on disk ------------------------------------------------------------------------
def seed_events(data: Path, count: int) -> None:
    data.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data / "events.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(EVENTS_SCHEMA)
    later = time.time() + 3600  # retries due in an hour: queued, not running
    payload = json.dumps({"order": "x" * 200}).encode()
    rows = (
        ("000000000000", "us-east-1", "queued", "", f"req-{n}", payload, time.time(), 1, later)
        for n in range(count)
    )
    with db:
        db.executemany(
            "INSERT INTO events (account, region, function, qualifier, request_id, payload, "
            "accepted, attempts, due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.close()


def seed_messages(data: Path, count: int) -> None:
    """One queue with `count` messages, written as the server's SQS store writes them."""
    server = Server(data)
    try:
        request = urllib.request.Request(
            server.url("/"),
            data=json.dumps({"QueueName": "big"}).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "AmazonSQS.CreateQueue",
            },
        )
        urllib.request.urlopen(request, timeout=30).read()
    finally:
        server.stop()
    store = QueueStore(data)
    try:
        queue_id = next(iter(store.queues.all()))[0]
        now = time.time()
        for start in range(0, count, 100_000):
            batch = (
                Message(n + 1, f"m-{n:09d}", "x" * 100, {}, {}, now).stored()
                for n in range(start, min(count, start + 100_000))
            )
            store.insert_messages(queue_id, batch)
    finally:
        store.close()


def receive_first(server: Server) -> None:
    request = urllib.request.Request(
        server.url("/"),
        data=json.dumps(
            {"QueueUrl": server.url("/000000000000/big"), "MaxNumberOfMessages": 10}
        ).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.ReceiveMessage",
        },
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert len(json.loads(response.read())["Messages"]) == 10


def bench_queues(bench: Any, root: Path) -> None:
    print(f"8c. {EVENTS:,} queued async events, {MESSAGES:,} SQS messages", flush=True)
    empty = Server(root / "q-empty")
    empty_rss = empty.rss_mb()
    empty.stop()
    empty = Server(root / "q-empty")
    empty.stop()
    seed_events(root / "events", EVENTS)
    events = Server(root / "events")
    events_rss = events.settled_rss_mb()
    events.stop()
    seed_messages(root / "messages", MESSAGES)
    messages = Server(root / "messages")
    messages_rss = messages.settled_rss_mb()
    receive_first(messages)  # the window's first page read
    messages_rss = max(messages_rss, messages.settled_rss_mb())
    messages.stop()
    bench.RAW["queues"] = {
        "startup_s": {
            "empty": empty.startup,
            "events": events.startup,
            "messages": messages.startup,
        },
        "rss_mb": {"empty": empty_rss, "events": events_rss, "messages": messages_rss},
    }
    bench.row(
        "sizes",
        f"lamina serve start, {EVENTS:,} queued events",
        events.startup,
        "s",
        "empty data dir",
        empty.startup,
        "< 5 s",
        events.startup < 5,
    )
    bench.row(
        "sizes",
        f"server RSS, {EVENTS:,} queued events",
        events_rss,
        "MB",
        "empty data dir",
        empty_rss,
    )
    bench.row(
        "sizes",
        f"lamina serve start, {MESSAGES:,} SQS messages",
        messages.startup,
        "s",
        "empty data dir",
        empty.startup,
        "≤ 1.25x + 1 s",
        messages.startup <= 1.25 * empty.startup + 1,
    )
    bench.row(
        "sizes",
        f"server RSS, {MESSAGES:,} SQS messages (after receiving 10)",
        messages_rss,
        "MB",
        "empty data dir",
        empty_rss,
        "≤ 1.5x",
        messages_rss <= 1.5 * empty_rss,
    )


def run(bench: Any) -> None:
    root = Path(tempfile.mkdtemp(prefix="lamina-sizes-"))
    try:
        chosen = [a for a in sys.argv[1:] if a in ("functions", "environments", "queues")]
        for name in chosen or ["functions", "environments", "queues"]:
            {
                "functions": bench_functions,
                "environments": bench_environments,
                "queues": bench_queues,
            }[name](bench, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""`make bench`: Lamina's benchmarks, each against a baseline measured in the same run.

1. Warm sync invoke of a no-op Python function (1,769 MB: one vCPU, as the baseline's
   worker has) at 1, 8 and 32 concurrent clients (wrk, closed loop): requests/s, p50, p99,
   and the CPU time of the server process per request (less sensitive to other load than
   the rates); baseline bench/relay.py, a minimal uvloop HTTP server relaying each body to
   a worker process over a socket pair.
2. Cold start: an invoke that needs a new environment, end to end (p50, p99 over 60);
   baselines `python -c pass` and a bare fork of a pre-imported interpreter. The same
   with the fork server off, for comparison.
3. Scale-out: 200 simultaneous invokes of a function that sleeps, from nothing: time
   until the last of 200 environments runs its handler; baseline 200 `python -c pass`
   started at once. Memory of an idle environment (PSS, /proc/PID/smaps_rollup) against
   an idle plain interpreter that imported the runtime.
4. Overload: a function with reserved concurrency 10 that takes 50 ms, offered 5x its
   concurrency (1,000 requests/s open loop, so 50 in flight by Little's law): latency of
   the 429 answers and of the admitted requests, against the same function unloaded
   (one caller at a time).
5. DynamoDB (bench/dynamodb.py): PutItem into a table whose stream is on, from 8
   clients, and records/s through a DynamoDB stream mapping (4 shards x 2 lanes) into a
   no-op function; baseline a bare SQLite INSERT loop with the same durability.
6. Cold starts per runtime (bench/cold_runtimes.py).
7. Function URLs (bench/http_front.py): a warm function URL request against a warm Invoke
   of the same no-op function, alternately in the same run: p50 at one client within
   1.1x, requests/s at 1 and 8 clients.
8. `lamina plan` (bench/plan.py): a synthetic trace of 10 million invocations replayed
   through the counting service and the pool policy, invocations per second of wall time
   against the bare event loop over the same trace; a day of the Azure 2019 example.
8. Walls: what every wall costs (namespaces, a network namespace each, seccomp, /tmp on
   disk, cgroups with freezing; the default where the host allows it) against
   `--isolation none` in the same run: cold start (Init Duration and end to end), warm p50
   at one client against the relay, and warm throughput frozen between invocations
   against `--no-freeze` (bench/walls.py: the median of paired rounds, with CPU per invoke).

9. Authentication (bench/auth.py): one SigV4 verification (p50, µs) against botocore
   signing the same request; warm invoke req/s and the server's CPU time per invoke with
   `--auth on` against `--auth off`, the median of rounds that measure both back to back.
10. Durable functions (bench/durable.py): checkpoint round trip p50 against the cheapest API
    call from the same client, and 10-step executions completed per second against plain
    invokes of the same steps.
11. EventBridge (bench/eventbridge.py): events/s from PutEvents (1 and 10 entries a call)
    through a rule to a no-op function, end to end, against direct async invokes of the
    same function from the same 8 clients in the same run.
12. The cluster's store (bench/shared_store.py): a PostgreSQL read (sync, and async
    awaited) against SQLite; warm Invoke p50 on a `--database` node against a SQLite node
    (within 1.1x: the record is cached); SendMessage and async Invoke p50 on each.
13. Cluster counting (bench/cluster.py): one admission through Redis (p50 <= 0.3 ms)
    against the in-process counter's and a PING, and a warm invoke at one client on a node
    counting in Redis against a node counting alone (p50 within 1.5x).
14. S3 (bench/s3.py): PutObject 1 KB objects/s against SQS SendMessage, PutObject →
    notification → function events/s against direct async invokes, GetObject objects/s
    against SQS GetQueueUrl, from the same 8 clients in the same run.

Every benchmark runs with the default isolation (every wall, where the host allows it);
8 measures what the walls cost against `--isolation none`.

Absolute times on these machines drift: read the ratios. Loopback only, bounded in time
(about a minute and a half). Lamina runs with `--request-rate 0` so that throttles come
from concurrency alone. Prints a table and writes bench/results.json.

Run: make bench   (or .venv/bin/python bench/run.py [--quick])
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httptools
import uvloop

PYTHON_RUNTIME = f"python3.{sys.version_info.minor}"  # the interpreter running Lamina

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RUNTIMES = ROOT / "lamina" / "runtimes"
PYTHON = sys.executable
ROLE = "arn:aws:iam::000000000000:role/bench"
RESULTS = BENCH / "results.json"
QUICK = "--quick" in sys.argv

WARM_SECONDS = 2 if QUICK else 3  # whole seconds (wrk)
ROUNDS = 1 if QUICK else 2
WARMUP_SECONDS = 1
CONCURRENCY = (1, 8, 32)
COLD_SAMPLES = 60
SCALE = 200
RESERVED = 10
WORK_S = 0.05
OVERLOAD_SECONDS = 2.0 if QUICK else 4.0
ONE_VCPU_MB = 1769  # MemorySize with one vCPU's CPU quota

NOOP = "def handler(event, context):\n    return None\n"
# Each environment answers with a token of its own (isolated environments are all PID 2).
PID = "import os\n\nTOKEN = os.urandom(8).hex()\n\ndef handler(event, context):\n    return TOKEN\n"
SLEEPER = """
import os, time

def handler(event, context):
    start = time.time()
    time.sleep(event.get("sleep", 0))
    return {"start": start, "pid": os.getpid()}
"""
WORKER = f"import time\n\ndef handler(event, context):\n    time.sleep({WORK_S})\n"
FORK_BASELINE = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import python_bootstrap  # the interpreter the fork server is: the runtime imported
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    times.append((time.perf_counter() - started) * 1000)
print(json.dumps(times))
"""
IDLE_INTERPRETER = """
import sys, time
sys.path.insert(0, sys.argv[1])
import python_bootstrap
print("ready", flush=True)
time.sleep(60)
"""


# Figures ---------------------------------------------------------------------------------
@dataclass
class Row:
    bench: str
    figure: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


ROWS: list[Row] = []
RAW: dict[str, Any] = {}


def row(
    bench: str,
    figure: str,
    value: float,
    unit: str,
    baseline_name: str,
    baseline: float,
    target: str = "",
    met: bool | None = None,
) -> None:
    found = Row(bench, figure, value, unit, baseline_name, baseline, target, met)
    ROWS.append(found)
    mark = "" if met is None else ("  met" if met else "  NOT MET")
    print(
        f"  {figure}: {value:,.3f} {unit}  ({baseline_name}: {baseline:,.3f}; "
        f"ratio {found.ratio:.2f}){mark}",
        flush=True,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Processes -------------------------------------------------------------------------------
class Lamina:
    """A `lamina serve` of its own, in a temporary directory."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        command = [PYTHON, "-m", "lamina.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.dir / "data"), "--request-rate", "0", *args]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.dir / "server.log").read_text())
            try:
                with urllib.request.urlopen(self.url("/_lamina/health"), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("lamina serve did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method: str, path: str, document: Any = None) -> Any:
        data = json.dumps(document).encode() if document is not None else None
        request = urllib.request.Request(self.url(path), data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()!r}") from exc
        return json.loads(body) if body else None

    def create(
        self,
        name: str,
        source: str,
        filename: str = "app.py",
        files: dict[str, bytes] | None = None,
        **extra: Any,
    ) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(filename, source)
            for path, content in (files or {}).items():
                archive.writestr(path, content)
        document = {
            "FunctionName": name,
            "Runtime": PYTHON_RUNTIME,
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": base64.b64encode(buffer.getvalue()).decode()},
            **extra,
        }
        self.call("POST", "/2015-03-31/functions", document)

    def delete(self, name: str) -> None:
        self.call("DELETE", f"/2015-03-31/functions/{name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process so far (not its children)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def invocations(name: str) -> str:
    return f"/2015-03-31/functions/{name}/invocations"


# An asyncio HTTP/1.1 client ------------------------------------------------------------------
class Connection(asyncio.Protocol):
    """One kept-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError("connection lost"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.answer is not None
        self.answer.set_result((self.parser.get_status_code(), b"".join(self.body)))

    async def request(self, path: str, body: bytes = b"{}") -> tuple[int, bytes]:
        assert self.transport is not None
        self.body = []
        self.answer = asyncio.get_running_loop().create_future()
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
        self.transport.write(head.encode() + body)
        return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int) -> Connection:
    _, connection = await asyncio.get_running_loop().create_connection(
        Connection, "127.0.0.1", port
    )
    return connection


async def closed_loop(port: int, path: str, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` callers, each sending its next request when the last one is answered."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal failures
        connection = await connect(port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                status, _ = await connection.request(path)
                latencies.append((time.perf_counter() - started) * 1e6)
                failures += status != 200
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(clients)))
    took = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "duration_us": took * 1e6,
        "socket_errors": 0,
        "non_2xx": failures,
        "p50_us": percentile(latencies, 50),
        "p90_us": percentile(latencies, 90),
        "p99_us": percentile(latencies, 99),
    }


# Load ------------------------------------------------------------------------------------
def load(
    port: int,
    path: str,
    clients: int,
    seconds: int,
    script: str = "invoke.lua",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Closed-loop load from another process: wrk if installed, else this file's client
    (which sends no signature: bench/auth.py needs wrk)."""
    url = f"http://127.0.0.1:{port}{path}"
    if shutil.which("wrk"):
        command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s"]
        command += ["-s", str(BENCH / script), url]
    else:
        command = [PYTHON, __file__, "--load", str(port), path, str(clients), str(seconds)]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, env=env)
    found = re.search(r"^RESULT (.*)$", shown.stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"load generator failed: {shown.stdout}\n{shown.stderr}")
    result: dict[str, Any] = json.loads(found.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["client"] = "wrk" if command[0] == "wrk" else "python"
    return result


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the most requests/s: the least disturbed by anything else running."""
    return max(results, key=lambda result: float(result["rps"]))


def show(label: str, clients: int, found: dict[str, Any]) -> None:
    print(
        f"    {label:<6} {clients:>2} clients: {found['rps']:,.0f} req/s, p50 "
        f"{found['p50_us'] / 1000:.3f} ms, p99 {found['p99_us'] / 1000:.3f} ms"
        + (f", {found['non_2xx']} not 2xx" if found["non_2xx"] else ""),
        flush=True,
    )


# 1. Warm ----------------------------------------------------------------------------------
def bench_warm() -> None:
    """Relay and Lamina measured alternately, each concurrency twice (best round kept), so
    that a slow moment of the machine hits both sides rather than one."""
    print("1. warm invoke of a no-op function", flush=True)
    port = free_port()
    relay = subprocess.Popen(
        [PYTHON, str(BENCH / "relay.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    server = Lamina()
    baseline: dict[int, dict[str, Any]] = {}
    lamina: dict[int, dict[str, Any]] = {}
    try:
        assert relay.stdout is not None
        assert relay.stdout.readline().strip() == "ready"
        # One vCPU's quota (1,769 MB), as the relay's worker has: at 128 MB an environment
        # may use 7% of a CPU, and the figure would be the quota's, not the platform's.
        server.create("noop", NOOP, MemorySize=ONE_VCPU_MB)
        path = invocations("noop")
        for clients in CONCURRENCY:
            rounds: dict[str, list[dict[str, Any]]] = {"relay": [], "lamina": []}
            fronts = {"relay": relay.pid, "lamina": server.process.pid}
            for _ in range(ROUNDS):
                for label, where, at in (("relay", port, "/"), ("lamina", server.port, path)):
                    load(where, at, clients, WARMUP_SECONDS)  # environments exist, caches hot
                    before = cpu_seconds(fronts[label])
                    found = load(where, at, clients, WARM_SECONDS)
                    spent = cpu_seconds(fronts[label]) - before
                    found["server_cpu_us"] = spent / max(1, found["requests"]) * 1e6
                    rounds[label].append(found)
            baseline[clients], lamina[clients] = best(rounds["relay"]), best(rounds["lamina"])
            show("relay", clients, baseline[clients])
            show("lamina", clients, lamina[clients])
    finally:
        relay.kill()
        relay.wait()
        server.stop()
    RAW["warm"] = {"relay": baseline, "lamina": lamina}
    for clients in CONCURRENCY:
        ours, theirs = lamina[clients], baseline[clients]
        target = "≥ 0.5x relay" if clients == 32 else ""
        met = ours["rps"] >= 0.5 * theirs["rps"] if clients == 32 else None
        row("warm", f"req/s, {clients} clients", ours["rps"], "req/s", "relay", theirs["rps"])
        ROWS[-1].target, ROWS[-1].met = target, met
        for q in ("p50", "p99"):
            row(
                "warm",
                f"{q}, {clients} clients",
                ours[f"{q}_us"] / 1000,
                "ms",
                "relay",
                theirs[f"{q}_us"] / 1000,
            )
    for clients in (1, 32):
        row(
            "warm",
            f"CPU of the server process per request, {clients} clients",
            lamina[clients]["server_cpu_us"],
            "µs",
            "relay's front process",
            baseline[clients]["server_cpu_us"],
        )
    overhead = (lamina[1]["p50_us"] - baseline[1]["p50_us"]) / 1000
    row(
        "warm",
        "p50 overhead over the relay, 1 client",
        overhead,
        "ms",
        "relay p50",
        baseline[1]["p50_us"] / 1000,
        "< 0.3 ms",
        overhead < 0.3,
    )


# 2. Cold ------------------------------------------------------------------------------------
def python_pass(samples: int) -> list[float]:
    times = []
    for index in range(samples + 3):
        started = time.perf_counter()
        subprocess.run([PYTHON, "-c", "pass"], check=True)
        if index >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return times


def bare_fork(samples: int) -> list[float]:
    shown = subprocess.run(
        [PYTHON, "-c", FORK_BASELINE, str(RUNTIMES), str(samples)],
        capture_output=True,
        text=True,
        check=True,
    )
    times: list[float] = json.loads(shown.stdout)
    return times


async def cold_invokes(port: int, names: list[str]) -> tuple[list[float], set[int]]:
    connection = await connect(port)
    times, pids = [], set()
    try:
        for name in names:
            started = time.perf_counter()
            status, body = await connection.request(invocations(name))
            times.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"cold invoke of {name}: {status} {body!r}")
            pids.add(json.loads(body))
    finally:
        connection.close()
    return times, pids


def cold_series(
    server: Lamina, prefix: str, samples: int, source: str = PID, **extra: Any
) -> list[float]:
    names = [f"{prefix}-{index:03d}" for index in range(samples)]
    for name in names:
        server.create(name, source, **extra)
    times, pids = uvloop.run(cold_invokes(server.port, names))
    if len(pids) != samples:
        raise RuntimeError(f"expected {samples} environments, saw {len(pids)}")
    for name in names:
        server.delete(name)
    return times


def bench_cold() -> None:
    print("2. cold start", flush=True)
    plain = python_pass(50)
    forked = bare_fork(50)
    server = Lamina()
    try:
        cold = cold_series(server, "cold", COLD_SAMPLES)
    finally:
        server.stop()
    server = Lamina("--no-fork-server")
    try:
        spawned = cold_series(server, "spawned", 30)
    finally:
        server.stop()
    RAW["cold"] = {"lamina": cold, "python_c_pass": plain, "bare_fork": forked, "spawn": spawned}
    p50, p99 = percentile(cold, 50), percentile(cold, 99)
    row(
        "cold",
        f"cold invoke p50 (n={len(cold)})",
        p50,
        "ms",
        "python -c pass p50",
        percentile(plain, 50),
        "≤ 1.0x python -c pass",
        p50 <= percentile(plain, 50),
    )
    row("cold", "cold invoke p99", p99, "ms", "python -c pass p99", percentile(plain, 99))
    row("cold", "cold invoke p50", p50, "ms", "bare fork p50", percentile(forked, 50))
    row("cold", "cold invoke p99", p99, "ms", "bare fork p99", percentile(forked, 99))
    row(
        "cold",
        "cold invoke p50, --no-fork-server (n=30)",
        percentile(spawned, 50),
        "ms",
        "python -c pass p50",
        percentile(plain, 50),
    )


# 3. Scale-out and memory ---------------------------------------------------------------------
def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


async def burst(port: int, name: str, count: int, sleep: float) -> tuple[float, float, list[Any]]:
    connections = await asyncio.gather(*(connect(port) for _ in range(count)))
    body = json.dumps({"sleep": sleep}).encode()
    try:
        started = time.time()
        answers = await asyncio.gather(*(c.request(invocations(name), body) for c in connections))
        finished = time.time()
    finally:
        for connection in connections:
            connection.close()
    results = []
    for status, text in answers:
        if status != 200:
            raise RuntimeError(f"scale-out invoke: {status} {text!r}")
        results.append(json.loads(text))
    return started, finished, results


def python_pass_at_once(count: int) -> float:
    started = time.perf_counter()
    children = [subprocess.Popen([PYTHON, "-c", "pass"]) for _ in range(count)]
    for child in children:
        child.wait()
    return time.perf_counter() - started


def idle_interpreter_pss() -> int:
    child = subprocess.Popen(
        [PYTHON, "-u", "-c", IDLE_INTERPRETER, str(RUNTIMES)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(0.3)
        return pss_kb(child.pid)
    finally:
        child.kill()
        child.wait()


def bench_scale() -> None:
    print(f"3. scale-out to {SCALE} environments, idle memory", flush=True)
    baseline = python_pass_at_once(SCALE)
    plain_pss = idle_interpreter_pss()
    server = Lamina("--isolation", "none")  # PSS is read by host pid from /proc
    try:
        server.create("sleeper", SLEEPER, Timeout=30)
        started, finished, results = uvloop.run(burst(server.port, "sleeper", SCALE, 3.0))
        pids = {result["pid"] for result in results}
        if len(pids) != SCALE:
            raise RuntimeError(f"expected {SCALE} environments, saw {len(pids)}")
        ready = max(result["start"] for result in results) - started
        time.sleep(0.5)  # idle now
        pss = [pss_kb(pid) / 1024 for pid in pids]
        server.delete("sleeper")
    finally:
        server.stop()
    RAW["scale"] = {
        "last_handler_started_s": ready,
        "all_answered_s": finished - started,
        "python_c_pass_x200_s": baseline,
        "pss_mb": pss,
        "plain_interpreter_pss_mb": plain_pss / 1024,
    }
    row(
        "scale",
        f"0 → {SCALE} environments (last handler running)",
        ready,
        "s",
        f"{SCALE} x python -c pass at once",
        baseline,
        "< 2 s",
        ready < 2.0,
    )
    median_pss = statistics.median(pss)
    row(
        "scale",
        f"idle environment PSS (median of {SCALE}; max {max(pss):.2f})",
        median_pss,
        "MB",
        "idle plain interpreter with the runtime",
        plain_pss / 1024,
        "< 8 MB",
        median_pss < 8.0,
    )


# 4. Overload -------------------------------------------------------------------------------
async def unloaded(port: int, path: str, count: int) -> list[float]:
    connection = await connect(port)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            status, body = await connection.request(path)
            if status != 200:
                raise RuntimeError(f"unloaded invoke: {status} {body!r}")
            times.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return times


async def warm_up(port: int, path: str, count: int) -> None:
    connections = await asyncio.gather(*(connect(port) for _ in range(count)))
    try:
        await asyncio.gather(*(c.request(path) for c in connections))
    finally:
        for connection in connections:
            connection.close()


async def open_loop(port: int, path: str, rate: float, seconds: float) -> dict[str, Any]:
    """Requests at `rate` per second for `seconds`, whatever the answers: each takes an idle
    connection or opens one. Latency from each request's send to its answer."""
    idle: list[Connection] = []
    opened = 0
    outcomes: list[tuple[int, float, bytes]] = []
    tasks: set[asyncio.Task[None]] = set()

    async def one() -> None:
        nonlocal opened
        if idle:
            connection = idle.pop()
        else:
            connection = await connect(port)
            opened += 1
        started = time.perf_counter()
        status, body = await connection.request(path)
        outcomes.append((status, (time.perf_counter() - started) * 1000, body))
        idle.append(connection)

    total = int(rate * seconds)
    begin = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - begin) * rate) + 1)
        while sent < due:
            task = asyncio.get_running_loop().create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(0.0005)
    offered_for = time.perf_counter() - begin
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return {"outcomes": outcomes, "offered_rate": total / offered_for, "connections": opened}


def bench_overload() -> None:
    capacity = RESERVED / WORK_S
    rate = 5 * capacity
    print(
        f"4. overload: reserved {RESERVED}, {WORK_S * 1000:.0f} ms per call, "
        f"{rate:,.0f} req/s offered (5x)",
        flush=True,
    )
    server = Lamina()
    try:
        server.create("limited", WORKER)
        server.call(
            "PUT",
            "/2017-10-31/functions/limited/concurrency",
            {"ReservedConcurrentExecutions": RESERVED},
        )
        path = invocations("limited")
        uvloop.run(warm_up(server.port, path, RESERVED))
        calm = uvloop.run(unloaded(server.port, path, 60))
        found = uvloop.run(open_loop(server.port, path, rate, OVERLOAD_SECONDS))
    finally:
        server.stop()
    throttled = [ms for status, ms, _ in found["outcomes"] if status == 429]
    admitted = [ms for status, ms, _ in found["outcomes"] if status == 200]
    others = [status for status, _, _ in found["outcomes"] if status not in (200, 429)]
    reasons = {
        json.loads(body).get("Reason") for status, _, body in found["outcomes"] if status == 429
    }
    RAW["overload"] = {
        "offered_rate": found["offered_rate"],
        "connections": found["connections"],
        "answers": len(found["outcomes"]),
        "throttled": len(throttled),
        "admitted": len(admitted),
        "other_statuses": others,
        "reasons": sorted(r for r in reasons if r),
        "unloaded_ms": calm,
        "throttled_ms": throttled,
        "admitted_ms": admitted,
    }
    print(
        f"  offered {found['offered_rate']:,.0f} req/s: {len(admitted)} admitted "
        f"({len(admitted) / OVERLOAD_SECONDS:,.0f}/s), {len(throttled)} throttled "
        f"{sorted(r for r in reasons if r)}, {len(others)} other",
        flush=True,
    )
    calm50, calm99 = percentile(calm, 50), percentile(calm, 99)
    p99 = percentile(throttled, 99)
    row("overload", "429 p50", percentile(throttled, 50), "ms", "unloaded p50", calm50)
    row("overload", "429 p99", p99, "ms", "unloaded p99", calm99, "< 2 ms", p99 < 2.0)
    admitted50 = percentile(admitted, 50)
    row(
        "overload",
        "admitted p50",
        admitted50,
        "ms",
        "unloaded p50",
        calm50,
        "≤ 1.1x unloaded",
        admitted50 <= 1.1 * calm50,
    )
    row("overload", "admitted p99", percentile(admitted, 99), "ms", "unloaded p99", calm99)


# Report ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk = shutil.which("wrk")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_client": "wrk" if wrk else "python (bench/run.py --load)",
    }


def report(started: float) -> None:
    print()
    header = ("bench", "figure", "value", "baseline", "ratio", "target")
    lines = [header]
    for found in ROWS:
        target = found.target + ("" if found.met is None else (" ✓" if found.met else " ✗"))
        lines.append(
            (
                found.bench,
                found.figure,
                f"{found.value:,.3f} {found.unit}",
                f"{found.baseline:,.3f} ({found.baseline_name})",
                f"{found.ratio:.2f}",
                target,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "took_s": round(time.monotonic() - started, 1),
        "machine": machine(),
        "rows": [{**asdict(found), "ratio": found.ratio} for found in ROWS],
        "raw": RAW,
    }
    RESULTS.write_text(json.dumps(document, indent=1))
    print(f"\n{len(ROWS)} figures in {document['took_s']} s; written to {RESULTS}")


def bench_dynamodb() -> None:
    print("5. DynamoDB: PutItem with the stream on; a stream mapping's records/s", flush=True)
    sys.path.insert(0, str(BENCH))
    import dynamodb  # bench/dynamodb.py

    server = Lamina()
    try:
        dynamodb.bench(server, row, percentile, RAW)
    finally:
        server.stop()


# 8. Walls ------------------------------------------------------------------------------------
def bench_walls() -> None:
    import walls  # bench/walls.py, beside this file

    walls.run(sys.modules[__name__])


def bench_runtimes() -> None:
    import cold_runtimes  # bench/cold_runtimes.py, beside this file

    cold_runtimes.run(sys.modules[__name__])


def bench_plan() -> None:
    """`lamina plan`'s replay (bench/plan.py, in a process of its own: ten million
    invocations take a few hundred MB): invocations per second of wall time against the
    bare event loop over the same trace, and a day of the Azure 2019 example."""
    print("8. lamina plan: a synthetic trace replayed in virtual time", flush=True)
    command = [PYTHON, str(BENCH / "plan.py")]
    if QUICK:
        command += ["--invocations", "2000000"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=900)
    found = re.search(r"^RESULT (.*)$", shown.stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"bench/plan.py failed: {shown.stdout}\n{shown.stderr}")
    result = json.loads(found.group(1))
    RAW["plan"] = result
    row(
        "plan",
        f"{result['invocations'] / 1e6:g}M invocations replayed",
        result["rate"],
        "invocations/s",
        "bare event loop",
        result["bare_rate"],
        "≥ 200,000/s",
        result["rate"] >= result["target_rate"],
    )
    row(
        "plan",
        "a day of the Azure 2019 example (read + replay)",
        result["example_day_s"] * 1000,
        "ms",
        "target",
        1000.0,
        "< 1 s",
        result["example_day_s"] < 1.0,
    )


def bench_http() -> None:
    print("7. a warm function URL request against a warm Invoke", flush=True)
    sys.path.insert(0, str(BENCH))
    import http_front  # bench/http_front.py

    server = Lamina()
    try:
        http_front.bench(server, row, ROUNDS, WARM_SECONDS, RAW)
    finally:
        server.stop()


def bench_auth() -> None:
    from auth import bench_auth as measure  # bench/auth.py

    measure(Lamina, load, row, RAW, ROUNDS + 1, WARM_SECONDS)


def bench_durable() -> None:
    print("10. Durable functions: checkpoint round trips; 10-step executions/s", flush=True)
    sys.path.insert(0, str(BENCH))
    import durable  # bench/durable.py

    server = Lamina("--isolation", "none")
    try:
        durable.bench(server, row, percentile, RAW)
    finally:
        server.stop()


def _bench_on_one_server(title: str, module: str) -> None:
    """Run bench/<module>.py's bench(server, row, RAW) on a server without isolation."""
    print(title, flush=True)
    sys.path.insert(0, str(BENCH))
    bench = importlib.import_module(module).bench
    server = Lamina("--isolation", "none")
    try:
        bench(server, row, RAW)
    finally:
        server.stop()


def bench_eventbridge() -> None:
    _bench_on_one_server("11. EventBridge: PutEvents → rule → function, events/s", "eventbridge")


def bench_s3() -> None:
    _bench_on_one_server("14. S3: PutObject, GetObject, notifications to a function", "s3")


def bench_store() -> None:
    print("12. The cluster's store: PostgreSQL against SQLite", flush=True)
    sys.path.insert(0, str(BENCH))
    import http_front  # the wrk runner
    import shared_store  # bench/shared_store.py

    shared_store.bench(Lamina, http_front.wrk, row, ROUNDS, WARM_SECONDS, RAW)


def bench_sizes() -> None:
    """Figures at size (bench/sizes.py): 10,000 functions, 1,000 warm environments,
    100,000 queued events and 1,000,000 SQS messages."""
    import sizes  # bench/sizes.py, beside this file

    sizes.run(sys.modules[__name__])


def bench_cluster() -> None:
    sys.path.insert(0, str(BENCH))
    import cluster  # bench/cluster.py

    cluster.bench(Lamina, row, RAW)
    cluster.bench_placement(Lamina, row, RAW)


BENCHES: dict[str, Callable[[], None]] = {
    "warm": bench_warm,
    "cold": bench_cold,
    "scale": bench_scale,
    "overload": bench_overload,
    "dynamodb": bench_dynamodb,
    "runtimes": bench_runtimes,
    "http": bench_http,
    "plan": bench_plan,
    "walls": bench_walls,
    "auth": bench_auth,
    "durable": bench_durable,
    "eventbridge": bench_eventbridge,
    "store": bench_store,
    "s3": bench_s3,
    "sizes": bench_sizes,
    "cluster": bench_cluster,
}


def main() -> None:
    if sys.argv[1:2] == ["--load"]:  # the fallback load generator, in its own process
        port, path, clients, seconds = sys.argv[2:6]
        result = uvloop.run(closed_loop(int(port), path, int(clients), float(seconds)))
        print("RESULT " + json.dumps(result))
        return
    chosen = [name for name in BENCHES if name in sys.argv[1:]] or list(BENCHES)
    started = time.monotonic()
    print(f"machine: {machine()}", flush=True)
    for name in chosen:
        BENCHES[name]()
    report(started)


if __name__ == "__main__":
    main()

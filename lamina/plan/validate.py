"""`lamina plan --validate`: the same trace against a real `lamina serve`, and the simulated
and observed figures side by side.

A server of its own is started with the settings' limits (account, floor, scaling rate,
request rate, keep-alive) and `--time-scale`; each function is deployed as a Python
function that sleeps for the duration its event carries (and, at init, for its cold
start), with its memory, reservation and provisioned concurrency (on a published version,
invoked by it). The trace's invocations are sent at their arrival times, times and
sleeps multiplied by the time scale (the server's platform delays are scaled alike, so
the counting service sees the trace's own time). What the server observed comes from its
own record (`GET /_lamina/trace`, as `lamina trace export`): throttles by reason, cold
starts (invocations with an init duration) and runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httptools

ROLE = "arn:aws:iam::000000000000:role/lamina-plan-validate"
RUNTIME = f"python3.{sys.version_info.minor}"  # the interpreter Lamina runs on has it
HANDLER = """
import os, time
time.sleep(float(os.environ.get("PLAN_INIT_S", "0")))

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return None
"""
TOLERANCE = 0.05  # relative; or SMALL, whichever is larger
SMALL = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ValidateProblem(RuntimeError):
    pass


# The server ------------------------------------------------------------------------------
class Server:
    def __init__(self, settings: Any, time_scale: float, isolation: str) -> None:
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="lamina-validate-"))
        account = settings.account
        command = [
            sys.executable,
            "-m",
            "lamina.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.directory / "data"),
            "--xray-port",
            "0",
            "--account-concurrency",
            str(account.limit),
            "--unreserved-floor",
            str(account.unreserved_floor),
            "--burst",
            str(account.burst),
            "--burst-window",
            str(account.burst_window),
            "--request-rate",
            str(account.request_rate),
            "--keep-alive",
            str(settings.keep_alive),
            "--time-scale",
            str(time_scale),
            "--isolation",
            isolation,
        ]
        self.log = (self.directory / "server.log").open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ValidateProblem(
                    "lamina serve did not start: " + (self.directory / "server.log").read_text()
                )
            try:
                with urllib.request.urlopen(self.url("/_lamina/health"), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ValidateProblem("lamina serve did not answer within 30 s")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method: str, path: str, document: Any = None) -> Any:
        data = json.dumps(document).encode() if document is not None else None
        request = urllib.request.Request(self.url(path), data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", _authorization())
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise ValidateProblem(f"{method} {path}: {exc.code} {exc.read()!r}") from exc
        return json.loads(body) if body else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _authorization(region: str = "us-east-1") -> str:
    return f"AWS4-HMAC-SHA256 Credential=lamina/20260101/{region}/lambda/aws4_request"


def _zip() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", HANDLER)
    return base64.b64encode(buffer.getvalue()).decode()


def deploy(server: Server, planned: Any, time_scale: float) -> dict[str, str]:
    """Create each function; returns the path each is invoked by (a version when it has
    provisioned concurrency)."""
    paths: dict[str, str] = {}
    code = _zip()
    init_of: dict[str, float] = {}
    for stream in planned.setup.streams:
        name = planned.setup.functions[stream.function].name
        init_of[name] = max(init_of.get(name, 0.0), stream.init_s)
    for function in planned.setup.functions:
        settings = function.settings
        if settings.schedule:
            raise ValidateProblem(
                f"{function.name}: --validate takes a fixed provisioned concurrency, not a schedule"
            )
        server.call(
            "POST",
            "/2015-03-31/functions",
            {
                "FunctionName": function.name,
                "Runtime": RUNTIME,
                "Role": ROLE,
                "Handler": "app.handler",
                "Code": {"ZipFile": code},
                "MemorySize": function.memory_mb,
                "Timeout": 900,
                "Environment": {
                    "Variables": {
                        "PLAN_INIT_S": f"{init_of.get(function.name, 0.0) * time_scale:.6f}"
                    }
                },
            },
        )
        path = f"/2015-03-31/functions/{function.name}/invocations"
        if settings.reserved is not None:
            server.call(
                "PUT",
                f"/2017-10-31/functions/{function.name}/concurrency",
                {"ReservedConcurrentExecutions": settings.reserved},
            )
        if settings.provisioned:
            version = server.call("POST", f"/2015-03-31/functions/{function.name}/versions", {})[
                "Version"
            ]
            server.call(
                "PUT",
                f"/2019-09-30/functions/{function.name}/provisioned-concurrency"
                f"?Qualifier={version}",
                {"ProvisionedConcurrentExecutions": settings.provisioned},
            )
            _wait_ready(server, function.name, version)
            path += f"?Qualifier={version}"
        paths[function.name] = path
    return paths


def _wait_ready(server: Server, name: str, version: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = server.call(
            "GET", f"/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier={version}"
        )
        if state["Status"] == "READY":
            return
        if state["Status"] == "FAILED":
            raise ValidateProblem(f"{name}: provisioned concurrency FAILED: {state}")
        time.sleep(0.1)
    raise ValidateProblem(f"{name}: provisioned concurrency not READY within 120 s")


# The client ------------------------------------------------------------------------------
# A connection idle this long is not reused: the server closes one idle for its keep-alive
# (5 s), and a request written as it does so is lost.
REUSE_IDLE_S = 3.0


class StaleConnection(ConnectionError):
    """A reused connection closed before any of the answer came: the request can be sent
    again on a new one (the server closed it idle, and so never read the request)."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[int] | None = None
        self.closed = False
        self.heard = False  # any byte of the current answer
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.heard = True
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None and not self.answer.done():
            lost = StaleConnection if not self.heard else ConnectionError
            self.answer.set_exception(lost("connection lost"))

    def on_message_complete(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(self.parser.get_status_code())

    async def post(self, path: str, body: bytes, headers: str) -> int:
        assert self.transport is not None
        self.heard = False
        self.answer = asyncio.get_running_loop().create_future()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: lamina\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
        )
        self.transport.write(head.encode() + body)
        return await self.answer


@dataclass
class Sent:
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)  # function → status → n
    late_s: float = 0.0  # the most an invocation was sent after its time (real seconds)


async def replay(port: int, planned: Any, paths: dict[str, str], time_scale: float) -> Sent:
    """Send the trace's invocations at their times (scaled); retries as the settings say."""
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = []
    sent = Sent()
    streams = planned.setup.streams
    names = [planned.setup.functions[s.function].name for s in streams]
    auth = f"Authorization: {_authorization()}\r\nContent-Type: application/json\r\n"
    kinds = [
        auth + ("X-Amz-Invocation-Type: Event\r\n" if s.invocation == "async" else "")
        for s in streams
    ]
    tasks: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]

    async def connection() -> _Connection:
        while idle:
            found = idle.pop()
            if not found.closed and loop.time() - found.idle_since < REUSE_IDLE_S:
                return found
            if found.transport is not None:
                found.transport.close()
        _, made = await loop.create_connection(_Connection, "127.0.0.1", port)
        return made

    async def post(index: int, body: bytes) -> int:
        for _ in range(3):
            conn = await connection()
            try:
                status = await conn.post(paths[names[index]], body, kinds[index])
            except StaleConnection:
                continue  # never read by the server: send it again
            conn.idle_since = loop.time()
            idle.append(conn)
            return status
        raise ConnectionError("the server closed three connections in a row")

    async def one(index: int, duration: float) -> None:
        stream = streams[index]
        body = json.dumps({"sleep": round(duration * time_scale, 6)}).encode()
        attempts = stream.retries.max_attempts if stream.retries.mode != "none" else 1
        for attempt in range(1, attempts + 1):
            status = await post(index, body)
            tally = sent.statuses.setdefault(names[index], {})
            tally[status] = tally.get(status, 0) + 1
            if status != 429 or attempt == attempts or stream.invocation == "async":
                return
            draw = random.random()
            cap = (
                min(2.0 ** (attempt - 1), 20.0)
                if stream.retries.mode == "standard"
                else (2.0 ** (attempt - 1))
            )
            await asyncio.sleep(draw * cap * time_scale)

    start = loop.time() + 0.5
    for times, indexes, durations in planned.trace.batches(planned.settings.seed):
        for t, index, duration in zip(times, indexes, durations, strict=True):
            due = start + t * time_scale
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                sent.late_s = max(sent.late_s, -wait)
            task = loop.create_task(one(index, duration))
            tasks.add(task)
            task.add_done_callback(finished)
    if tasks:
        await asyncio.gather(*tasks)
    if failures:  # an invocation that could not be sent is not one the comparison lacks
        raise ValidateProblem(f"{len(failures)} invocations could not be sent: {failures[0]!r}")
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    return sent


# Observed and compared --------------------------------------------------------------------
def observed(server: Server, since: float) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(server.url(f"/_lamina/trace?since={since}"), timeout=60) as r:
        text = r.read().decode()
    found: dict[str, dict[str, Any]] = {}
    events: dict[str, set[str]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        entry = found.setdefault(
            row["function"], {"runs": 0, "throttles": {}, "cold_starts": 0, "invocations": 0}
        )
        if row["type"] == "Event":
            seen = events.setdefault(row["function"], set())
            if row["request_id"] not in seen:
                seen.add(row["request_id"])
                entry["invocations"] += 1
        else:
            entry["invocations"] += 1
        if row["outcome"] == "Throttled":
            reason = row["reason"]
            entry["throttles"][reason] = entry["throttles"].get(reason, 0) + 1
        else:
            entry["runs"] += 1
            if row["init_ms"]:
                entry["cold_starts"] += 1
    return found


def within(simulated: float, seen: float) -> bool:
    return abs(simulated - seen) <= max(SMALL, TOLERANCE * max(simulated, seen))


def compare(report: dict[str, Any], seen: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for f in report["functions"]:
        obs = seen.get(
            f["function"], {"runs": 0, "throttles": {}, "cold_starts": 0, "invocations": 0}
        )
        figures = {
            "invocations": (f["invocations"], obs["invocations"]),
            "runs": (f["runs"], obs["runs"]),
            "throttled": (f["throttled"], sum(obs["throttles"].values())),
            "cold_starts": (f["cold_starts"], obs["cold_starts"]),
        }
        reasons = sorted(set(f["throttles"]) | set(obs["throttles"]))
        for reason in reasons:
            figures[f"throttles:{reason}"] = (
                f["throttles"].get(reason, 0),
                obs["throttles"].get(reason, 0),
            )
        rows.append(
            {
                "function": f["function"],
                "figures": {
                    k: {"simulated": a, "observed": b, "within": within(a, b)}
                    for k, (a, b) in figures.items()
                },
            }
        )
    return rows


def side_by_side(rows: list[dict[str, Any]]) -> str:
    short = {
        "throttles:ReservedFunctionConcurrentInvocationLimitExceeded": "  reserved",
        "throttles:ConcurrentInvocationLimitExceeded": "  account",
        "throttles:ReservedFunctionInvocationRateLimitExceeded": "  reserved rate",
        "throttles:FunctionInvocationRateLimitExceeded": "  rate",
    }
    lines = [("function", "figure", "simulated", "observed", "")]
    for row in rows:
        for name, figure in row["figures"].items():
            lines.append(
                (
                    row["function"],
                    short.get(name, name),
                    str(figure["simulated"]),
                    str(figure["observed"]),
                    "" if figure["within"] else "DIFFERS",
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join(
        "  ".join(
            c.rjust(widths[i]) if i in (2, 3) else c.ljust(widths[i]) for i, c in enumerate(line)
        ).rstrip()
        for line in lines
    )


def validate(planned: Any, time_scale: float, isolation: str) -> dict[str, Any]:
    if time_scale <= 0:
        raise ValidateProblem("--time-scale must be positive")
    server = Server(planned.settings, time_scale, isolation)
    try:
        paths = deploy(server, planned, time_scale)
        since = time.time() - 1
        started = time.monotonic()
        sent = asyncio.run(replay(server.port, planned, paths, time_scale))
        asynchronous = any(s.invocation == "async" for s in planned.setup.streams)
        if asynchronous:  # let the async queue finish its retries
            _settle(server, since, planned)
        seen = observed(server, since)
        took = time.monotonic() - started
    finally:
        server.stop()
    rows = compare(planned.report, seen)
    return {
        "time_scale": time_scale,
        "wall_s": round(took, 2),
        "late_s": round(sent.late_s, 4),
        "client_statuses": {k: {str(s): n for s, n in v.items()} for k, v in sent.statuses.items()},
        "functions": rows,
        "within": all(f["within"] for row in rows for f in row["figures"].values()),
    }


def _settle(server: Server, since: float, planned: Any) -> None:
    expected = sum(s.stream.invocations for s in planned.setup.streams if s.invocation == "async")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        seen = observed(server, since)
        done = sum(entry["runs"] for entry in seen.values())
        offered = sum(entry["invocations"] for entry in seen.values())
        if done >= offered or done >= expected:
            return
        time.sleep(0.5)


def validate_command(planned: Any, args: argparse.Namespace, out: TextIO) -> int:
    try:
        found = validate(planned, args.time_scale, args.isolation)
    except ValidateProblem as exc:
        print(f"lamina plan --validate: {exc}", file=sys.stderr)
        return 2
    out.write(
        f"\n# --validate: the trace against a real lamina serve (time scale {args.time_scale:g}; "
        f"{found['wall_s']:.1f} s; sent at most {found['late_s'] * 1000:.0f} ms late)\n"
    )
    out.write(side_by_side(found["functions"]) + "\n")
    verdict = "within" if found["within"] else "NOT within"
    out.write(f"# simulated and observed {verdict} {TOLERANCE:.0%} (or ±{SMALL})\n")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "validation.json").write_text(json.dumps(found, indent=1))
    return 0 if found["within"] else 1

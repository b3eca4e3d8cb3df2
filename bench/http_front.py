"""Function URLs in `make bench` (bench/run.py calls `bench`): a warm function URL request
against a warm Invoke of the same no-op function through the Lambda API, in the same run
(the same JSON body; the URL reached by its Host header). The URL adds the front door, the
payload 2.0 event and the answer's mapping: its p50 at one client is to stay within 1.1x
the Invoke's.

Latency is measured paired: one client on two keep-alive connections sends an Invoke and
a URL request by turns (which goes first alternating), so load that comes and goes on a
shared machine falls on both alike; each request's time is from its first byte sent to
its answer's last byte read. Throughput is wrk's (closed loop, 1 and 8 connections, each
path for a few seconds, the two alternating).

Alone: .venv/bin/python bench/http_front.py
"""

from __future__ import annotations

import json
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
NOOP = "def handler(event, context):\n    return None\n"
CLIENTS = (1, 8)
PAIRS = 1500  # per round
WARM_PAIRS = 200


def wrk(port: int, path: str, clients: int, seconds: int, host: str = "bench") -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s"]
    command += ["-H", f"Host: {host}", "-s", str(BENCH / "invoke.lua")]
    shown = subprocess.run(
        [*command, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    found = re.search(r"^RESULT (.*)$", shown.stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk failed: {shown.stdout}\n{shown.stderr}")
    result: dict[str, Any] = json.loads(found.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{path} at {host}: {result}")
    return result


class Connection:
    """One keep-alive connection sending one prepared request again and again."""

    def __init__(self, port: int, path: str, host: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\n\r\n{}"
        ).encode()

    def once(self) -> int:
        """One request and its whole answer (Content-Length framed): nanoseconds."""
        sock = self.sock
        started = time.perf_counter_ns()
        sock.sendall(self.request)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            data += sock.recv(65536) or _closed()
        head = data[:end].decode("latin-1")
        found = re.search(r"(?im)^content-length:\s*(\d+)", head)
        size = end + 4 + (int(found.group(1)) if found else 0)
        while len(data) < size:
            data += sock.recv(65536) or _closed()
        spent = time.perf_counter_ns() - started
        if not head.startswith("HTTP/1.1 200"):
            raise RuntimeError(head)
        return spent

    def close(self) -> None:
        self.sock.close()


def _closed() -> bytes:
    raise RuntimeError("the server closed the connection")


def paired(port: int, invoke_path: str, host: str, pairs: int) -> dict[str, list[int]]:
    """`pairs` Invokes and URL requests by turns (ns each), after WARM_PAIRS unmeasured."""
    invoke, url = Connection(port, invoke_path, "bench"), Connection(port, "/", host)
    spent: dict[str, list[int]] = {"invoke": [], "url": []}
    try:
        for index in range(WARM_PAIRS + pairs):
            if index % 2:
                took = {"url": url.once(), "invoke": invoke.once()}
            else:
                took = {"invoke": invoke.once(), "url": url.once()}
            if index >= WARM_PAIRS:
                for label, ns in took.items():
                    spent[label].append(ns)
    finally:
        invoke.close()
        url.close()
    return spent


def public_url(server: Any, name: str) -> str:
    created = server.call(
        "POST", f"/2021-10-31/functions/{name}/url", {"AuthType": "NONE", "InvokeMode": "BUFFERED"}
    )
    for sid, action, extra in (
        ("url", "lambda:InvokeFunctionUrl", {"FunctionUrlAuthType": "NONE"}),
        ("url-invoke", "lambda:InvokeFunction", {"InvokedViaFunctionUrl": True}),
    ):
        server.call(
            "POST",
            f"/2015-03-31/functions/{name}/policy",
            {"StatementId": sid, "Action": action, "Principal": "*", **extra},
        )
    return str(created["FunctionUrl"]).split("//", 1)[1].rstrip("/")


def bench(
    server: Any,
    row: Callable[..., None],
    rounds: int,
    seconds: int,
    raw: dict[str, Any],
) -> None:
    server.create("http-noop", NOOP)
    host = public_url(server, "http-noop")
    invoke_path = "/2015-03-31/functions/http-noop/invocations"
    found: dict[str, dict[int, dict[str, Any]]] = {"invoke": {}, "url": {}}
    for clients in CLIENTS:
        tried: dict[str, list[dict[str, Any]]] = {"invoke": [], "url": []}
        for _ in range(rounds):
            for label, path, at in (("invoke", invoke_path, "bench"), ("url", "/", host)):
                wrk(server.port, path, clients, 1, at)  # warm: environments, caches
                tried[label].append(wrk(server.port, path, clients, seconds, at))
        for label in tried:
            found[label][clients] = max(tried[label], key=lambda r: float(r["rps"]))
            result = found[label][clients]
            print(
                f"    {label:<6} {clients:>2} clients: {result['rps']:,.0f} req/s, p50 "
                f"{result['p50_us'] / 1000:.3f} ms, p99 {result['p99_us'] / 1000:.3f} ms",
                flush=True,
            )
    spent = paired(server.port, invoke_path, host, PAIRS * rounds)
    p50 = {label: statistics.median(times) / 1e6 for label, times in spent.items()}
    p99 = {label: statistics.quantiles(times, n=100)[-1] / 1e6 for label, times in spent.items()}
    for label in spent:
        print(
            f"    {label:<6} paired, 1 client: p50 {p50[label]:.3f} ms, p99 {p99[label]:.3f} ms "
            f"({len(spent[label])} requests)",
            flush=True,
        )
    raw["http_front"] = {**found, "paired": {"p50_ms": p50, "p99_ms": p99}}
    row(
        "http",
        "function URL p50, 1 client, paired",
        p50["url"],
        "ms",
        "Invoke p50",
        p50["invoke"],
        "≤ 1.1x Invoke",
        p50["url"] <= 1.1 * p50["invoke"],
    )
    row(
        "http",
        "function URL p50, 1 client, wrk",
        found["url"][1]["p50_us"] / 1000,
        "ms",
        "Invoke p50",
        found["invoke"][1]["p50_us"] / 1000,
    )
    for clients in CLIENTS:
        row(
            "http",
            f"function URL req/s, {clients} clients",
            found["url"][clients]["rps"],
            "req/s",
            "Invoke",
            found["invoke"][clients]["rps"],
        )


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    import run  # bench/run.py

    lamina = run.Lamina()
    try:
        bench(lamina, run.row, run.ROUNDS, run.WARM_SECONDS, run.RAW)
    finally:
        lamina.stop()

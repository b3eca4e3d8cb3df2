"""Function URLs in `make bench` (bench/run.py calls `bench`): a warm function URL request
against a warm Invoke of the same no-op function through the Lambda API, in the same run,
alternately (wrk, closed loop, the same JSON body; the URL reached by its Host header).
The URL adds the front door, the payload 2.0 event and the answer's mapping: its p50 at
one client is to stay within 1.1x the Invoke's.

Alone: .venv/bin/python bench/http_front.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
NOOP = "def handler(event, context):\n    return None\n"
CLIENTS = (1, 8)


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
    raw["http_front"] = found
    invoke, url = found["invoke"][1], found["url"][1]
    row(
        "http",
        "function URL p50, 1 client",
        url["p50_us"] / 1000,
        "ms",
        "Invoke p50",
        invoke["p50_us"] / 1000,
        "≤ 1.1x Invoke",
        url["p50_us"] <= 1.1 * invoke["p50_us"],
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

"""`make bench` part 9: what verifying signatures costs (bench/run.py calls `bench_auth`).

- One SigV4 verification (lamina.api.auth.Authenticator.check over a signed Invoke request,
  the signing key cached as in the server): p50 of many, in µs; baseline botocore signing
  the same request (SigV4Auth.add_auth) in the same run. Target ≤ 60 µs.
- Warm invoke throughput of a no-op function with `--auth on` (every request verified; wrk
  replays one request signed for the next five minutes) against `--auth off`, 8 clients,
  in rounds (at least ten): each round measures both servers back to back, each first
  in turn. On a shared machine the load moves by tens of percent from one second to the
  next, so the figure is the median over rounds of each round's own on/off ratio (the two
  measurements of a round see about the same machine); the best round of each is printed
  too. Target ≥ 0.9x.
  And the CPU time the server process spends per invoke (from /proc), the median of the
  rounds' on/off ratios likewise.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SAMPLES = int(os.environ.get("LAMINA_BENCH_SAMPLES", "20000"))
# The function gets one vCPU's quota (as the warm benchmark's): the server, where the
# check runs, is what limits the throughput, not a 128 MB environment's CPU share.
ONE_VCPU = 1769


def _signed(url: str, key: str, secret: str, body: bytes) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(request)
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}


def verification() -> tuple[float, float]:
    """(p50 µs of Authenticator.check, p50 µs of botocore signing the same request)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from lamina.api.auth import Authenticator, known_regions
    from lamina.store.identity import Credential

    key, secret = "AKIABENCHMARK0000000", "x" * 40
    known = Credential(key, secret, "111111111111", "arn:aws:iam::111111111111:root")
    checker = Authenticator("on", {key: known}.get, known_regions())
    path = "/2015-03-31/functions/noop/invocations"
    body = b'{"hello": "world"}'
    headers = {k.lower(): v for k, v in _signed("http://127.0.0.1:9700" + path, key, secret,
                                                 body).items()}  # fmt: skip
    headers["host"] = "127.0.0.1:9700"
    checker.check("POST", path, "", headers, body, "lambda")  # warm the caches
    clock = time.perf_counter_ns
    checks = []
    for _ in range(SAMPLES):
        started = clock()
        checker.check("POST", path, "", headers, body, "lambda")
        checks.append((clock() - started) / 1000)
    signer = SigV4Auth(Credentials(key, secret), "lambda", "us-east-1")
    signs = []
    for _ in range(SAMPLES // 4):
        request = AWSRequest("POST", "http://127.0.0.1:9700" + path, data=body)
        started = clock()
        signer.add_auth(request)
        signs.append((clock() - started) / 1000)
    checks.sort()
    signs.sort()
    return checks[len(checks) // 2], signs[len(signs) // 2]


def bench_auth(
    lamina: Callable[..., Any],
    load: Callable[..., dict[str, Any]],
    row: Callable[..., None],
    raw: dict[str, Any],
    rounds: int,
    seconds: int,
) -> None:
    print("9. authentication", flush=True)
    check_us, sign_us = verification()
    row("auth", "SigV4 verification, p50", check_us, "µs", "botocore signing", sign_us,
        "≤ 60 µs", check_us <= 60)  # fmt: skip
    on, off = lamina("--auth", "on"), lamina("--auth", "off")
    results: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    try:
        made = subprocess.run(
            [sys.executable, "-m", "lamina.cli", "accounts", "--data-dir",
             str(on.dir / "data"), "create", "bench"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        access = json.loads(made.stdout)["AccessKey"]
        key, secret = access["AccessKeyId"], access["SecretAccessKey"]
        path = "/2015-03-31/functions/noop/invocations"
        create = _create_function(on.url(""), key, secret)
        create(on.url(""))
        off.create("noop", "def handler(event, context):\n    return None\n", MemorySize=ONE_VCPU)
        cpu: dict[str, list[float]] = {"on": [], "off": []}  # µs per invoke, per round
        for index in range(max(rounds, 10)):
            order = (("off", off), ("on", on))
            for label, server in order if index % 2 == 0 else order[::-1]:
                headers = _signed(server.url(path), key, secret, b"{}")
                env = {**os.environ, "LAMINA_BENCH_HEADERS": json.dumps(headers)}
                load(server.port, path, 8, 1, script="invoke_signed.lua", env=env)
                spent = _cpu_seconds(server.process.pid)
                found = load(server.port, path, 8, seconds, script="invoke_signed.lua", env=env)
                results[label].append(found)
                spent = _cpu_seconds(server.process.pid) - spent
                cpu[label].append(spent * 1e6 / max(1, int(found["requests"])))
    finally:
        on.stop()
        off.stop()
    best = {label: max(found, key=lambda r: float(r["rps"])) for label, found in results.items()}
    raw["auth"] = {"verify_p50_us": check_us, "sign_p50_us": sign_us, **best}
    for label in ("off", "on"):
        found = best[label]
        rps, refused = found["rps"], found["non_2xx"]
        print(f"    auth {label}: best round {rps:,.0f} req/s, {refused} not 2xx")
    rounds_ = zip(results["on"], results["off"], strict=True)
    paired = [float(a["rps"]) / float(b["rps"]) for a, b in rounds_]
    ratio = statistics.median(paired)
    print("    on/off per round: " + ", ".join(f"{r:.2f}" for r in paired))
    on_rps = statistics.median(float(r["rps"]) for r in results["on"])
    off_rps = statistics.median(float(r["rps"]) for r in results["off"])
    raw["auth"]["paired_ratios"] = paired
    row("auth", "warm invoke req/s, --auth on, 8 clients, median round", on_rps, "req/s",
        "--auth off", off_rps)  # fmt: skip
    row("auth", "warm invoke, --auth on / --auth off, median of paired rounds", ratio, "x",
        "the same round's --auth off", 1.0, "≥ 0.9x", ratio >= 0.9)  # fmt: skip
    cpu_ratios = [a / b for a, b in zip(cpu["on"], cpu["off"], strict=True) if b > 0]
    cpu_ratio = statistics.median(cpu_ratios)
    on_us, off_us = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    raw["auth"]["server_cpu_us_per_invoke"] = cpu
    row("auth", "server CPU per warm invoke, --auth on, median round", on_us, "µs",
        "--auth off", off_us)  # fmt: skip
    row("auth", "server CPU per warm invoke, on / off, median of paired rounds", cpu_ratio,
        "x", "the same round's --auth off", 1.0, "≤ 1.1x", cpu_ratio <= 1.1)  # fmt: skip
    if best["on"]["non_2xx"]:
        raise RuntimeError(f"{best['on']['non_2xx']} signed invokes were refused")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _create_function(base: str, key: str, secret: str) -> Callable[[str], None]:
    def create(url: str) -> None:
        import boto3

        client = boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=key, aws_secret_access_key=secret)  # fmt: skip
        import io
        import zipfile

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return None\n")
        client.create_function(
            FunctionName="noop",
            Runtime="python3.12",
            Role="arn:aws:iam::000000000000:role/bench",
            Handler="app.handler",
            Code={"ZipFile": buffer.getvalue()},
            MemorySize=ONE_VCPU,
        )

    return create


if __name__ == "__main__":
    check, sign = verification()
    print(f"verify p50 {check:.1f} µs; botocore signing p50 {sign:.1f} µs")

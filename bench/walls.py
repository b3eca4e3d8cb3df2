"""`make bench` part 8: what every wall costs (bench/run.py calls `run`), against
`--isolation none` in the same run.

- Cold start: Init Duration and end to end of 40 cold invokes, one at a time, each server
  in turn (`--isolation none`'s, then every wall's).
- Warm p50 at one client against bench/relay.py, and warm req/s against `--isolation none`
  (the best of the rounds).
- Warm req/s frozen between invocations against `--no-freeze`, at 1 and 8 clients. Both
  servers run at once; each round measures both back to back for a second each, each
  first in turn, with no warm-up (the other's round just before warms the machine). On a
  shared machine the rate moves by tens of percent from one second to the next, even
  with two identical servers, so the figure is the median over many rounds of each
  round's own frozen / `--no-freeze` ratio (the two measurements of a round see about the
  same machine; short rounds pair them more closely than long ones). The two are started
  together for this and have served nothing else before. And the CPU time per invoke
  of each server process and of the processes it started (fork server, inits,
  runtimes: what a freeze and a thaw would cost shows there, and CPU time moves less
  with the load than rates do), the median of the rounds' ratios likewise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import time
import urllib.request
from types import ModuleType
from typing import Any

COLD = 40
FREEZE_ROUNDS = 30  # per client count (10 with --quick)
FREEZE_ROUND_S = 1  # each server's share of a round
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cold_with_init(
    r: ModuleType, server: Any, prefix: str, samples: int
) -> tuple[list[float], list[float]]:
    """End-to-end times and Init Durations of `samples` cold invokes, one at a time."""
    names = [f"{prefix}-{index:03d}" for index in range(samples)]
    for name in names:
        server.create(name, r.PID)
    ends, inits, tokens = [], [], set()
    for name in names:
        request = urllib.request.Request(
            server.url(r.invocations(name)), data=b"{}", method="POST",
            headers={"X-Amz-Log-Type": "Tail"},
        )  # fmt: skip
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
            tail = base64.b64decode(response.headers["X-Amz-Log-Result"]).decode()
        ends.append((time.perf_counter() - started) * 1000)
        found = re.search(r"Init Duration: ([0-9.]+) ms", tail)
        if found is None:
            raise RuntimeError(f"no Init Duration in {tail!r}")
        inits.append(float(found.group(1)))
        tokens.add(json.loads(body))
    if len(tokens) != samples:
        raise RuntimeError(f"expected {samples} environments, saw {len(tokens)}")
    for name in names:
        server.delete(name)
    return ends, inits


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds of all its threads) of a live process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_of_tree(root: int) -> tuple[float, dict[int, float]]:
    """CPU seconds so far of `root` and of each of its live descendants."""
    seen: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                seen[int(entry)] = _stat(int(entry))
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in seen.items():
        children.setdefault(parent, []).append(pid)
    below: dict[int, float] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        below[pid] = seen[pid][1]
        todo += children.get(pid, [])
    return seen.get(root, (0, 0.0))[1], below


def _spent(
    before: tuple[float, dict[int, float]], after: tuple[float, dict[int, float]]
) -> tuple[float, float]:
    """(the server's CPU seconds, its descendants' that lived throughout) between two looks."""
    tree = sum(after[1][pid] - spent for pid, spent in before[1].items() if pid in after[1])
    return after[0] - before[0], tree


def _freezing(
    r: ModuleType, frozen: Any, unfrozen: Any, clients: int, rounds: int
) -> dict[str, Any]:
    """Paired rounds of the frozen and the `--no-freeze` server at `clients` clients."""
    path = r.invocations("noop")
    order = (("frozen", frozen), ("no-freeze", unfrozen))
    found: dict[str, list[dict[str, Any]]] = {"frozen": [], "no-freeze": []}
    for index in range(rounds):
        for label, server in order if index % 2 == 0 else order[::-1]:
            before = cpu_of_tree(server.process.pid)
            result = r.load(server.port, path, clients, FREEZE_ROUND_S)
            own, tree = _spent(before, cpu_of_tree(server.process.pid))
            requests = max(1, int(result["requests"]))
            result["server_cpu_us"] = own * 1e6 / requests
            result["environments_cpu_us"] = tree * 1e6 / requests
            found[label].append(result)
    pairs = list(zip(found["frozen"], found["no-freeze"], strict=True))
    return {
        "rounds": found,
        "rps_ratios": [float(a["rps"]) / float(b["rps"]) for a, b in pairs],
        "server_cpu_ratios": [
            a["server_cpu_us"] / b["server_cpu_us"] for a, b in pairs if b["server_cpu_us"]
        ],
        "environments_cpu_ratios": [
            a["environments_cpu_us"] / b["environments_cpu_us"]
            for a, b in pairs
            if b["environments_cpu_us"]
        ],
        "loadavg": os.getloadavg()[0],
    }


def _show_freezing(r: ModuleType, clients: int, paired: dict[str, Any]) -> None:
    rounds = paired["rounds"]
    median = statistics.median
    print(f"    frozen / --no-freeze, {clients} clients, per round: "
          + ", ".join(f"{ratio:.2f}" for ratio in paired["rps_ratios"])
          + f" (load average {paired['loadavg']:.1f} at the end)", flush=True)  # fmt: skip
    frozen_rps = median(float(a["rps"]) for a in rounds["frozen"])
    free_rps = median(float(a["rps"]) for a in rounds["no-freeze"])
    r.row("walls", f"warm req/s, {clients} clients, frozen between invocations, median round",
          frozen_rps, "req/s", "--no-freeze", free_rps)  # fmt: skip
    ratio = median(paired["rps_ratios"])
    r.row("walls", f"warm req/s, {clients} clients, frozen / --no-freeze, median of paired rounds",
          ratio, "x", "the same round's --no-freeze", 1.0, "≥ 0.9x", ratio >= 0.9)  # fmt: skip
    for key, what in (
        ("server_cpu", "server"),
        ("environments_cpu", "fork server and environments"),
    ):
        r.row("walls", f"{what} CPU per warm invoke, {clients} clients, frozen, median round",
              median(a[f"{key}_us"] for a in rounds["frozen"]), "µs", "--no-freeze",
              median(a[f"{key}_us"] for a in rounds["no-freeze"]))  # fmt: skip
        if paired[f"{key}_ratios"]:
            r.row("walls", f"{what} CPU per warm invoke, {clients} clients, frozen / --no-freeze, "
                  "median of paired rounds", median(paired[f"{key}_ratios"]), "x",
                  "the same round's --no-freeze", 1.0)  # fmt: skip


def run(r: ModuleType) -> None:
    print("8. walls: every wall against --isolation none", flush=True)
    bare = r.Lamina("--isolation", "none")
    walled = r.Lamina("--isolation", "auto")
    frozen = r.Lamina("--isolation", "auto")  # frozen and unfrozen: alike but for freezing
    unfrozen = r.Lamina("--isolation", "auto", "--no-freeze")
    port = r.free_port()
    relay = subprocess.Popen(
        [r.PYTHON, str(r.BENCH / "relay.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    warm: dict[tuple[str, int], dict[str, Any]] = {}
    freezing: dict[int, dict[str, Any]] = {}
    cold: dict[str, tuple[list[float], list[float]]] = {}
    try:
        assert relay.stdout is not None
        assert relay.stdout.readline().strip() == "ready"
        backend = (walled.dir / "server.log").read_text().split("isolation: ", 1)[-1]
        print(f"   walls: {backend.splitlines()[0][:160]}", flush=True)
        for label, server in (("none", bare), ("walls", walled)):
            cold_with_init(r, server, f"warmup-{label}", 3)
            cold[label] = cold_with_init(r, server, f"cold-{label}", COLD)
        servers = {"relay": (port, "/"), "none": (bare.port, r.invocations("noop")),
                   "walls": (walled.port, r.invocations("noop"))}  # fmt: skip
        for server in (bare, walled, frozen, unfrozen):
            server.create("noop", r.NOOP, MemorySize=r.ONE_VCPU_MB)
        for clients in (1, 8):
            rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
            for _ in range(r.ROUNDS):
                for label, (where, path) in servers.items():
                    r.load(where, path, clients, r.WARMUP_SECONDS)
                    rounds[label].append(r.load(where, path, clients, r.WARM_SECONDS))
            for label in servers:
                warm[label, clients] = r.best(rounds[label])
                r.show(label, clients, warm[label, clients])
            for server in (frozen, unfrozen):
                r.load(server.port, r.invocations("noop"), clients, r.WARMUP_SECONDS)
            rounds_of_freezing = 10 if r.QUICK else FREEZE_ROUNDS
            freezing[clients] = _freezing(r, frozen, unfrozen, clients, rounds_of_freezing)
    finally:
        relay.kill()
        relay.wait()
        walled.process.send_signal(signal.SIGTERM)  # its log says what the cold starts took
        with contextlib.suppress(subprocess.TimeoutExpired):
            walled.process.wait(20)
        taken = re.search(r"prepared inits: (.*)", (walled.dir / "server.log").read_text())
        print(f"   walls: {taken.group(1) if taken else 'no prepared inits'}", flush=True)
        for server in (bare, walled, frozen, unfrozen):
            server.stop()
    r.RAW["walls"] = {
        "cold": cold,
        "warm": {f"{label} {clients}": found for (label, clients), found in warm.items()},
        "freezing": {str(clients): paired for clients, paired in freezing.items()},
    }
    ends, inits = cold["walls"]
    bare_ends, bare_inits = cold["none"]
    p = r.percentile
    r.row("walls", f"cold start Init Duration p50, every wall (n={COLD})", p(inits, 50), "ms",
          "--isolation none", p(bare_inits, 50), "≤ 10 ms", p(inits, 50) <= 10.0)  # fmt: skip
    r.row("walls", "cold start Init Duration p99, every wall", p(inits, 99), "ms",
          "--isolation none", p(bare_inits, 99))  # fmt: skip
    r.row("walls", "cold invoke end to end p50, every wall", p(ends, 50), "ms",
          "--isolation none", p(bare_ends, 50))  # fmt: skip
    walls1, relay1, none1 = warm["walls", 1], warm["relay", 1], warm["none", 1]
    overhead = (walls1["p50_us"] - relay1["p50_us"]) / 1000
    r.row("walls", "warm p50 overhead over the relay, 1 client, every wall", overhead, "ms",
          "relay p50", relay1["p50_us"] / 1000, "< 1 ms", overhead < 1.0)  # fmt: skip
    r.row("walls", "warm p50, 1 client, every wall", walls1["p50_us"] / 1000, "ms",
          "--isolation none", none1["p50_us"] / 1000)  # fmt: skip
    for clients in (1, 8):
        r.row("walls", f"warm req/s, {clients} clients, every wall, best round",
              warm["walls", clients]["rps"], "req/s", "--isolation none",
              warm["none", clients]["rps"])  # fmt: skip
        _show_freezing(r, clients, freezing[clients])

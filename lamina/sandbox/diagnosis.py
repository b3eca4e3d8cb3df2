"""What the host allows: the checks `lamina doctor` prints one by one and that
isolation.choose decides from (namespaces, cgroups, seccomp, freezer, ceilings, networks).

The namespace steps are tried for real by lamina/runtimes/isolate_probe.py, in a child
of its own, with the spec an environment would get.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.sandbox import cgroups as cg
from lamina.sandbox import network as net
from lamina.sandbox import seccomp
from lamina.sandbox.launch import PYTHON_BOOTSTRAP

PROBE = PYTHON_BOOTSTRAP.parent / "isolate_probe.py"
UID, GID = 993, 990  # Lambda's sbx_user1051
SERVER_PREFIX = "lamina-"


@dataclass
class Diagnosis:
    """What `lamina doctor` prints and what `choose` decides from."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # name, ok, detail
    namespaces_ok: bool = False
    cgroups: cg.Cgroups | None = None
    why_not: str = ""
    binds: list[str] = field(default_factory=list)
    filter: seccomp.Filter | None = None

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, ok, detail))


@functools.cache
def interpreter_prefixes(python: str) -> list[str]:
    """Directories an interpreter needs (its prefix and base prefix, resolved)."""
    found = {sys.prefix, sys.base_prefix} if python == sys.executable else set()
    if not found:
        try:
            out = subprocess.run(
                [python, "-I", "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            found = set(out.split())
        except (OSError, subprocess.SubprocessError):
            found = set()
    found.add(str(Path(os.path.realpath(python)).parent.parent))
    return sorted({os.path.realpath(path) for path in found})


def diagnose(python: str, server: str | None = None) -> Diagnosis:
    """Check, step by step, whether environments can have namespaces and cgroups here.
    With `server`, the server's base cgroup is made and kept in `cgroups`."""
    found = Diagnosis()
    euid = os.geteuid()
    advice = "" if euid == 0 else ": namespaces and cgroups need root (CAP_SYS_ADMIN)"
    found.add("root", euid == 0, f"euid {euid}{advice}")
    try:
        owner = pwd.getpwuid(UID).pw_name
        found.add(f"uid {UID} unused on the host", False, f"it is {owner}'s: functions share it")
    except KeyError:
        found.add(f"uid {UID} unused on the host", True, "functions run as it (sbx_user1051)")
    binds = [*interpreter_prefixes(sys.executable), *interpreter_prefixes(python),
             str(PYTHON_BOOTSTRAP.parent)]  # fmt: skip
    spec: dict[str, Any] = {"uid": UID, "gid": GID, "binds": binds, "tmp_mb": 1, "rlimits": {}}
    try:
        found.filter = seccomp.build()
        spec["seccomp"] = found.filter.program.hex()
    except seccomp.SeccompUnavailable as exc:
        found.add("seccomp", False, str(exc))
    steps: dict[str, Any] = {}
    if euid == 0:
        try:
            out = subprocess.run(
                [sys.executable, "-I", "-S", str(PROBE), json.dumps(spec)],
                capture_output=True,
                text=True,
                timeout=20,
                cwd="/",
            )
            steps = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
            if not steps:
                steps = {"probe": (out.stderr.strip().splitlines() or ["no answer"])[-1]}
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            steps = {"probe": str(exc)}
    for name in ("pid namespace", "mount, ipc, uts, cgroup namespaces", "network namespace",
                 "filesystem (tmpfs, binds, /proc, pivot_root)", "unprivileged user"):  # fmt: skip
        value = steps.get(name)
        if value is True:
            detail = ""
            if name == "unprivileged user" and found.filter is not None:
                detail = f"then seccomp: {found.filter.describe()}"
            found.add(name, True, detail)
        elif value is not None:
            found.add(name, False, str(value))
    if "probe" in steps:
        found.add("probe", False, str(steps["probe"]))
    namespaces = euid == 0 and all(
        steps.get(name) is True
        for name in ("pid namespace", "mount, ipc, uts, cgroup namespaces", "network namespace",
                     "filesystem (tmpfs, binds, /proc, pivot_root)", "unprivileged user")
    )  # fmt: skip
    name = server or f"{SERVER_PREFIX}doctor-{os.getpid()}"
    cgroups: cg.Cgroups | None = None
    if euid == 0:
        try:
            cgroups = cg.open_cgroups(name)
            detail = f"v{cgroups.version}: {', '.join(cgroups.controllers)} under " + ", ".join(
                str(Path(path).parent) for path in cgroups.base_dirs
            )
            if "cpu" not in cgroups.bases:
                detail += " (no cpu controller: CPU weight not applied)"
            found.add("cgroups", True, detail)
        except cg.CgroupsUnavailable as exc:
            found.add("cgroups", False, str(exc))
    else:
        found.add("cgroups", False, "not root")
    if cgroups is not None:
        _walls(found, cgroups)
    if cgroups is not None and server is None:
        cgroups.close()
    found.namespaces_ok = namespaces and cgroups is not None
    found.cgroups = cgroups if server is not None else None
    advisory = (f"uid {UID} unused on the host", "seccomp", "freezer", "networks")  # reported
    failed = [f"{n}: {d}" if d else n for n, ok, d in found.checks if not ok and n not in advisory]
    found.why_not = "; ".join(failed)
    found.binds = binds
    return found


def _walls(found: Diagnosis, cgroups: cg.Cgroups) -> None:
    """Freezing, ceilings and networks, as `lamina doctor` reports them."""
    freezer = ""
    if cgroups.version == 2:
        freezer = "cgroup v2's cgroup.freeze"
    elif "freezer" in cgroups.bases:
        freezer = "the cgroup v1 freezer controller"
    found.add(
        "freezer",
        bool(freezer),
        f"environments frozen between invocations with {freezer} (--no-freeze: not)"
        if freezer
        else "no freezer hierarchy: environments run between invocations",
    )
    pids, memory_mb = cg.default_ceilings()
    cpu = "" if "cpu" in cgroups.bases else "; no cpu controller: no CPU quota"
    found.add(
        "ceilings",
        True,
        f"all environments together: {pids} processes and {memory_mb} MB by default "
        f"(--max-pids, --max-memory); each a CPU quota of MemorySize / "
        f"{cg.LAMBDA_MB_PER_VCPU} MB of a vCPU{cpu}",
    )
    problem = net.check()
    found.add(
        "networks",
        not problem,
        problem
        or "a network namespace per environment on bridges of Lamina's (NAT out, "
        f"Lamina's API at the gateway, {net.HOSTS_NAME} for --host-access ports, "
        "VPC subnets as networks, --nat-subnet)",
    )

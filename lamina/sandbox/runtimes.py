"""Runtimes and the interpreters that run them on this host.

Each `python3.x` runtime runs on a Python of exactly that version and each `nodejsNN.x` on
a `node` of that major version: given with `--runtime NAME=PATH`, or found on PATH
(`python3.x`, `node`, `nodeNN`) or in pyenv's versions directory. `provided*` runtimes run
the package's `bootstrap`. A runtime without an interpreter here is refused when a
function is created with it, with a message naming the flag; runtimes AWS no longer
accepts get AWS's message.

Interpreters are probed (`-c` printing their version) once, the first time a runtime is
asked for, and the answer is kept: a server pays for the probe of what it uses only.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass

CUSTOM = ("provided", "provided.al2", "provided.al2023")
PYTHONS = tuple(f"python3.{minor}" for minor in range(9, 16))  # python3.9 … python3.15
NODES = tuple(f"nodejs{major}.x" for major in (18, 20, 22, 24, 26))
# Runtimes AWS refuses for new functions and updates, with the one it recommends instead.
DEPRECATED = {
    "python2.7": "python3.13",
    "python3.6": "python3.13",
    "python3.7": "python3.13",
    "python3.8": "python3.13",
    "nodejs": "nodejs22.x",
    "nodejs4.3": "nodejs22.x",
    "nodejs4.3-edge": "nodejs22.x",
    "nodejs6.10": "nodejs22.x",
    "nodejs8.10": "nodejs22.x",
    "nodejs10.x": "nodejs22.x",
    "nodejs12.x": "nodejs22.x",
    "nodejs14.x": "nodejs22.x",
    "nodejs16.x": "nodejs22.x",
    "dotnetcore1.0": "dotnet8",
    "dotnetcore2.0": "dotnet8",
    "dotnetcore2.1": "dotnet8",
    "dotnetcore3.1": "dotnet8",
    "dotnet6": "dotnet8",
    "ruby2.5": "ruby3.3",
    "ruby2.7": "ruby3.3",
    "go1.x": "provided.al2023",
    "java8": "java21",
}
PROBE = {
    "python": "import sys; print('%d.%d' % sys.version_info[:2])",
    "node": "console.log(process.versions.node.split('.')[0])",
}
PROBE_LIMIT_S = 15.0


class RuntimeUnavailable(Exception):
    """The runtime cannot run here (the message says why and what to do)."""


@dataclass(frozen=True)
class Runtime:
    name: str
    family: str  # python | node | custom
    version: str  # "3.12", "22", "" for custom runtimes
    executable: str  # the interpreter ("" for custom runtimes)


def family(name: str) -> str | None:
    if name in CUSTOM:
        return "custom"
    if name in PYTHONS:
        return "python"
    if name in NODES:
        return "node"
    return None


def version_of(name: str) -> str:
    if name.startswith("python"):
        return name[len("python") :]
    if name.startswith("nodejs"):
        return name[len("nodejs") : -len(".x")]
    return ""


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`--runtime NAME=PATH` values (a comma-separated LAMINA_RUNTIMES works too)."""
    found: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            name, sep, path = part.partition("=")
            name = name.strip()
            if not sep or not path.strip():
                raise ValueError(f"--runtime takes NAME=PATH (got {part!r})")
            if family(name) not in ("python", "node"):
                raise ValueError(
                    f"--runtime {name}: not a python3.x or nodejsNN.x runtime Lamina knows"
                )
            found[name] = os.path.abspath(os.path.expanduser(path.strip()))
    return found


def probe(executable: str, kind: str) -> str | None:
    """The version an interpreter reports ("3.12", "22"), or None if it does not run."""
    try:
        out = subprocess.run(
            [executable, "-e" if kind == "node" else "-c", PROBE[kind]],
            capture_output=True,
            text=True,
            timeout=PROBE_LIMIT_S,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


def _pyenv_roots() -> list[str]:
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    return [root for root in dict.fromkeys(roots) if root and os.path.isdir(root)]


def candidates(name: str) -> list[str]:
    """Where an interpreter for `name` may be, most likely first (not yet probed)."""
    kind, version = family(name), version_of(name)
    found: list[str] = []
    path = os.environ.get("PATH", "")
    # pyenv's shims pick a version by pyenv's settings, not by their name: skip them.
    dirs = [d for d in path.split(os.pathsep) if d and "/.pyenv/shims" not in d]
    search = os.pathsep.join(dirs)
    if kind == "python":
        if f"3.{sys.version_info.minor}" == version:
            found.append(sys.executable)
        found += [p for p in [shutil.which(f"python{version}", path=search)] if p]
        for root in _pyenv_roots():
            pattern = os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")
            found += sorted(glob.glob(pattern), reverse=True)
    elif kind == "node":
        for program in (f"node{version}", "node", "nodejs"):
            where = shutil.which(program, path=search)
            if where:
                found.append(where)
    return list(dict.fromkeys(found))


class Runtimes:
    """Which runtimes this server can run, and on what. Thread-safe; probes are cached."""

    def __init__(self, overrides: dict[str, str] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self._found: dict[str, Runtime | str] = {}  # name → runtime, or why it is absent
        self._probed: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def _version(self, executable: str, kind: str) -> str | None:
        if executable not in self._probed:
            self._probed[executable] = probe(executable, kind)
        return self._probed[executable]

    def find(self, name: str) -> Runtime:
        """The runtime `name` on this host; RuntimeUnavailable says why not."""
        kind = family(name)
        if kind is None:
            raise RuntimeUnavailable(f"The runtime {name} is not supported by Lamina.")
        if kind == "custom":
            return Runtime(name, kind, "", "")
        with self._lock:
            if name not in self._found:
                self._found[name] = self._look(name, kind)
            found = self._found[name]
        if isinstance(found, str):
            raise RuntimeUnavailable(found)
        return found

    def _look(self, name: str, kind: str) -> Runtime | str:
        wanted = version_of(name)
        program = "python" + wanted if kind == "python" else "node " + wanted
        flag = f"--runtime {name}=/path/to/{'python' + wanted if kind == 'python' else 'node'}"
        given = self.overrides.get(name)
        if given is not None:
            got = self._version(given, kind)
            if got is None:
                return f"The interpreter given for {name} ({given}) does not run."
            if got != wanted:
                return f"The interpreter given for {name} ({given}) is {kind} {got}, not {wanted}."
            return Runtime(name, kind, wanted, given)
        for path in candidates(name):
            if self._version(path, kind) == wanted:
                return Runtime(name, kind, wanted, path)
        return (
            f"The runtime {name} needs {program}, which this host does not have: "
            f"install it or give its path with `lamina serve {flag}`."
        )

    def available(self) -> list[Runtime]:
        """Every runtime this host can run (probing each)."""
        found: list[Runtime] = []
        for name in (*PYTHONS, *NODES, *CUSTOM):
            try:
                found.append(self.find(name))
            except RuntimeUnavailable:
                continue
        return found

    def absent(self) -> dict[str, str]:
        """The python and node runtimes this host cannot run, with the reason."""
        missing: dict[str, str] = {}
        for name in (*PYTHONS, *NODES):
            try:
                self.find(name)
            except RuntimeUnavailable as exc:
                missing[name] = str(exc)
        return missing


def deprecation(name: str) -> str | None:
    """AWS's message for a runtime it no longer accepts for new functions or updates."""
    newer = DEPRECATED.get(name)
    if newer is None:
        return None
    return (
        f"The runtime parameter of {name} is no longer supported for creating or updating "
        f"AWS Lambda functions. We recommend you use the new runtime ({newer}) while creating "
        "or updating functions."
    )


def configured(python: str = "", items: tuple[str, ...] | list[str] = ()) -> Runtimes:
    """The runtimes of `lamina serve --runtime NAME=PATH ... [--python PATH]`: `--python`
    gives the interpreter of its own version's runtime."""
    overrides = parse_overrides(items)
    if python:
        version = probe(python, "python")
        if version is not None:
            overrides.setdefault(f"python{version}", os.path.abspath(python))
    return Runtimes(overrides)


def report(found: Runtimes) -> list[str]:
    """What `lamina doctor` prints about runtimes."""
    lines = ["runtimes this host can run:"]
    for runtime in found.available():
        where = runtime.executable or "the function's bootstrap"
        lines.append(f"  ok    {runtime.name:<16} {where}")
    for name, why in found.absent().items():
        lines.append(f"  --    {name:<16} {why}")
    return lines


_runtimes = Runtimes()


def install(runtimes: Runtimes) -> Runtimes:
    global _runtimes
    previous, _runtimes = _runtimes, runtimes
    return previous


def current() -> Runtimes:
    return _runtimes

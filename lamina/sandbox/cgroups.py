"""Control groups of execution environments: memory, processes and CPU weight, v1 or v2.

Lamina makes its cgroups under the cgroup it runs in (the delegation model: whoever
started Lamina keeps accounting for everything it starts): a base `lamina-<pid>` for the
server, and in it one cgroup per environment, made before the environment starts and
removed when it is gone. The environment's init joins it before anything of the function
runs (writing to the `cgroup.procs` files named by `procs_files`).

cgroup v1 has a hierarchy per controller (memory, pids, cpu), so an environment's cgroup
is a directory in each; cgroup v2 has one directory with the controllers enabled from the
root down. Both give: a memory limit with its peak and an out-of-memory kill count, a
process limit and a CPU weight.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu", "freezer")  # freezer: v1 only (v2 has cgroup.freeze)
REQUIRED = ("memory", "pids")  # cpu and freezer are used where they are there
LAMBDA_MB_PER_VCPU = 1769  # Lambda's figure: one vCPU's worth of CPU per 1,769 MB
CPU_PERIOD_US = 100_000  # the period of the CPU quota
HELD_FROZEN = "held-frozen"  # v1: an empty cgroup kept frozen while the server runs


class CgroupsUnavailable(Exception):
    """Why cgroups cannot be used here (the message says)."""


@dataclass
class Mount:
    version: int
    path: Path  # where it is mounted
    root: str  # the hierarchy's directory mounted there ("/" unless in a container)
    controllers: frozenset[str]


def _mounts(mountinfo: str) -> list[Mount]:
    found: list[Mount] = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, more = left.split(), right.split()
        if len(fields) < 5 or len(more) < 3:
            continue
        fstype, options = more[0], set(more[2].split(","))
        path = Path(fields[4].replace("\\040", " "))
        if fstype == "cgroup":
            found.append(Mount(1, path, fields[3], frozenset(options & set(CONTROLLERS))))
        elif fstype == "cgroup2":
            found.append(Mount(2, path, fields[3], frozenset()))
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller (or "" for v2) → this process's cgroup path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
        for name in controllers.split(","):
            if name in CONTROLLERS:
                paths[name] = path
    return paths


def _directory(mount: Mount, path: str) -> Path:
    if mount.root != "/" and path.startswith(mount.root):
        path = path[len(mount.root) :]
    return mount.path / path.lstrip("/")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as out:
        out.write(value)


def _read(path: Path) -> str:
    with open(path) as source:
        return source.read()


def _keyed(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


@dataclass
class Cgroup:
    """One environment's cgroup (a directory per v1 hierarchy, or one v2 directory)."""

    version: int
    dirs: dict[str, Path]  # controller → directory (v2: every controller → the same one)
    _peak_fd: int = -1
    _freeze_fd: int = -1
    frozen: bool = False

    @property
    def procs_files(self) -> list[str]:
        return [str(path / "cgroup.procs") for path in dict.fromkeys(self.dirs.values())]

    def limit(self, memory_mb: int, pids: int) -> None:
        memory = self.dirs["memory"]
        limit = str(memory_mb * 1024 * 1024)
        if self.version == 1:
            names = ["memory.limit_in_bytes"]
            if (memory / "memory.memsw.limit_in_bytes").exists():  # no swapping past it
                names.append("memory.memsw.limit_in_bytes")  # never below the other
                if int(limit) > int(_read(memory / names[0])):
                    names.reverse()  # raising a limit already set
            for name in names:
                _write(memory / name, limit)
            _write(self.dirs["pids"] / "pids.max", str(pids))
        else:
            _write(memory / "memory.max", limit)
            with contextlib.suppress(OSError):
                _write(memory / "memory.swap.max", "0")
            with contextlib.suppress(OSError):
                _write(memory / "memory.oom.group", "1")  # one out of memory: all of it
            _write(self.dirs["pids"] / "pids.max", str(pids))
        cpu = self.dirs.get("cpu")
        if cpu is not None:
            share = memory_mb / LAMBDA_MB_PER_VCPU
            if self.version == 1:
                _write(cpu / "cpu.shares", str(max(2, round(1024 * share))))
            else:
                _write(cpu / "cpu.weight", str(min(10000, max(1, round(100 * share)))))
            self.cpu_quota(max(share, 1.0))  # init runs with at least a vCPU

    def cpu_quota(self, vcpus: float) -> None:
        """At most `vcpus` of CPU time (v1 cpu.cfs_quota_us, v2 cpu.max)."""
        cpu = self.dirs.get("cpu")
        if cpu is None:
            return
        quota = max(1000, round(CPU_PERIOD_US * vcpus))
        with contextlib.suppress(OSError):  # a kernel without CFS bandwidth control
            if self.version == 1:
                _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(cpu / "cpu.cfs_quota_us", str(quota))
            else:
                _write(cpu / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    @property
    def can_freeze(self) -> bool:
        return self.version == 2 or "freezer" in self.dirs

    def freeze(self, frozen: bool = True) -> None:
        """Freeze (or thaw) every process of the cgroup. Returns at once: the kernel
        stops them as they next run (a frozen process holds no CPU)."""
        if frozen == self.frozen or not self.can_freeze:
            return
        if self._freeze_fd < 0:
            path = (
                self.dirs["freezer"] / "freezer.state"
                if self.version == 1
                else self.dirs["memory"] / "cgroup.freeze"
            )
            self._freeze_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        if self.version == 1:
            os.pwrite(self._freeze_fd, b"FROZEN" if frozen else b"THAWED", 0)
        else:
            os.pwrite(self._freeze_fd, b"1" if frozen else b"0", 0)
        self.frozen = frozen

    def peak_bytes(self) -> int:
        """The highest memory use so far (v2 before 5.19 has no peak: the current use)."""
        if self._peak_fd < 0:
            memory = self.dirs["memory"]
            names = (
                ("memory.max_usage_in_bytes",)
                if self.version == 1
                else ("memory.peak", "memory.current")
            )
            for name in names:
                with contextlib.suppress(OSError):
                    self._peak_fd = os.open(memory / name, os.O_RDONLY | os.O_CLOEXEC)
                    break
            if self._peak_fd < 0:
                return 0
        try:
            return int(os.pread(self._peak_fd, 64, 0))
        except (OSError, ValueError):
            return 0

    def oom_kills(self) -> int:
        memory = self.dirs["memory"]
        try:
            if self.version == 1:
                return _keyed(_read(memory / "memory.oom_control"), "oom_kill")
            return _keyed(_read(memory / "memory.events"), "oom_kill")
        except (OSError, ValueError):
            return 0

    def members(self) -> list[int]:
        pids: set[int] = set()
        for path in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in _read(Path(path)).split())
        return sorted(pids)

    def remove(self) -> bool:
        """rmdir every directory; False while a process is still in one (EBUSY)."""
        if self._peak_fd >= 0:
            os.close(self._peak_fd)
            self._peak_fd = -1
        if self.frozen:
            with contextlib.suppress(OSError):
                self.freeze(False)  # a frozen process does not die (cgroup v1)
        if self._freeze_fd >= 0:
            os.close(self._freeze_fd)
            self._freeze_fd = -1
        done = True
        for path in dict.fromkeys(self.dirs.values()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                done = False
        return done


@dataclass
class Cgroups:
    """The server's base cgroup(s), under which each environment gets one."""

    version: int
    bases: dict[str, Path]  # controller → the server's base directory
    created: list[Path] = field(default_factory=list)

    @property
    def controllers(self) -> list[str]:
        return sorted(self.bases)

    @property
    def base_dirs(self) -> list[str]:
        return [str(path) for path in dict.fromkeys(self.bases.values())]

    def create(self, name: str, memory_mb: int, pids: int) -> Cgroup:
        dirs = {controller: base / name for controller, base in self.bases.items()}
        made: list[Path] = []
        try:
            for path in dict.fromkeys(dirs.values()):
                path.mkdir()
                made.append(path)
            cgroup = Cgroup(self.version, dirs)
            cgroup.limit(memory_mb, pids)
        except BaseException:
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return cgroup

    def ceilings(self, pids: int, memory_mb: int) -> None:
        """Limits for all environments together, on the base cgroup."""
        _write(self.bases["pids"] / "pids.max", str(pids))
        memory = self.bases["memory"]
        limit = str(memory_mb * 1024 * 1024)
        if self.version == 1:
            _write(memory / "memory.limit_in_bytes", limit)
        else:
            _write(memory / "memory.max", limit)

    def hold_freezer(self) -> None:
        """cgroup v1: keep an empty cgroup frozen for as long as the server runs. The
        kernel turns its freezer on (a static key: code patched on every CPU) when a first
        cgroup freezes and off when the last one thaws, about 60 µs each time here; with
        one held frozen, an environment's freeze or thaw costs about 1 µs."""
        directory = self.bases.get("freezer")
        if self.version != 1 or directory is None:
            return  # cgroup v2's cgroup.freeze turns nothing on or off
        held = directory / HELD_FROZEN
        with contextlib.suppress(OSError):  # then each freeze pays for it, as before
            held.mkdir(exist_ok=True)
            _write(held / "freezer.state", "FROZEN")

    def pids_current(self) -> int:
        try:
            return int(_read(self.bases["pids"] / "pids.current"))
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        """Remove the base directories (the environments' are gone by now)."""
        from lamina.runtimes.cleanup import remove_tree

        for base in self.base_dirs:
            remove_tree(base)


def default_ceilings() -> tuple[int, int]:
    """Processes (half the host's pid_max) and MB of memory (the host's, less a quarter
    kept back, at most 4 GB) for all environments together."""
    try:
        pid_max = int(_read(Path("/proc/sys/kernel/pid_max")))
    except (OSError, ValueError):
        pid_max = 32768
    total_mb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in _read(Path("/proc/meminfo")).splitlines():
            if line.startswith("MemTotal:"):
                total_mb = int(line.split()[1]) // 1024
    kept = min(total_mb // 4, 4096)
    return max(1024, pid_max // 2), max(1024, total_mb - kept)


def open_cgroups(
    server: str,
    *,
    fs_root: Path = Path("/"),
    mountinfo: str | None = None,
    proc_cgroup: str | None = None,
) -> Cgroups:
    """Make the server's base cgroup `server` (v2 where its controllers are available to
    Lamina's cgroup, else v1); raise CgroupsUnavailable saying why not. `fs_root`,
    `mountinfo` and `proc_cgroup` are there for tests."""
    if mountinfo is None:
        mountinfo = _read(Path("/proc/self/mountinfo"))
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup"))
    mounts = _mounts(mountinfo)
    own = _own_paths(proc_cgroup)
    reasons: list[str] = []

    def rooted(path: Path) -> Path:
        return fs_root / path.relative_to("/")

    v2 = next((m for m in mounts if m.version == 2 and "" in own), None)
    if v2 is not None:
        try:
            return _open_v2(rooted(_directory(v2, own[""])), server)
        except CgroupsUnavailable as exc:
            reasons.append(str(exc))
    v1: dict[str, Path] = {}
    for controller in CONTROLLERS:
        mount = next((m for m in mounts if m.version == 1 and controller in m.controllers), None)
        if mount is not None and controller in own:
            v1[controller] = rooted(_directory(mount, own[controller]))
    missing = [name for name in REQUIRED if name not in v1]
    if missing:
        reasons.append(f"cgroup v1: no {' or '.join(missing)} hierarchy mounted")
        raise CgroupsUnavailable("; ".join(reasons))
    bases: dict[str, Path] = {}
    try:
        for controller, directory in v1.items():
            base = directory / server
            if base not in bases.values():
                base.mkdir(exist_ok=True)
            bases[controller] = base
    except OSError as exc:
        for base in bases.values():
            with contextlib.suppress(OSError):
                base.rmdir()
        reasons.append(f"cgroup v1: cannot create {exc.filename}: {exc.strerror}")
        raise CgroupsUnavailable("; ".join(reasons)) from exc
    return Cgroups(1, bases, list(bases.values()))


def _open_v2(own: Path, server: str) -> Cgroups:
    """cgroup v2: controllers must be enabled in every ancestor's subtree_control, and a
    cgroup that enables them may hold no process. If Lamina's cgroup has only Lamina in
    it, Lamina moves into a leaf of its own first (`<server>/lamina`)."""
    try:
        available = set(_read(own / "cgroup.controllers").split())
    except OSError as exc:
        raise CgroupsUnavailable(f"cgroup v2: cannot read {own}: {exc.strerror}") from exc
    missing = [name for name in REQUIRED if name not in available]
    if missing:
        raise CgroupsUnavailable(
            f"cgroup v2: {', '.join(missing)} not delegated to {own} "
            f"(available: {', '.join(sorted(available)) or 'none'})"
        )
    wanted = [name for name in CONTROLLERS if name in available]
    enable = " ".join(f"+{name}" for name in wanted)
    base = own / server
    try:
        base.mkdir(exist_ok=True)
        enabled = set(_read(own / "cgroup.subtree_control").split())
        if not set(wanted) <= enabled:
            members = [int(pid) for pid in _read(own / "cgroup.procs").split()]
            if members and members != [os.getpid()]:
                raise CgroupsUnavailable(
                    f"cgroup v2: {own} holds other processes than Lamina "
                    f"({len(members)}), so it cannot enable controllers for its children; "
                    "run Lamina in a cgroup of its own (e.g. systemd-run --scope -p Delegate=yes)"
                )
            if members:
                leaf = base / "lamina"
                leaf.mkdir(exist_ok=True)
                _write(leaf / "cgroup.procs", str(os.getpid()))
            _write(own / "cgroup.subtree_control", enable)
        _write(base / "cgroup.subtree_control", enable)
    except OSError as exc:
        raise CgroupsUnavailable(f"cgroup v2: cannot set up {base}: {exc.strerror or exc}") from exc
    return Cgroups(2, {name: base for name in wanted}, [base])


def sweep(server_prefix: str, cgroups: Cgroups) -> None:
    """Remove base cgroups of earlier servers that are gone (a janitor that was killed
    too): siblings named `<prefix><pid>` whose pid is not running."""
    from lamina.runtimes.cleanup import remove_tree

    for base in cgroups.base_dirs:
        parent = Path(base).parent
        with contextlib.suppress(OSError):
            for entry in parent.iterdir():
                name = entry.name
                if not name.startswith(server_prefix) or str(entry) == base:
                    continue
                pid = name[len(server_prefix) :]
                if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                    remove_tree(str(entry))

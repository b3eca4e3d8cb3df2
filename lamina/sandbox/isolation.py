"""Isolation backends: what contains an execution environment, chosen when the server starts.

  namespaces  each environment in PID, mount, IPC, UTS, cgroup and network namespaces of
              its own (network.py: a network of Lamina's, VPC subnets as networks), with a
              cgroup limiting its memory (MemorySize; an out-of-memory kill ends it as
              Runtime.OutOfMemory), its processes, its CPU weight and quota, frozen
              between invocations; /tmp on disk of EphemeralStorage size (disks.py); its
              code read-only at /var/task; nothing else of the host's files but its system
              directories, read-only; an unprivileged user under a seccomp filter
              (seccomp.py). Needs root (CAP_SYS_ADMIN) and cgroups with the memory and pids
              controllers. Namespaces, /tmp filesystems and inits (inits.py) are prepared
              ahead, off the cold start's path.
  process     the fallback: a plain process with rlimits (data size ≈ MemorySize, file size
              = EphemeralStorage, 1,024 descriptors, no core dumps).
  none        a plain process, nothing limited.

`auto` (the default) takes namespaces where the host allows them and says why not
otherwise (diagnosis.py: the checks `lamina doctor` prints). The child's side is
lamina/runtimes/isolate.py; an environment's sandbox is described to it by a JSON spec,
carried by `Launch.sandbox` through either launcher (forked by the fork server, or
spawned).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.sandbox import cgroups as cg
from lamina.sandbox import disks as dk
from lamina.sandbox import inits, launch, mounts, seccomp
from lamina.sandbox import network as net
from lamina.sandbox.diagnosis import GID, SERVER_PREFIX, UID, diagnose, interpreter_prefixes
from lamina.sandbox.launch import PYTHON_BOOTSTRAP, FunctionImage

log = logging.getLogger("lamina.sandbox")

CLEANUP = PYTHON_BOOTSTRAP.parent / "cleanup.py"  # the janitor
CHOICES = ("auto", "namespaces", "process", "none")
API_PORT = 9001  # the Runtime API's port inside a private network, as on Lambda
PIDS_MAX = 1024  # processes and threads per environment (Lambda's limit)
NOFILE = 1024  # descriptors per process (Lambda's limit)
# The process backend's RLIMIT_DATA: MemorySize on top of what a forked child has mapped,
# or this much more for a spawned interpreter's own start.
SPAWN_DATA_BASE = 32 * 1024 * 1024  # a spawned interpreter's own data, added to MemorySize

TASK_ROOT = Path("/var/task")


class IsolationUnavailable(Exception):
    """The isolation asked for cannot be had here (the message says why)."""


@dataclass(frozen=True)
class Options:
    """What the operator asked of the walls (`lamina serve` flags)."""

    api: tuple[str, int] = ("127.0.0.1", 9700)  # where Lamina's API listens on the host
    host_access: tuple[int, ...] = ()
    nat_subnets: frozenset[str] = frozenset()
    freeze: bool = True
    max_pids: int = 0
    max_memory_mb: int = 0
    scratch: Path = Path(".lamina")  # the data directory: /tmp images are made there
    dns: str = ""  # the resolver environments' DNS goes to (default: the host's)


@dataclass
class Sandbox:
    """One environment's share of its backend: what the launcher hands the child, what the
    environment reads back (peak memory, out of memory), what goes when it goes."""

    spec: dict[str, Any] | None  # for lamina/runtimes/isolate.py (None: a plain process)
    task_root: Path  # LAMBDA_TASK_ROOT and cwd, as the function sees it
    tmp_dir: Path  # TMPDIR, as the function sees it
    private_network: bool = False  # the Runtime API is served on a socket made inside
    cgroup: cg.Cgroup | None = None
    backend: Backend | None = None
    api_endpoint: str = ""  # Lamina's API as the environment reaches it (AWS_ENDPOINT_URL)
    xray_address: str = ""  # the X-Ray daemon endpoint as it reaches it
    lease: net.Lease | None = None  # its network namespace
    tmp: dk.Prepared | None = None  # its /tmp, until its init took it
    clones: mounts.Clones | None = None  # its code and such, until its init took them
    _oom_before: int = 0

    @property
    def namespaces(self) -> bool:
        return bool(self.spec and self.spec.get("root"))

    def runtime_api(self) -> str | None:
        """The Runtime API's address inside a private network (else None: Lamina's own)."""
        return f"127.0.0.1:{API_PORT}" if self.private_network else None

    def peak_memory_mb(self) -> int | None:
        if self.cgroup is None:
            return None
        return -(-self.cgroup.peak_bytes() // (1024 * 1024))

    def out_of_memory(self) -> bool:
        return self.cgroup is not None and self.cgroup.oom_kills() > self._oom_before

    @property
    def freezes(self) -> bool:
        """Whether it is frozen between invocations (a cgroup that can, no --no-freeze)."""
        return (
            self.cgroup is not None
            and self.cgroup.can_freeze
            and self.backend is not None
            and self.backend.options.freeze
        )

    def freeze(self) -> None:
        """Between invocations: the environment's processes stop (unless --no-freeze)."""
        if self.freezes:
            assert self.cgroup is not None
            try:
                self.cgroup.freeze(True)
            except OSError as exc:
                log.warning("cannot freeze %s: %s", self.cgroup.procs_files[0], exc)

    def thaw(self) -> None:
        if self.cgroup is not None and self.cgroup.frozen:
            self.cgroup.freeze(False)

    def initialised(self, memory_mb: int) -> None:
        """Init is over: from now on the CPU quota is MemorySize's share of a vCPU."""
        if self.cgroup is not None:
            self.cgroup.cpu_quota(memory_mb / cg.LAMBDA_MB_PER_VCPU)

    def started(self) -> None:
        """The environment's init is in its namespaces (or gone): drop what was handed over."""
        if self.lease is not None:
            self.lease.handed_over()
        if self.tmp is not None:
            self.tmp.close()
            self.tmp = None
        if self.clones is not None:
            self.clones.close()
            self.clones = None

    async def release(self) -> None:
        """Remove the environment's cgroup once its processes are gone (called after its
        init was reaped: the rest of its PID namespace is being killed by the kernel)."""
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None:
            await inits.remove_cgroup(cgroup)


@dataclass
class Backend:
    """An isolation backend: its name, why it was chosen, what it does not enforce."""

    name: str
    reason: str
    cannot: tuple[str, ...] = ()
    cgroups: cg.Cgroups | None = None
    binds: tuple[str, ...] = ()
    filter: seccomp.Filter | None = None
    network: net.Network | None = None
    disks: dk.Disks | None = None
    inits: inits.Inits | None = None  # prepared inits (with the fork server)
    options: Options = field(default_factory=Options)
    _janitor: subprocess.Popen[bytes] | None = None
    _janitor_pipe: int = -1
    _closed: bool = field(default=False)

    def describe(self) -> str:
        text = f"isolation: {self.name} ({self.reason})"
        if self.cannot:
            text += "; not enforced: " + "; ".join(self.cannot)
        return text

    def host_endpoints(self) -> tuple[str, str]:
        """Lamina's API and the X-Ray daemon as a process sharing the host's network sees them."""
        host, port = self.options.api
        if host in ("", "0.0.0.0", "localhost"):
            host = "127.0.0.1"
        return f"http://{host}:{port}", launch.xray_daemon_address

    async def prepare(self, env_id: str, image: FunctionImage, scratch: Path) -> Sandbox:
        """The sandbox of a new environment whose directory is `scratch` (made already)."""
        api, xray = self.host_endpoints()
        if self.name == "none":
            return Sandbox(
                None, image.code_dir, scratch / "tmp", backend=self, api_endpoint=api,
                xray_address=xray,
            )  # fmt: skip
        if self.name == "process":
            limits = {"FSIZE": image.ephemeral_mb * 1024 * 1024, "NOFILE": NOFILE, "CORE": 0}
            rlimits = {"rlimits": limits, "data": image.memory_mb * 1024 * 1024}
            return Sandbox(
                rlimits, image.code_dir, scratch / "tmp", backend=self, api_endpoint=api,
                xray_address=xray,
            )  # fmt: skip
        assert self.cgroups is not None
        _readable(image.code_dir)
        root = scratch / "root"
        root.mkdir(exist_ok=True)
        pool = self.inits
        suits = pool is not None and not image.vpc_subnets and pool.suits(image)
        prepared = await pool.take_soon() if pool is not None and suits else None
        lease = prepared.lease if prepared is not None else None
        if self.network is not None:
            subnet = sorted(image.vpc_subnets)[0] if image.vpc_subnets else None
            try:
                lease = lease or await self.network.take(subnet)
            except net.NetworkUnavailable as exc:
                raise OSError(f"no network namespace: {exc}") from exc
            xray_port = int(xray.rsplit(":", 1)[1])
            self.network.expose_udp(xray_port)
            api = self.network.api_endpoint()
            xray = f"{self.network.gateway}:{xray_port}"
        tmp = None
        clones = None
        binds = [*self.binds, *runtime_binds(image)]
        try:
            if self.disks is not None:
                try:
                    tmp = await self.disks.take(image.ephemeral_mb)
                except dk.DisksUnavailable as exc:
                    raise OSError(f"no /tmp: {exc}") from exc
            if prepared is not None:
                cgroup = prepared.cgroup
                cgroup.limit(image.memory_mb, PIDS_MAX)
                if pool is not None and pool.sandbox.get("pivot"):
                    clones = mounts.for_root(image.code_dir, image.opt_dir, binds, self.binds)
            else:
                cgroup = self.cgroups.create(env_id, image.memory_mb, PIDS_MAX)
        except BaseException:
            if prepared is not None and pool is not None:
                pool.discard(prepared)
            elif lease is not None:
                lease.release()
            if tmp is not None:
                tmp.close()
            if clones is not None:
                clones.close()
            raise
        spec: dict[str, Any] = {
            "root": str(root),
            "task": str(image.code_dir),
            "tmp_mb": image.ephemeral_mb,
            "binds": binds,
            "opt": str(image.opt_dir) if image.opt_dir else None,
            "files": self.network.files if self.network is not None else [],
            "net": True,
            "api_port": API_PORT,
            "cgroups": cgroup.procs_files,
            **self.runtime_user(),
        }
        if lease is not None:
            spec["netns"], spec["eth0"] = lease.path, lease.eth0
        if prepared is not None:
            spec["prepared"] = prepared.key  # its init did the cgroups and namespaces
        if tmp is not None:
            spec["tmp_mount"] = tmp.path
        if clones is not None:
            spec["clones"] = dict(zip(clones.targets, clones.paths, strict=True))
        return Sandbox(
            spec,
            TASK_ROOT,
            Path("/tmp"),
            private_network=True,
            cgroup=cgroup,
            backend=self,
            api_endpoint=api,
            xray_address=xray,
            lease=lease,
            tmp=tmp,
            clones=clones,
            _oom_before=cgroup.oom_kills(),
        )

    def runtime_user(self) -> dict[str, Any]:
        """What the runtime of every environment becomes (namespaces): the unprivileged
        user, its rlimits and seccomp filter; prepared inits fork theirs with it ahead."""
        found: dict[str, Any] = {"uid": UID, "gid": GID, "rlimits": {"NOFILE": NOFILE, "CORE": 0}}
        if self.filter is not None:
            found["seccomp"] = self.filter.program.hex()
        return found

    def start_janitor(self) -> None:
        """A process that removes the server's cgroups if the server dies without doing it
        (SIGKILL): it waits for the end of a pipe only this server holds."""
        if self.cgroups is None:
            return
        reader, writer = os.pipe()
        try:
            self._janitor = subprocess.Popen(
                [sys.executable, "-I", "-S", str(CLEANUP), str(reader), str(os.getpid()),
                 *self.cgroups.base_dirs],
                stdin=subprocess.DEVNULL,
                pass_fds=(reader,),
                close_fds=True,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            os.close(writer)
            log.warning("no janitor for cgroups (%s): a crash would leave them behind", exc)
            return
        finally:
            os.close(reader)
        os.set_inheritable(writer, False)
        self._janitor_pipe = writer

    def close(self) -> None:
        """After every environment is gone: remove the base cgroups, let the janitor go."""
        if self._closed:
            return
        self._closed = True
        if self.cgroups is not None:
            self.cgroups.close()
        if self.network is not None:
            self.network.close()
        if self.disks is not None:
            self.disks.close()
        if self._janitor_pipe >= 0:
            os.close(self._janitor_pipe)  # the janitor finds nothing left and exits
            self._janitor_pipe = -1
        if self._janitor is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._janitor.wait(1.0)


def _readable(code_dir: Path) -> None:
    """The unprivileged user must be able to enter the code directory (a staging directory
    is made 0700); the files in it are made readable by the extraction."""
    with contextlib.suppress(OSError):
        mode = code_dir.stat().st_mode
        if mode & 0o005 != 0o005:
            code_dir.chmod(mode | 0o755)


# Choosing -----------------------------------------------------------------------------------
PROCESS_CANNOT = (
    "Runtime.OutOfMemory (an allocation past ~MemorySize fails with MemoryError/ENOMEM "
    "instead, and Max Memory Used is the runtime process's own peak)",
    "a private /tmp of EphemeralStorage size (TMPDIR is a directory of its own; only one "
    "file is capped at that size)",
    "PID and mount namespaces: an environment can see other processes and files",
    "a network of its own: every function shares the host's network (its loopback, "
    "Lamina's ports, other environments' Runtime APIs), VPC or not; --host-access and "
    "--nat-subnet have no effect",
    "an unprivileged user (functions run as Lamina's user)",
    "a process limit (a fork bomb is not contained), CPU weight and quota, and ceilings for "
    "all environments together (--max-pids, --max-memory have no effect)",
    "killing processes that leave the environment's process group on timeout",
    "a seccomp filter (user namespaces, mount, keyctl, bpf, ptrace, ... stay allowed)",
    "freezing between invocations: background threads and daemons keep running",
)


def runtime_binds(image: FunctionImage) -> list[str]:
    """Host directories the function's interpreter needs (another Python's prefixes, a
    node's directory), shown read-only at the same paths."""
    if not image.interpreter:
        return []
    if image.runtime.startswith("nodejs"):
        return [str(Path(os.path.realpath(image.interpreter)).parent.parent)]
    return interpreter_prefixes(image.interpreter)


def choose(requested: str, python: str, options: Options | None = None) -> Backend:
    """The backend for `--isolation requested`; raise IsolationUnavailable when
    `namespaces` is asked for and cannot be had."""
    options = options or Options()
    if requested not in CHOICES:
        raise IsolationUnavailable(f"unknown isolation {requested!r} (one of {', '.join(CHOICES)})")
    if requested == "none":
        return Backend(
            "none", "asked for", cannot=("nothing is limited or isolated",), options=options
        )
    if requested == "process":
        return Backend("process", "asked for", cannot=PROCESS_CANNOT, options=options)
    found = diagnose(python, server=f"{SERVER_PREFIX}{os.getpid()}")
    if found.namespaces_ok:
        assert found.cgroups is not None
        cg.sweep(SERVER_PREFIX, found.cgroups)
        net.sweep()
        cgroups = found.cgroups
        default_pids, default_mb = cg.default_ceilings()
        max_pids = options.max_pids or default_pids
        max_mb = options.max_memory_mb or default_mb
        try:
            cgroups.ceilings(max_pids, max_mb)
        except OSError as exc:
            cgroups.close()
            raise IsolationUnavailable(f"cannot set the environments' ceilings: {exc}") from exc
        freezing = "frozen between invocations" if options.freeze else "not frozen (--no-freeze)"
        if options.freeze:
            cgroups.hold_freezer()
        if "freezer" not in cgroups.bases and cgroups.version == 1:
            freezing = "not frozen (no freezer hierarchy)"
        cannot: list[str] = [] if found.filter else ["a seccomp filter (no libseccomp here)"]
        network: net.Network | None = net.Network(
            options.api, options.host_access, options.nat_subnets, dns=options.dns
        )
        try:
            assert network is not None
            network.start()
            networks = (
                f"a network namespace each, on {network.block} (Lamina's API at "
                f"{network.api_endpoint()}, {net.HOSTS_NAME} ports "
                f"{','.join(map(str, options.host_access)) or 'none'})"
            )
        except (net.NetworkUnavailable, OSError) as exc:
            network = None
            networks = "a network namespace each, with no way out"
            cannot.append(f"networks with a way out ({exc}): every environment is offline")
        disks: dk.Disks | None = dk.Disks(options.scratch / "tmp-images")
        try:
            assert disks is not None
            disks.start()
            tmp = "/tmp on disk (ext4 of EphemeralStorage on a loop device each)"
        except dk.DisksUnavailable as exc:
            disks = None
            tmp = "/tmp in memory (tmpfs)"
            cannot.append(f"/tmp on disk ({exc}): /tmp is a tmpfs, its pages count as memory")
        reason = (
            f"cgroup v{cgroups.version} {', '.join(cgroups.controllers)}; {tmp}; all environments "
            f"together at most {max_pids} processes and {max_mb} MB; CPU quota MemorySize / "
            f"{cg.LAMBDA_MB_PER_VCPU} MB of a vCPU; {freezing}; pid, mount, ipc, uts, "
            f"cgroup namespaces; {networks}"
            + (f"; seccomp: {found.filter.describe()}" if found.filter else "")
        )
        backend = Backend(
            "namespaces",
            reason,
            cannot=tuple(cannot),
            cgroups=cgroups,
            binds=tuple(found.binds),
            filter=found.filter,
            network=network,
            disks=disks,
            options=options,
        )
        backend.start_janitor()
        return backend
    if found.cgroups is not None:
        found.cgroups.close()
    if requested == "namespaces":
        raise IsolationUnavailable(f"namespaces isolation is not available: {found.why_not}")
    return Backend("process", f"fallback: {found.why_not}", cannot=PROCESS_CANNOT, options=options)


_backend = Backend("none", "not chosen yet", cannot=("nothing is limited or isolated",))


def install(backend: Backend) -> Backend:
    global _backend
    previous, _backend = _backend, backend
    return previous


def current() -> Backend:
    return _backend

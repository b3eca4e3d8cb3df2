"""The inside of an isolated execution environment: namespaces, mounts, cgroups, user.

Standard library only, like python_bootstrap.py: it runs in the fork server's children
(imported as `isolate`) and as a program of its own for spawned environments, the probe of
`lamina doctor`. Lamina's side of it is lamina/sandbox/isolation.py.

An isolated environment is two processes in a PID namespace of its own:

  init (PID 1, root)   joins the environment's cgroups, takes new mount, IPC, UTS and
                       cgroup namespaces (and a network namespace for a VPC function),
                       builds the environment's root (below), says it is ready, forks the
                       runtime, reaps whatever is orphaned, and when the runtime exits
                       reports its exit status and exits, which makes the kernel kill
                       everything left in the namespace.
  runtime (PID 2)      drops to the unprivileged user (no capabilities, no new privileges,
                       rlimits), then runs Lamina's Python runtime (forked: the runtime is
                       already imported) or execs the command (spawned).

The root is a read-only tmpfs holding read-only binds of the host's system directories
(/usr, /etc, the interpreter's prefixes, the runtime's own directory), the function's code
read-only at /var/task, a private tmpfs /tmp of the function's ephemeral storage size, a
new /proc, a minimal /dev. Nothing else of the host is there: no data directory of Lamina,
no other function's code, no other environment's /tmp. Every mount lives in the
environment's mount namespace and goes with it.

The runtime is not PID 1, as on Lambda: PID 1 ignores signals it has no handler for, so a
function that kills itself would not die.

Spec (JSON, made by lamina/sandbox/isolation.py): cgroups (cgroup.procs files to join),
root (an empty directory to build the root on), task (the code), tmp_mb, binds (host paths
shown read-only at the same path), opt (the function's layers, read-only at /opt), files
([host file, path inside] pairs bound read-only over files there, e.g. /etc/hosts),
tmp_mount (a detached mount to move to /tmp, by path; else a tmpfs of tmp_mb), netns (a
network namespace to enter, by path; with eth0: [address, prefix length, gateway] to give
its interface) or net (bool: an empty network namespace), api_port,
uid, gid, rlimits ({"NOFILE": n, ...}), seccomp (a compiled filter, hex, installed last),
prepared (the key of an init the fork server started ahead, which did `early` already),
env and argv (spawned environments only). The process
backend's spec has only rlimits and data (bytes of RLIMIT_DATA on top of what is mapped).
"""

# ruff: noqa: SIM105 - contextlib costs a spawned environment's init its import time

from __future__ import annotations

# Few and light imports: a spawned environment pays for them at every cold start.
import _signal
import _socket
import ctypes
import errno
import fcntl
import marshal
import os
import resource
import struct
import sys

TYPE_CHECKING = False  # typing itself costs milliseconds to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Report = Callable[[int], None]  # told the runtime's exit status, before init exits
    Announce = Callable[["_socket.socket | None"], Report]  # told the setup is done

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2

# pivot_root has no libc wrapper: its system call number per architecture.
SYS_PIVOT_ROOT = {
    "x86_64": 155,
    "aarch64": 41,
    "riscv64": 41,
    "armv7l": 218,
    "i686": 217,
    "ppc64le": 203,
    "s390x": 217,
}

# The host's system directories an environment sees, read-only (merged-/usr symlinks are
# recreated as symlinks).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
DEVICES = ("null", "zero", "full", "random", "urandom")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


SYS_MOVE_MOUNT = 429  # one number on every architecture
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def move_mount(fd: int, target: str) -> None:
    """Attach the detached mount `fd` at `target`."""
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_MOVE_MOUNT), fd, b"", AT_FDCWD, target.encode(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ),
        f"move_mount {target}",
    )  # fmt: skip


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    machine = os.uname().machine
    number = SYS_PIVOT_ROOT.get(machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown architecture {machine}")
    _check(_libc.syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()), "pivot_root")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), "prctl")


# The PID namespace ------------------------------------------------------------------------
class PidNamespace:
    """Makes the next child of the calling thread PID 1 of a new PID namespace.

    unshare(CLONE_NEWPID) changes only where the caller's children go, and only once: the
    caller goes back to its own namespace with setns() right after the fork, so the next
    environment gets a new namespace again."""

    def __init__(self) -> None:
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def __enter__(self) -> None:
        self.caller = os.getpid()
        unshare(CLONE_NEWPID)

    def __exit__(self, *exc: object) -> None:
        if os.getpid() == self.caller:  # not in the child, which is in the new namespace
            setns(self.own, CLONE_NEWPID)

    def close(self) -> None:
        os.close(self.own)


# Init: the environment's PID 1 --------------------------------------------------------------
def early(spec: dict[str, Any]) -> tuple[_socket.socket | None, str]:
    """The part of an environment's setup that depends on no function: join its cgroups,
    enter its network namespace, take new mount, IPC, UTS and cgroup namespaces, make the
    Runtime API's listening socket of a private network (else None) and the base of the
    root (mounted on `spec["root"]`, returned). A prepared init
    (lamina/runtimes/fork_server.py) does this ahead of any cold start."""
    for path in spec.get("cgroups", ()):
        with open(str(path), "w") as procs:
            procs.write("0")
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    if spec.get("netns"):  # a namespace Lamina prepared, on one of its networks
        netns = os.open(str(spec["netns"]), os.O_RDONLY)
        try:
            setns(netns, CLONE_NEWNET)
        finally:
            os.close(netns)
    elif spec.get("net"):
        flags |= CLONE_NEWNET  # an empty one: no way out
    unshare(flags)
    api = None
    if spec.get("net"):
        api = _private_network(int(spec.get("api_port", 9001)), spec.get("eth0"))
    build_base(spec)
    if not spec.get("pivot"):
        return api, str(spec["root"])
    # A prepared init pivots now: detaching the host's root waits for an RCU grace period.
    # What the function brings comes later as clones, found through the host's /proc.
    global _host_proc
    _host_proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    _pivot(str(spec["root"]))
    return api, "/"


# A prepared init that pivoted ahead: the host's /proc, where Lamina's clones are found.
_host_proc = -1


def enter(
    spec: dict[str, Any],
    announce: Announce,
    keep: tuple[int, ...] = (),
    prepared: tuple[_socket.socket | None, str] | None = None,
    start: Callable[[], int] | None = None,
) -> None:
    """In a new process that is PID 1 of a new PID namespace, running as root: set the
    environment up, fork the runtime and return in it (as the unprivileged user, cwd
    /var/task). The init process never returns from here.

    `prepared`: `early()` was done already, with this result. `announce(api_socket)` is
    called once everything is in place (with the Runtime API's listening socket of a
    private network, else None); `report(code)` of its result is called with the
    runtime's exit status before init exits. Init keeps only the descriptors in `keep`
    (what `report` writes to). `start()`: let a runtime forked ahead go (its pid; 0 if
    there is none)."""
    api, root = early(spec) if prepared is None else prepared
    finish_root(spec, root)
    report = announce(api)
    if api is not None:
        api.close()  # Lamina has it now
    runtime = start() if start is not None else 0
    if not runtime:
        runtime = os.fork()
        if runtime == 0:
            become_user(spec)
            return
    _init(runtime, report, keep)


def _init(runtime: int, report: Report, keep: tuple[int, ...]) -> None:
    """PID 1: reap everything; when the runtime exits, report its status and go (the
    kernel then kills whatever is left in the namespace)."""
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # the output pipe closes when the runtime's last copy does
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2 and int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass
    for signum in (_signal.SIGCHLD, _signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(signum, _signal.SIG_DFL)  # PID 1: unkillable from inside
    try:
        _signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    code = 255
    try:
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == runtime:
                code = os.waitstatus_to_exitcode(status)
                break
    except ChildProcessError:
        pass
    try:
        report(code)
    finally:
        os._exit(0)


def _private_network(port: int, eth0: list[Any] | None = None) -> _socket.socket:
    """The new network namespace has a loopback interface, down: bring it up and listen on
    127.0.0.1:`port` there. The socket goes to Lamina, which serves the Runtime API on it.
    `eth0`: [address, prefix length, gateway] of the interface Lamina put in the namespace,
    addressed, brought up and made the default route here (ioctls: cheaper than netlink
    from Lamina's side)."""
    control = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        _up(control, b"lo")
        if eth0:
            address, prefixlen, gateway = str(eth0[0]), int(eth0[1]), str(eth0[2])
            mask = _socket.inet_ntoa(
                struct.pack(">I", (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF)
            )
            for request, value in ((SIOCSIFADDR, address), (SIOCSIFNETMASK, mask)):
                fcntl.ioctl(control, request, struct.pack("16s16s8x", b"eth0", _inet(value)))
            _up(control, b"eth0")
            anywhere = _inet("0.0.0.0")
            route = struct.pack(
                "@L16s16s16sHhLPhPLLH0L", 0, anywhere, _inet(gateway), anywhere,
                RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0,
            )  # fmt: skip
            try:
                fcntl.ioctl(control, SIOCADDRT, route)  # struct rtentry: the default route
            except FileExistsError:
                pass  # a prepared init killed before it was used had routed this namespace
    finally:
        control.close()
    api = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    api.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    api.bind(("127.0.0.1", port))
    api.listen(64)
    return api


def _up(control: _socket.socket, name: bytes) -> None:
    request = struct.pack("16sH22x", name, 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(control, SIOCGIFFLAGS, request))[1]
    fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack("16sH22x", name, flags | IFF_UP))


def _inet(address: str) -> bytes:
    """A struct sockaddr_in of `address` (port 0)."""
    return struct.pack("=HH4s8x", _socket.AF_INET, 0, _socket.inet_aton(address))


def _bind(source: str, target: str, flags: int = MS_NOSUID | MS_NODEV) -> None:
    mount(source, target, None, MS_BIND)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def build_root(spec: dict[str, Any]) -> None:
    """Mounts of the environment's filesystem, then pivot_root into it."""
    build_base(spec)
    finish_root(spec, str(spec["root"]))


def build_base(spec: dict[str, Any]) -> None:
    """What every environment's root has, on a read-only-to-be tmpfs at spec["root"]: the
    host's system directories, read-only; the network's files (/etc/hosts, ...); /proc;
    a minimal /dev."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing propagates back to the host
    root = str(spec["root"])
    mount("lamina", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for name in SYSTEM_DIRS:
        source = "/" + name
        if os.path.islink(source):
            os.symlink(os.readlink(source), f"{root}/{name}")
        elif os.path.isdir(source):
            os.mkdir(f"{root}/{name}")
            _bind(source, f"{root}/{name}")
    for name in ("var/task", "tmp", "proc", "dev", "opt"):
        os.makedirs(f"{root}/{name}", mode=0o755, exist_ok=True)
    _show(spec, root, late=False)
    for source, target in spec.get("files", ()):  # e.g. /etc/hosts of Lamina's network
        if os.path.isfile(root + target) and not os.path.islink(root + target):
            _bind(str(source), root + target)
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("dev", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name in DEVICES:
        target = f"{root}/dev/{name}"
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o666))
        mount(f"/dev/{name}", target, None, MS_BIND)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{name}")


def finish_root(spec: dict[str, Any], root: str) -> None:
    """The function's own part of the root built by build_base at `root`: its code, its
    layers, its /tmp, the interpreter's directories; then pivot_root into it (unless it
    was done ahead: `root` is "/", and those come as Lamina's clones)."""
    if root == "/":
        _finish_pivoted(spec)
        return
    _bind(str(spec["task"]), f"{root}/var/task")
    if spec.get("opt"):  # the function's layers, merged in order
        _bind(str(spec["opt"]), f"{root}/opt")
    if spec.get("tmp_mount"):  # a filesystem Lamina mounted for it, detached: move it here
        tmp = os.open(str(spec["tmp_mount"]), os.O_PATH | os.O_CLOEXEC)
        try:
            move_mount(tmp, f"{root}/tmp")
        finally:
            os.close(tmp)
    else:
        tmp_mb = int(spec.get("tmp_mb", 512))
        mount("tmp", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
    _show(spec, root, late=True)
    _pivot(root)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _pivot(root: str) -> None:
    os.chdir(root)
    pivot_root(".", ".")  # the old root ends up stacked on the new one
    umount(".", MNT_DETACH)
    os.chdir("/")
    mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)


def _finish_pivoted(spec: dict[str, Any]) -> None:
    """finish_root after the pivot: the code, the layers, /tmp and the directories the
    root has not are moved in from Lamina's clones (mounts.py), then the root is sealed."""
    clones = dict(spec.get("clones") or {})
    _move_in(clones.pop("/var/task"), "/var/task")
    if spec.get("opt"):
        _move_in(clones.pop("/opt"), "/opt")
    if spec.get("tmp_mount"):
        _move_in(str(spec["tmp_mount"]), "/tmp")
    else:
        tmp_mb = int(spec.get("tmp_mb", 512))
        mount("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
    _show(spec, "", late=True, clones=clones)
    global _host_proc
    os.close(_host_proc)
    _host_proc = -1
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _move_in(clone: str, target: str) -> None:
    """Attach a detached mount of Lamina's (`/proc/<lamina>/fd/<n>`) at `target`."""
    fd = os.open(clone.removeprefix("/proc/"), os.O_PATH | os.O_CLOEXEC, dir_fd=_host_proc)
    try:
        move_mount(fd, target)
    finally:
        os.close(fd)


def _show(
    spec: dict[str, Any], root: str, late: bool, clones: dict[str, str] | None = None
) -> None:
    """Host paths the runtime needs (interpreter, virtualenv, Lamina), read-only at the
    same paths. Bound with the root's base (so a prepared init does them ahead), except
    those under the host's /tmp: they come `late`, once the private /tmp is mounted, so
    a checkout or virtualenv there stays visible, bound into it, rather than hidden.
    `clones`: after a pivot, Lamina's clones of them (by the host's real path: the host's
    paths cannot be resolved here any more) rather than binds."""
    shown = [f"/{name}" for name in SYSTEM_DIRS if _real_dir(f"{root}/{name}")]
    if clones is not None:
        sources = sorted(clones)
    else:
        found = (os.path.realpath(str(path)) for path in spec.get("binds", ()))
        sources = sorted(path for path in found if os.path.isdir(path))
    for source in sources:
        if any(_within(source, seen) for seen in shown):
            continue
        if late and os.path.ismount(root + source):  # bound with the base
            shown.append(source)
            continue
        if not late and _within(source, "/tmp"):
            continue
        os.makedirs(root + source, mode=0o755, exist_ok=True)
        if clones is not None:
            _move_in(clones[source], source)
        else:
            _bind(source, root + source)
        shown.append(source)


def _real_dir(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def become_user(spec: dict[str, Any], cwd: str | None = "/var/task") -> None:
    """The runtime's side: rlimits, the unprivileged user, no way back to privileges
    (`cwd`: None in a runtime forked before its root was built: it goes there later)."""
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write("1000")  # out of memory: the runtime goes first, and so the environment
    except OSError:
        pass
    apply_rlimits(spec.get("rlimits") or {})
    uid, gid = int(spec["uid"]), int(spec["gid"])
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if cwd is not None:
        os.chdir(cwd)
    if spec.get("seccomp"):
        load_seccomp(bytes.fromhex(str(spec["seccomp"])))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))


def load_seccomp(program: bytes) -> None:
    """Install a compiled seccomp filter (BPF instructions of 8 bytes, as libseccomp
    exports them) on this process and whatever it starts. Needs no_new_privs."""
    fprog = _SockFprog(len(program) // 8, program)
    _check(
        _libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), 0, 0),
        "seccomp",
    )


def apply_rlimits(limits: dict[str, int]) -> None:
    """Set soft and hard limits ({"NOFILE": 1024, ...}), never above a hard limit."""
    for name, value in limits.items():
        which = getattr(resource, f"RLIMIT_{name}")
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def limit_data(extra: int) -> None:
    """RLIMIT_DATA at what this process has mapped now plus `extra` bytes: a forked child
    starts with its parent's mappings, so an absolute figure would not mean MemorySize."""
    apply_rlimits({"DATA": _mapped_data() + extra})


def _mapped_data() -> int:
    """VmData of this process, in bytes: what RLIMIT_DATA already counts."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmData:"):
                return int(line.split()[1]) * 1024
    return 0


# A spawned environment ----------------------------------------------------------------------
def spawned(channel_fd: int) -> None:
    """`isolate.py spawn FD`: Lamina started this process as PID 1 of a new PID namespace
    with a socket to it as FD, over which it sends the spec (marshal: no json to import);
    set up, then exec the runtime in PID 2. To Lamina: b"ready" (with the Runtime API's
    socket of a private network), later b"status <code>"."""
    prctl(PR_SET_PDEATHSIG, _signal.SIGKILL)
    channel = _socket.socket(fileno=channel_fd)
    spec = marshal.loads(channel.recv(1 << 20))

    def announce(api: _socket.socket | None) -> Report:
        # Fails (and so ends this process) if Lamina died before the death signal was set.
        rights = []
        if api is not None:
            rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", api.fileno()))]
        channel.sendmsg([b"ready"], rights)

        def report(code: int) -> None:
            try:
                channel.send(b"status %d" % code)
            except OSError:
                pass

        return report

    enter(spec, announce, keep=(channel.fileno(),))
    channel.close()
    argv = [str(arg) for arg in spec["argv"]]
    env = {str(k): str(v) for k, v in spec["env"].items()}
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        print(f"cannot start the runtime {argv[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        os._exit(127)


def main(argv: list[str]) -> None:
    command = argv[1] if len(argv) > 1 else ""
    if command == "spawn":
        spawned(int(argv[2]))
    else:
        print("usage: isolate.py spawn FD", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)

"""Detached read-only copies of host directories, for inits that pivoted ahead.

A prepared init (inits.py) builds its root and pivots into it before any cold start: the
detach of the host's root that follows waits for an RCU grace period (0.1 ms on a quiet
machine, tens of ms on a loaded one), which then is off the cold start's path. What the
function brings (its code, its layers, a directory of another runtime) is no longer a
path the init can bind from: Lamina clones each directory here (open_tree, read-only,
nosuid, nodev, as a bind would be) and the init moves the clone into its root through
`/proc/<lamina>/fd/<n>`, as it moves its /tmp (disks.py).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SYS_OPEN_TREE, SYS_MOUNT_SETATTR = 428, 442  # one number on every architecture
OPEN_TREE_CLONE = 1
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4

_libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def clone(path: str) -> int:
    """A detached, read-only copy of the mount of `path` (not its submounts, as a bind)."""
    fd = _syscall(
        SYS_OPEN_TREE, AT_FDCWD, os.fsencode(path), ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC)
    )
    try:
        attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
        _syscall(
            SYS_MOUNT_SETATTR, fd, b"", ctypes.c_uint(AT_EMPTY_PATH), ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        )  # fmt: skip
    except BaseException:
        os.close(fd)
        raise
    return fd


def available() -> bool:
    """Whether this kernel clones and sets read-only detached mounts (5.12 and later)."""
    try:
        os.close(clone("/"))
    except OSError:
        return False
    return True


@dataclass
class Clones:
    """One environment's clones, held until its init has moved them in."""

    fds: list[int] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # where each goes in the root

    def add(self, target: str, path: str) -> None:
        """A clone of `path`, to be shown at `target`."""
        self.fds.append(clone(path))
        self.targets.append(target)

    @property
    def paths(self) -> list[str]:
        """Where the init finds each clone."""
        return [f"/proc/{os.getpid()}/fd/{fd}" for fd in self.fds]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()
        self.targets.clear()


def for_root(code: Path, layers: Path | None, binds: Iterable[str], base: Iterable[str]) -> Clones:
    """For an init that pivoted ahead: clones of the function's code (/var/task), its
    layers (/opt) and the directories of `binds` its root has not (the server's own,
    `base`, are there, but for those under /tmp, which come after /tmp)."""
    there = {os.path.realpath(path) for path in base}
    there = {path for path in there if path != "/tmp" and not path.startswith("/tmp/")}
    clones = Clones()
    try:
        clones.add("/var/task", str(code))
        if layers is not None:
            clones.add("/opt", str(layers))
        for path in binds:
            real = os.path.realpath(path)
            if real not in there and real not in clones.targets and os.path.isdir(real):
                clones.add(real, real)
    except BaseException:
        clones.close()
        raise
    return clones

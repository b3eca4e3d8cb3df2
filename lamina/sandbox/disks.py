"""Disk-backed /tmp: EphemeralStorage bytes of disk per environment, not of memory.

Each environment's /tmp is an ext4 filesystem of its own on a loop device over a sparse
file, so a write past the size fails with ENOSPC, its pages are page cache (reclaimable,
written back to disk) rather than memory a tmpfs would pin, and it goes with the
environment. Made ahead, on a thread, so a cold start only attaches it:

  - once per size (and host: kept in /var/tmp/lamina-templates), a template: mkfs.ext4
    of a sparse file (no journal, no reserved blocks), sized so that the free space is
    the size asked for, its root made 1777;
  - per environment: a sparse copy of the template, a loop device on it (autoclear,
    direct I/O), the filesystem mounted *detached* (fsopen / fsmount: in no mount
    namespace) and the file unlinked. The environment's init moves that mount to its
    /tmp (move_mount of /proc/<lamina>/fd/<n>); when the environment's mount namespace
    goes, so do the mount, the loop device and the file's blocks. Nothing is left to
    clean up but what is being prepared (a server killed then leaves files in
    `<data>/tmp-images`, removed at the next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import shutil
import struct
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("lamina.sandbox")

MB = 1024 * 1024
POOL = 4  # prepared filesystems of the default size (512 MB)
DEFAULT_MB = 512
RETRY_S = 1.0  # after a failure, the pool is refilled again this much later
REFILL_DELAY_S = 0.05  # a pool not empty yet is refilled after this pause
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16
# The new mount API's system calls: one number on every architecture.
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x2, 0x4
TEMPLATES = Path("/var/tmp/lamina-templates")  # empty filesystems, per size, for copying
TEMPLATE_VERSION = "1"  # of MKFS's options below
MKFS = ("mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-i", "32768",
        "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard", "-L", "lamina-tmp")  # fmt: skip

_libc = ctypes.CDLL(None, use_errno=True)


class DisksUnavailable(Exception):
    """Disk-backed /tmp cannot be had here (the message says why)."""


@dataclass
class Prepared:
    """A detached, mounted filesystem for one environment: its init moves `path`."""

    size_mb: int
    fd: int

    @property
    def path(self) -> str:
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class _Size:
    size_mb: int
    target: int
    template: Path | None = None
    ready: deque[Prepared] = field(default_factory=deque)


class Disks:
    """This server's disk-backed /tmp filesystems, prepared on a thread of its own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sizes: dict[int, _Size] = {}
        self._lock = threading.Condition()
        self._waiters: deque[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[Prepared]]]
        self._waiters = deque()
        self._closed = False
        self._deferred = False
        self._thread: threading.Thread | None = None
        self._counter = 0

    def start(self) -> None:
        """Check that it can work here (one filesystem made and mounted); raise
        DisksUnavailable."""
        if shutil.which("mkfs.ext4") is None:
            raise DisksUnavailable("mkfs.ext4 (e2fsprogs) is not installed")
        if not os.path.exists("/dev/loop-control"):
            raise DisksUnavailable("no loop devices (/dev/loop-control)")
        shutil.rmtree(self.directory, ignore_errors=True)  # a killed server's leftovers
        self.directory.mkdir(parents=True, exist_ok=True)
        size = self._sizes[DEFAULT_MB] = _Size(DEFAULT_MB, POOL)
        try:
            size.ready.append(self._prepare(size))
        except (OSError, subprocess.SubprocessError) as exc:
            raise DisksUnavailable(f"cannot mount a loop device's ext4: {exc}") from exc
        self._thread = threading.Thread(target=self._loop, name="lamina-disks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        for size in self._sizes.values():
            while size.ready:
                size.ready.popleft().close()
        shutil.rmtree(self.directory, ignore_errors=True)

    async def take(self, size_mb: int) -> Prepared:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prepared] = loop.create_future()
        with self._lock:
            if self._closed:
                raise DisksUnavailable("the server is stopping")
            size = self._sizes.get(size_mb)
            if size is not None and size.ready:
                prepared = size.ready.popleft()
                self._lock.notify_all()
                return prepared
            self._waiters.append((size_mb, loop, future))
            self._lock.notify_all()
        return await future

    def _refill_later(self) -> bool:
        """A pool that is short but not empty is refilled a little later (called locked),
        so that the cold start that took from it is not slowed by its refill."""
        size = self._wanting()
        if size is None or not size.ready or self._deferred:
            self._deferred = False
            return False
        self._deferred = True  # once: the next turn refills
        self._lock.wait(REFILL_DELAY_S)
        return True

    def _wanting(self) -> _Size | None:
        for size in self._sizes.values():
            if len(size.ready) < size.target:
                return size
        return None

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._waiters and not self._wanting():
                    self._lock.wait()
                if self._closed:
                    break
                if not self._waiters and self._refill_later():
                    continue
                waiter = self._waiters.popleft() if self._waiters else None
                if waiter is not None:
                    size = self._sizes.setdefault(waiter[0], _Size(waiter[0], 0))
                else:
                    size = self._wanting()  # type: ignore[assignment]
            try:
                prepared = self._prepare(size)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("could not prepare a /tmp of %d MB: %s", size.size_mb, exc)
                if waiter is not None:
                    _settle(waiter[1], waiter[2], exc)
                else:
                    with self._lock:  # refilling the pool: try again later, not at once
                        self._lock.wait(RETRY_S)
                continue
            if waiter is not None:
                _settle(waiter[1], waiter[2], prepared)
            else:
                with self._lock:
                    size.ready.append(prepared)
        for _, loop, future in self._waiters:
            _settle(loop, future, DisksUnavailable("the server is stopping"))

    # Making one ---------------------------------------------------------------------------
    def _prepare(self, size: _Size) -> Prepared:
        if size.template is None:
            size.template = self._template(size.size_mb)
        self._counter += 1
        image = self.directory / f"{self._counter}.img"
        try:
            _sparse_copy(size.template, image)
            device = _attach(image)
        finally:
            with contextlib.suppress(OSError):
                image.unlink()  # the loop device holds it now
        try:
            return Prepared(size.size_mb, _mount(device))
        finally:
            os.close(device)

    def _template(self, size_mb: int) -> Path:
        """An empty filesystem whose free space is `size_mb`, root 1777 (made twice: the
        first one measures what the filesystem's own structures take). Kept for every
        server of this host in TEMPLATES: they are only ever copied."""
        cached = TEMPLATES / f"ext4-{size_mb}-{TEMPLATE_VERSION}.img"
        if cached.is_file():
            return cached
        path = self.directory / f"template-{size_mb}.img"
        overhead = size_mb * MB // 50 + 4 * MB
        for _ in range(3):
            free = self._format(path, size_mb * MB + overhead)
            if abs(free - size_mb * MB) < MB:
                break
            overhead += size_mb * MB - free
        with contextlib.suppress(OSError):
            TEMPLATES.mkdir(parents=True, exist_ok=True)
            os.replace(path, cached)  # atomic: another server may be making it too
            return cached
        return path

    def _format(self, path: Path, size: int) -> int:
        size -= size % 4096
        with open(path, "wb") as image:
            image.truncate(size)
        subprocess.run([*MKFS, str(path)], check=True, capture_output=True, timeout=120)
        device = _attach(path)
        try:
            mounted = _mount(device)
        finally:
            os.close(device)
        try:
            os.chmod(f"/proc/self/fd/{mounted}", 0o1777)
            found = os.fstatvfs(mounted)
            return found.f_bavail * found.f_frsize
        finally:
            os.close(mounted)


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Prepared], value: Any) -> None:
    def settle() -> None:
        if future.done():
            if isinstance(value, Prepared):
                value.close()
            return
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)

    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


def _sparse_copy(source: Path, target: Path) -> None:
    """Copy only the data of a sparse file (its holes stay holes)."""
    with open(source, "rb") as src, open(target, "wb") as out:
        end = os.fstat(src.fileno()).st_size
        out.truncate(end)
        position = 0
        while position < end:
            try:
                data = os.lseek(src.fileno(), position, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole is left
                    break
                raise
            hole = os.lseek(src.fileno(), data, os.SEEK_HOLE)
            offset = data
            while offset < hole:
                offset += os.copy_file_range(
                    src.fileno(), out.fileno(), hole - offset, offset, offset
                )
            position = hole


def _attach(image: Path) -> int:
    """A loop device over `image` (autoclear: it goes when its last user does); its fd."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            device = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
            backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
            flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO
            info = struct.pack(
                "=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0
            )  # struct loop_info64: only lo_flags
            config = struct.pack("=II", backing, 4096) + info + bytes(64)
            try:
                fcntl.ioctl(device, LOOP_CONFIGURE, config)
            except OSError as exc:
                os.close(device)
                if exc.errno == errno.EBUSY:  # another process took it first
                    continue
                raise
            finally:
                os.close(backing)
            return device
    finally:
        os.close(control)
    raise OSError(errno.EBUSY, "no free loop device")


def _syscall(number: int, *args: Any) -> int:
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _mount(device: int) -> int:
    """Mount the ext4 on the loop device `device`, detached; the mount's fd."""
    source = os.readlink(f"/proc/self/fd/{device}").encode()  # /dev/loopN
    fs = _syscall(SYS_FSOPEN, b"ext4", ctypes.c_uint(1))  # FSOPEN_CLOEXEC
    try:
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_STRING, b"source", source, 0)
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_SET_FLAG, b"noinit_itable", None, 0)
        _syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0)
        return _syscall(SYS_FSMOUNT, fs, ctypes.c_uint(1), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    finally:
        os.close(fs)

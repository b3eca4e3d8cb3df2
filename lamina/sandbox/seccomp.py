"""The system calls a function may not make: a seccomp filter, compiled once per server by
libseccomp (through pyseccomp, a ctypes binding with the API of libseccomp's own Python
bindings) and installed by each environment's runtime just before the function's code
runs (lamina/runtimes/isolate.py loads the compiled program: no library inside).

Modelled on Docker's default profile, as a list of refusals (everything else is
allowed): namespaces (unshare and clone with a namespace flag, setns), mounts and
pivot_root, the kernel keyring, bpf, perf events, ptrace and reading or writing another
process's memory, kernel modules, kexec, reboot, swap, the kernel log, userfaultfd, file
handles, io_uring, setting the clock, accounting and quotas. A refused call fails with EPERM; it
never kills. clone3 answers ENOSYS, as under Docker: its flags are in memory a filter
cannot read, and libc falls back to clone, whose flags it can.

The filter covers the native architecture and, on x86-64, the i386 and x32 system call
tables too, so a function cannot step around it through another ABI.
"""

from __future__ import annotations

import ctypes
import errno
import tempfile
from dataclasses import dataclass

# Namespace flags of clone and unshare (CLONE_NEW*), any one of which is refused.
NAMESPACE_FLAGS = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

REFUSED = (
    # namespaces and the filesystem tree
    "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "mount_setattr",
    "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    # the kernel keyring
    "keyctl", "add_key", "request_key",
    # tracing, other processes' memory, kernel programs and events
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "bpf", "perf_event_open",
    "userfaultfd", "fanotify_init", "lookup_dcookie",
    # the kernel itself
    "init_module", "finit_module", "delete_module", "create_module", "query_module",
    "get_kernel_syms", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
    "syslog", "acct", "quotactl", "quotactl_fd", "nfsservctl", "_sysctl", "sysfs", "ustat",
    "uselib", "vhangup", "iopl", "ioperm", "pciconfig_read", "pciconfig_write",
    "pciconfig_iobase", "vm86", "vm86old",
    # file handles (open_by_handle_at reads any file of a mounted filesystem)
    "open_by_handle_at", "name_to_handle_at",
    # setting the clock
    "settimeofday", "stime", "clock_settime", "clock_settime64",
    # io_uring runs system calls the filter does not see
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip
NAMESPACE_CALLS = ("unshare", "clone")  # refused only with a namespace flag
ENOSYS_CALLS = ("clone3",)


@dataclass(frozen=True)
class Filter:
    """A compiled filter: the BPF program, and what it refuses (for `lamina doctor`)."""

    program: bytes
    refused: tuple[str, ...]
    library: str

    def describe(self) -> str:
        return (
            f"{len(self.refused)} system calls refused with EPERM, unshare and clone with a "
            f"namespace flag too, clone3 with ENOSYS ({self.library})"
        )


class SeccompUnavailable(Exception):
    """No filter can be built here (the message says why)."""


def build() -> Filter:
    """Compile the filter for this machine's architecture; raise SeccompUnavailable."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:  # OSError: libseccomp itself is missing
        raise SeccompUnavailable(f"no libseccomp binding: {exc}") from exc
    try:
        refuse = seccomp.ERRNO(errno.EPERM)
        flt = seccomp.SyscallFilter(seccomp.ALLOW)
        native = seccomp.system_arch()
        if native == seccomp.Arch.X86_64:
            for arch in (seccomp.Arch.X86, seccomp.Arch.X32):
                if not flt.exist_arch(arch):
                    flt.add_arch(arch)
        refused: list[str] = []
        for name in REFUSED:
            try:
                flt.add_rule(refuse, name)
            except (OSError, ValueError, RuntimeError):
                continue  # no such call on this architecture
            refused.append(name)
        for name in NAMESPACE_CALLS:
            for flag in NAMESPACE_FLAGS.values():
                flt.add_rule(refuse, name, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        for name in ENOSYS_CALLS:
            try:
                flt.add_rule(seccomp.ERRNO(errno.ENOSYS), name)
            except (OSError, ValueError, RuntimeError):
                continue
        with tempfile.TemporaryFile() as out:
            flt.export_bpf(out)
            out.seek(0)
            program = out.read()
        version = ".".join(str(part) for part in _library_version(seccomp))
    except (OSError, ValueError, RuntimeError, AttributeError) as exc:
        raise SeccompUnavailable(f"libseccomp could not build the filter: {exc}") from exc
    if not program or len(program) % 8:
        raise SeccompUnavailable("libseccomp exported no filter")
    return Filter(program, tuple(refused), f"libseccomp {version} through pyseccomp")


def _library_version(seccomp: object) -> tuple[int, ...]:
    """libseccomp's own version (seccomp_version(): major, minor, micro)."""
    version = getattr(getattr(seccomp, "_libseccomp", None), "seccomp_version", None)
    if version is None:
        return ()
    version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    found = version()
    return tuple(found.contents) if found else ()

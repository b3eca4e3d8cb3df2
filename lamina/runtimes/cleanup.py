"""What a Lamina server leaves behind, removed: its cgroups (killing and thawing what is
still in them) and its networks (nftables tables, bridges, /run/lamina-<pid>).

Standard library only, like isolate.py: it is the janitor, a program of its own
(`cleanup.py FD PID DIR...`) that outlives the server that started it, to clean up after
it even when it dies of SIGKILL.
"""

# ruff: noqa: SIM105 - like isolate.py, few imports

from __future__ import annotations

import _signal
import os
import sys


def janitor(watch_fd: int, server: int, directories: list[str], patience_s: float = 3.0) -> None:
    """`cleanup.py FD PID DIR...`: wait until Lamina (pid `server`) closes `watch_fd` (at its end,
    or when it dies, even of SIGKILL), then remove the cgroup directories and the networks
    it left: the environments' processes die of their parent-death signals; once a cgroup
    is empty it can go."""
    import time

    try:
        os.setsid()
    except OSError:
        pass
    for signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(signum, _signal.SIG_IGN)  # Lamina's end is EOF, not a signal
    while True:
        try:
            if not os.read(watch_fd, 64):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    remove_network(server)
    deadline = time.monotonic() + patience_s
    pending = list(directories)
    while pending:
        pending = [base for base in pending if not remove_tree(base)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.02)


def remove_tree(base: str) -> bool:
    """Remove a cgroup directory and the cgroups in it, deepest first, killing processes
    still in them. True when `base` is gone."""
    if not os.path.isdir(base):
        return True
    for current, _, _ in os.walk(base, topdown=False):
        for pid in _members(current):
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass
        for name, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:  # a frozen process dies only once thawed (cgroup v1)
                with open(os.path.join(current, name), "w") as state:
                    state.write(thawed)
            except OSError:
                pass
        try:
            os.rmdir(current)
        except OSError:
            pass
    return not os.path.isdir(base)


def _network_links(pid: int | None = None) -> dict[str, int]:
    """Links a Lamina server made (bridges lm<pid>d / lm<pid>s<k>, veths lm<pid>v<n> and
    lm<pid>w<n>) →
    that server's pid; only `pid`'s when given."""
    found = {}
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return {}
    for name in names:
        if not name.startswith("lm"):
            continue
        number = ""
        for char in name[2:]:
            if not char.isdigit():
                break
            number += char
        rest = name[2 + len(number) :]
        if number and rest[:1] in ("d", "s", "v", "w") and (pid is None or int(number) == pid):
            found[name] = int(number)
    return found


def remove_network(pid: int) -> None:
    """Remove the nftables tables and the bridges of the server `pid` (its veths go with
    their namespaces; a veth still here goes with its bridge's removal or on its own)."""
    import subprocess

    for family in ("inet", "bridge"):
        try:
            subprocess.run(
                ["nft", "delete", "table", family, f"lamina_{pid}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, timeout=20, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            pass
    import shutil

    shutil.rmtree(f"/run/lamina-{pid}", ignore_errors=True)  # its /etc/hosts and resolv.conf
    links = sorted(_network_links(pid), key=lambda name: name[2 + len(str(pid))] not in "vw")
    for name in links:  # veths first, then the bridges
        try:
            subprocess.run(
                ["ip", "link", "delete", name], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            pass


def stale_network_pids() -> set[int]:
    """Servers whose networks are still here though they are gone."""
    import subprocess

    pids = set(_network_links().values())
    try:
        tables = subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        tables = ""
    for line in tables.splitlines():
        name = line.split()[-1] if line.startswith("table ") else ""
        if name.startswith("lamina_") and name[7:].isdigit():
            pids.add(int(name[7:]))
    try:
        runs = os.listdir("/run")
    except OSError:
        runs = []
    pids.update(int(name[7:]) for name in runs if name.startswith("lamina-") and name[7:].isdigit())
    return {pid for pid in pids if not os.path.exists(f"/proc/{pid}")}


def _members(directory: str) -> list[int]:
    try:
        with open(os.path.join(directory, "cgroup.procs")) as procs:
            return [int(line) for line in procs if line.strip()]
    except (OSError, ValueError):
        return []


if __name__ == "__main__":
    janitor(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])

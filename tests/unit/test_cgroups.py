"""cgroup v1 and v2 layouts, on a directory tree that stands in for /sys/fs/cgroup (this
machine mounts v1 controllers, so v2 is checked here on a stand-in; the real v1 runs in
tests/e2e/test_isolation.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lamina.sandbox import cgroups as cg

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_CGROUP = """\
8:pids:/
4:memory:/svc/abc
1:cpu,cpuacct:/
0::/
"""
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_CGROUP = "0::/system.slice/lamina.service\n"


def test_parsing() -> None:
    mounts = cg._mounts(V1_MOUNTINFO)
    assert [(m.version, str(m.path), sorted(m.controllers)) for m in mounts] == [
        (1, "/sys/fs/cgroup/cpu,cpuacct", ["cpu"]),
        (1, "/sys/fs/cgroup/memory", ["memory"]),
        (1, "/sys/fs/cgroup/pids", ["pids"]),
        (2, "/sys/fs/cgroup/unified", []),
    ]
    assert cg._own_paths(V1_CGROUP) == {"pids": "/", "memory": "/svc/abc", "cpu": "/", "": "/"}


def test_v1_a_directory_per_controller(tmp_path: Path) -> None:
    for directory in ("cpu,cpuacct", "memory/svc/abc", "pids", "unified"):
        (tmp_path / "sys/fs/cgroup" / directory).mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified/cgroup.controllers").write_text("hugetlb\n")
    tree = cg.open_cgroups(
        "lamina-1", fs_root=tmp_path, mountinfo=V1_MOUNTINFO, proc_cgroup=V1_CGROUP
    )
    root = tmp_path / "sys/fs/cgroup"
    assert tree.version == 1
    assert tree.bases == {
        "memory": root / "memory/svc/abc/lamina-1",
        "pids": root / "pids/lamina-1",
        "cpu": root / "cpu,cpuacct/lamina-1",
    }
    env = tree.create("env", memory_mb=256, pids=1024)
    assert sorted(env.procs_files) == sorted(
        str(base / "env" / "cgroup.procs") for base in tree.bases.values()
    )
    memory = root / "memory/svc/abc/lamina-1/env"
    assert (memory / "memory.limit_in_bytes").read_text() == str(256 * 1024 * 1024)
    assert (root / "pids/lamina-1/env/pids.max").read_text() == "1024"
    assert (root / "cpu,cpuacct/lamina-1/env/cpu.shares").read_text() == "148"  # 256/1769
    (memory / "memory.max_usage_in_bytes").write_text(str(100 * 1024 * 1024 + 1))
    (memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert env.peak_bytes() == 100 * 1024 * 1024 + 1
    assert env.oom_kills() == 2


def _v2_tree(tmp_path: Path, members: str) -> Path:
    own = tmp_path / "sys/fs/cgroup/system.slice/lamina.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own / "cgroup.subtree_control").write_text("\n")
    (own / "cgroup.procs").write_text(members)
    return own


def test_v2_moves_lamina_into_a_leaf_and_enables_controllers(tmp_path: Path) -> None:
    own = _v2_tree(tmp_path, f"{os.getpid()}\n")
    tree = cg.open_cgroups(
        "lamina-7", fs_root=tmp_path, mountinfo=V2_MOUNTINFO, proc_cgroup=V2_CGROUP
    )
    base = own / "lamina-7"
    assert tree.version == 2 and set(tree.bases.values()) == {base}
    assert (base / "lamina" / "cgroup.procs").read_text() == str(os.getpid())
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    env = tree.create("env", memory_mb=1769, pids=1024)
    assert env.procs_files == [str(base / "env" / "cgroup.procs")]
    assert (base / "env/memory.max").read_text() == str(1769 * 1024 * 1024)
    assert (base / "env/memory.swap.max").read_text() == "0"
    assert (base / "env/memory.oom.group").read_text() == "1"
    assert (base / "env/pids.max").read_text() == "1024"
    assert (base / "env/cpu.weight").read_text() == "100"  # one vCPU's worth
    (base / "env/memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert env.oom_kills() == 1
    tree.hold_freezer()  # v2's cgroup.freeze switches nothing on: no cgroup is held
    assert not (base / cg.HELD_FROZEN).exists()


def test_v2_refuses_a_cgroup_shared_with_other_processes(tmp_path: Path) -> None:
    _v2_tree(tmp_path, f"{os.getpid()}\n1\n")
    with pytest.raises(cg.CgroupsUnavailable, match="holds other processes than Lamina"):
        cg.open_cgroups("lamina-7", fs_root=tmp_path, mountinfo=V2_MOUNTINFO, proc_cgroup=V2_CGROUP)


def test_no_controllers_says_why(tmp_path: Path) -> None:
    own = _v2_tree(tmp_path, "")
    (own / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(cg.CgroupsUnavailable) as raised:
        cg.open_cgroups("lamina-7", fs_root=tmp_path, mountinfo=V2_MOUNTINFO, proc_cgroup=V2_CGROUP)
    assert "cgroup v2: memory, pids not delegated" in str(raised.value)
    assert "cgroup v1: no memory or pids hierarchy mounted" in str(raised.value)


def test_quota_freezing_and_ceilings_v1(tmp_path: Path) -> None:
    mountinfo = V1_MOUNTINFO + (
        "42 31 0:39 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    )
    for directory in ("cpu,cpuacct", "memory/svc/abc", "pids", "freezer", "unified"):
        (tmp_path / "sys/fs/cgroup" / directory).mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/unified/cgroup.controllers").write_text("\n")
    tree = cg.open_cgroups(
        "lamina-3", fs_root=tmp_path, mountinfo=mountinfo, proc_cgroup=V1_CGROUP + "9:freezer:/\n"
    )
    root = tmp_path / "sys/fs/cgroup"
    tree.ceilings(pids=5000, memory_mb=2048)
    assert (root / "pids/lamina-3/pids.max").read_text() == "5000"
    assert (root / "memory/svc/abc/lamina-3/memory.limit_in_bytes").read_text() == str(2**31)
    env = tree.create("env", memory_mb=128, pids=1024)
    cpu = root / "cpu,cpuacct/lamina-3/env"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "100000"  # init: a whole vCPU
    env.cpu_quota(128 / cg.LAMBDA_MB_PER_VCPU)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "7236"  # then 128 MB's share
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    state = root / "freezer/lamina-3/env/freezer.state"
    state.write_text("THAWED")
    assert env.can_freeze
    env.freeze(True)
    assert state.read_text() == "FROZEN" and env.frozen
    env.freeze(False)
    assert state.read_text() == "THAWED" and not env.frozen
    # An empty cgroup held frozen keeps the kernel's freezer switched on between freezes.
    tree.hold_freezer()
    assert (root / "freezer/lamina-3" / cg.HELD_FROZEN / "freezer.state").read_text() == "FROZEN"


def test_default_ceilings_leave_the_host_room() -> None:
    pids, memory_mb = cg.default_ceilings()
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert pids == max(1024, pid_max // 2)
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    assert total_mb - 4096 - 64 <= memory_mb < total_mb

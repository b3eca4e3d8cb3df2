"""Isolation (issue 7): each item of the namespaces backend, on both launch paths (forked
from the fork server and spawned), the neighbour test, clean-up, and the same suite
against the fallback backend (`--isolation process`) with the checks it can honour.

These run as root here and are never skipped on this machine: a server asked for
`--isolation namespaces` refuses to start where it cannot have them.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.sandbox.isolation import PROCESS_CANNOT
from tests.helpers import (
    ROLE,
    Server,
    alive,
    command_line,
    descendants,
    make_zip,
    python_function,
)

LAMINA_UID = 993

VIEW = """
import errno, os, socket

def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def handler(event, context):
    others = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    others.append(cmdline.read().replace(b"\\0", b" ").decode())
            except OSError:
                pass
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "pid": os.getpid(),
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "cwd": os.getcwd(),
        "tmpdir": os.environ["TMPDIR"],
        "api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "pids": sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit()),
        "commands": others,
        "code": open("/var/task/app.py").read()[:20] if os.path.exists("/var/task/app.py") else "",
        "write_task": attempt(lambda: open(os.environ["LAMBDA_TASK_ROOT"] + "/new.txt", "w")),
        "write_root": attempt(lambda: open("/new.txt", "w")),
        "data_dir": attempt(lambda: os.listdir(event["data_dir"])),
        "other_code": attempt(lambda: open(event["other_code"]).read()),
        "interfaces": [name for _, name in socket.if_nameindex()],
        "tmp_size_mb": os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize // 2**20,
    }
"""

SLEEPER = """
import subprocess

children = []

def handler(event, context):
    children.append(subprocess.Popen(["sleep", event["sleep"]]))
    return "started"
"""

TMP = """
import os, tempfile, time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    path = os.path.join(tempfile.gettempdir(), "marker")
    found = open(path).read() if os.path.exists(path) else None
    if "write" in event:
        with open(path, "w") as out:
            out.write(event["write"])
    return {"found": found, "tmpdir": tempfile.gettempdir(),
            "log_stream": context.log_stream_name}
"""

FILL_TMP = """
import errno, os, tempfile

def handler(event, context):
    path = os.path.join(tempfile.gettempdir(), "fill")
    chunk = b"x" * 1024 * 1024
    written = 0
    failure = None
    try:
        with open(path, "wb") as out:
            for _ in range(event["limit_mb"]):
                out.write(chunk)
                out.flush()
                written += 1
    except OSError as exc:
        failure = errno.errorcode.get(exc.errno)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return {"written_mb": written, "error": failure}
"""

HOG = """
def handler(event, context):
    if event.get("hog"):
        hoard = []
        for _ in range(event["hog"]):
            hoard.append(bytearray(1024 * 1024))
        return {"held_mb": len(hoard)}
    return "fine"
"""

HOLD = """
held = []

def handler(event, context):
    held.append(bytearray(event["mb"] * 1024 * 1024))
    return "holding"
"""

FORKS = """
import errno, os, time

def handler(event, context):
    forked, failure = 0, None
    for _ in range(event["at_most"]):
        try:
            pid = os.fork()
        except OSError as exc:
            failure = errno.errorcode.get(exc.errno)
            break
        if pid == 0:
            try:
                os.execv("/bin/sleep", ["sleep", str(event["sleep"])])
            finally:
                os._exit(0)
        forked += 1
    return {"forked": forked, "error": failure}
"""

BOMB = """
import os

def handler(event, context):
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""

SPIN = """
import os, subprocess, time

def handler(event, context):
    if event.get("escape"):
        # A grandchild in a session of its own, out of the process group.
        subprocess.Popen(["setsid", "sh", "-c", f"sleep {event['escape']} & exit 0"])
    workers = []
    for _ in range(event.get("processes", 1) - 1):
        pid = os.fork()
        if pid == 0:
            deadline = time.monotonic() + event["seconds"]
            while time.monotonic() < deadline:
                pass
            os._exit(0)
        workers.append(pid)
    deadline = time.monotonic() + event["seconds"]
    while time.monotonic() < deadline:
        pass
    return "spun"
"""

CONNECT = """
import socket

def handler(event, context):
    try:
        with socket.create_connection(("127.0.0.1", event["port"]), timeout=2) as sock:
            sock.sendall(b"hello")
        return "connected"
    except OSError as exc:
        return f"refused: {type(exc).__name__}"
"""

FLOOD = """
def handler(event, context):
    line = "z" * 999
    for _ in range(event["lines"]):
        print(line)
    print("the last line")
    return "flooded"
"""

QUIET = "def handler(event, context):\n    return 1\n"

BOOTSTRAP = r"""#!/bin/sh
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
  curl -sS -D /tmp/headers -o /tmp/event "$API/invocation/next"
  ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' /tmp/headers | cut -d' ' -f2 | tr -d '\r')
  printf '{"uid": %s, "root": "%s", "pid": %s, "tmp": "%s"}' "$(id -u)" "$LAMBDA_TASK_ROOT" \
    "$$" "$(df -m /tmp | tail -1 | tr -s ' ' | cut -d' ' -f2)" > /tmp/response
  curl -sS -o /dev/null -X POST --data-binary @/tmp/response "$API/invocation/$ID/response"
done
"""


# Helpers ------------------------------------------------------------------------------------
def invoke(server: Server, name: str, event: Any = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = server.client().invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra
    )
    response["body"] = json.loads(response["Payload"].read())
    if "LogResult" in response:
        response["log"] = base64.b64decode(response["LogResult"]).decode()
    return response


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def cgroup_dirs(pid: int) -> list[Path]:
    """The base cgroup directories a server with this pid makes (any hierarchy), and its
    networks: bridges, veths, nftables tables, /run/lamina-<pid>."""
    roots = [Path("/sys/fs/cgroup")]
    found: list[Path] = [
        link for link in Path("/sys/class/net").iterdir()
        if link.name.startswith(tuple(f"lm{pid}{kind}" for kind in "dsvw"))
    ]  # fmt: skip
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found.extend(Path(f"nft:{line}") for line in tables.splitlines() if f"lamina_{pid}" in line)
    if Path(f"/run/lamina-{pid}").exists():
        found.append(Path(f"/run/lamina-{pid}"))
    for root in roots:
        found.extend(root.glob(f"*/lamina-{pid}"))
        found.extend(root.glob(f"*/*/*/lamina-{pid}"))
        found.extend(root.glob(f"lamina-{pid}"))
    return found


def processes_named(text: str) -> list[int]:
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and text in command_line(int(entry)) and alive(int(entry))
    ]


def start(directory: Path, *args: str, fork: bool = True) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    env = {"LAMINA_FORK_SERVER": "1" if fork else "0"}
    return Server(directory / "data", args=list(args), env=env).start()


@pytest.fixture(scope="module", params=["fork", "spawn"])
def ns(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with the namespaces backend, forking or spawning Python environments."""
    server = start(
        tmp_path_factory.mktemp(f"ns-{request.param}"),
        "--isolation",
        "namespaces",
        fork=request.param == "fork",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fallback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("process"), "--isolation", "process")
    try:
        yield server
    finally:
        server.stop()


def unique(server: Server, name: str) -> str:
    """Function names per server (the module's servers run both launch paths)."""
    return f"{name}-{server.port}"


# The namespaces backend ------------------------------------------------------------------------
def test_doctor_and_the_start_say_which_backend(ns: Server) -> None:
    assert "isolation: namespaces (cgroup v" in ns.output()
    doctor = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "doctor"], capture_output=True, text=True, timeout=60
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "isolation: namespaces" in doctor.stdout
    assert "FAIL" not in doctor.stdout.replace(f"FAIL  uid {LAMINA_UID}", "")


def test_an_environment_sees_only_itself(ns: Server) -> None:
    lam = ns.client()
    other, viewer, neighbour = (unique(ns, n) for n in ("other", "viewer", "neighbour"))
    python_function(lam, other, "SECRET = 'other function'\n" + QUIET)
    python_function(lam, neighbour, SLEEPER)
    python_function(lam, viewer, VIEW)
    sha = lam.get_function(FunctionName=other)["Configuration"]["CodeSha256"]
    other_code = ns.data_dir / "code" / base64.b64decode(sha).hex() / "app.py"
    assert "other function" in other_code.read_text()  # there, on the host
    assert invoke(ns, other)["body"] == 1
    # Another environment with a process of its own, alive while the viewer looks.
    assert invoke(ns, neighbour, {"sleep": "77.25"})["body"] == "started"
    event = {"data_dir": str(ns.data_dir), "other_code": str(other_code)}
    view = invoke(ns, viewer, event)["body"]
    assert view["uid"] == LAMINA_UID and view["gid"] == 990
    assert view["task_root"] == view["cwd"] == "/var/task"
    assert view["code"].startswith("\nimport errno")  # its own code at /var/task
    assert view["tmpdir"] == "/tmp" and 512 <= view["tmp_size_mb"] <= 524  # free: 512
    assert view["pid"] == 2 and view["pids"] == [1, 2]  # its init and itself
    assert not any("sleep" in command for command in view["commands"]), view["commands"]
    assert view["write_task"] == "EROFS"
    assert view["write_root"] == "EROFS"
    assert view["data_dir"] == "ENOENT"
    assert view["other_code"] == "ENOENT"
    assert len(processes_named("sleep 77.25")) == 1  # the neighbour's process exists
    lam.delete_function(FunctionName=neighbour)
    assert wait_until(lambda: not processes_named("sleep 77.25"), 5)


def test_a_provided_runtime_is_isolated_too(ns: Server) -> None:
    name = unique(ns, "provided")
    ns.client().create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="unused",
        Code={"ZipFile": make_zip({"bootstrap": BOOTSTRAP}, {"bootstrap": 0o755})},
        EphemeralStorage={"Size": 600},
    )
    body = invoke(ns, name)["body"]
    assert 600 <= int(body.pop("tmp")) <= 614, body  # its size; 600 MB of it free
    assert body == {"uid": LAMINA_UID, "root": "/var/task", "pid": 2}


def test_tmp_survives_warm_invokes_and_is_private(ns: Server) -> None:
    lam = ns.client()
    name, stranger = unique(ns, "tmp"), unique(ns, "tmp-stranger")
    python_function(lam, name, TMP, Timeout=10)
    python_function(lam, stranger, TMP)
    first = invoke(ns, name, {"write": "kept"})["body"]
    second = invoke(ns, name)["body"]
    assert first["found"] is None and second["found"] == "kept"
    assert first["log_stream"] == second["log_stream"]  # the same (warm) environment
    assert first["tmpdir"] == "/tmp"
    # Two at once: the warm environment and a new one, whose /tmp is its own.
    results: list[dict[str, Any]] = []

    def hold(index: int) -> None:
        results.append(invoke(ns, name, {"write": f"w{index}", "sleep": 0.5})["body"])

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len({r["log_stream"] for r in results}) == 2
    assert sorted(str(r["found"]) for r in results) == ["None", "kept"]
    assert invoke(ns, stranger)["body"]["found"] is None  # another function's: its own


def test_tmp_stops_at_its_size(ns: Server) -> None:
    name = unique(ns, "fill")
    python_function(ns.client(), name, FILL_TMP, MemorySize=1024, Timeout=30)
    result = invoke(ns, name, {"limit_mb": 600})
    assert "FunctionError" not in result, result["body"]
    assert result["body"]["error"] == "ENOSPC"
    assert 500 <= result["body"]["written_mb"] <= 512


def test_memory_hog_is_out_of_memory_and_the_next_invoke_works(ns: Server) -> None:
    name = unique(ns, "hog")
    python_function(ns.client(), name, HOG, MemorySize=128, Timeout=30)
    assert invoke(ns, name)["body"] == "fine"
    hog = invoke(ns, name, {"hog": 1024}, LogType="Tail")
    assert hog["FunctionError"] == "Unhandled"
    assert hog["body"]["errorType"] == "Runtime.OutOfMemory"
    assert hog["body"]["errorMessage"].endswith("Runtime exited with error: signal: killed")
    report = hog["log"].strip().splitlines()[-1]
    used = int(report.split("Max Memory Used: ")[1].split(" MB")[0])
    assert 100 <= used <= 128, report
    after = invoke(ns, name, LogType="Tail")
    assert after["body"] == "fine"
    assert "Init Duration" in after["log"]  # a new environment


def test_max_memory_used_is_the_cgroups_peak(ns: Server) -> None:
    name = unique(ns, "hold")
    python_function(ns.client(), name, HOLD, MemorySize=256)
    first = invoke(ns, name, {"mb": 80}, LogType="Tail")
    used = int(first["log"].split("Max Memory Used: ")[1].split(" MB")[0])
    assert 80 <= used <= 256, first["log"]


def test_a_fork_bomb_is_contained_by_the_pids_limit(ns: Server) -> None:
    name = unique(ns, "forks")
    assert ns.process is not None
    # Memory for ~1,000 processes (their kernel stacks and page tables count too).
    python_function(ns.client(), name, FORKS, Timeout=60, MemorySize=1024)
    result = invoke(ns, name, {"at_most": 3000, "sleep": 60})["body"]
    assert isinstance(result, dict) and result.get("error") == "EAGAIN", result
    assert 900 <= result["forked"] < 1024, result
    ns.client().delete_function(FunctionName=name)  # the test cleans its bomb up
    assert wait_until(lambda: len(descendants(ns.process.pid)) < 50, 10)


def test_an_endless_fork_bomb_is_timed_out_and_cleaned_up(ns: Server) -> None:
    name = unique(ns, "bomb")
    assert ns.process is not None
    before = len(descendants(ns.process.pid))
    python_function(ns.client(), name, BOMB, Timeout=2)
    started = time.monotonic()
    result = invoke(ns, name)
    # Held at 1,024 processes, it spins until its timeout, unless ~1,000 interpreters
    # outgrow its 128 MB first: either way the environment ends, and all of it.
    assert result["body"]["errorType"] in ("Sandbox.Timedout", "Runtime.OutOfMemory")
    assert time.monotonic() - started < 8
    # Its init was killed, so the kernel killed its whole PID namespace.
    assert wait_until(lambda: len(descendants(ns.process.pid)) <= before + 1, 10)


def test_an_infinite_loop_is_timed_out_with_its_escaped_children(ns: Server) -> None:
    name = unique(ns, "spin")
    python_function(ns.client(), name, SPIN, Timeout=1)
    marker = f"{ns.port}.5"
    started = time.monotonic()
    result = invoke(ns, name, {"seconds": 600, "processes": 2, "escape": marker})
    assert result["body"]["errorType"] == "Sandbox.Timedout"
    assert time.monotonic() - started < 5
    assert wait_until(lambda: not processes_named(f"sleep {marker}"), 5)


def test_no_function_reaches_the_hosts_loopback(ns: Server) -> None:
    lam = ns.client()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(5)
    port = listener.getsockname()[1]
    vpc, plain, viewer = unique(ns, "vpc"), unique(ns, "plain"), unique(ns, "vpc-view")
    config = {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    python_function(lam, vpc, CONNECT, VpcConfig=config, Timeout=10)
    python_function(lam, plain, CONNECT, Timeout=10)
    python_function(lam, viewer, VIEW, VpcConfig=config)
    try:
        assert invoke(ns, plain, {"port": port})["body"].startswith("refused")
        assert invoke(ns, vpc, {"port": port})["body"].startswith("refused")
        event = {"data_dir": "/nonexistent", "other_code": "/nonexistent"}
        view = invoke(ns, viewer, event)["body"]
        assert view["api"] == "127.0.0.1:9001"  # as on Lambda, inside its own network
        assert view["interfaces"] == ["lo", "eth0"]  # its own network's
        assert invoke(ns, vpc, {"port": port})["body"].startswith("refused")  # warm too
        assert invoke(ns, plain, {"port": port})["body"].startswith("refused")
    finally:
        listener.close()


def test_log_volume_per_invocation_is_capped(ns: Server) -> None:
    name = unique(ns, "flood")
    python_function(ns.client(), name, FLOOD, Timeout=30)
    result = invoke(ns, name, {"lines": 4000}, LogType="Tail")  # 4 MB
    assert result["body"] == "flooded"
    lines = result["log"].splitlines()
    assert "the last line" in lines
    with urllib.request.urlopen(f"{ns.endpoint}/_lamina/logs/{name}", timeout=10) as response:
        kept = response.read().decode()
    assert "bytes of output dropped: more than 1048576 bytes in one invocation" in kept
    assert 1024 * 1024 < len(kept) < 1.2 * 1024 * 1024  # of the 4 MB printed
    assert any(line.endswith(" the last line") for line in kept.splitlines()[-4:])


def test_a_stopped_server_leaves_no_cgroup_and_no_process(tmp_path: Path) -> None:
    server = start(tmp_path / "graceful", "--isolation", "namespaces")
    assert server.process is not None
    pid = server.process.pid
    python_function(server.client(), "idle", SLEEPER)
    invoke(server, "idle", {"sleep": "66.5"})
    assert cgroup_dirs(pid)
    started = descendants(pid)
    assert server.stop() == 0
    assert wait_until(lambda: not any(alive(p) for p in started), 5)
    assert wait_until(lambda: not cgroup_dirs(pid), 5), cgroup_dirs(pid)

    killed = start(tmp_path / "killed", "--isolation", "namespaces")
    assert killed.process is not None
    pid = killed.process.pid
    python_function(killed.client(), "idle", SLEEPER)
    invoke(killed, "idle", {"sleep": "66.75"})
    started = descendants(pid)
    killed.kill()
    assert wait_until(lambda: not any(alive(p) for p in started), 5)
    assert wait_until(lambda: not cgroup_dirs(pid), 5), cgroup_dirs(pid)


# The neighbour test -----------------------------------------------------------------------------
def _latencies(server: Server, name: str, count: int) -> list[float]:
    client = server.client()
    took = []
    for _ in range(count):
        started = time.perf_counter()
        client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()
        took.append((time.perf_counter() - started) * 1000)
    return took


NEIGHBOUR = """
import json, sys, time
import boto3
from botocore.config import Config

endpoint, name, event, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
client = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test",
                      config=Config(retries={"max_attempts": 0}, read_timeout=60))
count, deadline = 0, time.monotonic() + seconds
while time.monotonic() < deadline:
    client.invoke(FunctionName=name, Payload=event.encode())["Payload"].read()
    count += 1
print(count, flush=True)
"""


ATTEMPTS = 3  # a load's measurement, again, when the host's own load moved the figure


@pytest.mark.alone
def test_a_misbehaving_neighbour_leaves_others_alone(tmp_path: Path) -> None:
    """While another function hogs memory, forks to its limit or spins on every core, a
    quiet function's warm invoke p50 stays within 2x its quiet figure, and the API answers.
    The neighbour is driven from a process of its own, so the test's own client does not
    share an interpreter lock with it.

    The quiet figure is measured just before and just after each load (the lower one),
    close to the loaded one: the machine's other work moves it by more than 2x within
    seconds. A load is measured again (at most ATTEMPTS times) when it misses: a
    neighbour the walls did not hold misses by far every time (three fork bombs without a
    ceiling took a quiet p50 from 1.2 to 7 ms)."""
    server = start(tmp_path, "--isolation", "namespaces", "--request-rate", "0")
    try:
        lam = server.client()
        python_function(lam, "quiet", QUIET)
        python_function(lam, "hog", HOG, MemorySize=128, Timeout=30)
        python_function(lam, "bomb", FORKS, Timeout=30, MemorySize=1024)
        python_function(lam, "spin", SPIN, Timeout=30)
        _latencies(server, "quiet", 30)  # warm, and the client's connections
        loads = {
            "memory hog": ("hog", {"hog": 1024}),
            "fork bomb": ("bomb", {"at_most": 3000, "sleep": 2}),
            "cpu spin": ("spin", {"seconds": 2, "processes": 4}),
        }
        ratios: dict[str, list[float]] = {}
        for label, (name, event) in loads.items():
            ratios[label] = []
            while len(ratios[label]) < ATTEMPTS and min(ratios[label], default=9) > 2.0:
                ratios[label].append(_under_neighbour(server, label, name, event))
        assert all(min(found) <= 2.0 for found in ratios.values()), ratios
    finally:
        server.stop()


def _under_neighbour(server: Server, label: str, name: str, event: dict[str, Any]) -> float:
    """The quiet function's p50 while `name` runs `event` in a loop, over its quiet p50."""
    before = statistics.median(_latencies(server, "quiet", 60))
    neighbour = subprocess.Popen(
        [sys.executable, "-c", NEIGHBOUR, server.endpoint, name, json.dumps(event), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.8)  # well under way
        loaded = statistics.median(_latencies(server, "quiet", 60))
        assert server.client().list_functions()["Functions"]  # the API answers
        out, _ = neighbour.communicate(timeout=60)
    finally:
        if neighbour.poll() is None:
            neighbour.kill()
            neighbour.wait()
    assert int(out.split()[-1]) > 0, f"{label}: the neighbour never ran"
    after = statistics.median(_latencies(server, "quiet", 60))
    quiet = min(before, after)  # the neighbour's aftermath cannot make it look harmless
    print(
        f"neighbour {label}: quiet p50 {before:.2f} / {after:.2f} ms, under it {loaded:.2f} "
        f"ms, ratio {loaded / quiet:.2f}"
    )
    return loaded / quiet


# The fallback backend ---------------------------------------------------------------------------
# It honours: the per-invocation log cap, timeouts (the process group is killed), an
# allocation limit (MemoryError, not Runtime.OutOfMemory), a TMPDIR per environment kept
# across warm invokes, a file size limit of EphemeralStorage. It cannot (and says so at
# start): Runtime.OutOfMemory and the cgroup's peak, a private /tmp of a fixed size,
# PID/mount/network namespaces (so: seeing other processes and files, a VPC function's
# network), an unprivileged user, a pids limit (a fork bomb is not run against it here),
# CPU weight, killing children that left the process group.
def test_fallback_says_what_it_does_not_enforce(fallback: Server) -> None:
    output = fallback.output()
    assert "isolation: process (asked for); not enforced: " in output
    for item in PROCESS_CANNOT:
        assert item in output


def test_fallback_memory_limit_fails_allocations(fallback: Server) -> None:
    python_function(fallback.client(), "hog", HOG, MemorySize=128, Timeout=30)
    hog = invoke(fallback, "hog", {"hog": 1024})
    assert hog["FunctionError"] == "Unhandled"
    assert hog["body"]["errorType"] == "MemoryError"
    assert invoke(fallback, "hog")["body"] == "fine"


def test_fallback_tmpdir_is_kept_and_per_environment(fallback: Server) -> None:
    python_function(fallback.client(), "tmp", TMP)
    first = invoke(fallback, "tmp", {"write": "kept"})["body"]
    second = invoke(fallback, "tmp")["body"]
    assert first["found"] is None and second["found"] == "kept"
    fallback.client().update_function_configuration(FunctionName="tmp", Timeout=4)
    again = invoke(fallback, "tmp")["body"]
    assert again["found"] is None and again["tmpdir"] != first["tmpdir"]


def test_fallback_caps_one_file_at_ephemeral_storage(fallback: Server) -> None:
    python_function(fallback.client(), "fill", FILL_TMP, MemorySize=256, Timeout=30)
    result = invoke(fallback, "fill", {"limit_mb": 600})["body"]
    assert result == {"written_mb": 512, "error": errno.errorcode[errno.EFBIG]}


def test_fallback_times_out_an_infinite_loop(fallback: Server) -> None:
    python_function(fallback.client(), "spin", SPIN, Timeout=1)
    started = time.monotonic()
    result = invoke(fallback, "spin", {"seconds": 600, "processes": 2})
    assert result["body"]["errorType"] == "Sandbox.Timedout"
    assert time.monotonic() - started < 5
    assert fallback.process is not None
    assert wait_until(
        lambda: not any("fork_server" not in command_line(p) and "isolate.py" not in
                        command_line(p) for p in descendants(fallback.process.pid)), 5
    )  # fmt: skip


def test_fallback_caps_log_volume(fallback: Server) -> None:
    python_function(fallback.client(), "flood", FLOOD, Timeout=30)
    result = invoke(fallback, "flood", {"lines": 3000}, LogType="Tail")
    assert result["body"] == "flooded"
    assert "the last line" in result["log"].splitlines()

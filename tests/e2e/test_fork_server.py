"""Environments forked from the fork server keep every semantic of a started one (issue 6).

Each test runs twice: against a server that forks Python environments from its fork
server (the default) and against one started with LAMINA_FORK_SERVER=0, which starts a
new interpreter per environment. Both must give a function the same world.

These tests compare the two paths at the level of host processes (the pids a function
reports, its files under the test's directories), so their servers run with
`--isolation none`; tests/e2e/test_isolation.py runs both paths under namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lamina.sandbox.forkserver import BASE_ENV
from tests.helpers import ROLE, Server, alive, descendants, make_zip, python_function

PROBE = """
import os, random, signal, sys, tempfile, time

ASYNCIO_AT_IMPORT = "asyncio" in sys.modules
DRAW = random.getrandbits(64)
calls = 0


def describe(disposition):
    return getattr(disposition, "name", None) or disposition.__name__


def handler(event, context):
    global calls
    calls += 1
    if "dir" in event:
        child = subprocess.Popen(["sleep", "60"])
        with open(os.path.join(event["dir"], "pids.json"), "w") as out:
            json.dump({"runtime": os.getpid(), "child": child.pid}, out)
    if event.get("exit") is not None:
        os._exit(event["exit"])
    if event.get("signal"):
        os.kill(os.getpid(), getattr(signal, event["signal"]))
    time.sleep(event.get("sleep", 0))
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own descriptor, closed by now
    import asyncio
    asyncio.run(asyncio.sleep(0))  # refused if this thread had a running loop
    print("probe output", os.getpid())
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "pgid": os.getpgid(0),
        "calls": calls,
        "draw": DRAW,
        "asyncio_at_import": ASYNCIO_AT_IMPORT,
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "tempdir": tempfile.gettempdir(),
        "tzname": time.tzname[0],
        "fds": fds,
        "argv0": os.path.basename(sys.argv[0]),
        "dont_write_bytecode": sys.flags.dont_write_bytecode,
        "signals": {
            name: describe(signal.getsignal(getattr(signal, name)))
            for name in ("SIGCHLD", "SIGTERM", "SIGINT", "SIGPIPE", "SIGHUP", "SIGUSR1")
        },
        "stdout": [sys.stdout.encoding, sys.stdout.write_through],
        "file": __file__,
    }
"""
PROBE = "import json, subprocess\n" + PROBE

MODES = ["fork", "spawn"]


def start_server(directory: Path, mode: str, *args: str) -> Server:
    env = {"LAMINA_FORK_SERVER": "1" if mode == "fork" else "0", "LAMINA_ISOLATION": "none"}
    return Server(directory / "data", args=list(args), env=env).start()


@pytest.fixture(scope="module", params=MODES)
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Server]]:
    server = start_server(tmp_path_factory.mktemp(request.param), request.param)
    try:
        yield request.param, server
    finally:
        server.stop()


def invoke(server: Server, name: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = server.client().invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode()
    )
    response["body"] = json.loads(response["Payload"].read())
    return response


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait(20)
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(result is not None for result in results)
    return results


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def fork_servers(server: Server) -> list[int]:
    """The server's children running fork_server.py (its forks share that command line)."""
    assert server.process is not None
    found = []
    for pid in descendants(server.process.pid):
        try:
            if parent_of(pid) == server.process.pid and "fork_server.py" in command_line(pid):
                found.append(pid)
        except OSError:
            continue
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def interpreter_additions() -> set[str]:
    """What this host's interpreter adds to a base environment at startup (LC_CTYPE when
    it coerces the C locale): a started environment has these, so a forked one must."""
    shown = subprocess.run(
        [sys.executable, "-c", "import os, json; print(json.dumps(sorted(os.environ)))"],
        env=BASE_ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(shown.stdout)) - set(BASE_ENV)


# The world a function sees -------------------------------------------------------------
def test_each_path_is_the_one_configured(running: tuple[str, Server]) -> None:
    mode, server = running
    assert server.process is not None
    python_function(server.client(), "parent", PROBE)
    probe = invoke(server, "parent")["body"]
    parents = fork_servers(server)
    if mode == "fork":
        assert len(parents) == 1
        assert probe["ppid"] == parents[0]
    else:
        assert parents == []
        assert probe["ppid"] == server.process.pid
    assert probe["pid"] in descendants(server.process.pid)


def test_own_session_and_process_group(running: tuple[str, Server]) -> None:
    _, server = running
    python_function(server.client(), "session", PROBE)
    probe = invoke(server, "session")["body"]
    assert probe["sid"] == probe["pid"]
    assert probe["pgid"] == probe["pid"]


def test_fresh_module_state_and_reseeded_random(running: tuple[str, Server]) -> None:
    _, server = running
    python_function(server.client(), "fresh", PROBE)
    first, second = in_threads(2, lambda _: invoke(server, "fresh", {"sleep": 0.5})["body"])
    assert first["pid"] != second["pid"]
    assert first["calls"] == second["calls"] == 1  # the module was imported in each
    assert first["draw"] != second["draw"]  # random is seeded per environment
    assert not first["asyncio_at_import"] and not second["asyncio_at_import"]
    warm = invoke(server, "fresh")["body"]
    assert warm["calls"] == 2 and warm["draw"] in (first["draw"], second["draw"])


def test_environment_variables_cwd_tmp_and_time_zone(running: tuple[str, Server]) -> None:
    _, server = running
    python_function(
        server.client(),
        "world",
        PROBE,
        Environment={"Variables": {"GREETING": "hello", "TZ_NOTE": "x"}},
    )
    probe = invoke(server, "world")["body"]
    environ = probe["environ"]
    assert environ["GREETING"] == "hello"
    assert environ["PATH"] == BASE_ENV["PATH"]
    assert environ["LANG"] == BASE_ENV["LANG"]
    assert environ["TZ"] == ":UTC" and probe["tzname"] == "UTC"
    assert environ["_HANDLER"] == "app.handler"
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == "world"
    assert Path(environ["LAMBDA_TASK_ROOT"]) == Path(probe["cwd"])
    assert Path(probe["file"]).parent == Path(probe["cwd"])
    assert probe["tempdir"] == environ["TMPDIR"]
    assert Path(environ["TMPDIR"]).name == "tmp" and Path(environ["TMPDIR"]).is_dir()
    # Nothing of the server's (or the test runner's) environment leaks in.
    expected = {
        "PATH",
        "LANG",
        "TZ",
        "GREETING",
        "TZ_NOTE",
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TMPDIR",
        "LD_LIBRARY_PATH",  # as on AWS: with /var/task/lib and /opt/lib (layers)
    } | interpreter_additions()
    assert {name for name in environ if not name.startswith("AWS_")} == expected
    assert not set(environ) & {"HOME", "VIRTUAL_ENV", "LAMINA_FORK_SERVER", "PYTEST_CURRENT_TEST"}
    assert probe["argv0"] == "python_bootstrap.py"
    assert probe["stdout"] == ["utf-8", True]  # unbuffered, as `python -u`


def test_no_inherited_descriptors(running: tuple[str, Server]) -> None:
    _, server = running
    python_function(server.client(), "descriptors", PROBE)
    fds = invoke(server, "descriptors")["body"]["fds"]
    assert fds["0"] == "/dev/null"
    assert fds["1"] == fds["2"] and fds["1"].startswith("pipe:")
    others = {fd: target for fd, target in fds.items() if fd not in ("0", "1", "2")}
    # Only the runtime's own connection to its Runtime API.
    assert len(others) == 1 and next(iter(others.values())).startswith("socket:"), fds


def test_signal_dispositions_of_a_fresh_interpreter(running: tuple[str, Server]) -> None:
    _, server = running
    python_function(server.client(), "signals", PROBE)
    assert invoke(server, "signals")["body"]["signals"] == {
        "SIGCHLD": "SIG_DFL",
        "SIGTERM": "SIG_DFL",
        "SIGINT": "default_int_handler",
        "SIGPIPE": "SIG_IGN",
        "SIGHUP": "SIG_DFL",
        "SIGUSR1": "SIG_DFL",
    }


def test_output_reaches_the_log(running: tuple[str, Server]) -> None:
    _, server = running
    python_function(server.client(), "talker", PROBE)
    response = server.client().invoke(FunctionName="talker", LogType="Tail")
    pid = json.loads(response["Payload"].read())["pid"]
    import base64

    assert f"probe output {pid}" in base64.b64decode(response["LogResult"]).decode()


# Exits, signals, timeouts ----------------------------------------------------------------
def test_exit_status_and_signal_are_reported(running: tuple[str, Server]) -> None:
    _, server = running
    python_function(server.client(), "ender", PROBE)
    exited = invoke(server, "ender", {"exit": 3})
    rid = exited["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert exited["body"] == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: exit status 3",
    }
    killed = invoke(server, "ender", {"signal": "SIGSEGV"})
    assert killed["body"]["errorMessage"].endswith(
        "Runtime exited with error: signal: segmentation fault"
    )
    assert invoke(server, "ender")["body"]["calls"] == 1  # a new environment


def test_timeout_kills_the_whole_tree(running: tuple[str, Server], tmp_path: Path) -> None:
    _, server = running
    python_function(server.client(), "late", PROBE, Timeout=1)
    response = invoke(server, "late", {"dir": str(tmp_path), "sleep": 5})
    assert response["body"]["errorType"] == "Sandbox.Timedout"
    pids = json.loads((tmp_path / "pids.json").read_text())
    assert wait_until(lambda: not alive(pids["runtime"]) and not alive(pids["child"]), 3)


# Which environments are forked -----------------------------------------------------------
def test_startup_variables_get_a_new_interpreter(running: tuple[str, Server]) -> None:
    """PYTHON*, LD_*, locale variables act when an interpreter starts: such a function's
    environments are started, not forked, so the variables take effect."""
    _, server = running
    assert server.process is not None
    python_function(
        server.client(),
        "no-bytecode",
        PROBE,
        Environment={"Variables": {"PYTHONDONTWRITEBYTECODE": "1"}},
    )
    probe = invoke(server, "no-bytecode")["body"]
    assert probe["dont_write_bytecode"] == 1
    assert probe["ppid"] == server.process.pid


def test_custom_runtimes_are_started(running: tuple[str, Server]) -> None:
    _, server = running
    assert server.process is not None
    bootstrap = f"#!/bin/sh\nexec {sys.executable} -m awslambdaric app.handler\n"
    app = "import os\n\ndef handler(event, context):\n    return {'ppid': os.getppid()}\n"
    server.client().create_function(
        FunctionName="custom",
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"bootstrap": bootstrap, "app.py": app}, {"bootstrap": 0o755})},
    )
    assert invoke(server, "custom")["body"] == {"ppid": server.process.pid}


# Nothing outlives the server --------------------------------------------------------------
@pytest.fixture(params=MODES)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Server]]:
    server = start_server(tmp_path, request.param)
    try:
        yield request.param, server
    finally:
        server.kill()


def test_sigkill_of_the_server_leaves_no_process(fresh: tuple[str, Server]) -> None:
    mode, server = fresh
    assert server.process is not None
    python_function(server.client(), "orphan", PROBE)
    pids = {
        probe["pid"]
        for probe in in_threads(3, lambda _: invoke(server, "orphan", {"sleep": 0.5})["body"])
    }
    assert len(pids) == 3
    started = descendants(server.process.pid)
    assert pids <= started
    assert len(fork_servers(server)) == (1 if mode == "fork" else 0)
    server.process.kill()
    server.process.wait(5)
    assert wait_until(lambda: not any(alive(pid) for pid in started), 3), (
        f"outlived a SIGKILL of the server: {sorted(pid for pid in started if alive(pid))}"
    )


def test_sigterm_leaves_no_process(fresh: tuple[str, Server]) -> None:
    _, server = fresh
    assert server.process is not None
    python_function(server.client(), "stopped", PROBE)
    in_threads(2, lambda _: invoke(server, "stopped", {"sleep": 0.3})["body"])
    started = descendants(server.process.pid)
    assert len(started) >= 2
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0, server.output()
    assert wait_until(lambda: not any(alive(pid) for pid in started), 2)


def test_a_killed_fork_server_is_replaced(tmp_path: Path) -> None:
    server = start_server(tmp_path, "fork")
    try:
        python_function(server.client(), "phoenix", PROBE)
        before = invoke(server, "phoenix")["body"]
        (fork_server,) = fork_servers(server)
        os.kill(fork_server, signal.SIGKILL)
        # Its environments die with it (parent-death signal) and are known to be dead.
        assert wait_until(lambda: not alive(before["pid"]), 3)
        after = invoke(server, "phoenix")["body"]
        assert after["calls"] == 1 and after["pid"] != before["pid"]
        (replacement,) = fork_servers(server)
        assert replacement != fork_server and after["ppid"] == replacement
    finally:
        server.stop()


def test_no_fork_server_flag(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", args=["--no-fork-server", "--isolation", "none"]).start()
    try:
        python_function(server.client(), "flagged", PROBE)
        assert server.process is not None
        assert invoke(server, "flagged")["body"]["ppid"] == server.process.pid
        assert fork_servers(server) == []
        assert "environments: plain processes" in server.output()
    finally:
        server.stop()

"""Stopping the server leaves no process behind: SIGTERM (graceful) and SIGKILL (crash).

Under any isolation: an environment is found among the server's descendants by the pid
and PID namespace its function reports (tests.helpers.environment_pids).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import (
    Server,
    alive,
    command_line,
    descendants,
    environment_pids,
    python_function,
)

WORKER = """
import os, subprocess, time

def handler(event, context):
    if event.get("child"):
        subprocess.Popen(["sleep", "120"])
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "ns": os.stat("/proc/self/ns/pid").st_ino}
"""


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def invoke_concurrently(server: Server, name: str, count: int, sleep: float) -> list[int]:
    """`count` simultaneous invokes, so that `count` environments exist; their host pids."""
    reported: list[dict[str, int]] = []
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait(10)
        response = server.client().invoke(
            FunctionName=name, Payload=json.dumps({"sleep": sleep}).encode()
        )
        reported.append(json.loads(response["Payload"].read()))

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(reported) == count
    assert len({(each["ns"], each["pid"]) for each in reported}) == count
    assert server.process is not None
    pids = [environment_pids(server.process.pid, each) for each in reported]
    assert all(pids)
    return [pid for each in pids for pid in each]


def sleepers(pids: set[int]) -> set[int]:
    return {pid for pid in pids if command_line(pid) == "sleep 120"}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data").start()
    try:
        yield server
    finally:
        server.kill()


def test_sigterm_stops_every_environment(fresh: Server) -> None:
    assert fresh.process is not None
    client = fresh.client()
    python_function(client, "idle-a", WORKER)
    python_function(client, "idle-b", WORKER)
    python_function(client, "busy", WORKER, Timeout=120)
    idle = invoke_concurrently(fresh, "idle-a", 3, 0.5)
    idle += invoke_concurrently(fresh, "idle-b", 2, 0.5)
    outcome: dict[str, Any] = {}

    def long_invoke() -> None:
        try:
            payload = json.dumps({"child": True, "sleep": 100}).encode()
            outcome["response"] = fresh.client().invoke(FunctionName="busy", Payload=payload)
        except Exception as exc:  # the server goes away under it
            outcome["error"] = exc

    caller = threading.Thread(target=long_invoke)
    caller.start()
    server_pid = fresh.process.pid
    assert wait_until(lambda: bool(sleepers(descendants(server_pid))), 10), (
        "the long invoke never started"
    )
    started = descendants(fresh.process.pid)
    assert set(idle) <= started
    assert sleepers(started)  # the busy function's child
    assert all(alive(pid) for pid in started)

    stopping = time.monotonic()
    fresh.process.send_signal(signal.SIGTERM)
    try:
        code = fresh.process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within 10 s of SIGTERM:\n{fresh.output()}")
    took = time.monotonic() - stopping
    caller.join(10)
    assert not caller.is_alive()
    assert code == 0, fresh.output()
    assert took < 10
    assert wait_until(lambda: not any(alive(pid) for pid in started), 2), (
        f"left behind: {sorted(pid for pid in started if alive(pid))}"
    )
    assert not any((fresh.data_dir / "environments").iterdir())  # scratch dirs removed
    # The in-flight invoke did not succeed: its environment was stopped under it.
    if "error" in outcome:
        assert isinstance(outcome["error"], ClientError), outcome["error"]
        assert outcome["error"].response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    else:
        assert outcome["response"]["FunctionError"] == "Unhandled"


def test_sigint_also_stops_everything_and_exits_0(fresh: Server) -> None:
    assert fresh.process is not None
    python_function(fresh.client(), "interrupted", WORKER)
    pids = invoke_concurrently(fresh, "interrupted", 2, 0.3)
    started = descendants(fresh.process.pid)
    assert set(pids) <= started
    fresh.process.send_signal(signal.SIGINT)
    assert fresh.process.wait(10) == 0, fresh.output()
    assert "Traceback" not in fresh.output()
    assert wait_until(lambda: not any(alive(pid) for pid in started), 2)


def test_sigkill_of_the_server_kills_idle_environments(fresh: Server) -> None:
    assert fresh.process is not None
    client = fresh.client()
    python_function(client, "orphans", WORKER)
    pids = invoke_concurrently(fresh, "orphans", 3, 0.5)
    started = descendants(fresh.process.pid)
    assert set(pids) <= started
    fresh.process.kill()
    fresh.process.wait(5)
    assert wait_until(lambda: not any(alive(pid) for pid in started), 3), (
        f"outlived a SIGKILL of the server: {sorted(pid for pid in started if alive(pid))}"
    )


def test_a_follower_that_hangs_up_does_not_hold_the_shutdown(fresh: Server) -> None:
    """A log follower that disconnects must end its stream: nothing waits on it later."""
    assert fresh.process is not None
    python_function(fresh.client(), "watched", WORKER)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", fresh.port), timeout=5) as sock:
            sock.sendall(b"GET /_lamina/logs/watched?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.3)
    stopping = time.monotonic()
    fresh.process.send_signal(signal.SIGTERM)
    assert fresh.process.wait(10) == 0, fresh.output()
    assert time.monotonic() - stopping < 2.5, fresh.output()

"""The walls around an environment, tested with hostile functions against a real server on
both launch paths: the seccomp filter, the Runtime API serving one runtime.

These run as root here (cgroup v1) and are never skipped on this machine: a server asked for
`--isolation namespaces` refuses to start where it cannot have them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROLE, Server, make_zip, python_function

SYSCALLS = r"""
import ctypes, errno, os, socket, sqlite3, subprocess, threading, zlib

libc = ctypes.CDLL(None, use_errno=True)
SYS = {"add_key": 248, "keyctl": 250, "bpf": 321, "unshare": 272}
KEY_SPEC_USER_KEYRING = -4
KEYCTL_SEARCH, KEYCTL_READ = 10, 11

def outcome(result):
    if result == -1:
        return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    return "ok"

def handler(event, context):
    found = {}
    found["unshare_user"] = outcome(libc.unshare(0x10000000))
    found["unshare_user_mount"] = outcome(libc.unshare(0x10000000 | 0x00020000))
    found["unshare_net"] = outcome(libc.unshare(0x40000000))
    command = subprocess.run(["unshare", "-U", "true"], capture_output=True, text=True)
    found["unshare_command"] = (command.returncode, command.stderr.strip())
    found["mount"] = outcome(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    found["setns"] = outcome(libc.setns(os.open("/proc/self/ns/uts", os.O_RDONLY), 0))
    if event.get("key"):
        found["add_key"] = outcome(libc.syscall(SYS["add_key"], b"user", b"shared-secret",
                                                event["key"].encode(), len(event["key"]),
                                                KEY_SPEC_USER_KEYRING))
    found["keyctl_search"] = outcome(libc.syscall(SYS["keyctl"], KEYCTL_SEARCH,
                                                  KEY_SPEC_USER_KEYRING, b"user",
                                                  b"shared-secret", 0))
    found["bpf"] = outcome(libc.syscall(SYS["bpf"], 0, None, 0))
    child = os.fork()
    if child == 0:
        import time
        time.sleep(5)
        os._exit(0)
    found["ptrace"] = outcome(libc.ptrace(16, child, None, None))  # PTRACE_ATTACH
    os.kill(child, 9)
    os.waitpid(child, 0)
    # Ordinary work is unaffected.
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found["threads"] = sorted(results)
    found["subprocess"] = subprocess.run(["sh", "-c", "echo $((6 * 7))"], capture_output=True,
                                         text=True).stdout.strip()
    left, right = socket.socketpair()
    left.sendall(b"ping")
    found["socketpair"] = right.recv(4).decode()
    listener = socket.create_server(("127.0.0.1", 0))
    with socket.create_connection(listener.getsockname()) as client:
        peer, _ = listener.accept()
        client.sendall(b"tcp")
        found["tcp"] = peer.recv(3).decode()
        peer.close()
    database = sqlite3.connect(":memory:")
    found["sqlite"] = database.execute("select 40 + 2").fetchone()[0]
    found["zlib"] = zlib.decompress(zlib.compress(b"compiled")).decode()
    return found
"""

# A runtime that asks for its next event twice (the second must be refused, never take the
# first one's place) and answers for a request id it was never given.
TWO_NEXTS = r"""#!/bin/sh
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
curl -sS -D /tmp/headers -o /tmp/event "$API/invocation/next"
while true; do
  ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' /tmp/headers | cut -d' ' -f2 | tr -d '\r')
  curl -sS -D /tmp/headers.next -o /tmp/event.next "$API/invocation/next" &
  WAITING=$!
  sleep 0.3
  SECOND=$(curl -sS -o /tmp/second -w '%{http_code}' "$API/invocation/next")
  FORGED=$(curl -sS -o /tmp/forged -w '%{http_code}' -X POST --data 'forged' \
    "$API/invocation/00000000-0000-0000-0000-000000000000/response")
  printf '{"second": %s, "second_body": %s, "forged": %s, "forged_body": %s, "event": %s}' \
    "$SECOND" "$(cat /tmp/second)" "$FORGED" "$(cat /tmp/forged)" "$(cat /tmp/event)" \
    > /tmp/response
  curl -sS -o /dev/null -X POST --data-binary @/tmp/response "$API/invocation/$ID/response"
  wait $WAITING
  mv /tmp/headers.next /tmp/headers
  mv /tmp/event.next /tmp/event
done
"""


def invoke(server: Server, name: str, event: Any = None, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = server.client().invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra
    )
    response["body"] = json.loads(response["Payload"].read())
    if "LogResult" in response:
        response["log"] = base64.b64decode(response["LogResult"]).decode()
    return response


def start(directory: Path, *args: str, fork: bool = True) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    env = {"LAMINA_FORK_SERVER": "1" if fork else "0"}
    return Server(directory / "data", args=list(args), env=env).start()


@pytest.fixture(scope="module", params=["fork", "spawn"])
def walled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with every wall, forking or spawning Python environments."""
    server = start(
        tmp_path_factory.mktemp(f"walls-{request.param}"),
        "--isolation",
        "namespaces",
        fork=request.param == "fork",
    )
    try:
        yield server
    finally:
        server.stop()


def unique(server: Server, name: str) -> str:
    return f"{name}-{server.port}"


def test_refused_system_calls_fail_with_eperm_and_ordinary_work_goes_on(walled: Server) -> None:
    lam = walled.client()
    first, second = unique(walled, "syscalls-a"), unique(walled, "syscalls-b")
    python_function(lam, first, SYSCALLS, Timeout=20)
    python_function(lam, second, SYSCALLS, Timeout=20)
    found = invoke(walled, first, {"key": "the first function's secret"})
    assert "FunctionError" not in found, found["body"]
    body = found["body"]
    for call in ("unshare_user", "unshare_user_mount", "unshare_net", "mount", "setns",
                 "add_key", "keyctl_search", "bpf", "ptrace"):  # fmt: skip
        assert body[call] == "EPERM", (call, body)
    code, message = body["unshare_command"]
    assert code != 0 and "Operation not permitted" in message, body["unshare_command"]
    assert body["threads"] == [i * i for i in range(8)]
    assert body["subprocess"] == "42"
    assert body["socketpair"] == "ping" and body["tcp"] == "tcp"
    assert body["sqlite"] == 42 and body["zlib"] == "compiled"
    # Another function (same unprivileged uid) cannot find a key the first one made.
    other = invoke(walled, second)["body"]
    assert other["keyctl_search"] == "EPERM"


def test_doctor_reports_the_seccomp_filter() -> None:
    doctor = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "doctor"], capture_output=True, text=True, timeout=60
    )
    assert "then seccomp: " in doctor.stdout, doctor.stdout
    assert "refused with EPERM" in doctor.stdout


def test_the_runtime_api_serves_one_runtime(walled: Server) -> None:
    name = unique(walled, "two-nexts")
    walled.client().create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="unused",
        Code={"ZipFile": make_zip({"bootstrap": TWO_NEXTS}, {"bootstrap": 0o755})},
        Timeout=10,
    )
    for index in range(3):  # warm invokes: the waiting GET took each next event
        body = invoke(walled, name, {"n": index})["body"]
        assert body["event"] == {"n": index}, body
        assert body["second"] == 403, body
        assert body["second_body"]["errorType"] == "InvalidStateTransition"
        assert body["forged"] == 400, body
        assert body["forged_body"]["errorType"] == "InvalidRequestID"

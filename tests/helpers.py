"""Shared helpers for tests: a real `lamina serve` on a free loopback port, zips, clients."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROLE = "arn:aws:iam::000000000000:role/lamina-test"
# The python3.x runtime of the interpreter running the tests (and Lamina): functions that
# use what its virtualenv has (boto3, the X-Ray SDK) run on it, wherever the suite runs.
PYTHON_RUNTIME = f"python3.{sys.version_info.minor}"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A `lamina serve` subprocess; stop() sends SIGTERM, kill() SIGKILL."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    cwd: Path | None = None  # where `lamina serve` runs; `data_dir` may be relative to it

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Server:
        self.port = self.port or free_port()
        where = (self.cwd / self.data_dir) if self.cwd else self.data_dir
        self.log_path = where.parent / f"server-{self.port}.log"
        command = [
            sys.executable,
            "-m",
            "lamina.cli",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            # Each test server its own X-Ray daemon port (a free one), unless the test says.
            *([] if "--xray-port" in self.args else ["--xray-port", "0"]),
            *self.args,
        ]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lamina serve exited: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_lamina/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()  # else it runs on, orphaned, beside the rest of the suite
        raise RuntimeError(f"lamina serve did not answer in {timeout}s: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(
        self,
        service: str = "lambda",
        region: str = "us-east-1",
        credentials: Mapping[str, str] | None = None,
        **config: Any,
    ) -> Any:
        settings = {"retries": {"max_attempts": 0}, "read_timeout": 120, **config}
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            config=Config(**settings),
            **(credentials or CREDENTIALS),
        )

    def accounts(self, *args: str) -> Any:
        """`lamina accounts --data-dir <this server's> ARGS`, its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "lamina.cli", "accounts", "--data-dir", str(self.data_dir),
             *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.cwd,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def new_account(self, name: str, *limits: str) -> tuple[str, dict[str, str]]:
        """An account made with `lamina accounts create`: its id and boto3 credentials."""
        made = self.accounts("create", name, *limits)
        return made["Account"]["Id"], {
            "aws_access_key_id": made["AccessKey"]["AccessKeyId"],
            "aws_secret_access_key": made["AccessKey"]["SecretAccessKey"],
        }


def make_zip(files: Mapping[str, str | bytes], modes: Mapping[str, int] | None = None) -> bytes:
    """A zip of `files`; `modes` sets unix permissions (e.g. 0o755 for a bootstrap)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o644) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def python_function(
    client: Any, name: str, source: str, handler: str = "app.handler", **extra: Any
) -> dict[str, Any]:
    """Create a function of Lamina's own Python version whose app.py is `source`."""
    response: dict[str, Any] = client.create_function(
        FunctionName=name,
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": make_zip({"app.py": source})},
        **extra,
    )
    return response


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry leads to `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def pid_namespace(pid: int | str = "self") -> int:
    """The inode of a process's PID namespace (0 if it is gone)."""
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return 0


def environment_pids(server_pid: int, reported: Mapping[str, int]) -> set[int]:
    """Host pids of the environment whose function reported {"pid": os.getpid(), "ns":
    its PID namespace's inode}: that pid when it shares the test's PID namespace (no
    isolation), else every descendant of the server in that namespace."""
    if reported["ns"] == pid_namespace():
        return {reported["pid"]}
    return {pid for pid in descendants(server_pid) if pid_namespace(pid) == reported["ns"]}

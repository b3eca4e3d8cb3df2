"""How an execution environment's process is started: its command and variables, and the
Launcher that turns them into a process.

Each environment has a directory of its own whose `tmp/` is its TMPDIR, kept across its
warm invocations and removed with it. The process leads its own session and process
group, so a timeout kills its whole tree, and gets a parent-death signal, so it never
outlives Lamina even when Lamina is killed with SIGKILL. Namespaces and cgroups come with
the isolation backend, as another Launcher (see sandbox/forkserver.py).

Launchers: `SpawnLauncher` execs the command (`setpriv --pdeathsig KILL -- python -u
python_bootstrap.py`, or a custom runtime's `bootstrap`); `forkserver.ForkLauncher` forks
Python environments from a fork server and hands everything else to a SpawnLauncher. The
server installs the one it uses with `install()`; environments take `current()`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

PYTHON_BOOTSTRAP = Path(__file__).resolve().parent.parent / "runtimes" / "python_bootstrap.py"
CUSTOM_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
SETPRIV = shutil.which("setpriv")  # util-linux: sets the parent-death signal, then execs


@dataclass(frozen=True)
class FunctionImage:
    """Everything needed to start environments of one function version."""

    name: str
    arn: str
    version: str
    region: str
    runtime: str
    handler: str
    code_dir: Path
    memory_mb: int
    timeout_s: int
    ephemeral_mb: int
    variables: dict[str, str] = field(default_factory=dict)
    revision: str = ""
    tracing: str = "PassThrough"  # TracingConfig Mode: Active or PassThrough


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    python: str | None = None  # the interpreter, when this is Lamina's Python runtime


class ProcessHandle(Protocol):
    """A started environment process (asyncio's Process is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int:
        """The exit status, or minus the signal that ended the process."""
        ...


class Launcher(Protocol):
    async def start(self) -> None: ...

    async def spawn(self, plan: Launch, output: int) -> ProcessHandle:
        """Start `plan` in a session of its own, stdin from /dev/null, stdout and stderr
        into the descriptor `output`; raise OSError if it cannot be started."""
        ...

    async def close(self) -> None: ...


class SpawnedProcess:
    """A child started by subprocess.Popen (which closes every other descriptor in it) and
    reaped when its pidfd turns readable: no thread and no SIGCHLD handler per child."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(popen.pid)  # fine even if it has exited already
        self._loop.add_reader(self._pidfd, self._reap)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: the status is lost
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        self._popen.returncode = code
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


def spawn_process(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path | str,
    output: int | None,
    pass_fds: tuple[int, ...] = (),
) -> SpawnedProcess:
    """Start `argv` in a session of its own, stdin from /dev/null, stdout and stderr into
    `output` (None: Lamina's own), no other descriptor than `pass_fds`."""
    popen = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        pass_fds=pass_fds,
        close_fds=True,
        start_new_session=True,
    )
    return SpawnedProcess(popen)


class SpawnLauncher:
    """Every environment a new program: fork + exec of `plan.argv`."""

    async def start(self) -> None:
        return None

    async def spawn(self, plan: Launch, output: int) -> ProcessHandle:
        return spawn_process(plan.argv, env=plan.env, cwd=plan.cwd, output=output)

    async def close(self) -> None:
        return None


_launcher: Launcher = SpawnLauncher()
# Where functions send X-Ray segments (AWS_XRAY_DAEMON_ADDRESS): the server's daemon
# endpoint, set once it listens (its port is a setting, so parallel servers don't clash).
xray_daemon_address = "127.0.0.1:2000"


def set_xray_daemon_address(address: str) -> None:
    global xray_daemon_address
    xray_daemon_address = address


def install(launcher: Launcher) -> Launcher:
    """Make `launcher` the one new environments use; returns the one it replaces."""
    global _launcher
    previous, _launcher = _launcher, launcher
    return previous


def current() -> Launcher:
    return _launcher


def runtime_argv(image: FunctionImage, python: str) -> list[str]:
    if image.runtime in CUSTOM_RUNTIMES:
        return [str(image.code_dir / "bootstrap")]
    return [python, "-u", str(PYTHON_BOOTSTRAP)]


def environment_variables(
    image: FunctionImage, runtime_api: str, init_type: str, log_stream: str, tmp_dir: Path
) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        **image.variables,
        "_HANDLER": image.handler,
        "LAMBDA_TASK_ROOT": str(image.code_dir),
        "LAMBDA_RUNTIME_DIR": str(PYTHON_BOOTSTRAP.parent),
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_REGION": image.region,
        "AWS_DEFAULT_REGION": image.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{image.runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": image.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(image.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": image.version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": init_type,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{image.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": xray_daemon_address,
        "TMPDIR": str(tmp_dir),
    }
    return env


def build(
    image: FunctionImage,
    *,
    python: str,
    runtime_api: str,
    init_type: str,
    log_stream: str,
    scratch: Path,
) -> Launch:
    """The command and variables that start one environment in its directory `scratch`."""
    tmp_dir = scratch / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    argv = runtime_argv(image, python)
    if SETPRIV is not None:
        argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    env = environment_variables(image, runtime_api, init_type, log_stream, tmp_dir)
    custom = image.runtime in CUSTOM_RUNTIMES
    return Launch(argv, env, image.code_dir, python=None if custom else python)

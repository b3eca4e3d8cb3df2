"""How an execution environment's process is started: its command and variables, and the
Launcher that turns them into a process.

Each environment has a directory of its own whose `tmp/` is its TMPDIR, kept across its
warm invocations and removed with it. The process leads its own session and process
group, so a timeout kills its whole tree, and gets a parent-death signal, so it never
outlives Lamina even when Lamina is killed with SIGKILL. Namespaces, cgroups and rlimits
come with the isolation backend (sandbox/isolation.py) as `Launch.sandbox`, a spec that
either launcher carries out in the child (lamina/runtimes/isolate.py).

Launchers: `SpawnLauncher` execs the command (`setpriv --pdeathsig KILL -- python -u
python_bootstrap.py`, or a custom runtime's `bootstrap`; isolated: as PID 1 of a new PID
namespace, `isolate.py spawn` sets the sandbox up and execs the command in PID 2);
`forkserver.ForkLauncher` forks Python environments from a fork server and hands
everything else to a SpawnLauncher. The server installs the one it uses with `install()`;
environments take `current()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import marshal
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

PYTHON_BOOTSTRAP = Path(__file__).resolve().parent.parent / "runtimes" / "python_bootstrap.py"
NODE_BOOTSTRAP = PYTHON_BOOTSTRAP.parent / "node_bootstrap.js"
# As on AWS (less /var/lang/lib): the same for every environment, so the fork server's
# own (its startup read it) equals a forked environment's.
LD_LIBRARY_PATH = "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
OPT = Path("/opt")
CUSTOM_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
SETPRIV = shutil.which("setpriv")  # util-linux: sets the parent-death signal, then execs
PRLIMIT = shutil.which("prlimit")  # util-linux: sets rlimits, then execs
ISOLATE = PYTHON_BOOTSTRAP.parent / "isolate.py"
SETUP_LIMIT_S = 10.0  # an isolated environment's sandbox is set up within this
SPAWN_DATA_BASE = 32 * 1024 * 1024  # RLIMIT_DATA of a spawned interpreter: its own start


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
    vpc_subnets: tuple[str, ...] = ()  # VpcConfig.SubnetIds: a private network when isolated
    interpreter: str = ""  # the runtime's python or node on this host ("": none here)
    opt_dir: Path | None = None  # the function's layers, merged in order (shown at /opt)
    unavailable: str = ""  # why the runtime cannot run here (its interpreter is gone)
    role: str = ""  # the execution role's ARN (its temporary credentials are the function's)
    log_format: str = "Text"  # LoggingConfig.LogFormat: Text or JSON
    log_level: str = ""  # LoggingConfig.ApplicationLogLevel (JSON only)


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    python: str | None = None  # the interpreter, when this is Lamina's Python runtime
    sandbox: dict[str, Any] | None = None  # the isolation spec (sandbox/isolation.py)


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
    reaped when its pidfd turns readable: no thread and no SIGCHLD handler per child.

    An isolated one (PID 1 of its namespace) talks over `channel`: it says when its
    sandbox is ready (with the Runtime API's socket of a private network), and reports the
    runtime's exit status, which is the environment's (PID 1 cannot die of most signals)."""

    def __init__(
        self, popen: subprocess.Popen[bytes], channel: socket.socket | None = None
    ) -> None:
        self._popen = popen
        self.pid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self.api_socket: socket.socket | None = None
        self._channel = channel
        self._status: int | None = None
        self.ready: asyncio.Future[None] = self._loop.create_future()
        if channel is None:
            self.ready.set_result(None)
        else:
            channel.setblocking(False)
            self._loop.add_reader(channel.fileno(), self._hear)
        self._pidfd = os.pidfd_open(popen.pid)  # fine even if it has exited already
        self._loop.add_reader(self._pidfd, self._reap)

    def _hear(self) -> None:
        channel = self._channel
        while channel is not None:
            try:
                data, fds, _, _ = socket.recv_fds(channel, 4096, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._hang_up()
                return
            if data == b"ready":
                if fds:
                    self.api_socket = socket.socket(fileno=fds.pop())
                if not self.ready.done():
                    self.ready.set_result(None)
            elif data.startswith(b"status "):
                self._status = int(data[7:])
            for fd in fds:
                os.close(fd)

    def _hang_up(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            self._loop.remove_reader(channel.fileno())
            channel.close()
        if not self.ready.done():
            self.ready.set_result(None)  # it died setting up: its exit says the rest

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
        self._hear()  # the runtime's status, sent before its init exited
        self._hang_up()
        if self._status is not None:
            code = self._status
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


_pid_namespace: Any = None


def _new_pid_namespace() -> Any:
    """A context in which this thread's next child is PID 1 of a new PID namespace."""
    global _pid_namespace
    if _pid_namespace is None:
        from lamina.runtimes.isolate import PidNamespace

        _pid_namespace = PidNamespace()
    return _pid_namespace


async def spawn_isolated(plan: Launch, output: int) -> SpawnedProcess:
    """Start `plan` in its sandbox: `isolate.py spawn` as PID 1 of a new PID namespace
    (with only the variables an interpreter needs: the function's are for the runtime),
    back once the sandbox is set up or the process is gone."""
    assert plan.sandbox is not None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.send(marshal.dumps({**plan.sandbox, "argv": plan.argv, "env": plan.env}))
    argv = [sys.executable, "-I", "-S", str(ISOLATE), "spawn", str(theirs.fileno())]
    try:
        with _new_pid_namespace():
            popen = subprocess.Popen(
                argv,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                start_new_session=True,
            )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    process = SpawnedProcess(popen, ours)
    try:
        async with asyncio.timeout(SETUP_LIMIT_S):
            await asyncio.shield(process.ready)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    return process


def limited_argv(plan: Launch) -> list[str]:
    """The process backend's rlimits for a spawned command (util-linux's prlimit)."""
    spec = plan.sandbox or {}
    if PRLIMIT is None or not spec.get("rlimits"):
        return plan.argv
    limits = dict(spec["rlimits"])
    if spec.get("data"):
        limits["DATA"] = int(spec["data"]) + SPAWN_DATA_BASE
    options = [f"--{name.lower()}={value}" for name, value in limits.items()]
    return [PRLIMIT, *options, "--", *plan.argv]


class SpawnLauncher:
    """Every environment a new program: fork + exec of `plan.argv`."""

    async def start(self) -> None:
        return None

    async def spawn(self, plan: Launch, output: int) -> ProcessHandle:
        if plan.sandbox and plan.sandbox.get("root"):
            return await spawn_isolated(plan, output)
        argv = limited_argv(plan) if plan.sandbox else plan.argv
        return spawn_process(argv, env=plan.env, cwd=plan.cwd, output=output)

    async def close(self) -> None:
        return None


_launcher: Launcher = SpawnLauncher()
# Where functions send X-Ray segments (AWS_XRAY_DAEMON_ADDRESS): the server's daemon
# endpoint, set once it listens (its port is a setting, so parallel servers don't clash).
xray_daemon_address = "127.0.0.1:2000"


def set_xray_daemon_address(address: str) -> None:
    global xray_daemon_address
    xray_daemon_address = address


# The SDK directory python3.x runtimes put on sys.path (lamina/sandbox/sdk.py).
python_sdk = ""
python_sdk_minimum = (3, 0)  # the oldest python3.x runtime it imports on


def set_python_sdk(path: str, minimum: tuple[int, int] = (3, 0)) -> None:
    global python_sdk, python_sdk_minimum
    python_sdk, python_sdk_minimum = path, minimum


def _sdk_runs_on(runtime: str) -> bool:
    """python3.x runtimes at least as new as the SDK's Requires-Python (an older one gets
    no SDK rather than one that fails to import)."""
    found = re.fullmatch(r"python3\.(\d+)", runtime)
    return found is not None and (3, int(found.group(1))) >= python_sdk_minimum


def install(launcher: Launcher) -> Launcher:
    """Make `launcher` the one new environments use; returns the one it replaces."""
    global _launcher
    previous, _launcher = _launcher, launcher
    return previous


def current() -> Launcher:
    return _launcher


def is_node(runtime: str) -> bool:
    return runtime.startswith("nodejs")


def runtime_argv(image: FunctionImage, python: str, task_root: Path | None = None) -> list[str]:
    if image.runtime in CUSTOM_RUNTIMES:
        return [str((task_root or image.code_dir) / "bootstrap")]
    if is_node(image.runtime):
        return [image.interpreter, str(NODE_BOOTSTRAP)]
    return [image.interpreter or python, "-u", str(PYTHON_BOOTSTRAP)]


def layer_variables(image: FunctionImage, opt: Path) -> dict[str, str]:
    """Where the runtime finds the layers' files (`opt` is /opt as the environment sees
    it), as on AWS: libraries on LD_LIBRARY_PATH, node_modules on NODE_PATH."""
    env = {"LD_LIBRARY_PATH": LD_LIBRARY_PATH}
    if opt != OPT:  # layers of an environment without a mount namespace: a host directory
        env["LD_LIBRARY_PATH"] += f":{opt}/lib"
        env["_LAMINA_OPT"] = str(opt)
    if is_node(image.runtime):
        major = image.runtime[len("nodejs") : -len(".x")]
        env["NODE_PATH"] = (
            f"{opt}/nodejs/node{major}/node_modules:{opt}/nodejs/node_modules:"
            f"{PYTHON_BOOTSTRAP.parent}:/var/task"
        )
    return env


def environment_variables(
    image: FunctionImage,
    runtime_api: str,
    init_type: str,
    log_stream: str,
    tmp_dir: Path,
    task_root: Path | None = None,
    opt_dir: Path | None = None,
    api_endpoint: str = "",
    xray_address: str = "",
    credentials: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment's variables; `opt_dir` is where it sees its layers (/opt),
    `api_endpoint` Lamina's API as the environment reaches it (from its own network: the
    sandbox says, isolation.Sandbox.api_endpoint), `xray_address` the X-Ray daemon
    endpoint likewise; `credentials` the execution role's temporary credentials
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)."""
    opt = opt_dir or OPT
    path = "/usr/local/bin:/usr/bin:/bin:" + f"{opt}/bin"
    if is_node(image.runtime) and image.interpreter:
        path = os.path.dirname(image.interpreter) + ":" + path  # `node` itself, as on AWS
    env = {
        "PATH": path,
        **layer_variables(image, opt),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        **image.variables,
        "_HANDLER": image.handler,
        "LAMBDA_TASK_ROOT": str(task_root or image.code_dir),
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
        "AWS_XRAY_DAEMON_ADDRESS": xray_address or xray_daemon_address,
        "TMPDIR": str(tmp_dir),
        **(credentials or {}),
    }
    if image.log_format == "JSON":
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"  # the runtime's logging writes JSON records
        env["AWS_LAMBDA_LOG_LEVEL"] = image.log_level or "INFO"
    if api_endpoint:
        env["AWS_ENDPOINT_URL"] = api_endpoint  # boto3 and the AWS CLI call Lamina back
    if python_sdk and _sdk_runs_on(image.runtime):
        env["_LAMINA_PYTHON_SDK"] = python_sdk  # after the function's code on sys.path
    return env


def build(
    image: FunctionImage,
    *,
    python: str,
    runtime_api: str,
    init_type: str,
    log_stream: str,
    scratch: Path,
    task_root: Path | None = None,
    tmp_dir: Path | None = None,
    sandbox: dict[str, Any] | None = None,
    opt_dir: Path | None = None,
    api_endpoint: str = "",
    xray_address: str = "",
    credentials: dict[str, str] | None = None,
) -> Launch:
    """The command and variables that start one environment in its directory `scratch`.

    `task_root` and `tmp_dir` are the code's and /tmp's paths as the environment sees them
    (default: the code directory and `scratch/tmp`); `sandbox` the isolation spec."""
    if tmp_dir is None:
        tmp_dir = scratch / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
    task_root = task_root or image.code_dir
    argv = runtime_argv(image, python, task_root)
    if SETPRIV is not None:
        argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    env = environment_variables(
        image,
        runtime_api,
        init_type,
        log_stream,
        tmp_dir,
        task_root,
        opt_dir,
        api_endpoint,
        xray_address,
        credentials,
    )
    python_runtime = not (image.runtime in CUSTOM_RUNTIMES or is_node(image.runtime))
    interpreter = image.interpreter or python
    return Launch(
        argv, env, task_root, python=interpreter if python_runtime else None, sandbox=sandbox
    )

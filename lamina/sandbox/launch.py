"""How an execution environment's process is started: its command and variables.

Each environment has a directory of its own whose `tmp/` is its TMPDIR, kept across its
warm invocations and removed with it. The process leads its own process group, so a
timeout kills its whole tree, and gets a parent-death signal, so it never outlives
Lamina even when Lamina is killed with SIGKILL. Namespaces and cgroups come with the
isolation backend.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path


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
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
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
    return Launch(argv, env, image.code_dir)

"""Each python3.x runtime on an interpreter of that version, on both launch paths (under
the default isolation), found the way Lamina finds them; absent and deprecated runtimes
refused with their messages; `lamina doctor` lists what runs."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROLE, Server, make_zip

VERSIONS = [f"3.{minor}" for minor in range(9, 16)]
VERSION_APP = """
import os, sys

started = os.environ.get("LAMBDA_TASK_ROOT")

def handler(event, context):
    return {"version": list(sys.version_info[:2]), "executable": sys.executable,
            "cwd": os.getcwd(), "task": started, "pid": os.getpid()}
"""


def interpreters() -> dict[str, str]:
    """The Pythons of this machine, found independently of Lamina: the one running the
    tests, `python3.x` on PATH (not pyenv's shims) and pyenv's versions."""
    found: dict[str, str] = {f"3.{sys.version_info.minor}": sys.executable}
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if "shims" not in d)
    roots = {os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")}
    for version in VERSIONS:
        if version in found:
            continue
        options = [shutil.which(f"python{version}", path=path) or ""]
        for root in sorted(r for r in roots if r):
            options += glob.glob(f"{root}/versions/{version}.*/bin/python{version}")
        for option in options:
            if option and os.access(option, os.X_OK):
                found[version] = option
                break
    return found


PRESENT = interpreters()
print(f"python interpreters on this machine: {PRESENT}")


@pytest.fixture(scope="module", params=["fork-server", "no-fork-server"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    args = [] if request.param == "fork-server" else ["--no-fork-server"]
    running = Server(tmp_path_factory.mktemp("pyver") / "data", args=args).start()
    yield running
    running.stop()


def test_the_machine_has_a_second_python() -> None:
    """The suite proves the mapping only if it has two versions to map."""
    assert len(PRESENT) >= 2, PRESENT


@pytest.mark.parametrize("version", sorted(PRESENT, key=lambda v: int(v.split(".")[1])))
def test_each_runtime_runs_on_its_own_version(lam: Any, version: str) -> None:
    name = f"ver-{version.replace('.', '-')}"
    created = lam.create_function(
        FunctionName=name,
        Runtime=f"python{version}",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": VERSION_APP})},
    )
    assert created["Runtime"] == f"python{version}"
    for _ in range(2):  # a cold start, then a warm one
        response = lam.invoke(FunctionName=name, Payload=b"{}")
        assert "FunctionError" not in response, response["Payload"].read()
        answer = json.loads(response["Payload"].read())
        assert answer["version"] == [3, int(version.split(".")[1])]
        assert Path(answer["executable"]).name.startswith("python")
        assert answer["cwd"] == answer["task"]


def test_absent_runtime_is_refused_naming_the_flag(lam: Any) -> None:
    missing = [v for v in VERSIONS if v not in PRESENT]
    assert missing  # python3.15 at least
    version = missing[-1]
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        lam.create_function(
            FunctionName="absent",
            Runtime=f"python{version}",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": VERSION_APP})},
        )
    assert caught.value.response["Error"]["Message"] == (
        f"The runtime python{version} needs python{version}, which this host does not have: "
        f"install it or give its path with `lamina serve --runtime python{version}="
        f"/path/to/python{version}`."
    )


@pytest.mark.parametrize(
    ("runtime", "newer"), [("python3.8", "python3.13"), ("nodejs16.x", "nodejs22.x")]
)
def test_deprecated_runtime_gets_aws_message(lam: Any, runtime: str, newer: str) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        lam.create_function(
            FunctionName="old",
            Runtime=runtime,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": VERSION_APP})},
        )
    assert caught.value.response["Error"]["Message"] == (
        f"The runtime parameter of {runtime} is no longer supported for creating or updating "
        f"AWS Lambda functions. We recommend you use the new runtime ({newer}) while creating "
        "or updating functions."
    )


def test_runtime_flag_with_the_wrong_version_is_refused(tmp_path: Path) -> None:
    other = next(v for v in PRESENT if v != f"3.{sys.version_info.minor}")
    server = Server(tmp_path / "data", args=["--runtime", f"python{other}={sys.executable}"])
    server.start()
    try:
        client = server.client()
        with pytest.raises(client.exceptions.InvalidParameterValueException) as caught:
            client.create_function(
                FunctionName="wrong",
                Runtime=f"python{other}",
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": make_zip({"app.py": VERSION_APP})},
            )
        mine = f"3.{sys.version_info.minor}"
        assert caught.value.response["Error"]["Message"] == (
            f"The interpreter given for python{other} ({sys.executable}) is python {mine}, "
            f"not {other}."
        )
    finally:
        server.stop()


def test_doctor_lists_runnable_runtimes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lamina.cli", "doctor"], capture_output=True, text=True, timeout=120
    ).stdout
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines() if line.startswith("  ")
             and line.split()[0] in ("ok", "--")}  # fmt: skip
    for version in VERSIONS:
        assert lines[f"python{version}"] == ("ok" if version in PRESENT else "--"), out
    assert lines["provided.al2023"] == "ok"
    node = shutil.which("node")
    if node is not None:  # Debian's node, which make test installs
        major = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"],
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        assert lines[f"nodejs{major}.x"] == "ok", out

"""The boto3 python3.x environments find (lamina/sandbox/sdk.py): copied from Lamina's
installation, and given only to runtimes its distributions declare they run on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.sandbox import launch
from lamina.sandbox.launch import FunctionImage
from lamina.sandbox.sdk import minimum_python, python_sdk_dir


def image(runtime: str) -> FunctionImage:
    return FunctionImage(
        name="f",
        arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        version="$LATEST",
        region="us-east-1",
        runtime=runtime,
        handler="app.handler",
        code_dir=Path("/nonexistent"),
        memory_mb=128,
        timeout_s=3,
        ephemeral_mb=512,
    )


def test_the_sdk_directory_holds_boto3_and_its_dependencies(tmp_path: Path) -> None:
    found = python_sdk_dir(tmp_path)
    assert found is not None
    for package in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3"):
        assert (found / package / "__init__.py").is_file(), package
    assert not (found / "lamina").exists() and not (found / "uvicorn").exists()
    assert python_sdk_dir(tmp_path) == found  # made once, then reused as it is


@pytest.fixture
def sdk() -> Iterator[tuple[int, int]]:
    before = launch.python_sdk, launch.python_sdk_minimum
    minimum = minimum_python()
    launch.set_python_sdk("/sdk", minimum)
    yield minimum
    launch.set_python_sdk(*before)


def test_only_runtimes_the_sdk_declares_it_runs_on_get_it(sdk: tuple[int, int]) -> None:
    assert sdk >= (3, 10)  # boto3 1.44 and urllib3 2.x declare Requires-Python >= 3.10

    def variables(runtime: str) -> dict[str, str]:
        return launch.environment_variables(
            image(runtime), "127.0.0.1:1", "on-demand", "stream", Path("/tmp")
        )

    newest = f"python3.{sdk[1]}"
    assert variables(newest)["_LAMINA_PYTHON_SDK"] == "/sdk"
    assert variables("python3.13")["_LAMINA_PYTHON_SDK"] == "/sdk"
    older = f"python3.{sdk[1] - 1}"
    assert "_LAMINA_PYTHON_SDK" not in variables(older)  # it would not even import there
    assert "_LAMINA_PYTHON_SDK" not in variables("nodejs22.x")
    assert "_LAMINA_PYTHON_SDK" not in variables("provided.al2023")

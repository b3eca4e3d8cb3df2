"""The real AWS CLI (awscli, from the same environment as the tests) against `lamina serve`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PYTHON_RUNTIME, ROLE, Server, make_zip

AWS = Path(sys.executable).parent / "aws"
APP = "def handler(event, context):\n    return {'from': 'cli', 'event': event}\n"


def cli_env(tmp_path: Path, region: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Only the test's settings: no profile, config file or endpoint from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION=region,
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_PAGER="",
    )
    env.update(extra or {})
    return env


def aws(
    server: Server,
    tmp_path: Path,
    *args: str,
    region: str = "us-east-1",
    endpoint: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [str(AWS)]
    if endpoint:
        command += ["--endpoint-url", server.endpoint]
    command += ["lambda", *args, "--output", "json"]
    return subprocess.run(
        command,
        env=cli_env(tmp_path, region, env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def failed(
    result: subprocess.CompletedProcess[str], operation: str, code: str, message: str
) -> None:
    assert result.returncode == 255, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"An error occurred ({code}) when calling the {operation} operation: {message}"
    )


def sha256_b64(blob: bytes) -> str:
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def test_aws_cli_is_the_real_one() -> None:
    version = subprocess.run([str(AWS), "--version"], capture_output=True, text=True, check=True)
    assert (version.stdout + version.stderr).startswith("aws-cli/")


def test_create_get_list_with_the_cli(server: Server, lam: Any, tmp_path: Path) -> None:
    code = make_zip({"app.py": APP})
    package = tmp_path / "function.zip"
    package.write_bytes(code)
    created = ok(
        aws(
            server,
            tmp_path,
            "create-function",
            "--function-name",
            "cli-made",
            "--runtime",
            PYTHON_RUNTIME,
            "--role",
            ROLE,
            "--handler",
            "app.handler",
            "--zip-file",
            f"fileb://{package}",
            "--memory-size",
            "256",
            "--timeout",
            "30",
            "--description",
            "made by the AWS CLI",
            "--environment",
            "Variables={STAGE=cli,COLOR=blue}",
            "--tags",
            "team=cli,env=test",
            "--architectures",
            "arm64",
            "--ephemeral-storage",
            "Size=1024",
            "--tracing-config",
            "Mode=Active",
        )
    )
    assert created["FunctionName"] == "cli-made"
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:cli-made"
    assert created["CodeSha256"] == sha256_b64(code)
    assert created["CodeSize"] == len(code)
    assert created["MemorySize"] == 256
    assert created["Timeout"] == 30
    assert created["Description"] == "made by the AWS CLI"
    assert created["Environment"] == {"Variables": {"STAGE": "cli", "COLOR": "blue"}}
    assert created["Architectures"] == ["arm64"]
    assert created["EphemeralStorage"] == {"Size": 1024}
    assert created["TracingConfig"] == {"Mode": "Active"}
    assert created["State"] == "Active"

    got = ok(aws(server, tmp_path, "get-function", "--function-name", "cli-made"))
    assert got["Configuration"] == created
    assert got["Tags"] == {"team": "cli", "env": "test"}
    with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as response:
        assert response.read() == code

    listed = ok(aws(server, tmp_path, "list-functions"))
    assert [f for f in listed["Functions"] if f["FunctionName"] == "cli-made"] == [created]

    # boto3 sees exactly what the CLI made.
    config = lam.get_function_configuration(FunctionName="cli-made")
    config.pop("ResponseMetadata")
    assert config == created


def test_cli_pagination(server: Server, tmp_path: Path) -> None:
    region = "sa-east-1"
    client = server.client(region=region)
    names = [f"cli-page-{i}" for i in range(5)]
    for name in names:
        client.create_function(
            FunctionName=name,
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": APP})},
        )
    first = ok(aws(server, tmp_path, "list-functions", "--max-items", "2", region=region))
    assert [f["FunctionName"] for f in first["Functions"]] == names[:2]
    rest = ok(
        aws(
            server,
            tmp_path,
            "list-functions",
            "--starting-token",
            first["NextToken"],
            region=region,
        )
    )
    assert [f["FunctionName"] for f in rest["Functions"]] == names[2:]
    assert "NextToken" not in rest
    # With small pages the CLI follows NextMarker itself and prints everything.
    paged = ok(aws(server, tmp_path, "list-functions", "--page-size", "2", region=region))
    assert [f["FunctionName"] for f in paged["Functions"]] == names
    assert all(f["FunctionArn"].startswith(f"arn:aws:lambda:{region}:") for f in paged["Functions"])


def test_cli_update_settings_and_delete(server: Server, tmp_path: Path) -> None:
    region = "eu-north-1"
    code = make_zip({"app.py": APP})
    package = tmp_path / "v1.zip"
    package.write_bytes(code)
    ok(
        aws(
            server,
            tmp_path,
            "create-function",
            "--function-name",
            "cli-life",
            "--runtime",
            PYTHON_RUNTIME,
            "--role",
            ROLE,
            "--handler",
            "app.handler",
            "--zip-file",
            f"fileb://{package}",
            region=region,
        )
    )
    new_code = make_zip({"app.py": APP.replace("'cli'", "'cli-v2'")})
    package.write_bytes(new_code)
    updated = ok(
        aws(
            server,
            tmp_path,
            "update-function-code",
            "--function-name",
            "cli-life",
            "--zip-file",
            f"fileb://{package}",
            region=region,
        )
    )
    assert updated["CodeSha256"] == sha256_b64(new_code)
    configured = ok(
        aws(
            server,
            tmp_path,
            "update-function-configuration",
            "--function-name",
            "cli-life",
            "--memory-size",
            "512",
            "--timeout",
            "60",
            region=region,
        )
    )
    assert (configured["MemorySize"], configured["Timeout"]) == (512, 60)
    assert configured["CodeSha256"] == sha256_b64(new_code)
    settings = ok(aws(server, tmp_path, "get-account-settings", region=region))
    assert settings["AccountUsage"] == {"TotalCodeSize": len(new_code), "FunctionCount": 1}
    # The model maps DeleteFunction's StatusCode to the HTTP status: AWS answers 204.
    assert ok(
        aws(server, tmp_path, "delete-function", "--function-name", "cli-life", region=region)
    ) == {"StatusCode": 204}
    failed(
        aws(server, tmp_path, "get-function", "--function-name", "cli-life", region=region),
        "GetFunction",
        "ResourceNotFoundException",
        f"Function not found: arn:aws:lambda:{region}:000000000000:function:cli-life:$LATEST",
    )


def test_cli_reports_server_validation(server: Server, tmp_path: Path) -> None:
    package = tmp_path / "function.zip"
    package.write_bytes(make_zip({"app.py": APP}))
    failed(
        aws(
            server,
            tmp_path,
            "create-function",
            "--function-name",
            "cli-too-big",
            "--runtime",
            PYTHON_RUNTIME,
            "--role",
            ROLE,
            "--handler",
            "app.handler",
            "--zip-file",
            f"fileb://{package}",
            "--memory-size",
            "10241",
        ),
        "CreateFunction",
        "ValidationException",
        "1 validation error detected: Value '10241' at 'memorySize' failed to satisfy "
        "constraint: Member must have value less than or equal to 10240",
    )
    failed(
        aws(server, tmp_path, "get-function", "--function-name", "cli-too-big"),
        "GetFunction",
        "ResourceNotFoundException",
        "Function not found: arn:aws:lambda:us-east-1:000000000000:function:cli-too-big:$LATEST",
    )


@pytest.mark.parametrize("region", ["us-east-1", "ap-northeast-1"])
def test_cli_endpoint_from_the_environment(server: Server, tmp_path: Path, region: str) -> None:
    """AWS_ENDPOINT_URL_LAMBDA points an unmodified CLI at Lamina; the region is honoured."""
    package = tmp_path / "function.zip"
    package.write_bytes(make_zip({"app.py": APP}))
    env = {"AWS_ENDPOINT_URL_LAMBDA": server.endpoint}
    created = ok(
        aws(
            server,
            tmp_path,
            "create-function",
            "--function-name",
            "cli-env",
            "--runtime",
            PYTHON_RUNTIME,
            "--role",
            ROLE,
            "--handler",
            "app.handler",
            "--zip-file",
            f"fileb://{package}",
            region=region,
            endpoint=False,
            env=env,
        )
    )
    assert created["FunctionArn"] == f"arn:aws:lambda:{region}:000000000000:function:cli-env"
    got = ok(
        aws(
            server,
            tmp_path,
            "get-function-configuration",
            "--function-name",
            "cli-env",
            region=region,
            endpoint=False,
            env=env,
        )
    )
    assert got == created

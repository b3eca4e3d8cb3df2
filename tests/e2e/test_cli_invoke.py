"""The real AWS CLI invokes a function and decodes the log tail.

The installed CLI is v1 (awscli on PyPI), which has no `--cli-binary-format` option: it
sends a blob argument raw. The same intent is given as the `cli_binary_format` setting
of a config file, which v1 accepts and v2 obeys, so the test holds for either.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import Server, python_function

AWS = str(Path(sys.executable).parent / "aws")

SOURCE = """
def handler(event, context):
    print("cli event", event)
    return {"received": event, "request_id": context.aws_request_id}
"""


def aws(server: Server, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ncli_binary_format = raw-in-base64-out\n")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    env.pop("AWS_PROFILE", None)
    return subprocess.run(
        [AWS, "--endpoint-url", server.endpoint, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )


def test_aws_cli_invoke_with_log_tail(server: Server, lam: Any, tmp_path: Path) -> None:
    python_function(lam, "cli-target", SOURCE)
    out = tmp_path / "out.json"
    done = aws(
        server,
        tmp_path,
        "lambda",
        "invoke",
        "--function-name",
        "cli-target",
        "--log-type",
        "Tail",
        "--payload",
        '{"a":1}',
        str(out),
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["StatusCode"] == 200
    assert printed["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in printed
    result = json.loads(out.read_text())
    assert result["received"] == {"a": 1}
    rid = result["request_id"]
    lines = base64.b64decode(printed["LogResult"]).decode().splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert lines[1] == "cli event {'a': 1}"
    assert lines[2] == f"END RequestId: {rid}"
    assert re.fullmatch(
        rf"REPORT RequestId: {rid}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms",
        lines[3],
    )
    assert len(lines) == 4


def test_aws_cli_function_error(server: Server, lam: Any, tmp_path: Path) -> None:
    python_function(
        lam,
        "cli-raises",
        "def handler(event, context):\n    raise RuntimeError('from the cli test')\n",
    )
    out = tmp_path / "error.json"
    done = aws(
        server,
        tmp_path,
        "lambda",
        "invoke",
        "--function-name",
        "cli-raises",
        "--payload",
        "{}",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["FunctionError"] == "Unhandled"
    error = json.loads(out.read_text())
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "from the cli test"

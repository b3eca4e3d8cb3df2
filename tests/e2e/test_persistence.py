"""Functions and their code survive a `kill -9` of the server and a restart on the same data dir."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tests.helpers import PYTHON_RUNTIME, ROLE, Server, alive, descendants, make_zip


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


APP = (
    "import os\n\n"
    "def handler(event, context):\n"
    "    return {'env': os.environ['STAGE'], 'event': event}\n"
)
BOOTSTRAP = r"""#!/bin/sh
set -eu
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
  curl -sS -D "$TMPDIR/headers" -o "$TMPDIR/event" "$API/invocation/next"
  ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$TMPDIR/headers" | cut -d' ' -f2 | tr -d '\r')
  printf '{"shell": true, "event": %s}' "$(cat "$TMPDIR/event")" > "$TMPDIR/response"
  curl -sS -o /dev/null -X POST --data-binary "@$TMPDIR/response" "$API/invocation/$ID/response"
done
"""


def sha256_b64(blob: bytes) -> str:
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


def without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def everything(client: Any) -> dict[str, dict[str, Any]]:
    """Every function of the client's region: its GetFunction answer (Code aside) by name."""
    found: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}):
        for config in page["Functions"]:
            got = client.get_function(FunctionName=config["FunctionName"])
            assert got["Configuration"] == config
            found[config["FunctionName"]] = {"Configuration": config, "Tags": got.get("Tags")}
    return found


def test_functions_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    codes = {
        "py-one": make_zip({"app.py": APP}),
        "py-two": make_zip({"app.py": APP, "lib/helper.py": "VALUE = 2\n"}),
        "shell": make_zip({"bootstrap": BOOTSTRAP}, {"bootstrap": 0o755}),
        "updated": make_zip({"app.py": APP.replace("'env'", "'old'")}),
        "deleted": make_zip({"app.py": "def handler(e, c):\n    return 'gone'\n"}),
    }
    new_code = make_zip({"app.py": APP.replace("'env'", "'new'")})
    first = Server(data_dir).start()
    try:
        lam, europe = first.client(), first.client(region="eu-west-1")
        lam.create_function(
            FunctionName="py-one",
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": codes["py-one"]},
            MemorySize=512,
            Timeout=30,
            Environment={"Variables": {"STAGE": "before-crash"}},
            EphemeralStorage={"Size": 2048},
            Description="survives",
            Architectures=["arm64"],
            TracingConfig={"Mode": "Active"},
            VpcConfig={"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
            Tags={"team": "lamina", "durable": "yes"},
        )
        lam.create_function(
            FunctionName="py-two",
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": codes["py-two"]},
            Environment={"Variables": {"STAGE": "two"}},
        )
        lam.create_function(
            FunctionName="shell",
            Runtime="provided.al2023",
            Role=ROLE,
            Handler="function.handler",
            Code={"ZipFile": codes["shell"]},
        )
        lam.create_function(
            FunctionName="updated",
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": codes["updated"]},
            Environment={"Variables": {"STAGE": "x"}},
        )
        lam.update_function_code(FunctionName="updated", ZipFile=new_code)
        lam.update_function_configuration(
            FunctionName="updated", MemorySize=1024, Environment={"Variables": {"STAGE": "updated"}}
        )
        lam.create_function(
            FunctionName="deleted",
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": codes["deleted"]},
        )
        lam.delete_function(FunctionName="deleted")
        europe.create_function(
            FunctionName="py-one",
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": codes["py-two"]},
            Environment={"Variables": {"STAGE": "europe"}},
        )
        before = {"us-east-1": everything(lam), "eu-west-1": everything(europe)}
        settings = without_metadata(lam.get_account_settings())
        # Nothing was invoked: no environment; only the fork server, which dies with it,
        # and the isolation's janitor, which removes the server's cgroups when it dies.
        assert first.process is not None
        children = descendants(first.process.pid)
        assert all(
            "fork_server.py" in command_line(pid) or "cleanup.py" in command_line(pid)
            for pid in children
        ), children
    finally:
        first.kill()
    assert first.process.returncode == -9
    deadline = time.monotonic() + 3
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children), "outlived a kill -9 of the server"

    second = Server(data_dir).start()
    try:
        lam, europe = second.client(), second.client(region="eu-west-1")
        after = {"us-east-1": everything(lam), "eu-west-1": everything(europe)}
        assert after == before
        assert sorted(after["us-east-1"]) == ["py-one", "py-two", "shell", "updated"]
        assert sorted(after["eu-west-1"]) == ["py-one"]
        assert without_metadata(lam.get_account_settings()) == settings

        expected_code = {**codes, "updated": new_code}
        for name in ("py-one", "py-two", "shell", "updated"):
            got = lam.get_function(FunctionName=name)
            assert got["Configuration"]["CodeSha256"] == sha256_b64(expected_code[name])
            assert got["Code"]["Location"].startswith(second.endpoint + "/")
            assert download(got["Code"]["Location"]) == expected_code[name]
        assert (
            download(europe.get_function(FunctionName="py-one")["Code"]["Location"])
            == codes["py-two"]
        )

        one = after["us-east-1"]["py-one"]
        assert one["Tags"] == {"team": "lamina", "durable": "yes"}
        config = one["Configuration"]
        assert (config["MemorySize"], config["Timeout"], config["EphemeralStorage"]) == (
            512,
            30,
            {"Size": 2048},
        )
        assert (config["Description"], config["Architectures"], config["TracingConfig"]) == (
            "survives",
            ["arm64"],
            {"Mode": "Active"},
        )
        assert config["VpcConfig"]["SubnetIds"] == ["subnet-1"]
        assert after["us-east-1"]["updated"]["Configuration"]["MemorySize"] == 1024

        missing = lam.exceptions.ResourceNotFoundException
        try:
            lam.get_function(FunctionName="deleted")
            raise AssertionError("a deleted function came back")
        except missing as error:
            assert error.response["Error"]["Message"] == (
                "Function not found: arn:aws:lambda:us-east-1:000000000000:function:deleted:$LATEST"
            )

        # The code is usable, not just listed: invoke from the restored store.
        answer = lam.invoke(FunctionName="py-one", Payload=b'{"n": 1}')
        assert "FunctionError" not in answer
        assert json.loads(answer["Payload"].read()) == {"env": "before-crash", "event": {"n": 1}}
        answer = lam.invoke(FunctionName="updated", Payload=b"{}")
        assert json.loads(answer["Payload"].read()) == {"new": "updated", "event": {}}
        answer = europe.invoke(FunctionName="py-one", Payload=b"[1]")
        assert json.loads(answer["Payload"].read()) == {"env": "europe", "event": [1]}
        answer = lam.invoke(FunctionName="shell", Payload=b'{"exec": "bit kept"}')
        assert "FunctionError" not in answer
        assert json.loads(answer["Payload"].read()) == {
            "shell": True,
            "event": {"exec": "bit kept"},
        }

        # And the restored registry keeps working.
        lam.create_function(
            FunctionName="after-restart",
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": codes["py-one"]},
        )
        assert lam.get_account_settings()["AccountUsage"]["FunctionCount"] == 5
    finally:
        second.stop()
    code_store = data_dir / "code"
    assert not [
        p.name
        for p in code_store.iterdir()
        if p.name.startswith(".staging-") or p.suffix == ".part"
    ]


def test_kill_9_during_a_create_leaves_nothing_behind(tmp_path: Path) -> None:
    """A create cut short mid-extraction: no function after the restart, and no debris."""
    data_dir = tmp_path / "data"
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("zeros.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as out:
            for _ in range(240):
                out.write(bytes(1 << 20))
    server = Server(data_dir).start()
    sender = threading.Thread(target=_create_quietly, args=(server, bomb.getvalue()), daemon=True)
    try:
        sender.start()
        code_store = data_dir / "code"
        deadline = time.monotonic() + 20
        while not any(
            p.name.startswith(".staging-") and any(p.iterdir()) for p in code_store.iterdir()
        ):
            assert time.monotonic() < deadline, "extraction never started"
            time.sleep(0.005)
    finally:
        server.kill()
    sender.join(30)
    assert [p.name for p in code_store.iterdir() if p.name.startswith(".staging-")]

    again = Server(data_dir).start()
    try:
        lam = again.client()
        assert lam.list_functions()["Functions"] == []
        assert lam.get_account_settings()["AccountUsage"] == {
            "TotalCodeSize": 0,
            "FunctionCount": 0,
        }
        assert sorted(p.name for p in code_store.iterdir()) == []
    finally:
        again.stop()


def _create_quietly(server: Server, blob: bytes) -> None:
    try:
        server.client().create_function(
            FunctionName="cut-short",
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": blob},
        )
    except Exception:  # the server dies under it: that is the point
        return

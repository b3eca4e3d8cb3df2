"""Layers through boto3 and the AWS CLI: published, read, listed, deleted, shared by policy;
up to five in order at /opt as AWS lays them out (python/, nodejs/node_modules, bin/, lib/),
a later one overriding an earlier one's files; AWS's limits and errors; kept across a
restart; a deleted version still serving the functions that use it. Both launch paths
under the default isolation, and a host directory in place of /opt without namespaces."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import runtimes
from tests.e2e.test_aws_cli import aws, ok
from tests.helpers import PYTHON_RUNTIME, ROLE, Server, make_zip

NODE = f"nodejs{max(runtimes.on_path() or runtimes.nodes())}.x"
SITE = f"python/lib/python3.{sys.version_info.minor}/site-packages"
IMPORTER = """
import os, subprocess

def handler(event, context):
    import layerdep, shared
    out = {"dep": layerdep.VALUE, "shared": shared.WHO, "ld": os.environ.get("LD_LIBRARY_PATH")}
    if event.get("tool"):
        out["tool"] = subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip()
        out["opt"] = sorted(os.listdir("/opt")) if os.path.isdir("/opt") else None
    return out
"""


@pytest.fixture(scope="module", params=["fork-server", "no-fork-server"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    args = runtimes.runtime_args() + (
        [] if request.param == "fork-server" else ["--no-fork-server"]
    )
    running = Server(tmp_path_factory.mktemp("layers") / "data", args=args).start()
    yield running
    running.stop()


def publish(client: Any, name: str, files: dict[str, str], **extra: Any) -> dict[str, Any]:
    modes = {path: 0o755 for path in files if path.startswith("bin/")}
    response: dict[str, Any] = client.publish_layer_version(
        LayerName=name, Content={"ZipFile": make_zip(files, modes)}, **extra
    )
    return response


def python_with_layers(client: Any, name: str, layers: list[str], **extra: Any) -> None:
    client.create_function(
        FunctionName=name,
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": IMPORTER})},
        Layers=layers,
        **extra,
    )


def invoke(client: Any, name: str, event: Any = None) -> Any:
    response = client.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return body


def deps_layer(client: Any, name: str, who: str) -> str:
    files = {
        f"{SITE}/layerdep.py": f"VALUE = 'from {name}'\n",
        "python/shared.py": f"WHO = '{who}'\n",
        "bin/layer-tool": f"#!/bin/sh\necho tool of {who}\n",
        "lib/libnothing.txt": "a library directory\n",
    }
    arn: str = publish(client, name, files, CompatibleRuntimes=[PYTHON_RUNTIME])["LayerVersionArn"]
    return arn


def test_python_and_node_import_what_only_a_layer_carries(lam: Any) -> None:
    first = deps_layer(lam, "deps-a", "A")
    python_with_layers(lam, "py-layer", [first])
    answer = invoke(lam, "py-layer", {"tool": True})
    assert answer["dep"] == "from deps-a" and answer["shared"] == "A"
    assert answer["tool"] == "tool of A"  # bin/ on PATH
    assert answer["ld"].split(":")[-1].endswith("/lib")  # lib/ on LD_LIBRARY_PATH
    module = "module.exports = (who) => `hello ${who} from a layer`;\n"
    node_layer = publish(
        lam, "node-deps", {"nodejs/node_modules/greeter/index.js": module},
        CompatibleRuntimes=[NODE],
    )["LayerVersionArn"]  # fmt: skip
    app = "const greet = require('greeter');\nexports.handler = async (e) => greet(e.who);\n"
    lam.create_function(
        FunctionName="node-layer",
        Runtime=NODE,
        Role=ROLE,
        Handler="index.handler",
        Code={"ZipFile": make_zip({"index.js": app})},
        Layers=[node_layer],
    )
    assert invoke(lam, "node-layer", {"who": "node"}) == "hello node from a layer"


def test_later_layer_overrides_earlier_and_order_matters(lam: Any) -> None:
    a = deps_layer(lam, "order-a", "A")
    b = deps_layer(lam, "order-b", "B")
    python_with_layers(lam, "ab", [a, b])
    python_with_layers(lam, "ba", [b, a])
    ab, ba = invoke(lam, "ab", {"tool": True}), invoke(lam, "ba", {"tool": True})
    assert (ab["shared"], ab["dep"], ab["tool"]) == ("B", "from order-b", "tool of B")
    assert (ba["shared"], ba["dep"], ba["tool"]) == ("A", "from order-a", "tool of A")
    config = lam.get_function_configuration(FunctionName="ab")
    assert [layer["Arn"] for layer in config["Layers"]] == [a, b]
    assert all(layer["CodeSize"] > 0 for layer in config["Layers"])
    # Reordered by UpdateFunctionConfiguration: the next environment sees the new order.
    lam.update_function_configuration(FunctionName="ab", Layers=[b, a])
    assert invoke(lam, "ab")["shared"] == "A"
    lam.update_function_configuration(FunctionName="ab", Layers=[])
    assert "Layers" not in lam.get_function_configuration(FunctionName="ab")


def test_layer_version_operations(lam: Any, server: Server) -> None:
    first = publish(
        lam, "ops", {"python/x.py": "X = 1\n"}, Description="first",
        CompatibleRuntimes=["python3.12", NODE], CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )  # fmt: skip
    account_region = "arn:aws:lambda:us-east-1:000000000000"
    assert first["LayerArn"] == f"{account_region}:layer:ops"
    assert first["LayerVersionArn"] == f"{account_region}:layer:ops:1" and first["Version"] == 1
    assert (first["Description"], first["LicenseInfo"]) == ("first", "MIT")
    assert first["CompatibleRuntimes"] == ["python3.12", NODE]
    assert first["CompatibleArchitectures"] == ["x86_64"]
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    second = publish(lam, "ops", {"python/x.py": "X = 2\n"}, CompatibleRuntimes=["python3.13"])
    assert second["Version"] == 2
    got = lam.get_layer_version(LayerName="ops", VersionNumber=1)
    with urllib.request.urlopen(got["Content"]["Location"], timeout=10) as reply:
        blob = reply.read()
    assert len(blob) == got["Content"]["CodeSize"]
    assert (
        got["Content"]["CodeSha256"]
        == __import__("base64").b64encode(hashlib.sha256(blob).digest()).decode()
    )
    assert zipfile.ZipFile(io.BytesIO(blob)).read("python/x.py") == b"X = 1\n"
    by_arn = lam.get_layer_version_by_arn(Arn=first["LayerVersionArn"])
    assert by_arn["Version"] == 1 and by_arn["Description"] == "first"
    listed = lam.list_layer_versions(LayerName="ops")["LayerVersions"]
    assert [v["Version"] for v in listed] == [2, 1]
    only = lam.list_layer_versions(LayerName="ops", CompatibleRuntime="python3.12")
    assert [v["Version"] for v in only["LayerVersions"]] == [1]
    layers = {item["LayerName"]: item for item in lam.list_layers()["Layers"]}
    assert layers["ops"]["LatestMatchingVersion"]["Version"] == 2
    matching = {
        i["LayerName"]: i for i in lam.list_layers(CompatibleRuntime="python3.12")["Layers"]
    }
    assert matching["ops"]["LatestMatchingVersion"]["Version"] == 1
    # Permissions.
    added = lam.add_layer_version_permission(
        LayerName="ops", VersionNumber=1, StatementId="everyone",
        Action="lambda:GetLayerVersion", Principal="*",
    )  # fmt: skip
    statement = json.loads(added["Statement"])
    assert statement == {
        "Sid": "everyone", "Effect": "Allow", "Principal": "*",
        "Action": "lambda:GetLayerVersion", "Resource": f"{account_region}:layer:ops:1",
    }  # fmt: skip
    policy = lam.get_layer_version_policy(LayerName="ops", VersionNumber=1)
    assert json.loads(policy["Policy"])["Statement"] == [statement]
    assert policy["RevisionId"] == added["RevisionId"]
    with pytest.raises(lam.exceptions.ResourceConflictException) as conflict:
        lam.add_layer_version_permission(
            LayerName="ops", VersionNumber=1, StatementId="everyone",
            Action="lambda:GetLayerVersion", Principal="*",
        )  # fmt: skip
    assert conflict.value.response["Error"]["Message"] == (
        "The statement id (everyone) provided already exists. Please provide a new statement "
        "id, or remove the existing statement."
    )
    lam.remove_layer_version_permission(LayerName="ops", VersionNumber=1, StatementId="everyone")
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as none:
        lam.get_layer_version_policy(LayerName="ops", VersionNumber=1)
    assert none.value.response["Error"]["Message"] == (
        "No policy is associated with the given resource."
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as gone:
        lam.remove_layer_version_permission(LayerName="ops", VersionNumber=1, StatementId="x")
    assert gone.value.response["Error"]["Message"] == "Statement x is not found in resource policy."
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
        lam.get_layer_version_policy(LayerName="ops", VersionNumber=9)
    assert missing.value.response["Error"]["Message"] == (
        f"Layer version {account_region}:layer:ops:9 does not exist."
    )
    # Deleting: gone from reads; the number is never reused.
    lam.delete_layer_version(LayerName="ops", VersionNumber=2)
    lam.delete_layer_version(LayerName="ops", VersionNumber=2)  # again: no error, as on AWS
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as deleted:
        lam.get_layer_version(LayerName="ops", VersionNumber=2)
    assert (
        deleted.value.response["Error"]["Message"] == "The resource you requested does not exist."
    )
    assert publish(lam, "ops", {"python/x.py": "X = 3\n"})["Version"] == 3


def test_errors_and_limits_exactly(lam: Any) -> None:
    arns = [deps_layer(lam, f"many-{i}", str(i)) for i in range(6)]
    cases = [
        (arns, "InvalidParameterValueException", "Cannot reference more than 5 layers."),
        ([arns[0].rsplit(":", 1)[0] + ":7"], "InvalidParameterValueException",
         f"Layer version {arns[0].rsplit(':', 1)[0]}:7 does not exist."),
        ([arns[0], arns[0].rsplit(":", 1)[0] + ":1"], "InvalidParameterValueException",
         "Two different versions of the same layer are not allowed to be referenced in the same "
         f"function. {arns[0]} and {arns[0]} are versions of the same layer."),
        ([arns[0].replace("us-east-1", "eu-west-1")], "InvalidParameterValueException",
         "Layers are not in the same region as the function. Layers are expected to be in "
         "region us-east-1."),
    ]  # fmt: skip
    for layers, code, message in cases:
        with pytest.raises(lam.exceptions.ClientError) as caught:
            python_with_layers(lam, "refused", layers)
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["Error"]["Message"] == message
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    unversioned = arns[0].rsplit(":", 1)[0]
    with pytest.raises(lam.exceptions.ClientError) as caught:
        python_with_layers(lam, "refused", [unversioned])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"].startswith(
        f"1 validation error detected: Value '{unversioned}' at 'layers.member' failed to "
        "satisfy constraint: Member must satisfy regular expression pattern: "
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException) as caught:
        lam.get_layer_version(LayerName="no-such-layer", VersionNumber=1)
    assert caught.value.response["Error"]["Message"] == "The resource you requested does not exist."
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version_by_arn(Arn=unversioned + ":99")
    # A runtime the layer does not list is accepted, as on AWS (CompatibleRuntimes is what
    # the console and ListLayers filter by, not a constraint on functions).
    node_only = publish(lam, "node-only", {"python/n.py": "N = 1\n"}, CompatibleRuntimes=[NODE])
    python_with_layers(lam, "incompatible-but-accepted", [node_only["LayerVersionArn"]])
    # 250 MB unzipped counts the function and its layers: two 131 MB layers cannot go together.
    big = []
    for i in range(2):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"big{i}.bin", b"\0" * 131_100_000)
        big.append(
            lam.publish_layer_version(LayerName=f"big-{i}", Content={"ZipFile": buffer.getvalue()})[
                "LayerVersionArn"
            ]
        )
    python_with_layers(lam, "one-big", big[:1])  # 131 MB + the code: fine
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        python_with_layers(lam, "too-big", big)
    code_size = len(IMPORTER)
    assert caught.value.response["Error"]["Message"] == (
        "Function code combined with layers exceeds the maximum allowed size of 262144000 "
        f"bytes. The actual size is {262_200_000 + code_size} bytes."
    )
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_function_configuration(FunctionName="one-big", Layers=big)


def test_deleted_version_stays_usable_and_layers_persist(lam: Any, server: Server) -> None:
    arn = deps_layer(lam, "short-lived", "kept")
    python_with_layers(lam, "keeps", [arn])
    assert invoke(lam, "keeps")["shared"] == "kept"
    lam.delete_layer_version(LayerName="short-lived", VersionNumber=1)
    # A new environment (a configuration change retires the old ones) still has it.
    lam.update_function_configuration(FunctionName="keeps", Environment={"Variables": {"AB": "1"}})
    assert invoke(lam, "keeps")["shared"] == "kept"
    assert lam.get_function_configuration(FunctionName="keeps")["Layers"][0]["Arn"] == arn
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as caught:
        python_with_layers(lam, "late", [arn])
    assert caught.value.response["Error"]["Message"] == f"Layer version {arn} does not exist."
    kept = deps_layer(lam, "persisted", "P")
    server.stop()
    server.start()
    client = server.client()
    assert client.get_layer_version_by_arn(Arn=kept)["Version"] == 1
    assert invoke(client, "keeps")["shared"] == "kept"
    assert deps_layer(client, "short-lived", "again").endswith(":short-lived:2")


def test_aws_cli_publish_and_get_layer_version(server: Server, tmp_path: Path) -> None:
    archive = tmp_path / "layer.zip"
    archive.write_bytes(make_zip({"python/clidep.py": "FROM = 'cli'\n"}))
    published = ok(
        aws(server, tmp_path, "publish-layer-version", "--layer-name", "from-cli",
            "--zip-file", f"fileb://{archive}", "--compatible-runtimes", PYTHON_RUNTIME,
            "--description", "made by the CLI", "--license-info", "Apache-2.0")
    )  # fmt: skip
    assert published["LayerVersionArn"].endswith(":layer:from-cli:1")
    got = ok(
        aws(server, tmp_path, "get-layer-version", "--layer-name", "from-cli",
            "--version-number", "1")
    )  # fmt: skip
    assert got["Description"] == "made by the CLI" and got["LicenseInfo"] == "Apache-2.0"
    assert got["CompatibleRuntimes"] == [PYTHON_RUNTIME]
    with urllib.request.urlopen(got["Content"]["Location"], timeout=10) as reply:
        assert reply.read() == archive.read_bytes()
    missing = aws(server, tmp_path, "get-layer-version", "--layer-name", "from-cli",
                  "--version-number", "5")  # fmt: skip
    assert missing.returncode != 0 and "ResourceNotFoundException" in missing.stderr


def test_layers_without_namespaces(tmp_path: Path) -> None:
    """--isolation none: no /opt of its own, the merged layers' host directory instead."""
    server = Server(tmp_path / "data", args=["--isolation", "none"]).start()
    try:
        client = server.client()
        arn = deps_layer(client, "plain", "host")
        python_with_layers(client, "plain-fn", [arn])
        answer = invoke(client, "plain-fn", {"tool": True})
        assert answer["shared"] == "host" and answer["tool"] == "tool of host"
        assert answer["ld"].split(":")[-1].startswith(str(tmp_path))
    finally:
        server.stop()

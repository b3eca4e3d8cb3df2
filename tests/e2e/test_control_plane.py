"""The Lambda control plane end to end: boto3 (and raw HTTP) against a real `lamina serve`.

Every operation of issue 2, every field it stores, and every bad input it must refuse,
with AWS's exact code, status and message. After each refused create, nothing is left
behind: no function, no change to ListFunctions or the account's usage, no code blob.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import re
import struct
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import botocore.loaders
import pytest
from botocore.exceptions import ClientError
from botocore.model import ServiceModel

from tests.helpers import PYTHON_RUNTIME, ROLE, Server, make_zip

ACCOUNT = "000000000000"
ZIPPED_LIMIT = 52_428_800
UNZIPPED_LIMIT = 262_144_000
REQUEST_LIMIT = 70_167_211
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."
APP = "def handler(event, context):\n    return {'version': 1, 'event': event}\n"
APP_ZIP = make_zip({"app.py": APP})
LAST_MODIFIED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MODEL = ServiceModel(botocore.loaders.Loader().load_service_model("lambda", "service-2"))
FUNCTION_NAME_PATTERN = MODEL.shape_for("FunctionName").metadata["pattern"]
NAMESPACED_NAME_PATTERN = MODEL.shape_for("NamespacedFunctionName").metadata["pattern"]
MODELED_ERRORS = frozenset(shape.error_code or shape.name for shape in MODEL.error_shapes)


# Helpers ------------------------------------------------------------------------------
def arn(name: str, region: str = "us-east-1") -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT}:function:{name}"


def not_found_message(name: str, region: str = "us-east-1") -> str:
    return f"Function not found: {arn(name, region)}:$LATEST"


def sha256_b64(blob: bytes) -> str:
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def params(name: str, **overrides: Any) -> dict[str, Any]:
    """A valid CreateFunction request for `name`, with `overrides` applied."""
    request: dict[str, Any] = {
        "FunctionName": name,
        "Runtime": PYTHON_RUNTIME,
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": APP_ZIP},
    }
    request.update(overrides)
    return request


def refused(call: Callable[..., Any], **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value


def assert_error(
    error: ClientError, code: str, message: str, status: int, user: bool | None = None
) -> None:
    assert error.response["Error"]["Code"] == code
    if code in MODELED_ERRORS:  # boto3 raised client.exceptions.<code>
        assert type(error).__name__ == code
    else:  # e.g. ValidationException, RequestEntityTooLargeException: not in botocore's model
        assert type(error) is ClientError
    assert error.response["Error"]["Message"] == message
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if user is not None:
        assert (error.response.get("Type") == "User") is user


def function_names(client: Any) -> list[str]:
    pages = client.get_paginator("list_functions").paginate()
    return [f["FunctionName"] for page in pages for f in page["Functions"]]


@dataclass(frozen=True)
class Snapshot:
    names: tuple[str, ...]
    usage: tuple[int, int]
    stored: frozenset[str]  # everything under the data dir's code store


def snapshot(server: Server, client: Any) -> Snapshot:
    usage = client.get_account_settings()["AccountUsage"]
    stored = frozenset(p.name for p in (server.data_dir / "code").iterdir())
    return Snapshot(
        tuple(function_names(client)), (usage["FunctionCount"], usage["TotalCodeSize"]), stored
    )


def assert_create_refused(
    server: Server,
    client: Any,
    request: dict[str, Any],
    code: str,
    message: str,
    status: int,
    user: bool | None = None,
) -> None:
    """CreateFunction(request) fails exactly so, and leaves no trace of the function."""
    before = snapshot(server, client)
    error = refused(client.create_function, **request)
    assert_error(error, code, message, status, user)
    name = request["FunctionName"]
    if isinstance(name, str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
        missing = refused(client.get_function, FunctionName=name)
        assert_error(missing, "ResourceNotFoundException", not_found_message(name), 404)
    assert snapshot(server, client) == before


def raw(
    server: Server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request to the server: (status, lower-cased headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def download(url: str) -> bytes:
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
        return body


def zip_with(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, content in entries:
            archive.writestr(info, content)
    return buffer.getvalue()


def entry(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def zeros_zip(sizes: dict[str, int]) -> bytes:
    """A small zip that inflates to `sizes` bytes of zeros per entry (a zip bomb)."""
    buffer = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in sizes.items():
            with archive.open(entry(name), "w") as out:
                left = size
                while left:
                    out.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))
    return buffer.getvalue()


def lie_about_size(blob: bytes, declared: int) -> bytes:
    """Rewrite the uncompressed size of a one-entry zip, in both local and central headers."""
    patched = bytearray(blob)
    assert patched[:4] == b"PK\x03\x04"
    struct.pack_into("<I", patched, 22, declared)
    central = patched.rfind(b"PK\x01\x02")
    struct.pack_into("<I", patched, central + 24, declared)
    return bytes(patched)


@pytest.fixture
def strict(server: Server) -> Any:
    """A client that skips botocore's own client-side checks, so the server's are tested."""
    return server.client(parameter_validation=False)


@pytest.fixture(scope="module")
def too_big_zip() -> bytes:
    """An incompressible zip just over the 50 MB direct-upload limit."""
    blob = zip_with([(zipfile.ZipInfo("noise.bin"), os.urandom(ZIPPED_LIMIT))])
    assert ZIPPED_LIMIT < len(blob) < ZIPPED_LIMIT + 200
    return blob


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zeros_zip({"zeros.bin": UNZIPPED_LIMIT + 1})


# Create / Get / List ------------------------------------------------------------------
def test_create_function_stores_and_returns_every_field(lam: Any) -> None:
    code = make_zip({"app.py": APP, "lib/util.py": "X = 1\n"})
    request = params(
        "full-config",
        Code={"ZipFile": code},
        Runtime="python3.11",
        Handler="app.handler",
        MemorySize=256,
        Timeout=42,
        Environment={"Variables": {"STAGE": "test", "EMPTY": ""}},
        EphemeralStorage={"Size": 1024},
        Description="every stored field",
        Architectures=["arm64"],
        TracingConfig={"Mode": "Active"},
        VpcConfig={"SubnetIds": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]},
        Tags={"team": "lamina", "cost-center": "42"},
    )
    created = lam.create_function(**request)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    expected = {
        "FunctionName": "full-config",
        "FunctionArn": arn("full-config"),
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "CodeSize": len(code),
        "CodeSha256": sha256_b64(code),
        "Description": "every stored field",
        "Timeout": 42,
        "MemorySize": 256,
        "Version": "$LATEST",
        "Environment": {"Variables": {"STAGE": "test", "EMPTY": ""}},
        "EphemeralStorage": {"Size": 1024},
        "Architectures": ["arm64"],
        "TracingConfig": {"Mode": "Active"},
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
    }
    config = {k: v for k, v in created.items() if k != "ResponseMetadata"}
    for key, value in expected.items():
        assert config[key] == value, key
    assert config["VpcConfig"]["SubnetIds"] == ["subnet-1", "subnet-2"]
    assert config["VpcConfig"]["SecurityGroupIds"] == ["sg-1"]
    assert LAST_MODIFIED.fullmatch(config["LastModified"])
    assert UUID.fullmatch(config["RevisionId"])

    got = lam.get_function(FunctionName="full-config")
    assert got["Configuration"] == config
    assert got["Tags"] == {"team": "lamina", "cost-center": "42"}
    assert got["Code"]["RepositoryType"] == "S3"

    by_arn = lam.get_function_configuration(FunctionName=arn("full-config"))
    assert {k: v for k, v in by_arn.items() if k != "ResponseMetadata"} == config
    assert (
        lam.get_function(FunctionName=f"{ACCOUNT}:function:full-config")["Configuration"] == config
    )

    listed = [f for f in lam.list_functions()["Functions"] if f["FunctionName"] == "full-config"]
    assert listed == [config]


def test_create_function_defaults(lam: Any) -> None:
    created = lam.create_function(**params("defaults"))
    assert created["Description"] == ""
    assert created["Timeout"] == 3
    assert created["MemorySize"] == 128
    assert created["EphemeralStorage"] == {"Size": 512}
    assert created["Architectures"] == ["x86_64"]
    assert created["TracingConfig"] == {"Mode": "PassThrough"}
    assert "Tags" not in lam.get_function(FunctionName="defaults")


@pytest.mark.parametrize(
    "runtime", ["python3.9", "python3.13", "provided", "provided.al2", "provided.al2023"]
)
def test_create_function_supported_runtimes(lam: Any, runtime: str) -> None:
    name = "runtime-" + runtime.replace(".", "-")
    files: dict[str, str | bytes] = {"app.py": APP}
    modes = None
    if runtime.startswith("provided"):
        files = {"bootstrap": "#!/bin/sh\necho hi\n"}
        modes = {"bootstrap": 0o755}
    code = make_zip(files, modes)
    created = lam.create_function(
        **params(name, Runtime=runtime, Handler="any.handler", Code={"ZipFile": code})
    )
    assert created["Runtime"] == runtime
    assert created["CodeSha256"] == sha256_b64(code)
    assert lam.get_function_configuration(FunctionName=name)["Runtime"] == runtime


def test_create_function_unsupported_runtime(server: Server, lam: Any) -> None:
    assert_create_refused(
        server,
        lam,
        params("java-fn", Runtime="java21"),
        "InvalidParameterValueException",
        "The runtime parameter of java21 is not supported by Lamina: use python3.9, python3.10, "
        "python3.11, python3.12, python3.13, python3.14, python3.15, nodejs18.x, nodejs20.x, "
        "nodejs22.x, nodejs24.x, nodejs26.x, provided, provided.al2, provided.al2023.",
        400,
        user=True,
    )


def test_get_function_code_location_serves_the_same_zip(lam: Any) -> None:
    code = make_zip({"app.py": APP, "data/blob.bin": os.urandom(4096)})
    lam.create_function(**params("downloadable", Code={"ZipFile": code}))
    location = lam.get_function(FunctionName="downloadable")["Code"]["Location"]
    assert download(location) == code


def test_list_functions_pagination(server: Server) -> None:
    client = server.client(region="ap-southeast-2")
    names = [f"page-{i}" for i in (5, 0, 6, 3, 1, 4, 2)]
    for name in names:
        client.create_function(**params(name))
    pages = []
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"MaxItems": 3}
        if marker:
            kwargs["Marker"] = marker
        page = client.list_functions(**kwargs)
        pages.append([f["FunctionName"] for f in page["Functions"]])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages == [["page-0", "page-1", "page-2"], ["page-3", "page-4", "page-5"], ["page-6"]]
    assert all(
        f["FunctionArn"].startswith("arn:aws:lambda:ap-southeast-2:")
        for f in client.list_functions()["Functions"]
    )
    # boto3's own paginator follows NextMarker the same way.
    paginated = client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
    assert [len(p["Functions"]) for p in paginated] == [2, 2, 2, 1]
    everything = client.list_functions()
    assert [f["FunctionName"] for f in everything["Functions"]] == sorted(names)
    assert "NextMarker" not in everything
    exact = client.list_functions(MaxItems=7)
    assert len(exact["Functions"]) == 7
    assert "NextMarker" not in exact


def test_list_functions_max_items_is_validated(strict: Any) -> None:
    error = refused(strict.list_functions, MaxItems=0)
    assert_error(
        error,
        "ValidationException",
        "1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1",
        400,
    )


# Updates ------------------------------------------------------------------------------
def test_update_function_code(lam: Any) -> None:
    created = lam.create_function(**params("code-update"))
    new_code = make_zip({"app.py": APP.replace("'version': 1", "'version': 2")})
    assert (
        lam.invoke(FunctionName="code-update")["Payload"].read() == b'{"version": 1, "event": {}}'
    )

    stale = refused(
        lam.update_function_code,
        FunctionName="code-update",
        ZipFile=new_code,
        RevisionId="00000000-0000-0000-0000-000000000000",
    )
    assert isinstance(stale, lam.exceptions.PreconditionFailedException)
    assert_error(
        stale,
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id. Call the "
        "GetFunction/GetAlias API to retrieve the latest Revision Id",
        412,
        user=True,
    )
    assert (
        lam.get_function_configuration(FunctionName="code-update")["CodeSha256"]
        == created["CodeSha256"]
    )

    updated = lam.update_function_code(
        FunctionName="code-update", ZipFile=new_code, RevisionId=created["RevisionId"]
    )
    assert updated["CodeSha256"] == sha256_b64(new_code) != created["CodeSha256"]
    assert updated["CodeSize"] == len(new_code)
    assert updated["RevisionId"] != created["RevisionId"]
    assert updated["LastModified"] >= created["LastModified"]
    for key in ("Runtime", "Handler", "Role", "MemorySize", "Timeout", "FunctionArn"):
        assert updated[key] == created[key]
    got = lam.get_function(FunctionName="code-update")
    assert got["Configuration"]["CodeSha256"] == sha256_b64(new_code)
    assert download(got["Code"]["Location"]) == new_code
    assert (
        lam.invoke(FunctionName="code-update")["Payload"].read() == b'{"version": 2, "event": {}}'
    )


def test_update_function_configuration(lam: Any) -> None:
    created = lam.create_function(**params("config-update", Environment={"Variables": {"AA": "1"}}))
    updated = lam.update_function_configuration(
        FunctionName="config-update",
        MemorySize=1024,
        Timeout=900,
        Description="changed",
        Handler="app.other",
        Environment={"Variables": {"BB": "2"}},
        EphemeralStorage={"Size": 10240},
        TracingConfig={"Mode": "Active"},
        Runtime="python3.11",
        RevisionId=created["RevisionId"],
    )
    assert updated["MemorySize"] == 1024
    assert updated["Timeout"] == 900
    assert updated["Description"] == "changed"
    assert updated["Handler"] == "app.other"
    assert updated["Environment"] == {"Variables": {"BB": "2"}}
    assert updated["EphemeralStorage"] == {"Size": 10240}
    assert updated["TracingConfig"] == {"Mode": "Active"}
    assert updated["Runtime"] == "python3.11"
    assert updated["CodeSha256"] == created["CodeSha256"]
    assert updated["RevisionId"] != created["RevisionId"]
    got = lam.get_function_configuration(FunctionName="config-update")
    assert {k: v for k, v in got.items() if k != "ResponseMetadata"} == {
        k: v for k, v in updated.items() if k != "ResponseMetadata"
    }
    stale = refused(
        lam.update_function_configuration,
        FunctionName="config-update",
        MemorySize=2048,
        RevisionId=created["RevisionId"],
    )
    assert isinstance(stale, lam.exceptions.PreconditionFailedException)
    assert stale.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert lam.get_function_configuration(FunctionName="config-update")["MemorySize"] == 1024


def test_delete_function(lam: Any) -> None:
    lam.create_function(**params("doomed"))
    deleted = lam.delete_function(FunctionName="doomed")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "doomed" not in function_names(lam)
    for call in (lam.get_function, lam.get_function_configuration, lam.delete_function):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as info:
            call(FunctionName="doomed")
        assert_error(
            info.value, "ResourceNotFoundException", not_found_message("doomed"), 404, user=True
        )
    # The name is free again.
    assert lam.create_function(**params("doomed"))["FunctionName"] == "doomed"


def test_get_account_settings_follows_creates_and_deletes(server: Server) -> None:
    client = server.client(region="ca-central-1")
    settings = client.get_account_settings()
    assert settings["AccountLimit"] == {
        "TotalCodeSize": 80_530_636_800,
        "CodeSizeUnzipped": UNZIPPED_LIMIT,
        "CodeSizeZipped": ZIPPED_LIMIT,
        "ConcurrentExecutions": 1000,
        "UnreservedConcurrentExecutions": 1000,
    }
    assert settings["AccountUsage"] == {"TotalCodeSize": 0, "FunctionCount": 0}
    small = make_zip({"app.py": APP})
    large = make_zip({"app.py": APP, "pad.bin": os.urandom(10_000)})
    client.create_function(**params("acct-a", Code={"ZipFile": small}))
    client.create_function(**params("acct-b", Code={"ZipFile": large}))
    usage = client.get_account_settings()["AccountUsage"]
    assert usage == {"FunctionCount": 2, "TotalCodeSize": len(small) + len(large)}
    client.update_function_code(FunctionName="acct-a", ZipFile=large)
    usage = client.get_account_settings()["AccountUsage"]
    assert usage == {"FunctionCount": 2, "TotalCodeSize": 2 * len(large)}
    client.delete_function(FunctionName="acct-b")
    usage = client.get_account_settings()["AccountUsage"]
    assert usage == {"FunctionCount": 1, "TotalCodeSize": len(large)}


def test_functions_are_keyed_by_region(server: Server, lam: Any) -> None:
    europe = server.client(region="eu-west-1")
    created = europe.create_function(**params("regional", Description="eu"))
    assert created["FunctionArn"] == arn("regional", "eu-west-1")
    assert europe.get_function(FunctionName="regional")["Configuration"]["FunctionArn"] == arn(
        "regional", "eu-west-1"
    )
    assert function_names(europe) == ["regional"]
    assert "regional" not in function_names(lam)
    missing = refused(lam.get_function, FunctionName="regional")
    assert_error(missing, "ResourceNotFoundException", not_found_message("regional"), 404)
    # The same name is free in another region, and each region sees its own.
    here = lam.create_function(**params("regional", Description="us"))
    assert here["FunctionArn"] == arn("regional")
    assert europe.get_function_configuration(FunctionName="regional")["Description"] == "eu"
    assert lam.get_function_configuration(FunctionName="regional")["Description"] == "us"
    lam.delete_function(FunctionName="regional")
    assert europe.get_function_configuration(FunctionName="regional")["Description"] == "eu"
    missing = refused(europe.get_function, FunctionName="nowhere")
    assert_error(
        missing, "ResourceNotFoundException", not_found_message("nowhere", "eu-west-1"), 404
    )


# Limits -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("member", "value", "path", "rule"),
    [
        ("MemorySize", 127, "memorySize", "greater than or equal to 128"),
        ("MemorySize", 10241, "memorySize", "less than or equal to 10240"),
        ("Timeout", 0, "timeout", "greater than or equal to 1"),
        ("Timeout", 901, "timeout", "less than or equal to 900"),
        (
            "EphemeralStorage",
            {"Size": 511},
            "ephemeralStorage.size",
            "greater than or equal to 512",
        ),
        (
            "EphemeralStorage",
            {"Size": 10241},
            "ephemeralStorage.size",
            "less than or equal to 10240",
        ),
    ],
)
def test_numeric_limits(
    server: Server, strict: Any, member: str, value: Any, path: str, rule: str
) -> None:
    shown = value["Size"] if isinstance(value, dict) else value
    message = (
        f"1 validation error detected: Value '{shown}' at '{path}' failed to satisfy "
        f"constraint: Member must have value {rule}"
    )
    assert_create_refused(
        server, strict, params("limited", **{member: value}), "ValidationException", message, 400
    )
    strict.create_function(**params("limit-update"))
    try:
        error = refused(
            strict.update_function_configuration, FunctionName="limit-update", **{member: value}
        )
        assert_error(error, "ValidationException", message, 400)
        config = strict.get_function_configuration(FunctionName="limit-update")
        assert (config["MemorySize"], config["Timeout"], config["EphemeralStorage"]) == (
            128,
            3,
            {"Size": 512},
        )
    finally:
        strict.delete_function(FunctionName="limit-update")


def test_numeric_limits_at_the_edges_pass(lam: Any) -> None:
    low = lam.create_function(
        **params("edge-low", MemorySize=128, Timeout=1, EphemeralStorage={"Size": 512})
    )
    high = lam.create_function(
        **params("edge-high", MemorySize=10240, Timeout=900, EphemeralStorage={"Size": 10240})
    )
    assert (low["MemorySize"], low["Timeout"], low["EphemeralStorage"]) == (128, 1, {"Size": 512})
    assert (high["MemorySize"], high["Timeout"], high["EphemeralStorage"]) == (
        10240,
        900,
        {"Size": 10240},
    )


def test_several_validation_errors_are_reported_together(server: Server, strict: Any) -> None:
    # Reported in the order of the model's members, whatever the order of the request.
    message = (
        "3 validation errors detected: "
        "Value 'app handler' at 'handler' failed to satisfy constraint: Member must satisfy "
        "regular expression pattern: [^\\s]+; "
        "Value '901' at 'timeout' failed to satisfy constraint: Member must have value "
        "less than or equal to 900; "
        "Value '127' at 'memorySize' failed to satisfy constraint: Member must have value "
        "greater than or equal to 128"
    )
    request = params("multi", MemorySize=127, Timeout=901)
    request["Handler"] = "app handler"
    assert_create_refused(server, strict, request, "ValidationException", message, 400)


def test_environment_limit(server: Server, lam: Any) -> None:
    padding = len(json.dumps({"BIG": ""}, separators=(",", ":")))
    fits = {"BIG": "x" * (4096 - padding)}
    assert len(json.dumps(fits, separators=(",", ":"))) == 4096
    created = lam.create_function(**params("env-4096", Environment={"Variables": fits}))
    assert created["Environment"] == {"Variables": fits}

    too_big = {"BIG": "x" * (4097 - padding)}
    measured = json.dumps(too_big, separators=(",", ":"))
    assert len(measured) == 4097
    message = (
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: " + measured
    )
    assert_create_refused(
        server,
        lam,
        params("env-4097", Environment={"Variables": too_big}),
        "InvalidParameterValueException",
        message,
        400,
        user=True,
    )
    # Several variables are measured together, as one JSON object.
    split = {"AA": "y" * 2000, "BB": "z" * (4097 - 2000 - len('{"AA":"","BB":""}'))}
    assert len(json.dumps(split, separators=(",", ":"))) == 4097
    error = refused(
        lam.update_function_configuration, FunctionName="env-4096", Environment={"Variables": split}
    )
    assert_error(
        error,
        "InvalidParameterValueException",
        message.replace(measured, json.dumps(split, separators=(",", ":"))),
        400,
        user=True,
    )
    assert lam.get_function_configuration(FunctionName="env-4096")["Environment"] == {
        "Variables": fits
    }


def test_zipped_size_limit(server: Server, lam: Any, too_big_zip: bytes) -> None:
    # RequestEntityTooLargeException is not in botocore's model: boto3 raises ClientError.
    message = f"Zipped size must be smaller than {ZIPPED_LIMIT} bytes"
    assert_create_refused(
        server,
        lam,
        params("zipped-huge", Code={"ZipFile": too_big_zip}),
        "RequestEntityTooLargeException",
        message,
        413,
    )
    lam.create_function(**params("zipped-update"))
    error = refused(lam.update_function_code, FunctionName="zipped-update", ZipFile=too_big_zip)
    assert_error(error, "RequestEntityTooLargeException", message, 413)
    assert lam.get_function_configuration(FunctionName="zipped-update")["CodeSha256"] == sha256_b64(
        APP_ZIP
    )


def test_whole_request_size_limit(server: Server, lam: Any) -> None:
    before = snapshot(server, lam)

    def request_of(size: int) -> bytes:
        """A CreateFunction body of exactly `size` bytes: valid JSON, valid base64."""
        prefix = b'{"FunctionName":"request-huge","Role":"' + ROLE.encode() + b'",'
        prefix += b'"Runtime":"' + PYTHON_RUNTIME.encode() + b'","Handler":"app.handler",'
        prefix += b'"Code":{"ZipFile":"'
        suffix = b'"}}'
        room = size - len(prefix) - len(suffix)
        body = b" " * (room % 4) + prefix + b"A" * (room - room % 4) + suffix
        assert len(body) == size
        return body

    status, headers, answer = raw(
        server,
        "POST",
        "/2015-03-31/functions",
        request_of(REQUEST_LIMIT + 1),
        {"Content-Type": "application/json"},
    )
    assert status == 413
    assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert json.loads(answer)["message"] == (
        f"Request must be smaller than {REQUEST_LIMIT} bytes for the CreateFunction operation"
    )
    # One byte less is read and handled: its code is what is too big now.
    status, headers, answer = raw(
        server,
        "POST",
        "/2015-03-31/functions",
        request_of(REQUEST_LIMIT),
        {"Content-Type": "application/json"},
    )
    assert status == 413
    assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert json.loads(answer)["message"] == f"Zipped size must be smaller than {ZIPPED_LIMIT} bytes"
    assert snapshot(server, lam) == before


def test_unzipped_size_limit(server: Server, lam: Any, bomb: bytes) -> None:
    assert len(bomb) < 1_000_000
    message = f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes"
    assert_create_refused(
        server,
        lam,
        params("bomb", Code={"ZipFile": bomb}),
        "InvalidParameterValueException",
        message,
        400,
    )
    lam.create_function(**params("bomb-update"))
    error = refused(lam.update_function_code, FunctionName="bomb-update", ZipFile=bomb)
    assert_error(error, "InvalidParameterValueException", message, 400)
    assert lam.get_function_configuration(FunctionName="bomb-update")["CodeSha256"] == sha256_b64(
        APP_ZIP
    )


def test_unzipped_size_is_counted_across_entries(server: Server, lam: Any) -> None:
    half = UNZIPPED_LIMIT // 2
    many = zeros_zip({"app.py": 10, "a.bin": half, "b.bin": half - 10 + 1})
    assert_create_refused(
        server,
        lam,
        params("bomb-parts", Code={"ZipFile": many}),
        "InvalidParameterValueException",
        f"Unzipped size must be smaller than {UNZIPPED_LIMIT} bytes",
        400,
    )


def test_zip_whose_headers_lie_about_its_size(server: Server, lam: Any, bomb: bytes) -> None:
    """Headers claim 1000 bytes; the data inflates to 250 MB + 1, its CRC that of the whole.

    A check that summed the headers would let it through. Extraction reads no more than
    the header admits, so the bomb never lands; the data then fails its CRC: refused as
    a corrupt package, and nothing is written.
    """
    liar = lie_about_size(bomb, 1000)
    info = zipfile.ZipFile(io.BytesIO(liar)).infolist()[0]
    assert info.file_size == 1000 and info.compress_size < 1_000_000
    assert_create_refused(
        server,
        lam,
        params("liar", Code={"ZipFile": liar}),
        "InvalidParameterValueException",
        UNZIP_FAILED,
        400,
        user=True,
    )


@pytest.mark.parametrize(
    "blob",
    [b"this is not a zip file at all", APP_ZIP[: len(APP_ZIP) // 2], APP_ZIP[:-10], b""],
    ids=["not-a-zip", "truncated-half", "truncated-end", "empty"],
)
def test_malformed_packages(server: Server, strict: Any, blob: bytes) -> None:
    assert_create_refused(
        server,
        strict,
        params("malformed", Code={"ZipFile": blob}),
        "InvalidParameterValueException",
        UNZIP_FAILED,
        400,
        user=True,
    )


def test_corrupt_entry_data(server: Server, lam: Any) -> None:
    blob = bytearray(make_zip({"app.py": APP * 20}))
    start = 30 + len("app.py")
    blob[start : start + 20] = b"\xff" * 20  # damage the deflate stream, keep the headers
    assert_create_refused(
        server,
        lam,
        params("corrupt", Code={"ZipFile": bytes(blob)}),
        "InvalidParameterValueException",
        UNZIP_FAILED,
        400,
        user=True,
    )


def test_file_and_directory_of_the_same_name(server: Server, lam: Any) -> None:
    for names in (["lib", "lib/mod.py"], ["lib/mod.py", "lib"]):
        blob = zip_with([(entry("app.py"), APP.encode())] + [(entry(n), b"X = 1\n") for n in names])
        assert_create_refused(
            server,
            lam,
            params("clash", Code={"ZipFile": blob}),
            "InvalidParameterValueException",
            UNZIP_FAILED,
            400,
            user=True,
        )


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../evil.py", "entry"), ("lib/../../evil.py", "entry"), ("/abs.py", "entry")],
)
def test_entries_escaping_the_task_root(server: Server, lam: Any, name: str, kind: str) -> None:
    blob = zip_with([(entry("app.py"), APP.encode()), (entry(name), b"print('escaped')\n")])
    assert_create_refused(
        server,
        lam,
        params("escape", Code={"ZipFile": blob}),
        "InvalidParameterValueException",
        f"{UNZIP_FAILED} The entry '{name}' points outside the task root.",
        400,
        user=True,
    )


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside", "lib/../../outside"])
def test_symlinks_escaping_the_task_root(server: Server, lam: Any, target: str) -> None:
    blob = zip_with([(entry("app.py"), APP.encode()), (entry("link", 0o120777), target.encode())])
    assert_create_refused(
        server,
        lam,
        params("symlink", Code={"ZipFile": blob}),
        "InvalidParameterValueException",
        f"{UNZIP_FAILED} The symbolic link 'link' points outside the task root.",
        400,
        user=True,
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("a", "."), ("up", "a/.."), ("up/escaped.py", None)], "The entry 'up/escaped.py'"),
        ([("up", "a/.."), ("a", "."), ("up/escaped.py", None)], "The entry 'up/escaped.py'"),
        (
            [("a", "."), ("up", "a/.."), ("up/made/escaped.py", None)],
            "The entry 'up/made/escaped.py'",
        ),
        ([("up", "a/.."), ("a", ".")], "The symbolic link 'up'"),
    ],
    ids=["write-through", "links-reordered", "mkdir-through", "links-only"],
)
def test_symlinks_that_escape_together(
    server: Server, lam: Any, entries: list[tuple[str, str | None]], message: str
) -> None:
    """Each link alone stays inside (`a -> .`, `up -> a/..`); together they lead out."""
    items = [(entry("app.py"), APP.encode())]
    for name, link in entries:
        if link is None:
            items.append((entry(name), b"print('escaped')\n"))
        else:
            items.append((entry(name, 0o120777), link.encode()))
    assert_create_refused(
        server,
        lam,
        params("link-chain", Code={"ZipFile": zip_with(items)}),
        "InvalidParameterValueException",
        f"{UNZIP_FAILED} {message} points outside the task root.",
        400,
        user=True,
    )
    assert not list(server.data_dir.rglob("escaped.py"))
    assert not (server.data_dir / "code" / "made").exists()


def test_symlink_inside_the_task_root_is_kept(lam: Any) -> None:
    blob = zip_with([(entry("real.py"), APP.encode()), (entry("app.py", 0o120777), b"real.py")])
    lam.create_function(**params("inner-link", Code={"ZipFile": blob}))
    assert lam.invoke(FunctionName="inner-link")["Payload"].read() == b'{"version": 1, "event": {}}'


def test_environment_variable_names(server: Server, lam: Any) -> None:
    # The map is sensitive: AWS names the rule, never the values.
    for bad in ("1STARTS_WITH_DIGIT", "HAS-DASH", "X"):
        assert_create_refused(
            server,
            lam,
            params("env-names", Environment={"Variables": {"GOOD": "1", bad: "v"}}),
            "ValidationException",
            "1 validation error detected: Value at 'environment.variables' failed to satisfy "
            "constraint: Map keys must satisfy constraint: [Member must satisfy regular "
            "expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            400,
        )
    assert_create_refused(
        server,
        lam,
        params(
            "env-names", Environment={"Variables": {"LAMBDA_TASK_ROOT": "x", "AWS_REGION": "y"}}
        ),
        "InvalidParameterValueException",
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided contains reserved keys that are currently not supported for "
        "modification. Reserved keys used in this request: AWS_REGION, LAMBDA_TASK_ROOT",
        400,
        user=True,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"PublishTo": "LATEST_PUBLISHED"},
            "Publishing to a capacity provider is not supported by Lamina.",
        ),
        ({"ImageConfig": {"Command": ["x"]}}, "Container images are not supported by Lamina."),
        (
            {"PackageType": "Image"},
            "Container images are not supported by Lamina: use PackageType Zip.",
        ),
        ({"SnapStart": {"ApplyOn": "PublishedVersions"}}, "SnapStart is not supported by Lamina."),
        (
            {
                "RuntimeConfig": {
                    "RuntimeArn": "arn:aws:lambda:us-east-1:000000000000:runtime/custom-1",
                    "RuntimeAlias": "x",
                }
            },
            "Runtime configuration (RuntimeArn) is not supported by Lamina.",
        ),
        (
            {"Code": {"S3Bucket": "no-such-bucket", "S3Key": "key.zip"}},
            "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: "
            "The specified bucket does not exist",
        ),
        ({"Code": {}}, "Please provide a source for function code."),
    ],
    ids=[
        "publish-to",
        "image-config",
        "image",
        "snapstart",
        "runtime-config",
        "s3-no-bucket",
        "no-code",
    ],
)
def test_features_lamina_cannot_honour_are_refused(
    server: Server, strict: Any, extra: dict[str, Any], message: str
) -> None:
    assert_create_refused(
        server,
        strict,
        params("unsupported", **extra),
        "InvalidParameterValueException",
        message,
        400,
        user=True,
    )


def test_update_function_code_refuses_what_it_cannot_honour(lam: Any) -> None:
    created = lam.create_function(**params("code-unsupported"))
    for extra, message in (
        (
            {"ZipFile": APP_ZIP, "PublishTo": "LATEST_PUBLISHED"},
            "Publishing to a capacity provider is not supported by Lamina.",
        ),
        (
            {"S3Bucket": "no-such-bucket", "S3Key": "key.zip"},
            "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: "
            "The specified bucket does not exist",
        ),
    ):
        error = refused(lam.update_function_code, FunctionName="code-unsupported", **extra)
        assert_error(error, "InvalidParameterValueException", message, 400, user=True)
    config = lam.get_function_configuration(FunctionName="code-unsupported")
    assert config["RevisionId"] == created["RevisionId"]


def test_list_functions_pages_hold_at_most_50(server: Server) -> None:
    client = server.client(region="us-west-2")
    names = [f"many-{i:02d}" for i in range(52)]
    for name in names:
        client.create_function(**params(name))
    for kwargs in ({}, {"MaxItems": 100}, {"MaxItems": 10000}):
        first = client.list_functions(**kwargs)
        assert [f["FunctionName"] for f in first["Functions"]] == names[:50]
        assert first["NextMarker"] == "many-49"
        second = client.list_functions(Marker=first["NextMarker"], **kwargs)
        assert [f["FunctionName"] for f in second["Functions"]] == names[50:]
        assert "NextMarker" not in second


def test_names_in_every_form(lam: Any) -> None:
    created = lam.create_function(**params(arn("by-arn")))
    assert created["FunctionName"] == "by-arn"
    assert created["FunctionArn"] == arn("by-arn")
    for form in ("by-arn", arn("by-arn"), f"{ACCOUNT}:function:by-arn", "function:by-arn"):
        assert lam.get_function_configuration(FunctionName=form)["FunctionArn"] == arn("by-arn")
    assert (
        lam.get_function(FunctionName="by-arn", Qualifier="$LATEST")["Configuration"]["Version"]
        == "$LATEST"
    )
    assert (
        lam.get_function(FunctionName=arn("by-arn") + ":$LATEST")["Configuration"]["Version"]
        == "$LATEST"
    )
    missing = refused(lam.get_function, FunctionName="by-arn", Qualifier="1")
    assert_error(
        missing, "ResourceNotFoundException", f"Function not found: {arn('by-arn')}:1", 404
    )
    mismatch = refused(lam.get_function, FunctionName=arn("by-arn") + ":1", Qualifier="2")
    assert_error(
        mismatch,
        "InvalidParameterValueException",
        "The derived qualifier from the function name does not match the specified qualifier.",
        400,
        user=True,
    )


def test_names_from_another_region_or_account(server: Server, lam: Any) -> None:
    elsewhere = arn("foreign", "eu-west-1")
    assert_create_refused(
        server,
        lam,
        params(elsewhere),
        "InvalidParameterValueException",
        "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')",
        400,
        user=True,
    )
    # Another account's function: IAM's answer, as no resource policy lets the caller in
    # (tests/e2e/test_accounts.py has the walls between accounts in full).
    other_account = "arn:aws:lambda:us-east-1:111111111111:function:foreign"

    def denied(action: str) -> str:
        return (
            f"User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform: lambda:{action} "
            f"on resource: {other_account} because no resource-based policy allows the "
            f"lambda:{action} action"
        )

    assert_create_refused(
        server, lam, params(other_account), "AccessDeniedException", denied("CreateFunction"), 403
    )
    error = refused(lam.get_function, FunctionName=other_account)
    assert_error(error, "AccessDeniedException", denied("GetFunction"), 403)


def test_extracted_modes_keep_execute_bits_but_never_setuid(server: Server, lam: Any) -> None:
    blob = zip_with(
        [
            (entry("bootstrap", 0o104755), b"#!/bin/sh\n"),
            (entry("app.py", 0o102640), APP.encode()),
            (entry("plain.txt", 0o100000), b"no mode bits at all"),
        ]
    )
    lam.create_function(**params("modes", Runtime="provided.al2023", Code={"ZipFile": blob}))
    tree = server.data_dir / "code" / hashlib.sha256(blob).hexdigest()
    modes = {
        name: (tree / name).stat().st_mode & 0o7777 for name in ("bootstrap", "app.py", "plain.txt")
    }
    assert modes == {"bootstrap": 0o755, "app.py": 0o644, "plain.txt": 0o644}


# Names, handlers, conflicts -----------------------------------------------------------
def test_invalid_function_names(server: Server, strict: Any) -> None:
    assert_create_refused(
        server,
        strict,
        params("bad name!"),
        "ValidationException",
        "1 validation error detected: Value 'bad name!' at 'functionName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}",
        400,
    )
    long_name = "n" * 65
    assert_create_refused(
        server,
        strict,
        params(long_name),
        "ValidationException",
        f"1 validation error detected: Value '{long_name}' at 'functionName' failed to satisfy "
        "constraint: Member must have length less than or equal to 64",
        400,
    )
    longer = "n" * 141
    assert_create_refused(
        server,
        strict,
        params(longer),
        "ValidationException",
        f"1 validation error detected: Value '{longer}' at 'functionName' failed to satisfy "
        "constraint: Member must have length less than or equal to 140",
        400,
    )
    assert_create_refused(
        server,
        strict,
        params(""),
        "ValidationException",
        "2 validation errors detected: Value '' at 'functionName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; Value '' at 'functionName' failed "
        "to satisfy constraint: Member must satisfy regular expression pattern: "
        + FUNCTION_NAME_PATTERN,
        400,
    )
    exact = "n" * 64
    assert strict.create_function(**params(exact))["FunctionName"] == exact
    strict.delete_function(FunctionName=exact)
    error = refused(strict.get_function, FunctionName="bad name!")
    assert_error(
        error,
        "ValidationException",
        "1 validation error detected: Value 'bad name!' at 'functionName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {NAMESPACED_NAME_PATTERN}",
        400,
    )


def test_invalid_handlers(server: Server, strict: Any) -> None:
    for handler in ("app handler", "app.handler\n", "\tapp.handler"):
        shown = handler
        assert_create_refused(
            server,
            strict,
            params("bad-handler", Handler=handler),
            "ValidationException",
            f"1 validation error detected: Value '{shown}' at 'handler' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [^\\s]+",
            400,
        )
    long_handler = "h" * 129
    assert_create_refused(
        server,
        strict,
        params("bad-handler", Handler=long_handler),
        "ValidationException",
        f"1 validation error detected: Value '{long_handler}' at 'handler' failed to satisfy "
        "constraint: Member must have length less than or equal to 128",
        400,
    )


def test_duplicate_name(server: Server, lam: Any) -> None:
    first = lam.create_function(**params("twice"))
    other_code = make_zip({"app.py": "def handler(e, c):\n    return 'other'\n"})
    before = snapshot(server, lam)
    with pytest.raises(lam.exceptions.ResourceConflictException) as info:
        lam.create_function(**params("twice", Code={"ZipFile": other_code}, MemorySize=512))
    assert_error(
        info.value, "ResourceConflictException", "Function already exist: twice", 409, user=True
    )
    assert snapshot(server, lam) == before
    config = lam.get_function_configuration(FunctionName="twice")
    assert (config["CodeSha256"], config["MemorySize"], config["RevisionId"]) == (
        first["CodeSha256"],
        128,
        first["RevisionId"],
    )


def test_missing_function_on_every_operation(lam: Any) -> None:
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (lam.get_function, {}),
        (lam.get_function_configuration, {}),
        (lam.update_function_code, {"ZipFile": APP_ZIP}),
        (lam.update_function_configuration, {"MemorySize": 256}),
        (lam.delete_function, {}),
        (lam.invoke, {"Payload": b"{}"}),
    ]
    before = function_names(lam)
    for call, extra in calls:
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as info:
            call(FunctionName="ghost", **extra)
        assert_error(
            info.value, "ResourceNotFoundException", not_found_message("ghost"), 404, user=True
        )
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as info:
            call(FunctionName=arn("ghost"), **extra)
        assert info.value.response["Error"]["Message"] == not_found_message("ghost")
    assert function_names(lam) == before


# The wire -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"FunctionName": "json-broken", ',
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b'{"FunctionName": "wrong-type", "MemorySize": "lots"}',
        b'{"FunctionName": "wrong-type", "Code": {"ZipFile": "!!not base64!!"}}',
        b"[" * 100_000,
        b"\xff\xfe{}",
    ],
    ids=[
        "truncated",
        "garbage",
        "array",
        "string",
        "wrong-type",
        "bad-base64",
        "too-deep",
        "not-utf8",
    ],
)
def test_malformed_json_bodies(server: Server, lam: Any, body: bytes) -> None:
    before = snapshot(server, lam)
    status, headers, answer = raw(
        server, "POST", "/2015-03-31/functions", body, {"Content-Type": "application/json"}
    )
    assert status == 400
    assert headers["x-amzn-errortype"] == "InvalidRequestContentException"
    document = json.loads(answer)
    assert document["Type"] == "User"
    assert document["message"].startswith("Could not parse request body into json: ")
    assert snapshot(server, lam) == before


@pytest.mark.parametrize(
    ("member", "value", "path"),
    [
        ("Environment", {"Variables": {"AA": None}}, "environment.variables.value"),
        ("Tags", {"team": None}, "tags.value"),
        ("Architectures", [None], "architectures.member"),
        ("VpcConfig", {"SubnetIds": ["subnet-1", None]}, "vpcConfig.subnetIds.member"),
    ],
    ids=["environment", "tags", "architectures", "subnets"],
)
def test_nulls_inside_maps_and_lists_raw(
    server: Server, lam: Any, member: str, value: Any, path: str
) -> None:
    """boto3 never sends these, a raw caller can: refused, never stored half-usable."""
    before = snapshot(server, lam)
    request = params("with-nulls", **{member: value})
    request["Code"] = {"ZipFile": base64.b64encode(APP_ZIP).decode()}
    status, headers, answer = raw(
        server,
        "POST",
        "/2015-03-31/functions",
        json.dumps(request).encode(),
        {"Content-Type": "application/json"},
    )
    assert (status, headers["x-amzn-errortype"]) == (400, "ValidationException")
    assert json.loads(answer)["message"] == (
        f"1 validation error detected: Value null at '{path}' failed to satisfy constraint: "
        "Member must not be null"
    )
    assert snapshot(server, lam) == before


def test_missing_required_members_raw(server: Server, lam: Any) -> None:
    before = snapshot(server, lam)
    status, headers, answer = raw(
        server, "POST", "/2015-03-31/functions", b"{}", {"Content-Type": "application/json"}
    )
    assert status == 400
    assert headers["x-amzn-errortype"] == "ValidationException"
    assert json.loads(answer)["message"] == (
        "3 validation errors detected: "
        "Value null at 'functionName' failed to satisfy constraint: Member must not be null; "
        "Value null at 'role' failed to satisfy constraint: Member must not be null; "
        "Value null at 'code' failed to satisfy constraint: Member must not be null"
    )
    assert snapshot(server, lam) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nowhere"), ("GET", "/2015-03-31/nothing"), ("PATCH", "/2015-03-31/functions")],
)
def test_unknown_path(server: Server, method: str, path: str) -> None:
    status, headers, answer = raw(server, method, path)
    assert status == 404
    assert headers["x-amzn-errortype"] == "UnknownOperationException"
    assert headers["content-type"] == "application/json"
    assert json.loads(answer) == {"message": f"No operation matches {method} {path}"}


def test_operation_in_the_model_but_not_built(lam: Any) -> None:
    error = refused(lam.list_code_signing_configs)
    assert_error(
        error,
        "NotImplementedException",
        "The ListCodeSigningConfigs operation of lambda is not implemented by Lamina yet.",
        501,
    )
    error = refused(lam.get_function_code_signing_config, FunctionName="anything")
    assert_error(
        error,
        "NotImplementedException",
        "The GetFunctionCodeSigningConfig operation of lambda is not implemented by Lamina yet.",
        501,
    )


def test_requests_answer_with_a_request_id(server: Server, lam: Any) -> None:
    response = lam.list_functions()
    assert UUID.fullmatch(response["ResponseMetadata"]["RequestId"])
    error = refused(lam.get_function, FunctionName="ghost-id")
    assert UUID.fullmatch(error.response["ResponseMetadata"]["RequestId"])


@pytest.fixture(autouse=True, scope="module")
def _no_staging_left(server: Server) -> Iterator[None]:
    """However the module's requests end, no half-extracted package stays on disk."""
    yield
    code = server.data_dir / "code"
    assert not [
        p.name for p in code.iterdir() if p.name.startswith(".staging-") or p.suffix == ".part"
    ]

"""Versions, aliases and provisioned concurrency, through boto3 against a real server with a
small account (limit 20, unreserved floor 5) and a 1 s keep-alive for on-demand
environments."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import PYTHON_RUNTIME, Server, alive, make_zip, python_function

ACCOUNT, FLOOR = 20, 5
# No request-rate limit here: the routing test invokes faster than 10 x 20 per second.
# Environments are followed by the host pids their functions report: no PID namespaces.
ARGS = [
    "--isolation",
    "none",
    "--account-concurrency",
    str(ACCOUNT),
    "--unreserved-floor",
    str(FLOOR),
    "--keep-alive",
    "1",
    "--request-rate",
    "0",
]
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"

SOURCE = """
import os, time
INIT = os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]
BODY = {body!r}

def handler(event, context):
    if event.get("die"):
        os._exit(1)
    time.sleep(event.get("sleep", 0))
    return {{
        "init": INIT,
        "pid": os.getpid(),
        "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
        "arn": context.invoked_function_arn,
        "body": BODY,
    }}
"""


def code(body: str) -> bytes:
    return make_zip({"app.py": SOURCE.format(body=body)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(data_dir, args=ARGS).start()
    yield running
    running.stop()


@pytest.fixture
def function(lam: Any) -> Iterator[Callable[..., str]]:
    """Creates functions from SOURCE and deletes them (and their settings) afterwards."""
    made: list[str] = []

    def make(name: str, body: str = "one", **extra: Any) -> str:
        lam.create_function(
            FunctionName=name,
            Runtime=PYTHON_RUNTIME,
            Role="arn:aws:iam::000000000000:role/lamina-test",
            Handler="app.handler",
            Code={"ZipFile": code(body)},
            Timeout=30,
            **extra,
        )
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(ClientError):
            lam.delete_function(FunctionName=name)


def call(lam: Any, name: str, qualifier: str | None = None, **event: Any) -> dict[str, Any]:
    extra = {"Qualifier": qualifier} if qualifier else {}
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **extra)
    answer: dict[str, Any] = json.loads(response["Payload"].read())
    answer["executed"] = response["ExecutedVersion"]
    return answer


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as raised:
        call()
    response: dict[str, Any] = raised.value.response
    return response


def assert_error(response: dict[str, Any], code: str, message: str, status: int) -> None:
    assert response["Error"]["Code"] == code, response
    assert response["Error"]["Message"] == message
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status


def wait_for_status(lam: Any, name: str, qualifier: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        config: dict[str, Any] = lam.get_provisioned_concurrency_config(
            FunctionName=name, Qualifier=qualifier
        )
        if config["Status"] == status:
            return config
        time.sleep(0.05)
    raise AssertionError(f"{name}:{qualifier} never became {status}: {config}")


def invoke_all(
    server: Server, name: str, qualifier: str, count: int, sleep: float
) -> list[dict[str, Any]]:
    outcomes: list[dict[str, Any]] = [{} for _ in range(count)]
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        client = server.client()
        barrier.wait(20)
        try:
            response = client.invoke(
                FunctionName=name,
                Qualifier=qualifier,
                LogType="Tail",
                Payload=json.dumps({"sleep": sleep}).encode(),
            )
            outcomes[index] = {
                "ok": json.loads(response["Payload"].read()),
                "log": base64.b64decode(response["LogResult"]).decode(),
            }
        except ClientError as error:
            outcomes[index] = {"error": error.response}

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(outcomes)
    return outcomes


# Versions ------------------------------------------------------------------------------
def test_publish_snapshots_code_and_configuration(lam: Any, function: Callable[..., str]) -> None:
    name = function("versioned", body="one")
    first = lam.publish_version(FunctionName=name, Description="first")
    assert first["Version"] == "1"
    assert first["FunctionArn"] == f"{ARN}{name}:1"
    assert first["Description"] == "first"
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    # Nothing changed since: AWS hands back the last version instead of a new one.
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=code("two"))
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    second = lam.publish_version(FunctionName=name)
    assert second["Version"] == "2"
    assert second["MemorySize"] == 256
    assert lam.get_function_configuration(FunctionName=name, Qualifier="1")["MemorySize"] == 128
    assert call(lam, name, "1") | {"pid": 0} == {
        "init": "on-demand",
        "pid": 0,
        "version": "1",
        "arn": f"{ARN}{name}:1",
        "body": "one",
        "executed": "1",
    }
    assert call(lam, f"{name}:2")["body"] == "two"
    latest = call(lam, name)
    assert (latest["body"], latest["version"], latest["executed"]) == ("two", "$LATEST", "$LATEST")
    # $LATEST moves on; published versions do not.
    lam.update_function_code(FunctionName=name, ZipFile=code("three"))
    assert call(lam, name)["body"] == "three"
    assert call(lam, name, "1")["body"] == "one"
    listed = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in listed] == ["$LATEST", "1", "2"]
    got = lam.get_function(FunctionName=f"{ARN}{name}:2")
    assert got["Configuration"]["Version"] == "2"
    assert got["Code"]["Location"].endswith(".zip")


def test_publish_preconditions_and_paging(lam: Any, function: Callable[..., str]) -> None:
    name = function("precondition")
    sha = lam.get_function_configuration(FunctionName=name)["CodeSha256"]
    response = error_of(lambda: lam.publish_version(FunctionName=name, CodeSha256="bm9wZQ=="))
    assert_error(
        response,
        "InvalidParameterValueException",
        f"CodeSHA256 (bm9wZQ==) is different from current CodeSHA256 in $LATEST ({sha}). "
        "Please try again with the CodeSHA256 in $LATEST.",
        400,
    )
    response = error_of(lambda: lam.publish_version(FunctionName=name, RevisionId="stale"))
    assert_error(
        response,
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id. "
        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        412,
    )
    for body in ("a", "b", "c"):
        lam.update_function_code(FunctionName=name, ZipFile=code(body), Publish=True)
    pages = list(
        lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=name, PaginationConfig={"PageSize": 2}
        )
    )
    assert len(pages) == 2
    assert [v["Version"] for p in pages for v in p["Versions"]] == ["$LATEST", "1", "2", "3"]
    missing = error_of(lambda: lam.invoke(FunctionName=name, Qualifier="9"))
    assert_error(missing, "ResourceNotFoundException", f"Function not found: {ARN}{name}:9", 404)


def test_create_with_publish_and_delete_versions(lam: Any, function: Callable[..., str]) -> None:
    name = "published-at-birth"
    created = lam.create_function(
        FunctionName=name,
        Runtime=PYTHON_RUNTIME,
        Role="arn:aws:iam::000000000000:role/lamina-test",
        Handler="app.handler",
        Code={"ZipFile": code("born")},
        Publish=True,
    )
    assert created["Version"] == "1"
    assert created["FunctionArn"] == f"{ARN}{name}:1"
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    refused = error_of(lambda: lam.delete_function(FunctionName=name, Qualifier="1"))
    assert_error(
        refused,
        "ResourceConflictException",
        "Unable to delete version because the following aliases reference it: [live]",
        409,
    )
    lam.delete_alias(FunctionName=name, Name="live")
    lam.delete_function(FunctionName=name, Qualifier="1")
    gone = error_of(lambda: lam.get_function(FunctionName=name, Qualifier="1"))
    assert_error(gone, "ResourceNotFoundException", f"Function not found: {ARN}{name}:1", 404)
    latest = error_of(lambda: lam.delete_function(FunctionName=name, Qualifier="$LATEST"))
    assert latest["Error"]["Code"] == "InvalidParameterValueException"
    # Version numbers are never reused.
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.delete_function(FunctionName=name)
    assert error_of(lambda: lam.get_function(FunctionName=name))["Error"]["Code"] == (
        "ResourceNotFoundException"
    )


# Aliases -------------------------------------------------------------------------------
def test_alias_lifecycle(lam: Any, function: Callable[..., str]) -> None:
    name = function("aliased", body="one")
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=code("two"), Publish=True)
    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="d")
    assert alias["AliasArn"] == f"{ARN}{name}:live"
    assert (alias["FunctionVersion"], alias["Description"]) == ("1", "d")
    assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
    answer = call(lam, name, "live")
    assert (answer["body"], answer["executed"], answer["arn"]) == ("one", "1", f"{ARN}{name}:live")
    duplicate = error_of(
        lambda: lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    )
    assert_error(
        duplicate, "ResourceConflictException", f"Alias already exists: {ARN}{name}:live", 409
    )
    stale = error_of(
        lambda: lam.update_alias(
            FunctionName=name, Name="live", FunctionVersion="2", RevisionId="x"
        )
    )
    assert stale["Error"]["Code"] == "PreconditionFailedException"
    updated = lam.update_alias(
        FunctionName=name, Name="live", FunctionVersion="2", RevisionId=alias["RevisionId"]
    )
    assert updated["FunctionVersion"] == "2" and updated["RevisionId"] != alias["RevisionId"]
    assert call(lam, name, "live")["body"] == "two"
    config = lam.get_function_configuration(FunctionName=name, Qualifier="live")
    assert (config["Version"], config["FunctionArn"]) == ("2", f"{ARN}{name}:live")
    lam.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["live", "old"]
    only = lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    assert [a["Name"] for a in only] == ["old"]
    assert lam.get_alias(FunctionName=name, Name="old")["FunctionVersion"] == "1"
    deleted = lam.delete_alias(FunctionName=name, Name="old")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    missing = error_of(lambda: lam.get_alias(FunctionName=name, Name="old"))
    assert_error(
        missing, "ResourceNotFoundException", f"Cannot find alias arn: {ARN}{name}:old", 404
    )
    to_nowhere = error_of(
        lambda: lam.create_alias(FunctionName=name, Name="x", FunctionVersion="7")
    )
    assert_error(to_nowhere, "ResourceNotFoundException", f"Function not found: {ARN}{name}:7", 404)
    unknown = error_of(lambda: lam.invoke(FunctionName=name, Qualifier="nobody"))
    assert unknown["Error"]["Code"] == "ResourceNotFoundException"


def test_weighted_routing_between_two_versions(lam: Any, function: Callable[..., str]) -> None:
    name = function("weighted", body="one")
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=code("two"), Publish=True)
    bad = error_of(
        lambda: lam.create_alias(
            FunctionName=name,
            Name="bad",
            FunctionVersion="$LATEST",
            RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}},
        )
    )
    assert_error(
        bad,
        "InvalidParameterValueException",
        "$LATEST is not supported for an alias pointing to more than 1 version",
        400,
    )
    lam.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}},
    )
    runs = 400
    executed = [call(lam, name, "canary")["executed"] for _ in range(runs)]
    share = executed.count("2") / runs
    # Binomial(400, 0.3): the standard deviation is 0.023; four of them either side.
    assert 0.21 <= share <= 0.39, share
    assert set(executed) == {"1", "2"}
    lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={})
    assert {call(lam, name, "canary")["executed"] for _ in range(20)} == {"1"}


# Provisioned concurrency ---------------------------------------------------------------
def test_provisioned_messages(lam: Any, function: Callable[..., str]) -> None:
    name = function("provisioned-messages")
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    def put(qualifier: str, count: int, target: str = name) -> dict[str, Any]:
        return error_of(
            lambda: lam.put_provisioned_concurrency_config(
                FunctionName=target, Qualifier=qualifier, ProvisionedConcurrentExecutions=count
            )
        )

    assert_error(
        put("$LATEST", 1),
        "InvalidParameterValueException",
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
        400,
    )
    assert put("$LATEST", 1)["Type"] == "User"
    assert_error(
        put("10", 1), "ResourceNotFoundException", f"Function not found: {ARN}{name}:10", 404
    )
    assert_error(
        put("noalias", 1),
        "ResourceNotFoundException",
        f"Cannot find alias arn: {ARN}{name}:noalias",
        404,
    )
    assert_error(
        put("1", 1, target="nobody"),
        "ResourceNotFoundException",
        f"Function not found: {ARN}nobody:$LATEST",
        404,
    )
    assert_error(
        put("1", ACCOUNT + 1),
        "InvalidParameterValueException",
        f"Specified ConcurrentExecutions for function is greater than account's unreserved "
        f"concurrency [{ACCOUNT}].",
        400,
    )
    assert_error(
        put("1", ACCOUNT - FLOOR + 1),
        "InvalidParameterValueException",
        "Specified ConcurrentExecutions for function decreases account's "
        f"UnreservedConcurrentExecution below its minimum value of [{FLOOR}].",
        400,
    )
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    assert_error(
        put("1", 3),
        "InvalidParameterValueException",
        "Requested Provisioned Concurrency should not be greater than the "
        "reservedConcurrentExecution for function",
        400,
    )
    lam.delete_function_concurrency(FunctionName=name)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    assert_error(
        put("1", 1),
        "ResourceConflictException",
        "Version is pointed by a Provisioned Concurrency alias",
        409,
    )
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert_error(
        put("live", 1),
        "ResourceConflictException",
        "Alias can't be used for Provisioned Concurrency configuration on an already "
        "Provisioned version",
        409,
    )
    below = error_of(
        lambda: lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    )
    assert_error(
        below,
        "InvalidParameterValueException",
        " ReservedConcurrentExecutions  1 should not be lower than function's total "
        "provisioned concurrency [2].",
        400,
    )
    for call_ in (
        lam.get_provisioned_concurrency_config,
        lam.delete_provisioned_concurrency_config,
    ):
        latest = error_of(lambda c=call_: c(FunctionName=name, Qualifier="$LATEST"))
        assert_error(
            latest,
            "InvalidParameterValueException",
            "The function resource provided must be an alias or a published version.",
            400,
        )
    none = error_of(
        lambda: lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    )
    assert_error(
        none,
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
        404,
    )
    gone = lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert gone["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_zero_is_a_validation_error(server: Server, function: Callable[..., str]) -> None:
    unchecked = server.client(parameter_validation=False)
    name = function("provisioned-zero")
    unchecked.publish_version(FunctionName=name)
    zero = error_of(
        lambda: unchecked.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=0
        )
    )
    assert_error(
        zero,
        "ValidationException",
        "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to "
        "satisfy constraint: Member must have value greater than or equal to 1",
        400,
    )


def test_lifecycle_and_account_settings(lam: Any, function: Callable[..., str]) -> None:
    name = function("provisioned-life")
    lam.publish_version(FunctionName=name)
    put = lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
    )
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["Status"] == "IN_PROGRESS"
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["AllocatedProvisionedConcurrentExecutions"] == 0
    assert put["AvailableProvisionedConcurrentExecutions"] == 0
    assert "LastModified" in put
    ready = wait_for_status(lam, name, "1", "READY")
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["UnreservedConcurrentExecutions"] == ACCOUNT - 2
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)
    assert [c["FunctionArn"] for c in listed["ProvisionedConcurrencyConfigs"]] == [f"{ARN}{name}:1"]
    # An update is accepted and replaces the target.
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=3
    )
    assert wait_for_status(lam, name, "1", "READY")["AllocatedProvisionedConcurrentExecutions"] == 3
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 17
    answer = call(lam, name, "1")
    assert answer["init"] == "provisioned-concurrency"
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == ACCOUNT
    deadline = time.monotonic() + 5
    while alive(answer["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(answer["pid"]), "a provisioned environment outlived its config"
    assert call(lam, name, "1")["init"] == "on-demand"


def test_failed_init_reports_failed(lam: Any, function: Callable[..., str]) -> None:
    name = "provisioned-broken"
    python_function(lam, name, "raise RuntimeError('init fails')\n", Publish=True)
    try:
        lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2
        )
        failed = wait_for_status(lam, name, "1", "FAILED")
        assert failed["StatusReason"] == "FUNCTION_ERROR_INIT_FAILURE"
        assert failed["AllocatedProvisionedConcurrentExecutions"] == 0
        assert failed["AvailableProvisionedConcurrentExecutions"] == 0
    finally:
        lam.delete_function(FunctionName=name)


def test_three_provisioned_then_spillover(
    server: Server, lam: Any, function: Callable[..., str]
) -> None:
    name = function("provisioned-spill")
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=3
    )
    wait_for_status(lam, name, "live", "READY")
    three = invoke_all(server, name, "live", 3, sleep=0.5)
    for outcome in three:
        assert outcome["ok"]["init"] == "provisioned-concurrency"
        assert "Init Duration" not in outcome["log"]
    four = invoke_all(server, name, "live", 4, sleep=1.0)
    inits = sorted(o["ok"]["init"] for o in four)
    assert inits == ["on-demand"] + ["provisioned-concurrency"] * 3
    spilled = next(o for o in four if o["ok"]["init"] == "on-demand")
    assert "Init Duration" in spilled["log"]
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats", timeout=5) as answer:
        stats = json.loads(answer.read())["concurrency"][0]["Functions"][name]
    assert stats["ProvisionedConcurrencyInvocations"] == 6
    assert stats["ProvisionedConcurrencySpilloverInvocations"] == 1
    assert stats["ProvisionedConcurrency"] == 3 and stats["ProvisionedReady"] == 3
    # $LATEST, unqualified, never runs on provisioned environments.
    assert call(lam, name)["init"] == "on-demand"
    assert call(lam, name, "$LATEST")["init"] == "on-demand"


def test_reserved_five_with_provisioned_three(
    server: Server, lam: Any, function: Callable[..., str]
) -> None:
    name = function("provisioned-reserved")
    lam.publish_version(FunctionName=name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=3
    )
    wait_for_status(lam, name, "1", "READY")
    # Provisioned comes out of the reservation: the pool is untouched by it.
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 15
    outcomes = invoke_all(server, name, "1", 8, sleep=1.5)
    ran = [o["ok"]["init"] for o in outcomes if "ok" in o]
    assert sorted(ran) == ["on-demand"] * 2 + ["provisioned-concurrency"] * 3
    refused = [o["error"] for o in outcomes if "error" in o]
    assert len(refused) == 3
    assert {e["Reason"] for e in refused} == {"ReservedFunctionConcurrentInvocationLimitExceeded"}


def test_provisioned_environments_are_kept_and_replaced(
    lam: Any, function: Callable[..., str]
) -> None:
    name = function("provisioned-kept")
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1
    )
    wait_for_status(lam, name, "1", "READY")
    first = call(lam, name, "1")
    time.sleep(2.5)  # well past the 1 s keep-alive of on-demand environments
    again = call(lam, name, "1")
    assert again["pid"] == first["pid"] and again["init"] == "provisioned-concurrency"
    died = lam.invoke(FunctionName=name, Qualifier="1", Payload=b'{"die": true}')
    assert died["FunctionError"] == "Unhandled"
    wait_for_status(lam, name, "1", "READY")
    replaced = call(lam, name, "1")
    assert replaced["init"] == "provisioned-concurrency"
    assert replaced["pid"] != first["pid"]


def test_repointing_a_provisioned_alias(lam: Any, function: Callable[..., str]) -> None:
    name = function("provisioned-repoint", body="one")
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=code("two"), Publish=True)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    wait_for_status(lam, name, "live", "READY")
    old = call(lam, name, "live")
    assert (old["body"], old["init"]) == ("one", "provisioned-concurrency")
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    wait_for_status(lam, name, "live", "READY")
    new = call(lam, name, "live")
    assert (new["body"], new["init"], new["executed"]) == ("two", "provisioned-concurrency", "2")
    deadline = time.monotonic() + 5
    while alive(old["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(old["pid"])
    # Deleting the function tears its provisioned environments down.
    lam.delete_function(FunctionName=name)
    deadline = time.monotonic() + 5
    while alive(new["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(new["pid"])
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == ACCOUNT


def test_provisioned_configs_survive_a_restart(tmp_path: Path) -> None:
    first = Server(tmp_path / "data", args=ARGS).start()
    try:
        client = first.client()
        python_function(client, "kept-warm", SOURCE.format(body="x"), Publish=True)
        client.create_alias(FunctionName="kept-warm", Name="live", FunctionVersion="1")
        client.put_provisioned_concurrency_config(
            FunctionName="kept-warm", Qualifier="live", ProvisionedConcurrentExecutions=2
        )
        wait_for_status(client, "kept-warm", "live", "READY")
    finally:
        first.kill()
    second = Server(tmp_path / "data", args=ARGS).start()
    try:
        client = second.client()
        ready = wait_for_status(client, "kept-warm", "live", "READY")
        assert ready["AllocatedProvisionedConcurrentExecutions"] == 2
        assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 18
        assert call(client, "kept-warm", "live")["init"] == "provisioned-concurrency"
    finally:
        second.stop()

"""Accounts are real with `--auth on`: each its own limits under overload, walls between
them, and resource policies (AddPermission / RemovePermission / GetPolicy) as the only
way through."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

HOLD = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"arn": context.invoked_function_arn}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("accounts") / "data",
        args=["--auth", "on", "--isolation", "none", "--request-rate", "0"],
    ).start()
    yield running
    running.stop()


def error_of(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    return {
        "Code": response["Error"]["Code"],
        "Message": response["Error"]["Message"],
        "Status": response["ResponseMetadata"]["HTTPStatusCode"],
    }


def overload(client: Any, name: str, callers: int, hold: float) -> Counter[str]:
    """`callers` invocations at once, each holding its environment `hold` seconds."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(callers)

    def one() -> None:
        start.wait()
        try:
            client.invoke(FunctionName=name, Payload=json.dumps({"sleep": hold}).encode())
            outcome = "ok"
        except ClientError as error:
            outcome = error.response.get("Reason") or error.response["Error"]["Code"]
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=one) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_two_accounts_each_reach_exactly_their_own_limit(server: Server) -> None:
    ten, ten_keys = server.new_account("ten", "--concurrency", "10")
    twenty, twenty_keys = server.new_account("twenty", "--concurrency", "20")
    clients = {
        10: server.client(credentials=ten_keys, max_pool_connections=60),
        20: server.client(credentials=twenty_keys, max_pool_connections=60),
    }
    for limit, client in clients.items():
        python_function(client, "busy", HOLD)
        settings = client.get_account_settings()["AccountLimit"]
        assert settings["ConcurrentExecutions"] == limit
        assert settings["UnreservedConcurrentExecutions"] == limit
    results: dict[int, Counter[str]] = {}
    runners = [
        threading.Thread(target=lambda n=n, c=c: results.__setitem__(n, overload(c, "busy", 45, 3)))
        for n, c in clients.items()
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(90)
    assert results[10] == {"ok": 10, "ConcurrentInvocationLimitExceeded": 35}
    assert results[20] == {"ok": 20, "ConcurrentInvocationLimitExceeded": 25}
    assert {ten, twenty} == {c.get_function(FunctionName="busy")["Configuration"][
        "FunctionArn"].split(":")[4] for c in clients.values()}  # fmt: skip


def test_walls_between_accounts_and_resource_policies(server: Server) -> None:
    owner, owner_keys = server.new_account("owner")
    other, other_keys = server.new_account("other")
    mine = server.client(credentials=owner_keys)
    theirs = server.client(credentials=other_keys)
    arn = python_function(mine, "shared", HOLD)["FunctionArn"]
    assert arn == f"arn:aws:lambda:us-east-1:{owner}:function:shared"
    me = f"arn:aws:iam::{other}:root"

    def denied(action: str, resource: str = arn) -> dict[str, Any]:
        return {
            "Code": "AccessDeniedException",
            "Message": f"User: {me} is not authorized to perform: {action} on resource: "
            f"{resource} because no resource-based policy allows the {action} action",
            "Status": 403,
        }

    assert theirs.list_functions()["Functions"] == []
    assert error_of(theirs.get_function, FunctionName=arn) == denied("lambda:GetFunction")
    assert error_of(theirs.invoke, FunctionName=arn) == denied("lambda:InvokeFunction")
    assert error_of(theirs.delete_function, FunctionName=arn) == denied("lambda:DeleteFunction")
    assert error_of(theirs.get_policy, FunctionName=arn) == denied("lambda:GetPolicy")
    # A name alone is the caller's own function: theirs has none of that name.
    assert error_of(theirs.invoke, FunctionName="shared")["Code"] == "ResourceNotFoundException"
    assert error_of(mine.get_policy, FunctionName="shared") == {
        "Code": "ResourceNotFoundException",
        "Message": "The resource you requested does not exist.",
        "Status": 404,
    }
    # A statement that needs a source (a service acting for a resource) lets no direct call in.
    mine.add_permission(
        FunctionName="shared",
        StatementId="only-from-a-source",
        Action="lambda:InvokeFunction",
        Principal=other,
        SourceAccount=other,
    )
    assert error_of(theirs.invoke, FunctionName=arn) == denied("lambda:InvokeFunction")
    added = mine.add_permission(
        FunctionName="shared",
        StatementId="other-invokes",
        Action="lambda:InvokeFunction",
        Principal=other,
    )
    assert json.loads(added["Statement"]) == {
        "Sid": "other-invokes",
        "Effect": "Allow",
        "Principal": {"AWS": me},
        "Action": "lambda:InvokeFunction",
        "Resource": arn,
    }
    answer = theirs.invoke(FunctionName=arn, Payload=b"{}")
    assert json.load(answer["Payload"]) == {"arn": arn}
    assert error_of(theirs.get_function, FunctionName=arn) == denied("lambda:GetFunction")
    policy = mine.get_policy(FunctionName="shared")
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17"
    assert [s["Sid"] for s in document["Statement"]] == ["only-from-a-source", "other-invokes"]
    assert document["Statement"][0]["Condition"] == {"StringEquals": {"AWS:SourceAccount": other}}
    assert error_of(
        mine.add_permission,
        FunctionName="shared",
        StatementId="other-invokes",
        Action="lambda:InvokeFunction",
        Principal=other,
    ) == {
        "Code": "ResourceConflictException",
        "Message": "The statement id (other-invokes) provided already exists. Please provide a "
        "new statement id, or remove the existing statement.",
        "Status": 409,
    }
    assert (
        error_of(
            mine.remove_permission,
            FunctionName="shared",
            StatementId="other-invokes",
            RevisionId="not-the-revision",
        )["Code"]
        == "PreconditionFailedException"
    )
    # The invocation counts against the owner's limits: the owner's reservation of 0 stops it.
    mine.put_function_concurrency(FunctionName="shared", ReservedConcurrentExecutions=0)
    assert error_of(theirs.invoke, FunctionName=arn)["Code"] == "TooManyRequestsException"
    mine.delete_function_concurrency(FunctionName="shared")
    mine.remove_permission(
        FunctionName="shared", StatementId="other-invokes", RevisionId=policy["RevisionId"]
    )
    assert error_of(theirs.invoke, FunctionName=arn) == denied("lambda:InvokeFunction")
    assert error_of(mine.remove_permission, FunctionName="shared", StatementId="other-invokes") == {
        "Code": "ResourceNotFoundException",
        "Message": "Statement other-invokes is not found in resource policy.",
        "Status": 404,
    }
    # A function that does not exist in the other account is denied alike: nothing leaks.
    ghost = f"arn:aws:lambda:us-east-1:{owner}:function:ghost"
    assert error_of(theirs.invoke, FunctionName=ghost) == denied("lambda:InvokeFunction", ghost)


def test_policies_on_versions_and_aliases(server: Server) -> None:
    owner, owner_keys = server.new_account("versioned")
    other, other_keys = server.new_account("caller")
    mine = server.client(credentials=owner_keys)
    theirs = server.client(credentials=other_keys)
    arn = python_function(mine, "layered", HOLD, Publish=True)["FunctionArn"].rsplit(":", 1)[0]
    mine.create_alias(FunctionName="layered", Name="live", FunctionVersion="1")
    mine.add_permission(
        FunctionName="layered",
        Qualifier="live",
        StatementId="alias-only",
        Action="lambda:InvokeFunction",
        Principal=f"arn:aws:iam::{other}:root",
    )
    answer = theirs.invoke(FunctionName=f"{arn}:live", Payload=b"{}")
    assert json.load(answer["Payload"]) == {"arn": f"{arn}:live"}
    assert error_of(theirs.invoke, FunctionName=arn)["Code"] == "AccessDeniedException"
    assert error_of(theirs.invoke, FunctionName=f"{arn}:1")["Code"] == "AccessDeniedException"
    statement = json.loads(mine.get_policy(FunctionName="layered", Qualifier="live")["Policy"])
    assert statement["Statement"][0]["Resource"] == f"{arn}:live"
    assert error_of(mine.get_policy, FunctionName="layered")["Code"] == "ResourceNotFoundException"
    assert owner != other

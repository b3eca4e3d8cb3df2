"""Reserved concurrency, the unreserved pool and throttling, through boto3 against a real
server with a small account: limit 20, unreserved floor 5."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

ACCOUNT = 20
FLOOR = 5
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"

# Reports when it ran, so that tests can see how many ran at once.
SLEEPER = """
import os, time

def handler(event, context):
    start = time.time()
    time.sleep(event.get("sleep", 0))
    return {"start": start, "end": time.time(), "pid": os.getpid()}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("lamina") / "data"
    running = Server(
        data_dir,
        args=["--account-concurrency", str(ACCOUNT), "--unreserved-floor", str(FLOOR)],
    ).start()
    yield running
    running.stop()


@pytest.fixture
def sleeper(lam: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Creates sleeper functions, and deletes them after the test so reservations go."""
    made: list[str] = []

    def make(name: str, reserved: int | None = None) -> str:
        python_function(lam, name, SLEEPER, Timeout=30)
        made.append(name)
        if reserved is not None:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)
        return name

    yield make
    for name in made:
        lam.delete_function(FunctionName=name)


def stats(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/stats", timeout=5) as answer:
        accounts = json.loads(answer.read())["concurrency"]
    found: dict[str, Any] = next(a for a in accounts if a["Region"] == "us-east-1")
    return found


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    response: dict[str, Any] = raised.value.response
    return response


def invoke_all(server: Server, names: list[str], sleep: float) -> list[dict[str, Any]]:
    """Invoke every name in `names` at the same moment; each outcome, in order."""
    outcomes: list[dict[str, Any]] = [{} for _ in names]
    barrier = threading.Barrier(len(names))

    def run(index: int, name: str) -> None:
        client = server.client()
        barrier.wait(20)
        try:
            response = client.invoke(
                FunctionName=name, Payload=json.dumps({"sleep": sleep}).encode()
            )
            outcomes[index] = {"ok": json.loads(response["Payload"].read())}
        except ClientError as error:
            outcomes[index] = {"error": error.response}

    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(outcomes), "an invoke got no answer"
    return outcomes


def throttled(outcome: dict[str, Any], reason: str) -> bool:
    error = outcome.get("error")
    if error is None:
        return False
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429, error
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert error["Error"]["Message"] == "Rate Exceeded."
    assert error["Type"] == "User"
    assert int(error["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
    return bool(error["Reason"] == reason)


# Settings ------------------------------------------------------------------------------
def test_put_get_delete_and_get_function(lam: Any, sleeper: Callable[..., str]) -> None:
    name = sleeper("settings")
    assert lam.get_function_concurrency(FunctionName=name).keys() == {"ResponseMetadata"}
    assert "Concurrency" not in lam.get_function(FunctionName=name)
    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=4)
    assert put["ReservedConcurrentExecutions"] == 4
    got = lam.get_function_concurrency(FunctionName=ARN + name)
    assert got["ReservedConcurrentExecutions"] == 4
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 4}
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["ConcurrentExecutions"] == ACCOUNT
    assert limit["UnreservedConcurrentExecutions"] == ACCOUNT - 4
    deleted = lam.delete_function_concurrency(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == ACCOUNT


def test_reservation_may_not_eat_the_floor(lam: Any, sleeper: Callable[..., str]) -> None:
    first, second = sleeper("floor-a"), sleeper("floor-b")
    message = (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        f"UnreservedConcurrentExecution below its minimum value of [{FLOOR}]."
    )
    for too_many in (ACCOUNT - FLOOR + 1, ACCOUNT, ACCOUNT + 500):
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as raised:
            lam.put_function_concurrency(FunctionName=first, ReservedConcurrentExecutions=too_many)
        assert error_of(raised)["Error"]["Message"] == message
        assert error_of(raised)["ResponseMetadata"]["HTTPStatusCode"] == 400
    lam.put_function_concurrency(FunctionName=first, ReservedConcurrentExecutions=10)
    # What the others reserve counts too; raising one's own reservation replaces it.
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as raised:
        lam.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=6)
    assert error_of(raised)["Error"]["Message"] == message
    lam.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=5)
    lam.put_function_concurrency(FunctionName=first, ReservedConcurrentExecutions=10)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == FLOOR
    # A refused change leaves the old setting in place.
    assert lam.get_function_concurrency(FunctionName=second)["ReservedConcurrentExecutions"] == 5


def test_qualified_missing_and_invalid(
    server: Server, lam: Any, sleeper: Callable[..., str]
) -> None:
    name = sleeper("qualified")
    refused = (
        "This operation is permitted on Lambda functions only. Aliases and versions do not "
        "support this operation. Please specify either a function name or an unqualified "
        "function ARN."
    )
    for qualified in (f"{ARN}{name}:1", f"{ARN}{name}:live", f"{name}:$LATEST"):
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as raised:
            lam.put_function_concurrency(FunctionName=qualified, ReservedConcurrentExecutions=1)
        assert error_of(raised)["Error"]["Message"] == refused
        assert error_of(raised)["Type"] == "User"
    for call in (
        lambda: lam.put_function_concurrency(FunctionName="nobody", ReservedConcurrentExecutions=1),
        lambda: lam.get_function_concurrency(FunctionName="nobody"),
        lambda: lam.delete_function_concurrency(FunctionName="nobody"),
    ):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as missing:
            call()
        assert error_of(missing)["Error"]["Message"] == f"Function not found: {ARN}nobody:$LATEST"
    unchecked = server.client(parameter_validation=False)  # let the server see bad values
    with pytest.raises(ClientError) as negative:
        unchecked.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=-1)
    assert error_of(negative)["Error"]["Code"] == "ValidationException"
    assert error_of(negative)["Error"]["Message"] == (
        "1 validation error detected: Value '-1' at 'reservedConcurrentExecutions' failed to "
        "satisfy constraint: Member must have value greater than or equal to 0"
    )
    assert lam.get_function_concurrency(FunctionName=name).keys() == {"ResponseMetadata"}


def test_deleting_a_function_frees_its_reservation(lam: Any) -> None:
    python_function(lam, "short-lived", SLEEPER)
    lam.put_function_concurrency(FunctionName="short-lived", ReservedConcurrentExecutions=12)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 8
    lam.delete_function(FunctionName="short-lived")
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == ACCOUNT
    python_function(lam, "short-lived", SLEEPER)  # the same name starts without one
    assert "Concurrency" not in lam.get_function(FunctionName="short-lived")
    lam.delete_function(FunctionName="short-lived")


# Admission -----------------------------------------------------------------------------
def test_reserved_three_under_ten_concurrent(server: Server, sleeper: Callable[..., str]) -> None:
    name = sleeper("three", reserved=3)
    outcomes = invoke_all(server, [name] * 10, sleep=1.5)
    ran = [o for o in outcomes if "ok" in o]
    assert len(ran) == 3
    reason = "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert sum(throttled(o, reason) for o in outcomes) == 7
    assert stats(server)["ConcurrentExecutions"] == 0
    function = stats(server)["Functions"][name]
    assert function["ConcurrentExecutions"] == 0
    assert function["Throttles"] == {reason: 7}


def test_shared_pool_saturated_while_a_reservation_still_runs(
    server: Server, lam: Any, sleeper: Callable[..., str]
) -> None:
    guarded = sleeper("guarded", reserved=5)
    first, second = sleeper("crowd-a"), sleeper("crowd-b")
    pool = ACCOUNT - 5
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == pool
    results: list[list[dict[str, Any]]] = []
    crowd = threading.Thread(
        target=lambda: results.append(invoke_all(server, [first, second] * 10, sleep=2.0))
    )
    crowd.start()
    # While the crowd holds the whole unreserved pool, the reserved function still runs.
    deadline_checks = 0
    while stats(server)["UnreservedInUse"] < pool and deadline_checks < 200:
        threading.Event().wait(0.02)
        deadline_checks += 1
    assert stats(server)["UnreservedInUse"] == pool
    assert "ok" in invoke_all(server, [guarded], sleep=0)[0]
    crowd.join(60)
    outcomes = results[0]
    assert sum("ok" in o for o in outcomes) == pool
    reason = "ConcurrentInvocationLimitExceeded"
    assert sum(throttled(o, reason) for o in outcomes) == 20 - pool
    assert stats(server)["ConcurrentExecutions"] == 0
    assert stats(server)["UnreservedInUse"] == 0


def test_reserved_zero_throttles_every_invoke_and_starts_nothing(
    server: Server, lam: Any, sleeper: Callable[..., str]
) -> None:
    name = sleeper("disabled", reserved=0)
    for _ in range(5):
        with pytest.raises(lam.exceptions.TooManyRequestsException) as raised:
            lam.invoke(FunctionName=name, Payload=b"{}")
        assert error_of(raised)["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    with urllib.request.urlopen(f"{server.endpoint}/_lamina/logs/{name}", timeout=5) as logs:
        assert logs.read() == b""  # no environment ever started: no START line, no INIT
    lam.delete_function_concurrency(FunctionName=name)
    assert lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200


def test_counts_back_to_zero_after_errors_and_timeouts(
    server: Server, lam: Any, sleeper: Callable[..., str]
) -> None:
    python_function(lam, "fails", "def handler(e, c):\n    raise ValueError('no')\n", Timeout=30)
    python_function(lam, "slow", "import time\ndef handler(e, c):\n    time.sleep(5)\n", Timeout=1)
    python_function(lam, "dies", "import os\ndef handler(e, c):\n    os._exit(3)\n")
    try:
        for name in ("fails", "slow", "dies"):
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
            outcomes = invoke_all(server, [name] * 2, sleep=0)
            assert all(o["ok"] is None or "errorMessage" in o["ok"] for o in outcomes)
        current = stats(server)
        assert current["ConcurrentExecutions"] == 0
        assert current["UnreservedInUse"] == 0
        assert all(f["ConcurrentExecutions"] == 0 for f in current["Functions"].values())
    finally:
        for name in ("fails", "slow", "dies"):
            lam.delete_function(FunctionName=name)


def test_reservations_survive_a_restart(tmp_path: Path) -> None:
    args = ["--account-concurrency", str(ACCOUNT), "--unreserved-floor", str(FLOOR)]
    first = Server(tmp_path / "data", args=args).start()
    try:
        client = first.client()
        python_function(client, "kept", SLEEPER)
        client.put_function_concurrency(FunctionName="kept", ReservedConcurrentExecutions=0)
    finally:
        first.kill()
    second = Server(tmp_path / "data", args=args).start()
    try:
        client = second.client()
        assert (
            client.get_function_concurrency(FunctionName="kept")["ReservedConcurrentExecutions"]
            == 0
        )
        limit = client.get_account_settings()["AccountLimit"]
        assert limit["UnreservedConcurrentExecutions"] == ACCOUNT
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.invoke(FunctionName="kept", Payload=b"{}")
    finally:
        second.stop()

"""Redis goes away under a node: invocations are refused with an AWS-shaped error (the
node never guesses at counts), and when Redis comes back, empty, the node recovers by
itself: its settings are put back from its store, its limits hold again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.redis_server import RedisServer
from tests.cluster.test_nodes import SLEEPER, invoke_all, peak, reasons
from tests.helpers import Server, python_function


@pytest.fixture
def node(redis_server: RedisServer, tmp_path: Path) -> Iterator[Server]:
    running = Server(
        tmp_path / "data",
        args=["--redis", redis_server.url, "--heartbeat", "0.5", "--lease-expiry", "2"],
    ).start()
    yield running
    running.stop()


def test_refuses_while_redis_is_away_and_recovers_when_it_returns(
    node: Server, redis_server: RedisServer
) -> None:
    lam = node.client()
    python_function(lam, "solo", SLEEPER, Timeout=30)
    lam.put_function_concurrency(FunctionName="solo", ReservedConcurrentExecutions=1)
    assert lam.invoke(FunctionName="solo")["StatusCode"] == 200

    redis_server.stop()
    with pytest.raises(lam.exceptions.ServiceException) as refused:
        lam.invoke(FunctionName="solo")
    error = refused.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "cannot reach the cluster's concurrency counts" in error["Error"]["Message"]
    with pytest.raises(lam.exceptions.ServiceException):  # settings are not guessed either
        lam.put_function_concurrency(FunctionName="solo", ReservedConcurrentExecutions=2)

    redis_server.start()  # same port, and empty: it kept nothing
    returned = time.monotonic()
    recovered = None
    while time.monotonic() - returned < 15:
        try:
            lam.invoke(FunctionName="solo")
        except lam.exceptions.ServiceException:
            time.sleep(0.1)
            continue
        recovered = time.monotonic() - returned
        break
    assert recovered is not None, node.output()[-2000:]
    # The reservation came back from the node's store: one runs, the other is refused.
    outcomes = invoke_all([(node, "solo"), (node, "solo")], sleep=1.0)
    assert peak(outcomes) == 1
    assert reasons(outcomes) == {"ReservedFunctionConcurrentInvocationLimitExceeded"}
    print(f"invocations ran again {recovered:.2f} s after Redis returned")

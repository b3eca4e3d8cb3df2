"""Placement across three real nodes on one redis-server and one PostgreSQL of the suite's
own: an invocation runs on an idle environment wherever it is (forwarded to its node), so
a load spread over the nodes starts no more environments than on one; provisioned
concurrency is shared among the nodes and a killed node's share starts on the others."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.nodes import three_nodes
from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.cluster.redis_server import RedisServer
from tests.helpers import Server, python_function

NAP = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""

CLIENTS, ROUNDS, NAP_S = 10, 8, 0.05
# Shorter than the defaults (2 s, 6 s), so that a killed node's share moves in seconds.
HEARTBEAT, EXPIRY = 0.5, 2.0


@pytest.fixture(scope="module")
def nodes(
    redis_server: RedisServer, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Server]]:
    base: Path = tmp_path_factory.mktemp("placement")
    database = fresh_database(postgres)

    def args(name: str) -> list[str]:
        return ["--redis", redis_server.url, "--database", database, "--node-name", name,
                "--heartbeat", str(HEARTBEAT), "--lease-expiry", str(EXPIRY)]  # fmt: skip

    yield from three_nodes(base, args)


def steady_load(targets: list[Server], name: str) -> int:
    """CLIENTS clients, each invoking ROUNDS times in a row, the i-th of client c through
    targets[(c + i) % len(targets)]; the cold starts (REPORT lines with an Init Duration).
    The first invocations all run at once (each sleeps a second), so that both loads start
    from CLIENTS environments; a load that then starts more lost track of idle ones."""
    barrier = threading.Barrier(CLIENTS)
    colds = [0] * CLIENTS
    failures: list[str] = []

    def run(index: int) -> None:
        clients = [node.client() for node in targets]
        barrier.wait(30)
        for round_ in range(ROUNDS):
            client = clients[(index + round_) % len(clients)]
            nap = 1.0 if round_ == 0 else NAP_S
            try:
                answer = client.invoke(
                    FunctionName=name, LogType="Tail", Payload=json.dumps({"sleep": nap}).encode()
                )
            except Exception as error:  # an error answer: the test fails with it
                failures.append(repr(error))
                return
            if answer.get("FunctionError") or answer["StatusCode"] != 200:
                failures.append(answer["Payload"].read().decode())
            answer["Payload"].read()
            if "Init Duration" in base64.b64decode(answer["LogResult"]).decode():
                colds[index] += 1

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, (failures, [node.output()[-3000:] for node in targets])
    return sum(colds)


def test_a_load_spread_over_three_nodes_starts_no_more_environments_than_on_one(
    nodes: list[Server],
) -> None:
    a, b, c = nodes
    python_function(a.client(), "alone", NAP)
    python_function(a.client(), "spread", NAP)
    single = steady_load([a], "alone")
    spread = steady_load([a, b, c], "spread")
    print(f"cold starts: {single} on one node, {spread} round-robin over three")
    assert single == CLIENTS and spread <= single * 1.1, (single, spread)


def provisioned(node: Server, function: str) -> dict[str, int]:
    """Each node's provisioned environments of `function`, as `node` reports the cluster."""
    with urllib.request.urlopen(f"{node.endpoint}/_lamina/cluster", timeout=10) as answer:
        status = json.loads(answer.read())
    return {
        entry["Name"]: entry["Environments"]
        .get(f"000000000000/us-east-1/{function}", {})
        .get("provisioned", 0)
        for entry in status["Nodes"]
        if entry["Alive"]
    }


def wait_for(node: Server, function: str, wanted: object, within: float) -> dict[str, int]:
    deadline = time.monotonic() + within
    seen = provisioned(node, function)
    while seen != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = provisioned(node, function)
    return seen


def test_provisioned_environments_are_shared_and_a_killed_nodes_start_elsewhere(
    nodes: list[Server],
) -> None:
    """Runs last: it kills node b."""
    a, b, c = nodes
    lam = a.client()
    python_function(lam, "kept", NAP)
    version = lam.publish_version(FunctionName="kept")["Version"]
    lam.create_alias(FunctionName="kept", Name="live", FunctionVersion=version)
    lam.put_provisioned_concurrency_config(
        FunctionName="kept", Qualifier="live", ProvisionedConcurrentExecutions=4
    )
    # 4 over 3 nodes: 2, 1, 1 (which node keeps 2 depends on a hash of the config).
    shared = provisioned(c, "kept")  # as every node's heartbeat tells
    deadline = time.monotonic() + 15
    while sorted(shared.values()) != [1, 1, 2] and time.monotonic() < deadline:
        time.sleep(0.2)
        shared = provisioned(c, "kept")
    assert sorted(shared.values()) == [1, 1, 2] and set(shared) == {"a", "b", "c"}, shared
    # Any node reports the whole cluster's, as the others' heartbeats tell it.
    deadline = time.monotonic() + 5
    while True:
        status = b.client().get_provisioned_concurrency_config(
            FunctionName="kept", Qualifier="live"
        )
        if status["Status"] == "READY" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["Status"] == "READY", status
    assert status["AvailableProvisionedConcurrentExecutions"] == 4, status
    # Four at once through the node keeping one: all four run on provisioned environments
    # (three of them on the other nodes'), none starts an on-demand one.
    one = {"a": a, "b": b, "c": c}[min(shared, key=lambda name: shared[name])]
    tails: list[str] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        client = one.client()
        barrier.wait(30)
        answer = client.invoke(FunctionName="kept", Qualifier="live", LogType="Tail",
                               Payload=json.dumps({"sleep": 0.5}).encode())  # fmt: skip
        tails.append(base64.b64decode(answer["LogResult"]).decode())

    threads = [threading.Thread(target=run, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(tails) == 4 and not any("Init Duration" in tail for tail in tails), tails

    assert b.process is not None
    b.process.kill()
    killed = time.monotonic()
    b.process.wait()
    # Once b's leases expire, a and c keep two each.
    after = wait_for(a, "kept", {"a": 2, "c": 2}, within=EXPIRY + 15)
    took = time.monotonic() - killed
    assert after == {"a": 2, "c": 2}, after
    print(f"b's provisioned environment started on the others {took:.1f} s after the SIGKILL")
    answer = c.client().invoke(FunctionName="kept", Qualifier="live", Payload=b"{}")
    assert json.loads(answer["Payload"].read()) == {"ok": True}

"""A cluster's counting in `make bench` (bench/run.py calls `bench`), on a redis-server of
its own (a free loopback port, no persistence), against baselines in the same run:

- One admission through Redis (the acquire script, one round trip) and its release: p50
  in ms against the in-process counter's acquire, and against a bare PING measured by
  turns with it in the same run, twice: through redis-py's client (what any caller pays)
  and on the admissions' own connection (the floor). Target: the Redis admission p50
  <= 0.3 ms.
- A warm sync invoke of a no-op function at one client on a node counting in Redis
  against the same on a node counting alone, in 8 alternating rounds: the median of the
  rounds' own p50 ratios within 1.5x.

Alone: .venv/bin/python bench/cluster.py
"""

from __future__ import annotations

import http.client
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lamina.clock import Clock  # noqa: E402
from lamina.cluster.counting import RedisCounting, connect  # noqa: E402
from lamina.engine.concurrency import Counter, Limits  # noqa: E402
from lamina.keys import FunctionKey  # noqa: E402
from tests.cluster.redis_server import RedisServer  # noqa: E402

NOOP = "def handler(event, context):\n    return None\n"
KEY = FunctionKey("000000000000", "us-east-1", "bench")
LIMITS = Limits(account=1000, floor=100, rate_per_unit=0)


def in_process(rounds: int) -> tuple[list[float], list[float]]:
    counter = Counter(LIMITS)
    clock = time.perf_counter
    acquires, releases = [], []
    for _ in range(rounds):
        started = clock()
        decision = counter.acquire(KEY, started)
        middle = clock()
        assert decision.lease is not None
        counter.release(decision.lease)
        acquires.append(middle - started)
        releases.append(clock() - middle)
    return acquires, releases


async def through_redis(
    url: str, rounds: int
) -> tuple[list[float], list[float], list[float], list[float]]:
    counting = RedisCounting(connect(url), "bench-node", Clock(), lambda a, r: LIMITS)
    await counting.heartbeat(6.0)
    clock = time.perf_counter
    acquires: list[float] = []
    releases: list[float] = []
    pings: list[float] = []
    wire_pings: list[float] = []
    for index in range(rounds + 200):  # the first 200 warm the connection and the scripts
        started = clock()
        await counting.client.ping()
        middle = clock()
        await counting.ping()
        if index >= 200:
            pings.append(middle - started)
            wire_pings.append(clock() - middle)
        started = clock()
        decision = await counting.acquire(KEY, counting.now())
        middle = clock()
        assert decision.lease is not None
        await counting.release(decision.lease)
        if index >= 200:
            acquires.append(middle - started)
            releases.append(clock() - middle)
    await counting.close()
    return acquires, releases, pings, wire_pings


def invoke_p50(port: int, name: str, rounds: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    path = f"/2015-03-31/functions/{name}/invocations"
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        connection.request("POST", path, body=b"{}", headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        took.append(time.perf_counter() - started)
        if answer.status != 200:
            raise RuntimeError(f"invoke answered {answer.status}")
    connection.close()
    return statistics.median(took)


def bench(lamina: Callable[..., Any], row: Callable[..., None], raw: dict[str, Any],
          rounds: int = 5000) -> None:  # fmt: skip
    print("13. Cluster counting: an admission through Redis; a warm invoke", flush=True)
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="lamina-bench-redis-"))).start()
    try:
        local_acquire, local_release = in_process(rounds)
        shared_acquire, shared_release, pings, wire_pings = uvloop.run(
            through_redis(redis.url, rounds)
        )
        ping_p50 = statistics.median(pings) * 1e3
        wire_ping_p50 = statistics.median(wire_pings) * 1e3
        local_p50 = statistics.median(local_acquire) * 1e3
        shared_p50 = statistics.median(shared_acquire) * 1e3
        raw["cluster_admission"] = {
            "in_process_acquire_ms": local_p50,
            "in_process_release_ms": statistics.median(local_release) * 1e3,
            "redis_acquire_ms": shared_p50,
            "redis_release_ms": statistics.median(shared_release) * 1e3,
            "redis_ping_ms": ping_p50,
            "redis_ping_own_connection_ms": wire_ping_p50,
        }
        row("cluster", "admission through Redis p50", shared_p50, "ms",
            "in-process admission p50", local_p50, "<= 0.3 ms", shared_p50 <= 0.3)  # fmt: skip
        row("cluster", "admission through Redis p50", shared_p50, "ms",
            "a PING through redis-py p50", ping_p50)  # fmt: skip
        row("cluster", "admission through Redis p50", shared_p50, "ms",
            "a PING on the admissions' connection p50", wire_ping_p50)  # fmt: skip
        row("cluster", "release through Redis p50", statistics.median(shared_release) * 1e3,
            "ms", "in-process release p50", statistics.median(local_release) * 1e3)  # fmt: skip

        alone = lamina("--isolation", "none")
        clustered = lamina("--isolation", "none", "--redis", redis.url, "--node-name", "bench")
        try:
            for server in (alone, clustered):
                server.create("noop", NOOP)
                invoke_p50(server.port, "noop", 50)  # warm
            singles, shared = [], []
            for _ in range(8):  # alternately, so that drift hits both alike
                singles.append(invoke_p50(alone.port, "noop", 150))
                shared.append(invoke_p50(clustered.port, "noop", 150))
            single_p50 = statistics.median(singles) * 1e3
            shared_p50 = statistics.median(shared) * 1e3
            # The figure: the median of each round's own ratio (a loaded machine moves
            # both sides of a round together, rounds apart).
            ratio = statistics.median(c / s for c, s in zip(shared, singles, strict=True))
            raw["cluster_warm_invoke"] = {
                "single_ms": single_p50,
                "cluster_ms": shared_p50,
                "round_ratios": [c / s for c, s in zip(shared, singles, strict=True)],
            }
            row("cluster", "warm invoke counting in Redis p50 (1 client)", shared_p50, "ms",
                "single node p50", single_p50)  # fmt: skip
            row("cluster", "warm invoke, median of the rounds' ratios", ratio, "x",
                "single node", 1.0, "<= 1.5x", ratio <= 1.5)  # fmt: skip
        finally:
            alone.stop()
            clustered.stop()
    finally:
        redis.stop()


def bench_placement(lamina: Callable[..., Any], row: Callable[..., None], raw: dict[str, Any],
                    rounds: int = 8, per_round: int = 150) -> None:  # fmt: skip
    """The forwarding hop: two nodes on one Redis and one PostgreSQL; the function's one
    environment is on node A. A warm invoke through A runs it there; through B it is
    admitted on B, claimed from the registry and forwarded to A. The hop's cost: the p50
    through B less the p50 through A, in alternating rounds (target <= 0.5 ms)."""
    print("13b. Cluster placement: an invoke forwarded to the node of the idle environment",
          flush=True)  # fmt: skip
    from tests.cluster.postgres_server import PostgresServer, fresh_database

    redis = RedisServer(Path(tempfile.mkdtemp(prefix="lamina-bench-redis-"))).start()
    postgres = PostgresServer().start()
    nodes: list[Any] = []
    try:
        database = fresh_database(postgres)
        common = ("--isolation", "none", "--redis", redis.url, "--database", database)
        nodes.append(lamina(*common, "--node-name", "a"))
        second = Path(tempfile.mkdtemp(prefix="lamina-bench-b-")) / "data"
        second.mkdir()
        key = second / "accounts.key"  # the cluster's secrets key, as an operator copies it
        key.write_bytes((nodes[0].dir / "data" / "accounts.key").read_bytes())
        key.chmod(0o600)
        nodes.append(lamina(*common, "--node-name", "b", "--data-dir", str(second)))
        a, b = nodes
        a.create("noop", NOOP)
        invoke_p50(a.port, "noop", 50)  # its environment, on a
        invoke_p50(b.port, "noop", 50)  # b's connection to a, opened
        local, forwarded = [], []
        for _ in range(rounds):  # alternately, so that drift hits both alike
            local.append(invoke_p50(a.port, "noop", per_round))
            forwarded.append(invoke_p50(b.port, "noop", per_round))
        time.sleep(2.5)  # b's next heartbeat tells its environments
        b_nodes = [n for n in b.call("GET", "/_lamina/cluster")["Nodes"] if n["Name"] == "b"]
        if b_nodes and any(sum(e.values()) for e in b_nodes[0]["Environments"].values()):
            raise RuntimeError(f"b started environments of its own: {b_nodes}")
        hops = [f - lo for f, lo in zip(forwarded, local, strict=True)]
        hop_p50 = statistics.median(hops) * 1e3
        local_p50 = statistics.median(local) * 1e3
        forwarded_p50 = statistics.median(forwarded) * 1e3
        raw["cluster_forwarding"] = {
            "local_ms": local_p50,
            "forwarded_ms": forwarded_p50,
            "hop_ms_by_round": [h * 1e3 for h in hops],
        }
        row("cluster", "warm invoke forwarded to another node p50", forwarded_p50, "ms",
            "the same warm invoke on its node p50", local_p50)  # fmt: skip
        row("cluster", "forwarding hop p50 (median of rounds)", hop_p50, "ms",
            "a warm invoke on its node p50", local_p50, "<= 0.5 ms", hop_p50 <= 0.5)  # fmt: skip
    finally:
        for server in nodes:
            server.stop()
        postgres.stop()
        postgres.remove()
        redis.stop()


if __name__ == "__main__":
    import run  # bench/run.py, beside this file

    bench(run.Lamina, run.row, run.RAW)

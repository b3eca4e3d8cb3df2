"""The cluster's counting service itself, two nodes on one redis-server of the test's own:
leases that outlive their node's heartbeat are taken back exactly at their expiry; a
Redis that lost everything gets the nodes' leases back before it admits again; changed
account limits reach it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from lamina.clock import Clock
from lamina.cluster.counting import RedisCounting, connect
from lamina.engine.concurrency import Limits, Throttle
from lamina.engine.counting import CountingUnavailable
from lamina.keys import FunctionKey
from tests.cluster.redis_server import RedisServer

KEY = FunctionKey("000000000000", "us-east-1", "counted")
LIMITS = Limits(account=20, floor=5, rate_per_unit=0)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def node(server: RedisServer, name: str, limits: list[Limits] | None = None) -> RedisCounting:
    chosen = limits or [LIMITS]
    return RedisCounting(
        connect(server.url, timeout=10.0),
        name,
        Clock(),
        lambda account, region: chosen[0],
        settings_of=lambda account, region: [("counted", 3, 0)],
    )


def test_a_silent_nodes_leases_come_back_at_their_expiry(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        first, second = node(redis_server, "first"), node(redis_server, "second")
        await first.client.flushdb()
        await first.heartbeat(1.0)
        await second.heartbeat(1.0)
        taken = [await first.acquire(KEY, first.now()) for _ in range(3)]
        beat = time.monotonic()
        assert all(d.lease is not None for d in taken)  # the reservation (3) from the store
        refused = await second.acquire(KEY, second.now())
        assert refused.throttle is Throttle.RESERVED
        # `first` stops heartbeating; `second` goes on. Before the expiry: still refused.
        await asyncio.sleep(0.5)
        await second.heartbeat(1.0)
        assert (await second.acquire(KEY, second.now())).throttle is Throttle.RESERVED
        while time.monotonic() - beat < 1.5:
            decision = await second.acquire(KEY, second.now())
            if decision.lease is not None:
                break
            await asyncio.sleep(0.02)
        assert decision.lease is not None
        assert 0.9 <= time.monotonic() - beat <= 1.3
        assert (await second.counts(KEY)).on_demand == 1
        # `first` was only slow: its releases of leases taken back change nothing.
        for d in taken:
            assert d.lease is not None
            await first.release(d.lease)
        assert (await second.counts(KEY)).on_demand == 1
        await first.close()
        await second.close()

    loop.run_until_complete(scenario())


def test_leases_are_put_back_when_redis_lost_them(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        mine = node(redis_server, "holder")
        await mine.client.flushdb()
        await mine.heartbeat(1.0)
        held = [await mine.acquire(KEY, mine.now()) for _ in range(2)]
        assert all(d.lease is not None for d in held)
        redis_server.restart()  # empty
        assert await mine.heartbeat(1.0)  # forgotten: the two leases go back
        with pytest.raises(CountingUnavailable):  # until every node had time to do so
            await mine.acquire(KEY, mine.now())
        await asyncio.sleep(0.6)
        granted = await mine.acquire(KEY, mine.now())
        assert granted.lease is not None
        assert (await mine.acquire(KEY, mine.now())).throttle is Throttle.RESERVED
        counts = await mine.counts(KEY)
        assert (counts.reserved, counts.on_demand) == (3, 3)
        await mine.close()

    loop.run_until_complete(scenario())


def test_changed_account_limits_reach_redis(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        limits = [LIMITS]
        mine = node(redis_server, "limits", limits)
        await mine.client.flushdb()
        await mine.ensure_scope(KEY.account, KEY.region)
        assert (await mine.account(KEY.account, KEY.region))["unreserved_pool"] == 17
        limits[0] = Limits(account=30, floor=5, rate_per_unit=0)
        await mine.refresh_limits()
        assert (await mine.account(KEY.account, KEY.region))["unreserved_pool"] == 27
        await mine.close()

    loop.run_until_complete(scenario())


def test_one_node_samples_the_clusters_gauges_with_their_exact_peaks(
    redis_server: RedisServer, loop: asyncio.AbstractEventLoop
) -> None:
    from lamina.cluster.gauges import ClusterGauges

    async def scenario() -> None:
        first, second = node(redis_server, "first"), node(redis_server, "second")
        await first.client.flushdb()
        await first.heartbeat(5.0)
        await second.heartbeat(5.0)
        gauges = [ClusterGauges(n.client, n.node, lease=0.3) for n in (first, second)]
        taken = [await n.acquire(KEY, n.now()) for n in (first, first, second)]
        leases = [d.lease for d in taken]
        assert all(leases)
        await first.release(leases[0])  # before any sample: the peak of 3 stays
        (figures,) = await gauges[0].sample() or []
        assert await gauges[1].sample() is None  # the first holds the lease
        assert (figures["ConcurrentExecutions"], figures["PeakConcurrentExecutions"]) == (2, 3)
        function = figures["Functions"]["counted"]
        assert (function["ConcurrentExecutions"], function["PeakConcurrentExecutions"]) == (2, 3)
        # The peaks start anew from what is in flight; the lease passes when not renewed.
        await asyncio.sleep(0.4)
        (figures,) = await gauges[1].sample() or []
        assert await gauges[0].sample() is None
        assert figures["PeakConcurrentExecutions"] == 2
        assert figures["Functions"]["counted"]["PeakConcurrentExecutions"] == 2
        await first.release(leases[1])
        await second.release(leases[2])
        (figures,) = await gauges[1].sample() or []
        assert (figures["ConcurrentExecutions"], figures["PeakConcurrentExecutions"]) == (0, 2)
        (figures,) = await gauges[1].sample() or []
        assert figures["PeakConcurrentExecutions"] == 0 and figures["Functions"] == {}
        await first.close()
        await second.close()

    loop.run_until_complete(scenario())

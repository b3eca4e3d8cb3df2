"""The counting service, driven by random sequences of settings, acquisitions and releases.

The same cases hold both implementations: the pure in-process one (engine/concurrency.py)
and the cluster's Redis scripts (cluster/counting.py), on a redis-server of the test's own.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lamina.clock import Clock
from lamina.cluster.counting import RedisCounting, connect
from lamina.engine.concurrency import (
    Counter,
    Decision,
    FunctionCounts,
    Kind,
    Lease,
    Limits,
    Pool,
    SettingsError,
    Throttle,
)
from lamina.keys import FunctionKey
from tests.cluster.redis_server import RedisServer

FUNCTIONS = [FunctionKey("000000000000", "us-east-1", f"f{i}") for i in range(4)]
ACCOUNT, FLOOR = 20, 5
NO_RATES = Limits(account=ACCOUNT, floor=FLOOR, rate_per_unit=0, burst=10_000)


class Local:
    """The pure counting module, as the engine of a single node calls it."""

    def __init__(self, limits: Limits) -> None:
        self.counter = Counter(limits)

    def set_reserved(self, function: FunctionKey, reserved: int | None) -> None:
        self.counter.set_reserved(function, reserved)

    def set_provisioned(self, function: FunctionKey, total: int) -> None:
        self.counter.set_provisioned(function, total)

    def set_provisioned_ready(self, function: FunctionKey, ready: int) -> None:
        self.counter.set_provisioned_ready(function, ready)

    def acquire(self, function: FunctionKey, now: float, **options: Any) -> Decision:
        return self.counter.acquire(function, now, **options)

    def release(self, lease: Lease) -> None:
        self.counter.release(lease)

    def counts(self, function: FunctionKey) -> FunctionCounts:
        c = self.counter.counts(function)
        return FunctionCounts(
            c.reserved, c.provisioned, c.provisioned_ready, c.on_demand, c.provisioned_busy,
            c.provisioned_invocations, c.spillover_invocations,
        )  # fmt: skip

    def account(self) -> dict[str, int]:
        counter = self.counter
        return {
            "reserved_total": counter.reserved_total,
            "provisioned_unreserved": counter.provisioned_unreserved,
            "unreserved_in_flight": counter.unreserved_in_flight,
            "in_flight": counter.in_flight,
            "unreserved_pool": counter.unreserved_pool,
            "leases": counter.leases(),
        }


class Remote:
    """The cluster's Redis scripts, through the client every node uses."""

    loop: asyncio.AbstractEventLoop | None = None
    url = ""
    nodes = itertools.count(1)

    def __init__(self, limits: Limits) -> None:
        assert self.loop is not None
        client = connect(self.url, timeout=10.0)  # a loaded test machine can stall
        self.run(client.flushdb())
        self.counting = RedisCounting(
            client, f"node-{next(self.nodes)}", Clock(), lambda account, region: limits
        )
        self.run(self.counting.ensure_scope(*FUNCTIONS[0][:2]))
        self.seen: tuple[dict[str, int], dict[FunctionKey, FunctionCounts]] | None = None

    def run(self, pending: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(pending)

    def set_reserved(self, function: FunctionKey, reserved: int | None) -> None:
        self.seen = None
        self.run(self.counting.set_reserved(function, reserved))

    def set_provisioned(self, function: FunctionKey, total: int) -> None:
        self.seen = None
        self.run(self.counting.set_provisioned(function, total))

    def set_provisioned_ready(self, function: FunctionKey, ready: int) -> None:
        self.seen = None
        self.run(self.counting.set_provisioned_ready(function, ready))

    def acquire(self, function: FunctionKey, now: float, **options: Any) -> Decision:
        self.seen = None
        decision: Decision = self.run(self.counting.acquire(function, now, **options))
        return decision

    def release(self, lease: Lease) -> None:
        """As the engine releases: carried by the function's next admission (or sent on
        its own when read before that)."""
        self.seen = None
        self.run(self._release_soon(lease))

    async def _release_soon(self, lease: Lease) -> None:
        self.counting.release_soon(lease)

    def _look(self) -> tuple[dict[str, int], dict[FunctionKey, FunctionCounts]]:
        """The account's and every function's figures, read in one round trip and kept
        until the next change."""
        if self.seen is None:
            self.run(self.counting.flush())
            self.seen = self.run(self.counting.snapshot(FUNCTIONS))
        return self.seen

    def counts(self, function: FunctionKey) -> FunctionCounts:
        return self._look()[1][function]

    def account(self) -> dict[str, int]:
        figures = dict(self._look()[0])
        figures["leases"] = self.counting.leases()
        return figures

    def close(self) -> None:
        self.run(self.counting.client.aclose())


@pytest.fixture(scope="module", autouse=True)
def redis_for_the_cluster_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    Remote.loop, Remote.url = asyncio.new_event_loop(), server.url
    yield
    Remote.loop.close()
    Remote.loop = None
    server.stop()


IMPLEMENTATIONS = {"local": Local, "redis": Remote}


class CountingMachine(RuleBasedStateMachine):
    implementation: type[Local] | type[Remote] = Local

    def __init__(self) -> None:
        super().__init__()
        self.counter = self.implementation(NO_RATES)
        self.leases: list[tuple[Lease, int]] = []  # with the settings epoch it was taken in
        self.epoch = 0
        self.now = 0.0

    def teardown(self) -> None:
        if isinstance(self.counter, Remote):
            self.counter.close()

    @rule(function=st.sampled_from(FUNCTIONS), reserved=st.none() | st.integers(0, 25))
    def set_reserved(self, function: FunctionKey, reserved: int | None) -> None:
        before = self.counter.account()["unreserved_pool"]
        try:
            self.counter.set_reserved(function, reserved)
        except SettingsError:
            assert self.counter.account()["unreserved_pool"] == before  # a refusal changes nothing
            return
        self.epoch += 1

    @rule(function=st.sampled_from(FUNCTIONS), total=st.integers(0, 25))
    def set_provisioned(self, function: FunctionKey, total: int) -> None:
        try:
            self.counter.set_provisioned(function, total)
        except SettingsError:
            return
        self.counter.set_provisioned_ready(function, total)
        self.epoch += 1

    @rule(function=st.sampled_from(FUNCTIONS), ready=st.integers(0, 25))
    def environments_come_and_go(self, function: FunctionKey, ready: int) -> None:
        """Provisioned environments finish init, die, or are replaced: any ready count."""
        self.counter.set_provisioned_ready(function, ready)
        counts = self.counter.counts(function)
        assert 0 <= counts.provisioned_ready <= counts.provisioned

    @rule(function=st.sampled_from(FUNCTIONS), provisioned=st.booleans())
    def acquire(self, function: FunctionKey, provisioned: bool) -> None:
        counts = self.counter.counts(function)
        kind = Kind.PROVISIONED if provisioned else Kind.ON_DEMAND
        reserved_room = (
            counts.reserved is not None and counts.on_demand < counts.reserved - counts.provisioned
        )
        free_provisioned = counts.provisioned_busy < counts.provisioned_ready
        served = counts.provisioned_invocations
        spilled = counts.spillover_invocations
        decision = self.counter.acquire(function, self.now, kind=kind, new_environment=True)
        counts = self.counter.counts(function)
        account = self.counter.account()
        if provisioned and free_provisioned:
            # A free initialised environment is always used, whatever the other limits say.
            assert decision.lease is not None and decision.lease.pool is Pool.PROVISIONED
            assert counts.provisioned_invocations == served + 1
        if provisioned and not free_provisioned and decision.lease is not None:
            assert decision.lease.pool is not Pool.PROVISIONED
            assert counts.spillover_invocations == spilled + 1
        if decision.lease is None:
            assert counts.spillover_invocations == spilled
            assert decision.throttle is not None
            # A function below its reservation is never refused, whatever the others do.
            assert not reserved_room
            expected = Throttle.RESERVED if counts.reserved is not None else Throttle.ACCOUNT
            assert decision.throttle is expected
            return
        lease = decision.lease
        self.leases.append((lease, self.epoch))
        if lease.pool is Pool.RESERVED:
            assert counts.reserved is not None
            assert counts.on_demand <= counts.reserved - counts.provisioned
        elif lease.pool is Pool.UNRESERVED:
            assert counts.reserved is None
            assert account["unreserved_in_flight"] <= account["unreserved_pool"]
        else:
            assert counts.provisioned_busy <= counts.provisioned_ready

    @precondition(lambda self: bool(self.leases))
    @rule(index=st.integers(0, 10_000))
    def release(self, index: int) -> None:
        lease, _ = self.leases.pop(index % len(self.leases))
        self.counter.release(lease)
        with pytest.raises(ValueError):
            self.counter.release(lease)

    @rule()
    def release_everything(self) -> None:
        for lease, _ in self.leases:
            self.counter.release(lease)
        self.leases.clear()
        account = self.counter.account()
        assert account["in_flight"] == 0
        assert account["unreserved_in_flight"] == 0
        for function in FUNCTIONS:
            counts = self.counter.counts(function)
            assert counts.on_demand == 0 and counts.provisioned_busy == 0

    @invariant()
    def counts_match_leases(self) -> None:
        account = self.counter.account()
        assert account["in_flight"] == len(self.leases) == account["leases"]
        unreserved = sum(1 for lease, _ in self.leases if lease.pool is Pool.UNRESERVED)
        assert account["unreserved_in_flight"] == unreserved
        for function in FUNCTIONS:
            counts = self.counter.counts(function)
            mine = [lease for lease, _ in self.leases if lease.function == function]
            assert counts.provisioned_busy == sum(
                1 for lease in mine if lease.pool is Pool.PROVISIONED
            )
            assert counts.on_demand == sum(
                1 for lease in mine if lease.pool is not Pool.PROVISIONED
            )

    @invariant()
    def floor_is_kept(self) -> None:
        account = self.counter.account()
        assert account["unreserved_pool"] >= FLOOR
        functions = [self.counter.counts(function) for function in FUNCTIONS]
        assert account["reserved_total"] == sum(c.reserved or 0 for c in functions)
        assert account["provisioned_unreserved"] == sum(
            c.provisioned for c in functions if c.reserved is None
        )
        assert account["unreserved_pool"] == ACCOUNT - sum(
            c.reserved if c.reserved is not None else c.provisioned for c in functions
        )

    @invariant()
    def account_limit_holds_under_steady_settings(self) -> None:
        # Leases taken under older settings may outlive a change (a reservation is a
        # guarantee, honoured at once); with none of those, the account limit holds.
        if all(epoch == self.epoch for _, epoch in self.leases):
            assert self.counter.account()["in_flight"] <= ACCOUNT


class LocalMachine(CountingMachine):
    implementation = Local


class RedisMachine(CountingMachine):
    implementation = Remote


TestCounting = LocalMachine.TestCase
TestCounting.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
# The same cases through Redis: fewer of them (each step is a few round trips).
TestCountingInRedis = RedisMachine.TestCase
TestCountingInRedis.settings = settings(max_examples=30, stateful_step_count=40, deadline=None)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make(request: pytest.FixtureRequest) -> Any:
    made: list[Any] = []

    def build(limits: Limits) -> Local | Remote:
        found = IMPLEMENTATIONS[request.param](limits)
        made.append(found)
        return found

    yield build
    for found in made:
        if isinstance(found, Remote):
            found.close()


KEY = FUNCTIONS[0]
OTHER = FUNCTIONS[1]


def test_reserved_zero_throttles_everything(make: Any) -> None:
    counter = make(NO_RATES)
    counter.set_reserved(KEY, 0)
    decision = counter.acquire(KEY, 0.0)
    assert decision.lease is None and decision.throttle is Throttle.RESERVED


def test_reserved_function_runs_exactly_its_reservation(make: Any) -> None:
    counter = make(NO_RATES)
    counter.set_reserved(KEY, 3)
    granted = [counter.acquire(KEY, 0.0) for _ in range(10)]
    assert sum(1 for d in granted if d.lease) == 3
    assert {d.throttle for d in granted if d.lease is None} == {Throttle.RESERVED}


def test_shared_pool_exhaustion_uses_the_account_reason_and_spares_reservations(make: Any) -> None:
    counter = make(NO_RATES)
    counter.set_reserved(KEY, 10)  # pool: 20 - 10 = 10
    granted = [counter.acquire(OTHER, 0.0) for _ in range(12)]
    assert sum(1 for d in granted if d.lease) == 10
    assert granted[-1].throttle is Throttle.ACCOUNT
    assert counter.acquire(KEY, 0.0).lease is not None


def test_reservation_messages_are_aws_s(make: Any) -> None:
    counter = make(NO_RATES)
    with pytest.raises(SettingsError) as refused:
        counter.set_reserved(KEY, 16)
    assert refused.value.message == (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [5]."
    )
    counter.set_provisioned(KEY, 2)
    with pytest.raises(SettingsError) as below:
        counter.set_reserved(KEY, 1)
    assert below.value.message == (
        " ReservedConcurrentExecutions  1 should not be lower than function's total "
        "provisioned concurrency [2]."
    )


def test_scaling_rate_refills_continuously_and_is_not_banked(make: Any) -> None:
    counter = make(Limits(account=5000, floor=100, burst=1000, burst_window=10, rate_per_unit=0))
    for _ in range(1000):
        assert counter.acquire(KEY, 0.0, new_environment=True).lease is not None
    refused = counter.acquire(KEY, 0.0, new_environment=True)
    assert refused.lease is None and refused.retry_after == pytest.approx(0.01)
    # A warm environment needs no scaling token.
    assert counter.acquire(KEY, 0.0).lease is not None
    # 1 s later, 100 more (1000 per 10 s, continuously).
    granted = sum(1 for _ in range(200) if counter.acquire(KEY, 1.0, new_environment=True).lease)
    assert granted == 100
    # A long idle period refills to 1000, never more.
    other = make(Limits(account=5000, floor=100, burst=1000, burst_window=10, rate_per_unit=0))
    other.acquire(OTHER, 0.0, new_environment=True)
    granted = sum(
        1 for _ in range(1500) if other.acquire(OTHER, 3600.0, new_environment=True).lease
    )
    assert granted == 1000


def test_request_rate_is_ten_per_unit_of_concurrency(make: Any) -> None:
    counter = make(Limits(account=1000, floor=100, rate_per_unit=10))
    counter.set_reserved(KEY, 2)  # 20 requests per second
    admitted = 0
    for _ in range(25):
        decision = counter.acquire(KEY, 0.0)
        if decision.lease:
            admitted += 1
            counter.release(decision.lease)
        else:
            assert decision.throttle is Throttle.RESERVED_RATE
    assert admitted == 20


def test_a_released_slot_is_free_for_the_next_admission_at_once(make: Any) -> None:
    """On the cluster path the release rides on the next admission's script."""
    counter = make(NO_RATES)
    counter.set_reserved(KEY, 1)
    for _ in range(5):
        decision = counter.acquire(KEY, 0.0)
        assert decision.lease is not None, decision
        counter.release(decision.lease)
    assert counter.counts(KEY).on_demand == 0
    assert counter.account()["in_flight"] == 0


def test_a_cluster_node_keeps_its_own_figures_of_what_the_shared_counts_granted() -> None:
    """On a cluster the node's in-process counter decides nothing: it counts the leases
    the shared counts granted it, for the node's metrics, and their release."""
    node = Counter(NO_RATES)
    leases = [Lease(i, KEY, Pool.UNRESERVED) for i in (1, 2)] + [Lease(3, OTHER, Pool.PROVISIONED)]
    for lease in leases:
        node.adopt(lease)
    node.note_throttle(KEY, Throttle.ACCOUNT)
    figures = node.sample()
    assert figures["ConcurrentExecutions"] == figures["PeakConcurrentExecutions"] == 3
    assert figures["UnreservedInUse"] == 2
    assert figures["Functions"]["f0"]["ConcurrentExecutions"] == 2
    assert figures["Functions"]["f1"]["ProvisionedConcurrentExecutions"] == 1
    assert figures["Throttles"] == {"ConcurrentInvocationLimitExceeded": 1}
    for lease in leases:
        node.release(lease)
    assert node.in_flight == node.unreserved_in_flight == node.leases() == 0

"""The counting service, driven by random sequences of settings, acquisitions and releases."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lamina.engine.concurrency import Counter, Kind, Lease, Limits, Pool, SettingsError, Throttle
from lamina.keys import FunctionKey

FUNCTIONS = [FunctionKey("000000000000", "us-east-1", f"f{i}") for i in range(4)]
ACCOUNT, FLOOR = 20, 5
NO_RATES = Limits(account=ACCOUNT, floor=FLOOR, rate_per_unit=0, burst=10_000)


class CountingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.counter = Counter(NO_RATES)
        self.leases: list[tuple[Lease, int]] = []  # with the settings epoch it was taken in
        self.epoch = 0
        self.now = 0.0

    @rule(function=st.sampled_from(FUNCTIONS), reserved=st.none() | st.integers(0, 25))
    def set_reserved(self, function: FunctionKey, reserved: int | None) -> None:
        before = self.counter.unreserved_pool
        try:
            self.counter.set_reserved(function, reserved)
        except SettingsError:
            assert self.counter.unreserved_pool == before  # a refusal changes nothing
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
            assert self.counter.unreserved_in_flight <= self.counter.unreserved_pool
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
        assert self.counter.in_flight == 0
        assert self.counter.unreserved_in_flight == 0
        for counts in self.counter.functions.values():
            assert counts.on_demand == 0 and counts.provisioned_busy == 0

    @invariant()
    def counts_match_leases(self) -> None:
        assert self.counter.in_flight == len(self.leases) == self.counter.leases()
        unreserved = sum(1 for lease, _ in self.leases if lease.pool is Pool.UNRESERVED)
        assert self.counter.unreserved_in_flight == unreserved
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
        assert self.counter.unreserved_pool >= FLOOR
        functions = self.counter.functions.values()
        assert self.counter.reserved_total == sum(c.reserved or 0 for c in functions)
        assert self.counter.provisioned_unreserved == sum(
            c.provisioned for c in functions if c.reserved is None
        )
        assert self.counter.unreserved_pool == ACCOUNT - sum(
            c.reserved if c.reserved is not None else c.provisioned for c in functions
        )

    @invariant()
    def account_limit_holds_under_steady_settings(self) -> None:
        # Leases taken under older settings may outlive a change (a reservation is a
        # guarantee, honoured at once); with none of those, the account limit holds.
        if all(epoch == self.epoch for _, epoch in self.leases):
            assert self.counter.in_flight <= ACCOUNT


TestCounting = CountingMachine.TestCase
TestCounting.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


KEY = FUNCTIONS[0]
OTHER = FUNCTIONS[1]


def test_reserved_zero_throttles_everything() -> None:
    counter = Counter(NO_RATES)
    counter.set_reserved(KEY, 0)
    decision = counter.acquire(KEY, 0.0)
    assert decision.lease is None and decision.throttle is Throttle.RESERVED


def test_reserved_function_runs_exactly_its_reservation() -> None:
    counter = Counter(NO_RATES)
    counter.set_reserved(KEY, 3)
    granted = [counter.acquire(KEY, 0.0) for _ in range(10)]
    assert sum(1 for d in granted if d.lease) == 3
    assert {d.throttle for d in granted if d.lease is None} == {Throttle.RESERVED}


def test_shared_pool_exhaustion_uses_the_account_reason_and_spares_reservations() -> None:
    counter = Counter(NO_RATES)
    counter.set_reserved(KEY, 10)  # pool: 20 - 10 = 10
    granted = [counter.acquire(OTHER, 0.0) for _ in range(12)]
    assert sum(1 for d in granted if d.lease) == 10
    assert granted[-1].throttle is Throttle.ACCOUNT
    assert counter.acquire(KEY, 0.0).lease is not None


def test_reservation_messages_are_aws_s() -> None:
    counter = Counter(NO_RATES)
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


def test_scaling_rate_refills_continuously_and_is_not_banked() -> None:
    counter = Counter(Limits(account=5000, floor=100, burst=1000, burst_window=10, rate_per_unit=0))
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
    other = Counter(Limits(account=5000, floor=100, burst=1000, burst_window=10, rate_per_unit=0))
    other.acquire(OTHER, 0.0, new_environment=True)
    granted = sum(
        1 for _ in range(1500) if other.acquire(OTHER, 3600.0, new_environment=True).lease
    )
    assert granted == 1000


def test_request_rate_is_ten_per_unit_of_concurrency() -> None:
    counter = Counter(Limits(account=1000, floor=100, rate_per_unit=10))
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

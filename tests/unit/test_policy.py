"""The pool's policy as plain functions (engine/policy.py) and the async retry rules
(engine/retry.py): what the engine and the planner both run."""

from __future__ import annotations

import random

from lamina.engine.concurrency import Counter, Kind, Lease, Limits, Pool, Throttle
from lamina.engine.policy import IdleStack, admit
from lamina.engine.retry import backoff_delay, error_retry_delay, slot_frees
from lamina.keys import FunctionKey

FN = FunctionKey("000000000000", "us-east-1", "fn")
OTHER = FunctionKey("000000000000", "us-east-1", "other")


def test_idle_stack_reuses_the_most_recently_used_first() -> None:
    idle: IdleStack[str] = IdleStack(keep_alive=10.0)
    idle.push("a", 1.0)
    idle.push("b", 2.0)
    idle.push("c", 3.0)
    assert idle.has_idle(4.0)
    assert idle.pop(4.0) == "c"
    assert idle.pop(4.0) == "b"
    idle.push("c", 5.0)
    assert list(idle) == ["a", "c"]
    assert idle.pop(5.0) == "c"


def test_idle_stack_reclaims_after_the_keep_alive() -> None:
    idle: IdleStack[str] = IdleStack(keep_alive=10.0)
    idle.push("old", 0.0)
    idle.push("new", 5.0)
    assert idle.next_expiry() == 10.0
    assert idle.expired(9.99) == []
    assert idle.expired(10.0) == ["old"]  # idle exactly the keep-alive: reclaimed
    assert idle.has_idle(14.9) and not idle.has_idle(15.0)
    assert idle.pop(15.0) is None  # past it: not reused, left for `expired`
    assert len(idle) == 1
    assert idle.expired(15.0) == ["new"]
    assert idle.next_expiry() is None and not idle.has_idle(0.0)


def test_idle_stack_drops_unusable_environments() -> None:
    idle: IdleStack[str] = IdleStack(keep_alive=10.0)
    for index, name in enumerate(["a", "dead", "b", "dead2"]):
        idle.push(name, float(index))
    assert idle.remove_if(lambda name: name.startswith("dead")) == ["dead", "dead2"]
    assert list(idle) == ["a", "b"]
    assert idle.next_expiry() == 10.0
    assert idle.pop(3.0) == "b"
    assert idle.clear() == ["a"] and len(idle) == 0


def test_admit_places_on_provisioned_first_then_spills_over_to_on_demand() -> None:
    counter = Counter(Limits(account=10, floor=2, rate_per_unit=0))
    counter.set_provisioned(FN, 1)
    counter.set_provisioned_ready(FN, 1)
    first = admit(counter, FN, 0.0, True, True, False)
    assert first.lease is not None and first.lease.pool is Pool.PROVISIONED
    second = admit(counter, FN, 0.0, False, True, False)  # none free: on demand, cold
    assert second.lease is not None and second.lease.pool is Pool.UNRESERVED
    counts = counter.counts(FN)
    assert counts.provisioned_invocations == 1 and counts.spillover_invocations == 1


def test_admit_charges_the_scaling_bucket_only_for_a_new_environment() -> None:
    counter = Counter(Limits(account=100, floor=0, burst=2, burst_window=10, rate_per_unit=0))
    leases = [admit(counter, FN, 0.0, False, False, False).lease for _ in range(2)]
    assert all(leases)
    cold = admit(counter, FN, 0.0, False, False, False)  # a third new one in the same instant
    assert cold.lease is None and cold.throttle is Throttle.ACCOUNT
    warm = admit(counter, FN, 0.0, False, False, True)  # a warm one needs no token
    assert warm.lease is not None


def test_acquire_takes_its_options_by_position_as_by_name() -> None:
    counter = Counter(Limits(account=10, floor=0, rate_per_unit=0))
    by_name = counter.acquire(FN, 0.0, kind=Kind.ON_DEMAND, new_environment=True)
    by_position = counter.acquire(FN, 0.0, Kind.ON_DEMAND, True, False)
    assert by_name.lease is not None and by_position.lease is not None
    assert by_position.lease.id == by_name.lease.id + 1
    counter.release(by_name.lease)
    counter.release(by_position.lease)
    assert counter.in_flight == 0 and counter.leases() == 0


def test_async_backoff_doubles_to_five_minutes_with_jitter() -> None:
    rng = random.Random(3)
    for backoffs, ceiling in ((1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, 300.0), (30, 300.0)):
        delay = backoff_delay(backoffs, rng.uniform)
        assert ceiling / 2 <= delay <= ceiling
    assert (error_retry_delay(1), error_retry_delay(2), error_retry_delay(3)) == (60, 120, 120)


def test_a_freed_slot_wakes_its_own_function_or_an_unreserved_one_of_the_account() -> None:
    own = Lease(1, FN, Pool.RESERVED)
    shared = Lease(2, OTHER, Pool.UNRESERVED)
    reserved_other = Lease(3, OTHER, Pool.RESERVED)
    elsewhere = Lease(4, FunctionKey("111111111111", "us-east-1", "x"), Pool.UNRESERVED)
    assert slot_frees(FN, 5, own)
    assert slot_frees(FN, None, shared) and not slot_frees(FN, 5, shared)
    assert not slot_frees(FN, None, reserved_other)
    assert not slot_frees(FN, None, elsewhere)

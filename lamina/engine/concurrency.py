"""The counting service: every concurrency count and every admission decision.

Pure: no I/O, no clock of its own (callers pass `now`), O(1) per decision. One instance
owns all counts; nothing else keeps a copy. The model (shared/AWS_REFERENCE.md):

- The account has a limit (default 1000) and an unreserved floor (default 100).
- A function's reserved concurrency R is both its guarantee and its ceiling; R = 0
  throttles every invocation. Provisioned concurrency of a reserved function is carved
  out of R; of an unreserved function, out of the account's unreserved pool.
- Unreserved pool = limit - Σ reserved - Σ provisioned of unreserved functions. Functions
  without a reservation share it.
- Scaling rate: a function may add `burst` new environments per `burst_window` seconds
  (a token bucket refilled continuously, never holding more than `burst`).
- Request rate: at most `rate_per_unit` invocations per second per unit of concurrency.

A Lease records which pool it came from, so `release` returns it there even when the
settings changed in between; releasing twice is an error.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from lamina.keys import FunctionKey


class Throttle(enum.Enum):
    """Why an invocation was refused: the `Reason` member of AWS's 429."""

    RESERVED = "ReservedFunctionConcurrentInvocationLimitExceeded"
    ACCOUNT = "ConcurrentInvocationLimitExceeded"
    RESERVED_RATE = "ReservedFunctionInvocationRateLimitExceeded"
    RATE = "FunctionInvocationRateLimitExceeded"


class Kind(enum.Enum):
    ON_DEMAND = "on-demand"
    PROVISIONED = "provisioned"


class Pool(enum.Enum):
    RESERVED = "reserved"  # the function's own reservation
    UNRESERVED = "unreserved"  # the account's shared pool
    PROVISIONED = "provisioned"  # an initialised provisioned environment


class SettingsError(ValueError):
    """A settings change the account cannot take; `message` is AWS's."""

    def __init__(self, message: str, *, user: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.user = user


class Lease(NamedTuple):
    """One admitted invocation's slot. Immutable; built by `tuple.__new__` on the hot
    path (no Python frame: a dataclass cost a call of its own per invocation)."""

    id: int
    function: FunctionKey
    pool: Pool


@dataclass(slots=True)
class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second, never above capacity."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float, amount: float = 1.0) -> bool:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def wait_for(self, amount: float = 1.0) -> float:
        """Seconds until `amount` tokens will be there (0 if they are now)."""
        missing = amount - self.tokens
        return 0.0 if missing <= 0 or self.rate <= 0 else missing / self.rate


@dataclass(slots=True)
class FunctionCounts:
    reserved: int | None = None
    provisioned: int = 0  # configured provisioned concurrency, all versions and aliases
    provisioned_ready: int = 0  # initialised provisioned environments
    on_demand: int = 0  # on-demand executions in flight
    provisioned_busy: int = 0  # provisioned environments in flight
    provisioned_invocations: int = 0  # served by a provisioned environment
    spillover_invocations: int = 0  # meant for provisioned ones, served on demand
    peak: int = 0  # highest in_flight since the last take_peaks() (for metrics)
    provisioned_peak: int = 0  # highest provisioned_busy since then
    throttles: dict[Throttle, int] = field(default_factory=dict)
    scaling: TokenBucket | None = None
    requests: TokenBucket | None = None

    @property
    def in_flight(self) -> int:
        return self.on_demand + self.provisioned_busy


@dataclass(frozen=True, slots=True)
class Limits:
    account: int = 1000
    floor: int = 100
    burst: int = 1000  # new environments per function per window
    burst_window: float = 10.0
    rate_per_unit: float = 10.0  # invocations per second per unit of concurrency; 0 = off


class Decision(NamedTuple):
    lease: Lease | None
    throttle: Throttle | None = None
    retry_after: float = 0.0  # seconds, for the Retry-After header


_build = tuple.__new__  # Lease and Decision without a Python-level constructor call
# Enum members as plain names: in Python 3.11 `Pool.RESERVED` goes through a Python-level
# descriptor (~0.2 µs), and the hot path below looks at several per invocation.
_PROVISIONED_KIND = Kind.PROVISIONED
_PROVISIONED, _RESERVED, _UNRESERVED = Pool.PROVISIONED, Pool.RESERVED, Pool.UNRESERVED
_T_RESERVED, _T_ACCOUNT = Throttle.RESERVED, Throttle.ACCOUNT
_T_RESERVED_RATE, _T_RATE = Throttle.RESERVED_RATE, Throttle.RATE


class Counter:
    """Concurrency counts of one account."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.functions: dict[FunctionKey, FunctionCounts] = {}
        self.reserved_total = 0  # Σ reserved
        self.provisioned_unreserved = 0  # Σ provisioned of functions without a reservation
        self.unreserved_in_flight = 0  # on-demand leases taken from the shared pool
        self.in_flight = 0  # every lease
        self.peak = 0  # highest in_flight since the last take_peaks() (for metrics)
        self.unreserved_peak = 0  # highest unreserved_in_flight since then
        self.throttles: dict[Throttle, int] = {}
        self._leases: dict[int, Lease] = {}
        self._ids = itertools.count(1)

    # Reading ---------------------------------------------------------------------------
    @property
    def unreserved_pool(self) -> int:
        return self.limits.account - self.reserved_total - self.provisioned_unreserved

    def counts(self, function: FunctionKey) -> FunctionCounts:
        found = self.functions.get(function)
        if found is None:
            found = self.functions[function] = FunctionCounts()
        return found

    def reserved(self, function: FunctionKey) -> int | None:
        found = self.functions.get(function)
        return found.reserved if found else None

    def leases(self) -> int:
        return len(self._leases)

    def stats(self) -> dict[str, Any]:
        return {
            "ConcurrentExecutions": self.in_flight,
            "AccountLimit": self.limits.account,
            "UnreservedConcurrentExecutions": self.unreserved_pool,
            "UnreservedInUse": self.unreserved_in_flight,
            "Throttles": _by_reason(self.throttles),
            "Functions": {
                key.name: {
                    "ConcurrentExecutions": counts.in_flight,
                    "ReservedConcurrentExecutions": counts.reserved,
                    "ProvisionedConcurrentExecutions": counts.provisioned_busy,
                    "ProvisionedConcurrency": counts.provisioned,
                    "ProvisionedReady": counts.provisioned_ready,
                    "ProvisionedConcurrencyUtilization": (
                        counts.provisioned_busy / counts.provisioned if counts.provisioned else 0.0
                    ),
                    "ProvisionedConcurrencyInvocations": counts.provisioned_invocations,
                    "ProvisionedConcurrencySpilloverInvocations": counts.spillover_invocations,
                    "Throttles": _by_reason(counts.throttles),
                }
                for key, counts in self.functions.items()
            },
        }

    def sample(self) -> dict[str, Any]:
        """stats() with the peaks since the previous sample, which it starts anew: what
        the metrics sampler records, so a minute's Maximum is the exact peak."""
        figures = self.stats()
        figures["PeakConcurrentExecutions"] = self.peak
        figures["PeakUnreservedInUse"] = self.unreserved_peak
        self.peak = self.in_flight
        self.unreserved_peak = self.unreserved_in_flight
        for key, counts in self.functions.items():
            entry = figures["Functions"][key.name]
            entry["PeakConcurrentExecutions"] = counts.peak
            entry["PeakProvisionedConcurrentExecutions"] = counts.provisioned_peak
            counts.peak = counts.in_flight
            counts.provisioned_peak = counts.provisioned_busy
        return figures

    # Settings --------------------------------------------------------------------------
    def set_reserved(self, function: FunctionKey, reserved: int | None) -> None:
        """Set (or with None remove) a function's reservation, or raise SettingsError."""
        counts = self.counts(function)
        if reserved is not None:
            if reserved < counts.provisioned:
                raise SettingsError(
                    f" ReservedConcurrentExecutions  {reserved} should not be lower than "
                    f"function's total provisioned concurrency [{counts.provisioned}]."
                )
            others = self.reserved_total - (counts.reserved or 0)
            prov_unreserved = self.provisioned_unreserved - (
                counts.provisioned if counts.reserved is None else 0
            )
            if self.limits.account - others - prov_unreserved - reserved < self.limits.floor:
                raise SettingsError(
                    "Specified ReservedConcurrentExecutions for function decreases account's "
                    "UnreservedConcurrentExecution below its minimum value of "
                    f"[{self.limits.floor}]."
                )
        if counts.reserved is None and reserved is not None:
            self.provisioned_unreserved -= counts.provisioned
        elif counts.reserved is not None and reserved is None:
            self.provisioned_unreserved += counts.provisioned
        self.reserved_total += (reserved or 0) - (counts.reserved or 0)
        counts.reserved = reserved
        counts.requests = None  # its rate limit follows its concurrency

    def set_provisioned(self, function: FunctionKey, total: int) -> None:
        """Set the function's total configured provisioned concurrency, or raise."""
        counts = self.counts(function)
        if counts.reserved is not None:
            if total > counts.reserved:
                raise SettingsError(
                    "Requested Provisioned Concurrency should not be greater than the "
                    "reservedConcurrentExecution for function",
                    user=True,
                )
        else:
            pool_without = self.unreserved_pool + counts.provisioned
            if total > pool_without:
                raise SettingsError(
                    "Specified ConcurrentExecutions for function is greater than account's "
                    f"unreserved concurrency [{pool_without}]."
                )
            if pool_without - total < self.limits.floor:
                raise SettingsError(
                    "Specified ConcurrentExecutions for function decreases account's "
                    "UnreservedConcurrentExecution below its minimum value of "
                    f"[{self.limits.floor}]."
                )
            self.provisioned_unreserved += total - counts.provisioned
        counts.provisioned = total
        counts.provisioned_ready = min(counts.provisioned_ready, total)

    def set_provisioned_ready(self, function: FunctionKey, ready: int) -> None:
        counts = self.counts(function)
        counts.provisioned_ready = max(0, min(ready, counts.provisioned))

    def forget(self, function: FunctionKey) -> None:
        """The function is deleted: drop its settings (its leases still release cleanly)."""
        self.set_provisioned(function, 0)
        self.set_reserved(function, None)

    # Admission -------------------------------------------------------------------------
    def acquire(
        self,
        function: FunctionKey,
        now: float,
        kind: Kind = Kind.ON_DEMAND,
        new_environment: bool = False,
        spillover: bool = False,
    ) -> Decision:
        """Admit one invocation, or say why not. `new_environment`: it needs a cold start.
        `spillover`: it was meant for provisioned environments but none is free.
        (The hot path of every invocation, and of the planner's replay: kept lean.)"""
        counts = self.functions.get(function)
        if counts is None:
            counts = self.counts(function)
        if kind is _PROVISIONED_KIND:
            if counts.provisioned_busy < counts.provisioned_ready:
                counts.provisioned_busy += 1
                counts.provisioned_invocations += 1
                lease = self._lease(function, counts, _PROVISIONED)
                return _build(Decision, (lease, None, 0.0))
            spillover = True
        limits = self.limits
        reserved = counts.reserved
        if reserved is not None:
            if counts.on_demand >= reserved - counts.provisioned:
                return self._throttle(counts, _T_RESERVED, 1.0)
            pool = _RESERVED
        else:
            unreserved_pool = limits.account - self.reserved_total - self.provisioned_unreserved
            if self.unreserved_in_flight >= unreserved_pool:
                return self._throttle(counts, _T_ACCOUNT, 1.0)
            pool = _UNRESERVED
        if limits.rate_per_unit > 0:
            requests = counts.requests or self._request_bucket(counts, now)
            # TokenBucket.take(now), inlined (a call costs as much as the arithmetic)
            if now > requests.updated:
                tokens = requests.tokens + (now - requests.updated) * requests.rate
                requests.tokens = tokens if tokens < requests.capacity else requests.capacity
                requests.updated = now
            if requests.tokens >= 1.0:
                requests.tokens -= 1.0
            else:
                reason = _T_RESERVED_RATE if reserved is not None else _T_RATE
                return self._throttle(counts, reason, requests.wait_for())
        if new_environment:
            scaling = counts.scaling
            if scaling is None:
                scaling = counts.scaling = TokenBucket(
                    limits.burst, limits.burst / limits.burst_window, limits.burst, now
                )
            if not scaling.take(now):
                reason = _T_RESERVED if reserved is not None else _T_ACCOUNT
                return self._throttle(counts, reason, scaling.wait_for())
        counts.on_demand += 1
        if spillover:
            counts.spillover_invocations += 1
        if pool is _UNRESERVED:
            self.unreserved_in_flight += 1
            if self.unreserved_in_flight > self.unreserved_peak:
                self.unreserved_peak = self.unreserved_in_flight
        # _lease, inlined: this is the path of nearly every invocation
        lease_id = next(self._ids)
        lease = _build(Lease, (lease_id, function, pool))
        self._leases[lease_id] = lease
        in_flight = self.in_flight = self.in_flight + 1
        if in_flight > self.peak:
            self.peak = in_flight
        busy = counts.on_demand + counts.provisioned_busy
        if busy > counts.peak:
            counts.peak = busy
        return _build(Decision, (lease, None, 0.0))

    def release(self, lease: Lease) -> None:
        lease_id, function, pool = lease
        if self._leases.pop(lease_id, None) is None:
            raise ValueError(f"lease {lease_id} released twice")
        counts = self.functions.get(function) or self.counts(function)
        self.in_flight -= 1
        if pool is _PROVISIONED:
            counts.provisioned_busy -= 1
            return
        counts.on_demand -= 1
        if pool is _UNRESERVED:
            self.unreserved_in_flight -= 1

    # A cluster's node: the shared counts decide, this counter keeps the node's figures ----
    def adopt(self, lease: Lease) -> None:
        """Count a lease the cluster's shared counts granted: this node's own executions,
        for its metrics. No decision of a cluster node reads them; `release` undoes it."""
        function = lease.function
        counts = self.functions.get(function) or self.counts(function)
        if lease.pool is _PROVISIONED:
            counts.provisioned_busy += 1
            counts.provisioned_invocations += 1
        else:
            counts.on_demand += 1
            if lease.pool is _UNRESERVED:
                self.unreserved_in_flight += 1
                if self.unreserved_in_flight > self.unreserved_peak:
                    self.unreserved_peak = self.unreserved_in_flight
        self._leases[lease.id] = lease
        in_flight = self.in_flight = self.in_flight + 1
        if in_flight > self.peak:
            self.peak = in_flight
        busy = counts.on_demand + counts.provisioned_busy
        if busy > counts.peak:
            counts.peak = busy
        if counts.provisioned_busy > counts.provisioned_peak:
            counts.provisioned_peak = counts.provisioned_busy

    def note_throttle(self, function: FunctionKey, reason: Throttle) -> None:
        """A refusal the cluster's shared counts made, for this node's metrics."""
        self._throttle(self.functions.get(function) or self.counts(function), reason, 0.0)

    # Internals -------------------------------------------------------------------------
    def _lease(self, function: FunctionKey, counts: FunctionCounts, pool: Pool) -> Lease:
        lease_id = next(self._ids)
        lease = _build(Lease, (lease_id, function, pool))
        self._leases[lease_id] = lease
        in_flight = self.in_flight = self.in_flight + 1
        if in_flight > self.peak:
            self.peak = in_flight
        busy = counts.on_demand + counts.provisioned_busy
        if busy > counts.peak:
            counts.peak = busy
        if counts.provisioned_busy > counts.provisioned_peak:
            counts.provisioned_peak = counts.provisioned_busy
        return lease

    def _throttle(self, counts: FunctionCounts, reason: Throttle, retry_after: float) -> Decision:
        counts.throttles[reason] = counts.throttles.get(reason, 0) + 1
        self.throttles[reason] = self.throttles.get(reason, 0) + 1
        return _build(Decision, (None, reason, retry_after))

    def _request_bucket(self, counts: FunctionCounts, now: float) -> TokenBucket:
        units = counts.reserved if counts.reserved is not None else self.limits.account
        rate = max(units, 1) * self.limits.rate_per_unit
        counts.requests = TokenBucket(rate, rate, rate, now)
        return counts.requests


def _by_reason(throttles: dict[Throttle, int]) -> dict[str, int]:
    return {reason.value: count for reason, count in throttles.items()}


class Counters:
    """One Counter per account and region: Lambda's concurrency quotas are regional. An
    account may have limits of its own, in one region or in every region (`set_limits`),
    else the server's defaults; two accounts never share a pool."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        # (account, region) → its own limits; region "" for every region without its own.
        self._own: dict[tuple[str, str], Limits] = {}
        self._counters: dict[tuple[str, str], Counter] = {}

    def limits_of(self, account: str, region: str) -> Limits:
        own = self._own
        return own.get((account, region)) or own.get((account, "")) or self.limits

    def derive(self, concurrency: int | None, floor: int | None) -> Limits:
        """The server's limits with an account's own concurrency and floor (None: the
        server's; an unset floor never above the account's own limit)."""
        limit = self.limits.account if concurrency is None else concurrency
        return replace(
            self.limits,
            account=limit,
            floor=min(self.limits.floor, limit) if floor is None else floor,
        )

    def set_limits(self, account: str, region: str, limits: Limits | None) -> None:
        """Give `account` its own limits in `region` ("": in every region that has none of
        its own), or with None the defaults again; applied at once to its counters."""
        if limits is None:
            self._own.pop((account, region), None)
        else:
            self._own[(account, region)] = limits
        for (owner, where), counter in self._counters.items():
            if owner == account and region in ("", where):
                counter.limits = self.limits_of(owner, where)

    def accounts_with_limits(self) -> set[tuple[str, str]]:
        return set(self._own)

    def get(self, account: str, region: str) -> Counter:
        found = self._counters.get((account, region))
        if found is None:
            found = self._counters[(account, region)] = Counter(self.limits_of(account, region))
        return found

    def peek(self, account: str, region: str) -> Counter | None:
        """The counter if it exists (reading settings must not make one)."""
        return self._counters.get((account, region))

    def of(self, function: FunctionKey) -> Counter:
        return self.get(function.account, function.region)

    def stats(self) -> list[dict[str, Any]]:
        """Plain data for /_lamina/stats and, later, the metrics: one entry per account."""
        return [
            {"Account": account, "Region": region, **counter.stats()}
            for (account, region), counter in self._counters.items()
        ]

    def sample(self) -> list[dict[str, Any]]:
        """Every account's stats with its peaks since the previous sample (metrics)."""
        return [
            {"Account": account, "Region": region, **counter.sample()}
            for (account, region), counter in self._counters.items()
        ]

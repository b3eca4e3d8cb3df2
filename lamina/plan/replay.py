"""The replay: a trace's invocations through the engine's own rules, in virtual time.

Nothing here decides who runs. Each invocation asks the real counting service
(engine/concurrency.py: account, reserved, unreserved, provisioned, the scaling bucket
and the request rate) through the engine's own placement (engine/policy.py: `admit`,
an idle provisioned environment first, a warm on-demand one before a new one) and
reuses environments by the pool's own policy (`IdleStack`: most recently used first,
reclaimed after the keep-alive). Throttled asynchronous events are retried by the async
queue's rules (engine/retry.py); throttled synchronous requests by the client's retry
mode (botocore's standard or legacy backoff), or not at all. Virtual time is the trace's:
`now` is passed in, as those modules expect, so a day replays in well under a second.

Per second, each function's peak concurrency (and the account's) is taken from the
counting service's own peak gauges, as the metrics sampler does.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import random
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lamina.engine.concurrency import (
    Counter,
    Counters,
    FunctionCounts,
    Lease,
    Limits,
    Pool,
    SettingsError,
)
from lamina.engine.policy import IdleStack, admit
from lamina.engine.retry import backoff_delay, slot_frees
from lamina.plan.settings import SettingsProblem
from lamina.plan.setup import FunctionSetup, Setup, StreamSetup
from lamina.plan.trace import Batch

Progress = Callable[[int], None]  # invocations replayed so far
RETRY, WAKE, SCHEDULE = 1, 2, 3  # timed events other than completions


class AccountRun:
    __slots__ = ("counter", "id", "peaks", "region", "unreserved")

    def __init__(self, account: str, region: str, counter: Counter) -> None:
        self.id, self.region, self.counter = account, region, counter
        self.peaks = array("i")  # per second: peak concurrent executions
        self.unreserved = array("i")  # per second: peak unreserved in use


class FunctionRun:
    __slots__ = ("counter", "counts", "idle", "key", "peaks", "provisioned", "secs", "setup")

    def __init__(self, setup: FunctionSetup, counter: Counter, keep_alive: float) -> None:
        self.setup = setup
        self.key = setup.key
        self.counter = counter
        self.counts: FunctionCounts = counter.counts(setup.key)
        # Environments are alike: each is the time it went idle.
        self.idle: IdleStack[float] = IdleStack(keep_alive)
        self.provisioned = setup.settings.provisioned_peak > 0
        self.secs = array("i")  # seconds with a non-zero peak ...
        self.peaks = array("i")  # ... and the peak


class StreamRun:
    __slots__ = (
        "async_",
        "attempts",
        "backoffs_drawn",
        "busy",
        "busy_provisioned",
        "cold",
        "counter",
        "delays",
        "dropped_age",
        "dropped_zero",
        "events",
        "fn",
        "idle",
        "init",
        "key",
        "max_age",
        "mode",
        "offered",
        "paused_until",
        "pop",
        "provisioned",
        "provisioned_runs",
        "push",
        "release",
        "retried",
        "runs",
        "setup",
        "slow",
    )

    def __init__(self, setup: StreamSetup, fn: FunctionRun) -> None:
        self.setup, self.fn = setup, fn
        self.key, self.counter, self.idle = fn.key, fn.counter, fn.idle
        self.release, self.pop, self.push = fn.counter.release, fn.idle.pop, fn.idle.push
        self.init = setup.init_s
        self.async_ = setup.invocation == "async"
        self.mode = setup.retries.mode
        self.attempts = setup.retries.max_attempts if self.mode != "none" else 1
        self.max_age = setup.max_event_age
        self.provisioned = fn.provisioned
        self.slow = self.async_ or self.provisioned or self.attempts > 1
        self.offered = setup.stream.invocations  # requests (a retry is not another)
        self.runs = self.cold = self.provisioned_runs = 0
        self.retried = self.dropped_age = self.dropped_zero = 0
        self.busy = self.busy_provisioned = 0.0  # seconds run (on demand / provisioned)
        self.delays: list[float] = []  # seconds an admitted invocation waited on throttles
        self.events: list[tuple[float, int, list[float]]] = []  # async: (due, seq, event)
        self.paused_until = 0.0
        self.backoffs_drawn = 0


@dataclass
class Outcome:
    setup: Setup
    accounts: list[AccountRun]
    functions: list[FunctionRun]
    streams: list[StreamRun]
    span: float  # seconds covered: the trace's, or longer if invocations ran past it
    invocations: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class Replay:
    def __init__(self, setup: Setup, span: float, day_offset: float = 0.0) -> None:
        settings = setup.settings
        self.setup = setup
        self.span = span
        self.day_offset = day_offset
        self.rng = random.Random(settings.seed)
        limits = Limits(
            account=settings.account.limit,
            floor=settings.account.unreserved_floor,
            burst=settings.account.burst,
            burst_window=settings.account.burst_window,
            rate_per_unit=settings.account.request_rate,
        )
        # The engine's own per-account counting services: one Counter per account and
        # region, from Counters' public interface (as the server gets them).
        self.counters = Counters(limits)
        self.accounts: list[AccountRun] = []
        by_account: dict[tuple[str, str], AccountRun] = {}
        self.functions: list[FunctionRun] = []
        for function in setup.functions:
            scope = (function.key.account, function.key.region)
            account = by_account.get(scope)
            if account is None:
                account = by_account[scope] = AccountRun(*scope, self.counters.get(*scope))
                self.accounts.append(account)
            self.functions.append(FunctionRun(function, account.counter, settings.keep_alive))
        self.streams = [StreamRun(s, self.functions[s.function]) for s in setup.streams]
        self.heap: list[tuple] = []  # (time, order, lease or None, ...)
        self.seq = itertools.count(1 << 60)  # timed events: after any lease id
        self.active: set[FunctionRun] = set()  # functions with a peak this second
        self.paused: set[StreamRun] = set()  # async streams waiting out a throttle
        self.second = 0
        self.invocations = 0
        self._apply_settings()

    # Settings --------------------------------------------------------------------------
    def _apply_settings(self) -> None:
        for fn in self.functions:
            settings = fn.setup.settings
            try:
                fn.counter.set_reserved(fn.key, settings.reserved)
                level = settings.provisioned_at(self.day_offset % 86400)
                fn.counter.set_provisioned(fn.key, level)
                fn.counter.set_provisioned_ready(fn.key, level)
            except SettingsError as exc:
                raise SettingsProblem(f"functions: {fn.setup.name}: {exc.message}") from exc
            for at, level in self.schedule_steps(fn):
                if at > 0:
                    self._push(at, SCHEDULE, fn, level)

    def schedule_steps(self, fn: FunctionRun) -> list[tuple[float, int]]:
        """(trace time, provisioned) of each scheduled change within the trace."""
        steps = []
        schedule = fn.setup.settings.schedule
        if schedule:
            day = -1
            while day * 86400 - self.day_offset <= self.span:
                for at, level in schedule:
                    when = day * 86400 + at - self.day_offset
                    if 0 <= when <= self.span:
                        steps.append((when, level))
                day += 1
        return sorted(steps)

    def _push(self, when: float, code: int, target: object, *payload: object) -> None:
        # After completions at the same time (a lease's id is smaller), in the order pushed.
        heapq.heappush(self.heap, (when, (next(self.seq), code), None, target, *payload))

    def run(self, batches: Iterable[Batch], progress: Progress | None = None) -> Outcome:
        """Replay every invocation, with the cyclic garbage collector paused (the replay
        makes no cycles; a collection every 700 allocations would scan its objects for
        nothing). The loop in `_run` is the path of nearly all of them (a
        synchronous one, no client retries, no provisioned concurrency): release what
        ended, place the new one. Its environment: the idle stack is popped first and the
        environment put back, as it was, if the invocation is throttled (the same
        decision as asking `has_idle` first, for one call fewer)."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._run(batches, progress)
        finally:
            if collecting:
                gc.enable()

    def _run(self, batches: Iterable[Batch], progress: Progress | None) -> Outcome:
        heap, heappush, heappop = self.heap, heapq.heappush, heapq.heappop
        streams, active_add, paused = self.streams, self.active.add, self.paused
        provisioned_pool = Pool.PROVISIONED
        next_tick = self.second + 1.0
        count = 0
        for times, indexes, durations in batches:
            for t, s, d in zip(times, indexes, durations):  # noqa: B905 - equal by design
                while heap and heap[0][0] <= t:
                    item = heappop(heap)
                    now = item[0]
                    if now >= next_tick:
                        next_tick = self._tick(now)
                    st = item[2]
                    if st is None:
                        self._event(item)
                        continue
                    lease = item[1]
                    st.release(lease)
                    if lease.pool is not provisioned_pool:
                        st.push(now, now)
                    if paused:
                        self._slot_freed(lease, now)
                if t >= next_tick:
                    next_tick = self._tick(t)
                st = streams[s]
                if st.slow:
                    self._arrive(st, t, d)
                    continue
                since = st.pop(t)
                lease = admit(st.counter, st.key, t, False, False, since is not None).lease
                if lease is None:  # throttled: the counting service counted it, by reason
                    if since is not None:
                        st.push(since, since)
                    continue
                active_add(st.fn)
                st.runs += 1
                st.busy += d
                if since is None:
                    st.cold += 1
                    heappush(heap, (t + st.init + d, lease, st))
                else:
                    heappush(heap, (t + d, lease, st))
            count += len(times)
            if progress is not None:
                progress(count)
        self.invocations = count
        self._drain(next_tick)
        return Outcome(
            self.setup,
            self.accounts,
            self.functions,
            self.streams,
            max(self.span, float(self.second)),
            count,
        )

    def _drain(self, next_tick: float) -> None:
        """Everything still running or waiting, to its end."""
        heap = self.heap
        while heap:
            item = heapq.heappop(heap)
            now = item[0]
            if now >= next_tick:
                next_tick = self._tick(now)
            st = item[2]
            if st is None:
                self._event(item)
                continue
            lease = item[1]
            st.counter.release(lease)
            if lease.pool is not Pool.PROVISIONED:
                st.idle.push(now, now)
            if self.paused:
                self._slot_freed(lease, now)
        self._tick(max(float(self.second + 1), self.span))

    # One invocation, in full -----------------------------------------------------------
    def _arrive(self, st: StreamRun, t: float, d: float) -> None:
        if st.async_:
            if st.counter.reserved(st.key) == 0:
                st.dropped_zero += 1  # ZeroReservedConcurrency: to the failure target at once
                return
            heapq.heappush(st.events, (t, next(self.seq), [t, d, 0.0]))
            if st.paused_until <= t:
                self._dispatch(st, t)
            return
        if not self._start(st, t, d, t):
            self._retry_later(st, t, d, t, 1)

    def _start(self, st: StreamRun, now: float, d: float, arrived: float) -> bool:
        """Admit and start one invocation at `now`; False if it was throttled."""
        counts = st.fn.counts
        provisioned_idle = st.provisioned and counts.provisioned_busy < counts.provisioned_ready
        decision = admit(
            st.counter, st.key, now, provisioned_idle, st.provisioned, st.idle.has_idle(now)
        )
        lease = decision.lease
        if lease is None:
            return False
        self.active.add(st.fn)
        st.runs += 1
        if now > arrived:
            st.delays.append(now - arrived)
        if lease.pool is Pool.PROVISIONED:
            st.provisioned_runs += 1
            st.busy_provisioned += d
            end = now + d
        else:
            st.busy += d
            if st.idle.pop(now) is None:  # has_idle above said so
                st.cold += 1
                end = now + st.init + d
            else:
                end = now + d
        heapq.heappush(self.heap, (end, lease, st))
        return True

    def _retry_later(self, st: StreamRun, now: float, d: float, arrived: float, tried: int) -> None:
        """A throttled synchronous request: the client's retry mode decides (one that is
        not tried again failed: offered - runs)."""
        if tried >= st.attempts:
            return
        draw = self.rng.random()
        if st.mode == "standard":  # botocore: rand(0,1) * min(2 ** (attempt - 1), 20) s
            delay = draw * min(2.0 ** (tried - 1), 20.0)
        else:  # legacy: rand(0,1) * 2 ** (attempt - 1) s
            delay = draw * 2.0 ** (tried - 1)
        st.retried += 1
        self._push(now + delay, RETRY, st, d, arrived, tried + 1)

    # Asynchronous events: the async queue's rules ----------------------------------------
    def _dispatch(self, st: StreamRun, now: float) -> None:
        """Run the stream's due events in order until one is throttled (which pauses it)."""
        events = st.events
        while events and st.paused_until <= now:
            due, _, event = events[0]
            if due > now:
                self._push(due, WAKE, st)
                return
            heapq.heappop(events)
            accepted, d, backoffs = event
            if now - accepted > st.max_age:
                st.dropped_age += 1  # EventAgeExceeded
                continue
            if self._start(st, now, d, accepted):
                continue
            backoffs += 1
            event[2] = backoffs
            delay = backoff_delay(int(backoffs), self.rng.uniform)
            st.paused_until = max(st.paused_until, now + delay)
            retry_at = min(now + delay, accepted + st.max_age + 1e-3)
            heapq.heappush(events, (retry_at, next(self.seq), event))
            self.paused.add(st)
            self._push(st.paused_until, WAKE, st)
            return

    def _slot_freed(self, lease: Lease, now: float) -> None:
        for st in list(self.paused):
            if st.paused_until <= now:
                self.paused.discard(st)
                continue
            if slot_frees(st.key, st.counter.reserved(st.key), lease):
                self.paused.discard(st)
                st.paused_until = now
                self._dispatch(st, now)

    # Timed events and seconds ------------------------------------------------------------
    def _event(self, item: tuple) -> None:
        now, code, target = item[0], item[1][1], item[3]
        if code == RETRY:
            d, arrived, tried = item[4], item[5], item[6]
            if not self._start(target, now, d, arrived):
                self._retry_later(target, now, d, arrived, tried)
        elif code == WAKE:
            if target.paused_until <= now:
                self.paused.discard(target)
                self._dispatch(target, now)
        elif code == SCHEDULE:
            level = item[4]
            try:
                target.counter.set_provisioned(target.key, level)
            except SettingsError as exc:
                raise SettingsProblem(f"functions: {target.setup.name}: {exc.message}") from exc
            target.counter.set_provisioned_ready(target.key, level)

    def _tick(self, now: float) -> float:
        """Close the seconds before `now`: record each one's peaks, as the metrics sampler
        does, and start the next second's at the concurrency in flight."""
        second, target = self.second, int(now)
        for account in self.accounts:
            counter = account.counter
            account.peaks.append(counter.peak)
            account.unreserved.append(counter.unreserved_peak)
            counter.peak = counter.in_flight
            counter.unreserved_peak = counter.unreserved_in_flight
        still = set()
        for fn in self.active:
            counts = fn.counts
            if counts.peak:
                fn.secs.append(second)
                fn.peaks.append(counts.peak)
            counts.peak = counts.in_flight
            counts.provisioned_peak = counts.provisioned_busy
            if counts.peak:
                still.add(fn)
        gap = target - second - 1
        if gap > 0:  # seconds in which nothing started: their peak is what was in flight
            for account in self.accounts:
                counter = account.counter
                account.peaks.extend([counter.in_flight] * gap)
                account.unreserved.extend([counter.unreserved_in_flight] * gap)
            for fn in still:
                fn.secs.extend(range(second + 1, target))
                fn.peaks.extend([fn.counts.in_flight] * gap)
        self.active.clear()
        self.active.update(still)
        self.second = target
        return target + 1.0

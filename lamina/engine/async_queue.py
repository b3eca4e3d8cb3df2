"""Asynchronous invocation: the durable event queue and its worker.

Every accepted event is in the EventStore before the caller hears 202. The worker keeps
the schedule in memory: one heap of events per function (ordered by when each is due),
a heap of functions by their earliest due event, and a round-robin of functions with
work due, so one function's backlog never starves another's. Each event costs O(log n).

AWS's rules (shared/AWS_REFERENCE.md):
- throttled, or a failure on Lamina's side: retried with exponential backoff and jitter
  (1 s doubling to 5 min), without using up an attempt, while the event is younger than
  MaximumEventAgeInSeconds; the function pauses for that long, so a throttled backlog
  does not spin;
- a function error or timeout: retried after 1 and then 2 minutes, at most
  MaximumRetryAttempts times;
- reserved concurrency 0: straight to the failure target (`ZeroReservedConcurrency`);
- otherwise `RetriesExhausted` or `EventAgeExceeded`.
What to do with an outcome (destinations, dead-letter queue) is the control layer's:
it passes `resolve` and `finish`. Delays are platform delays, scaled by the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from lamina.clock import Clock, wait_event
from lamina.engine.concurrency import Lease
from lamina.engine.counting import CountingUnavailable
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.retry import backoff_delay, error_retry_delay, slot_frees
from lamina.engine.service import Engine, Throttled
from lamina.keys import FunctionKey
from lamina.sandbox.launch import FunctionImage
from lamina.store.database import StoreUnavailable
from lamina.store.events import BEAT_S, EventStore, StoredEvent
from lamina.tasks import stop_task

log = logging.getLogger("lamina.async")

MAX_IN_FLIGHT = 1000  # invocations the worker runs at once, all functions together


class Condition:
    SUCCESS = "Success"
    RETRIES_EXHAUSTED = "RetriesExhausted"
    EVENT_AGE_EXCEEDED = "EventAgeExceeded"
    ZERO_RESERVED = "ZeroReservedConcurrency"


@dataclass(slots=True)
class AsyncEvent:
    stored: StoredEvent
    key: FunctionKey
    backoffs: int = 0  # consecutive throttles / system errors, for the backoff
    invocations: int = 0  # runs, for approximateInvokeCount
    last: InvokeResult | None = None  # the last run's result, for the failure record

    @property
    def due(self) -> float:
        return self.stored.due


@dataclass
class Delivery:
    """What the control layer says about an event when it is due."""

    image: FunctionImage
    provisioned_for: str | None
    invoked_arn: str
    max_retries: int = 2
    max_age: float = 21600.0  # platform seconds


class AsyncRecorder(Protocol):
    """Where the queue reports for metrics (observe.metrics.Metrics has these)."""

    def async_event_received(self, key: FunctionKey, qualifier: str | None = None) -> None: ...

    def async_event_dropped(self, key: FunctionKey, qualifier: str | None = None) -> None: ...

    def async_event_age(
        self, key: FunctionKey, seconds: float, qualifier: str | None = None
    ) -> None: ...


Resolve = Callable[[AsyncEvent], Delivery | None]  # None: the function is gone
Finish = Callable[[AsyncEvent, str, InvokeResult | None], Awaitable[None]]


@dataclass
class FunctionQueue:
    events: list[tuple[float, int, AsyncEvent]] = field(default_factory=list)
    paused_until: float = 0.0  # real wall time; after a throttle


class AsyncQueue:
    def __init__(
        self,
        engine: Engine,
        store: EventStore,
        clock: Clock,
        recorder: AsyncRecorder | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.recorder = recorder
        self.resolve: Resolve | None = None
        self.finish: Finish | None = None
        self.queues: dict[FunctionKey, FunctionQueue] = {}
        self._wakeups: list[tuple[float, int, FunctionKey]] = []  # earliest due per function
        self._runnable: deque[FunctionKey] = deque()
        self._in_runnable: set[FunctionKey] = set()
        self._paused: set[FunctionKey] = set()  # functions waiting out a throttle
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._loader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    # Lifecycle ------------------------------------------------------------------------
    def start(self, resolve: Resolve, finish: Finish) -> None:
        self.resolve, self.finish = resolve, finish
        self.engine.on_release.append(self._slot_freed)
        loop = asyncio.get_running_loop()
        self._scheduler = loop.create_task(self._schedule_forever())
        if self.store.shared:
            self._watcher = loop.create_task(self._watch_forever())

    def load_backlog(self) -> None:
        """Read the events a previous run left (once the server is up: what it does at
        start does not compete with 100,000 of them)."""
        if self._loader is None:
            self._loader = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        """The events a previous run left, read in batches off the loop while the server
        already serves (and accepts new ones): a start does not wait for 100,000 of them."""
        batches = self.store.pending()
        keys: dict[tuple[str, str, str], FunctionKey] = {}  # one of each, its names shared
        try:
            while (batch := await asyncio.to_thread(next, batches, None)) is not None:
                for stored in batch:
                    named = (stored.account, stored.region, stored.function)
                    key = keys.get(named)
                    if key is None:
                        key = keys[named] = FunctionKey(*named)
                    stored.account, stored.region, stored.function = (
                        key.account,
                        key.region,
                        key.name,
                    )
                    self._push(AsyncEvent(stored, key))
                self._wake.set()
        finally:
            with contextlib.suppress(ValueError):  # still being read (cancelled): it ends
                batches.close()

    async def _watch_forever(self) -> None:
        """Cluster mode: beat (this node's events stay its own), and adopt the events of
        nodes that stopped beating, every BEAT_S."""
        while True:
            await asyncio.sleep(BEAT_S)
            try:
                await asyncio.to_thread(self.store.beat)
                adopted = await asyncio.to_thread(self.store.adopt)
            except StoreUnavailable as error:
                log.warning("async events: %s", error)
                continue
            for stored in adopted:
                self._push(AsyncEvent(stored, FunctionKey(stored.account, stored.region,
                                                          stored.function)))  # fmt: skip
            if adopted:
                log.info("adopted %d async events of a node that stopped", len(adopted))
                self._wake.set()

    async def close(self) -> None:
        """Stop at once: events not finished stay in the store and run after a restart."""
        for task in (self._loader, self._watcher):
            await stop_task(task)
        await stop_task(self._scheduler)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def backlog(self) -> int:
        return sum(len(q.events) for q in self.queues.values()) + len(self._running)

    # Accepting ------------------------------------------------------------------------
    async def submit(
        self,
        key: FunctionKey,
        qualifier: str,
        request_id: str,
        payload: bytes,
        tenant: str | None = None,
    ) -> None:
        """Store the event durably, then schedule it. Returns once it is on disk."""
        now = self.clock.wall()
        stored = StoredEvent(
            0, key.account, key.region, key.name, qualifier, request_id, payload, now, 0, now,
            tenant,
        )  # fmt: skip
        stored.id = await self.store.add(stored)
        if self.recorder is not None:
            self.recorder.async_event_received(key, qualifier or None)
        self._push(AsyncEvent(stored, key))
        self._wake.set()

    # Scheduling -----------------------------------------------------------------------
    def _push(self, event: AsyncEvent) -> None:
        queue = self.queues.get(event.key)
        if queue is None:
            queue = self.queues[event.key] = FunctionQueue()
        earliest = queue.events[0][0] if queue.events else None
        heapq.heappush(queue.events, (event.due, next(self._seq), event))
        if earliest is None or event.due < earliest:
            heapq.heappush(
                self._wakeups, (max(event.due, queue.paused_until), next(self._seq), event.key)
            )

    async def _schedule_forever(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.wall()
            while self._wakeups and self._wakeups[0][0] <= now:
                _, _, key = heapq.heappop(self._wakeups)
                if key not in self._in_runnable:
                    self._in_runnable.add(key)
                    self._runnable.append(key)
            self._dispatch(now)
            await self._sleep_until_next(now)

    def _dispatch(self, now: float) -> None:
        """One turn of the round-robin: one due event per runnable function. Between turns
        the scheduler yields, so each started event has taken its lease (or been
        throttled, pausing its function) before the next one is tried."""
        for _ in range(len(self._runnable)):
            if len(self._running) >= MAX_IN_FLIGHT:
                return
            key = self._runnable.popleft()
            queue = self.queues.get(key)
            if queue is None or not queue.events:
                self._in_runnable.discard(key)
                continue
            due = max(queue.events[0][0], queue.paused_until)
            if due > now:
                self._in_runnable.discard(key)
                heapq.heappush(self._wakeups, (due, next(self._seq), key))
                continue
            _, _, event = heapq.heappop(queue.events)
            task = asyncio.get_running_loop().create_task(self._run(event))
            self._running.add(task)
            task.add_done_callback(self._ran)
            self._runnable.append(key)  # its next event waits for the others' turn

    def _ran(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _sleep_until_next(self, now: float) -> None:
        timeout = None
        if self._runnable and len(self._running) < MAX_IN_FLIGHT:
            timeout = 0.0
        elif self._wakeups:
            timeout = max(0.0, self._wakeups[0][0] - now)
        if timeout == 0.0:
            await asyncio.sleep(0)
            return
        await wait_event(self._wake, timeout)

    def _slot_freed(self, lease: Lease) -> None:
        """A lease was released: functions paused on a throttle for that slot may go on
        before their backoff ends. No polling: the release is the event. Only paused
        functions are looked at, so a sync invoke's release costs nothing when none is."""
        if not self._paused:
            return
        now = self.clock.wall()
        for key in list(self._paused):
            queue = self.queues.get(key)
            if queue is None or queue.paused_until <= now:
                self._paused.discard(key)
                continue
            if slot_frees(key, self.engine.counters.of(key).reserved(key), lease):
                self._paused.discard(key)
                queue.paused_until = now
                heapq.heappush(self._wakeups, (now, next(self._seq), key))
                self._wake.set()

    # Running one event ----------------------------------------------------------------
    def _age(self, event: AsyncEvent) -> float:
        """The event's age in platform seconds."""
        return (self.clock.wall() - event.stored.accepted) / self.clock.scale

    async def _run(self, event: AsyncEvent) -> None:
        assert self.resolve is not None
        try:
            delivery = self.resolve(event)
        except Exception:
            log.exception("resolving an async event failed")
            delivery = None
        if delivery is None:  # the function (or its version) is gone: nothing to run
            await self.store.remove(event.stored.id)
            return
        if self._age(event) > delivery.max_age:
            await self._end(event, Condition.EVENT_AGE_EXCEEDED)
            return
        try:
            reserved = await self.engine.reserved(event.key)
        except CountingUnavailable:
            reserved = None  # the invocation below is refused, and retried later
        if reserved == 0:
            await self._end(event, Condition.ZERO_RESERVED)
            return
        if self.recorder is not None:
            self.recorder.async_event_age(
                event.key, self._age(event), event.stored.qualifier or None
            )
        request = InvokeRequest(
            payload=self.store.payload_of(event.stored),
            request_id=event.stored.request_id,
            invoked_arn=delivery.invoked_arn,
            invocation_type="Event",
            tenant_id=event.stored.tenant,
        )
        try:
            result = await self.engine.invoke(
                event.key, delivery.image, request, provisioned_for=delivery.provisioned_for
            )
        except Throttled:
            self._back_off(event, delivery)
            return
        except Exception:
            log.exception("async invocation of %s failed on Lamina's side", event.key.name)
            self._back_off(event, delivery)
            return
        event.invocations += 1
        event.backoffs = 0
        if result.function_error is None:
            await self._end(event, Condition.SUCCESS, result)
            return
        event.last = result
        event.stored.attempts += 1
        if event.stored.attempts > delivery.max_retries:
            await self._end(event, Condition.RETRIES_EXHAUSTED, result)
            return
        delay = error_retry_delay(event.stored.attempts)
        event.stored.due = self._retry_time(event, delivery, delay)
        await self.store.reschedule(event.stored.id, event.stored.attempts, event.stored.due)
        self._push(event)
        self._wake.set()

    def _back_off(self, event: AsyncEvent, delivery: Delivery) -> None:
        event.backoffs += 1
        delay = backoff_delay(event.backoffs)  # jitter: callers do not retry in step
        queue = self.queues.setdefault(event.key, FunctionQueue())
        queue.paused_until = max(
            queue.paused_until, self.clock.wall() + self.clock.platform_delay(delay)
        )
        self._paused.add(event.key)
        event.stored.due = self._retry_time(event, delivery, delay)
        self._push(event)
        self._wake.set()

    def _retry_time(self, event: AsyncEvent, delivery: Delivery, delay: float) -> float:
        """When to try again: after `delay`, but never after the event expires (then it
        is dropped on time)."""
        expires = event.stored.accepted + self.clock.platform_delay(delivery.max_age) + 1e-3
        return min(self.clock.wall() + self.clock.platform_delay(delay), expires)

    async def _end(
        self, event: AsyncEvent, condition: str, result: InvokeResult | None = None
    ) -> None:
        assert self.finish is not None
        if condition != Condition.SUCCESS and self.recorder is not None:
            self.recorder.async_event_dropped(event.key, event.stored.qualifier or None)
        try:
            await self.finish(event, condition, result if result is not None else event.last)
        except Exception:
            log.exception("delivering the outcome of an async event failed")
        await self.store.remove(event.stored.id)

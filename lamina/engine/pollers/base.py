"""What every poller shares: its task and graceful stop, invoking through the engine's
leases with throttles waited out, its statistics, AWS's batch item failure rules.

Ownership: the `Pollers` component (manager.py) owns every poller; a poller owns its
tasks (an asyncio.TaskGroup). Stopping a poller stops its polling at once (batches
already being processed finish); closing cancels everything. A throttled batch waits
(with exponential backoff, on the clock) and is retried: it is never lost and never
counted as a function error.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lamina.engine.invoker import InvokeResult
from lamina.engine.service import Throttled
from lamina.keys import FunctionKey
from lamina.patterns import Pattern, compile_pattern, matches_any

if TYPE_CHECKING:
    from lamina.engine.pollers.manager import Pollers

log = logging.getLogger("lamina.mappings")

PAYLOAD_BUDGET = 5 * 1024 * 1024  # bytes of records per batch, under the 6 MB invoke limit
THROTTLE_BACKOFF = (0.25, 8.0)  # platform seconds: first wait, longest wait
RETRY_BACKOFF = (0.5, 8.0)
IDLE_WAIT = 20.0  # real seconds a poller waits on an empty source before looking again
PROBLEM_WAIT = 5.0  # platform seconds between looks at a missing function or source
NO_RECORDS = "No records processed"
OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"
FUNCTION_MISSING = "PROBLEM: Function not found"
SOURCE_MISSING = "PROBLEM: Event source not found"


def wall_now() -> float:
    return time.time()


def iso_millis(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def item_failures(payload: bytes, identifiers: list[str]) -> set[str] | None:
    """The identifiers a ReportBatchItemFailures response names; None if the response is
    invalid, which fails the whole batch (AWS's rules)."""
    text = payload.strip()
    if not text or text == b"null":
        return set()
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if document is None or document == {}:
        return set()
    if not isinstance(document, dict):
        return None
    failures = document.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    known = set(identifiers)
    found: set[str] = set()
    for item in failures:
        if not isinstance(item, dict):
            return None
        identifier = item.get("itemIdentifier")
        if not isinstance(identifier, str) or not identifier or identifier not in known:
            return None
        found.add(identifier)
    return found


@dataclass
class MappingStats:
    batches: int = 0
    records: int = 0
    throttles: int = 0
    function_errors: int = 0
    deleted: int = 0
    retried_items: int = 0
    discarded: int = 0
    filtered: int = 0  # records FilterCriteria dropped
    in_flight: int = 0
    peak_in_flight: int = 0
    iterator_age_ms: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "records": self.records,
            "throttles": self.throttles,
            "function_errors": self.function_errors,
            "deleted": self.deleted,
            "retried_items": self.retried_items,
            "discarded": self.discarded,
            "filtered": self.filtered,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "iterator_age_ms": dict(self.iterator_age_ms),
        }


class Stopped(Exception):
    """The poller is stopping: give the batch back untouched."""


class Interruptible:
    """Waits that a graceful stop interrupts: `interrupt()` cancels what `idle` awaits (a
    wait for records, a backoff), and that wait then raises Stopped."""

    def __init__(self) -> None:
        self.stopping = False
        self._idle: set[asyncio.Future[Any]] = set()  # what interrupt() cancels

    def interrupt(self) -> None:
        self.stopping = True
        for task in list(self._idle):
            task.cancel()

    async def idle(self, awaitable: Awaitable[Any]) -> Any:
        """Await something that a stop may cancel."""
        task = asyncio.ensure_future(awaitable)
        if self.stopping:
            task.cancel()  # a coroutine is never left unawaited
            raise Stopped
        self._idle.add(task)
        try:
            return await self._wait(task)
        except asyncio.CancelledError:
            if self.stopping and task.cancelled() and not cancelling():
                raise Stopped from None
            raise
        finally:
            self._idle.discard(task)

    async def _wait(self, task: asyncio.Future[Any]) -> Any:
        return await task


class Poller(Interruptible, abc.ABC):
    """Reads one mapping's source and invokes its function; owns its tasks. QueuePoller
    and StreamPoller say how (`run`)."""

    def __init__(self, owner: Pollers, config: dict[str, Any], after: Poller | None) -> None:
        super().__init__()
        self.owner = owner
        self.config = config  # the live record: updates apply to the next batch
        self.uuid: str = config["UUID"]
        self.stats = owner.stats.setdefault(self.uuid, MappingStats())
        self._after = after
        self._filters: tuple[Any, list[Pattern]] = (None, [])
        self.task = asyncio.get_running_loop().create_task(
            self._main(), name=f"mapping-{self.uuid}"
        )

    async def _main(self) -> None:
        if self._after is not None:
            await self._after.finished()
            self._after = None
        if self.stopping:
            return
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event source mapping %s stopped on an error", self.uuid)

    def patterns(self) -> list[Pattern]:
        """The mapping's FilterCriteria, compiled once per setting (checked when set)."""
        raw = self.config.get("FilterCriteria")
        if self._filters[0] is not raw:
            filters = (raw or {}).get("Filters") or []
            self._filters = (raw, [compile_pattern(f.get("Pattern") or "") for f in filters])
        return self._filters[1]

    def kept(
        self, records: list[dict[str, Any]], form: Callable[[dict[str, Any]], Any]
    ) -> list[bool]:
        """Which event records pass the mapping's FilterCriteria (all, without one)."""
        patterns = self.patterns()
        if not patterns:
            return [True] * len(records)
        return [matches_any(patterns, form(record)) for record in records]

    @abc.abstractmethod
    async def run(self) -> None:
        """Poll until stopped."""

    def stop(self) -> None:
        """Stop polling now; batches being processed finish (or give up when throttled)."""
        self.interrupt()
        if self._after is not None:
            self.task.cancel()

    async def finished(self) -> None:
        await asyncio.wait({self.task})

    async def close(self) -> None:
        self.stopping = True
        self.task.cancel()
        await asyncio.wait({self.task})

    def set_result(self, result: str) -> None:
        if self.config.get("LastProcessingResult") != result and "StartingPosition" in self.config:
            self.config["LastProcessingResult"] = result
            self.owner.save(self.config)

    # Invoking ---------------------------------------------------------------------------
    async def invoke(
        self, payload: bytes, on_throttle: Callable[[float], bool] | None = None
    ) -> InvokeResult:
        """Invoke the mapping's function, waiting out throttles. `on_throttle(wait)` is
        called before each wait and may return False to give the batch up (Stopped)."""
        delay = THROTTLE_BACKOFF[0]
        while True:
            if self.stopping:
                raise Stopped
            try:
                return await self.owner.target.invoke(self.config, payload)
            except Throttled as throttled:
                self.stats.throttles += 1
                wait = max(delay, min(throttled.retry_after, THROTTLE_BACKOFF[1]))
                wait *= random.uniform(0.5, 1.0)
                delay = min(delay * 2, THROTTLE_BACKOFF[1])
                if on_throttle is not None and not on_throttle(wait):
                    raise Stopped from None
                await self.idle(self.owner.clock.sleep(wait))

    def started(self) -> None:
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)

    def ended(self) -> None:
        self.stats.in_flight -= 1


def cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def function_key(record: dict[str, Any]) -> FunctionKey:
    """The function of a mapping's record."""
    name = record["FunctionArn"].split(":")[6]
    return FunctionKey(record["_Account"], record["_Region"], name)

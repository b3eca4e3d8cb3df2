"""Event source mappings: the Lambda API's Create/Get/List/Update/DeleteEventSourceMapping,
and the pollers that read SQS queues and Kinesis streams and invoke functions with batches.

Ownership: `Mappings` owns every poller; a poller owns its tasks (an asyncio.TaskGroup).
Disabling or deleting a mapping stops its polling at once (batches already being
processed finish); closing the server cancels everything. Nothing here has a polling
loop of its own: queue pollers long-poll the queue's waiters, stream pollers wait on the
shard's waiters.

Concurrency is Lambda's:
- SQS: batches in flight per mapping start at 5 and grow by 300 a minute, up to
  ScalingConfig.MaximumConcurrency (2-1000) or 1250, falling back to 5 when the function
  is throttled; FIFO message groups stay in order
  because a group with a message in flight is not received from.
- Kinesis: per shard, records are dealt by partition key into ParallelizationFactor
  lanes; each lane has at most one batch in flight, so a stream with S shards never has
  more than S x ParallelizationFactor invocations, and a key's records stay in order.
  The shard's checkpoint is the first record not yet done; it advances only past
  records whose batch succeeded (or was given up and reported to the on-failure
  destination) and is persisted at each advance, so a restart resumes there.
- Every invocation goes through the engine's leases. A throttled batch waits (with
  exponential backoff, on the clock) and is retried: it is never lost and never counted
  as a function error; a queue batch held back this way stays hidden meanwhile.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.control.functions import Functions, resolve
from lamina.control.invocations import Invocations
from lamina.control.queues import Claim, Queue, Queues
from lamina.control.streams import Shard, Stream, Streams, sequence_number
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.service import Engine, Throttled
from lamina.errors import AwsError, conflict, invalid_parameter, not_found
from lamina.keys import FunctionKey
from lamina.store.mappings import MappingStore
from lamina.store.streams import StoredRecord

log = logging.getLogger("lamina.mappings")

LIST_LIMIT = 100
SQS_DEFAULT_BATCH = 10
SQS_MAX_BATCH = 10_000
FIFO_MAX_BATCH = 10
STREAM_DEFAULT_BATCH = 100
SQS_START_CONCURRENCY = 5  # batches in flight when an SQS mapping starts
SQS_SCALE_PER_MINUTE = 300
SQS_MAX_CONCURRENCY = 1250
PAYLOAD_BUDGET = 5 * 1024 * 1024  # bytes of records per batch, under the 6 MB invoke limit
THROTTLE_BACKOFF = (0.25, 8.0)  # platform seconds: first wait, longest wait
RETRY_BACKOFF = (0.5, 8.0)
IDLE_WAIT = 20.0  # real seconds a poller waits on an empty source before looking again
PROBLEM_WAIT = 5.0  # platform seconds between looks at a missing function or source
STREAM_BUFFER = 10_000  # records read ahead per shard
NO_RECORDS = "No records processed"
OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"
FUNCTION_MISSING = "PROBLEM: Function not found"
SOURCE_MISSING = "PROBLEM: Event source not found"
SQS_ARN = re.compile(r"arn:aws[a-zA-Z-]*:sqs:([^:]+):(\d{12}):(.+)")
KINESIS_ARN = re.compile(r"arn:aws[a-zA-Z-]*:kinesis:([^:]+):(\d{12}):stream/(.+)")
UPDATABLE = (
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "FunctionResponseTypes",
    "ScalingConfig",
    "DestinationConfig",
    "MetricsConfig",
)
UNSUPPORTED = {
    "FilterCriteria": "Event filtering (FilterCriteria) is not supported by Lamina yet.",
    "TumblingWindowInSeconds": "Tumbling windows are not supported by Lamina yet.",
    "KMSKeyArn": "Encrypted filter criteria (KMSKeyArn) are not supported by Lamina.",
    "Topics": "Kafka event sources are not supported by Lamina.",
    "Queues": "Amazon MQ event sources are not supported by Lamina.",
    "SourceAccessConfigurations": "Source access configurations are not supported by Lamina.",
    "SelfManagedEventSource": "Self-managed Kafka event sources are not supported by Lamina.",
    "AmazonManagedKafkaEventSourceConfig": "Kafka event sources are not supported by Lamina.",
    "SelfManagedKafkaEventSourceConfig": "Kafka event sources are not supported by Lamina.",
    "DocumentDBEventSourceConfig": "DocumentDB event sources are not supported by Lamina.",
    "ProvisionedPollerConfig": "Provisioned pollers are not supported by Lamina.",
    "LoggingConfig": "Event source mapping logging configuration is not supported by Lamina.",
}
STREAM_ONLY = (
    "ParallelizationFactor",
    "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError",
    "MaximumRetryAttempts",
    "DestinationConfig",
    "StartingPosition",
    "StartingPositionTimestamp",
)


def wall_now() -> float:
    return time.time()


def iso_millis(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def lane_of(partition_key: str, lanes: int) -> int:
    if lanes == 1:
        return 0
    digest = hashlib.md5(partition_key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8]) % lanes


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
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "iterator_age_ms": dict(self.iterator_age_ms),
        }


class Stopped(Exception):
    """The poller is stopping: give the batch back untouched."""


class Poller(abc.ABC):
    """Reads one mapping's source and invokes its function; owns its tasks. QueuePoller
    and StreamPoller say how (`run`)."""

    def __init__(self, owner: Mappings, config: dict[str, Any], after: Poller | None) -> None:
        self.owner = owner
        self.config = config  # the live record: updates apply to the next batch
        self.uuid: str = config["UUID"]
        self.stats = owner.stats.setdefault(self.uuid, MappingStats())
        self.stopping = False
        self._after = after
        self._idle: set[asyncio.Task[Any]] = set()  # tasks a graceful stop may cancel
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

    @abc.abstractmethod
    async def run(self) -> None:
        """Poll until stopped."""

    def stop(self) -> None:
        """Stop polling now; batches being processed finish (or give up when throttled)."""
        self.stopping = True
        for task in list(self._idle):
            task.cancel()
        if self._after is not None:
            self.task.cancel()

    async def finished(self) -> None:
        await asyncio.wait({self.task})

    async def close(self) -> None:
        self.stopping = True
        self.task.cancel()
        await asyncio.wait({self.task})

    # Waiting that a graceful stop interrupts ------------------------------------------
    async def idle(self, awaitable: Awaitable[Any]) -> Any:
        """Await something that a stop() may cancel (a wait for records, a backoff)."""
        if self.stopping:
            raise Stopped
        task = asyncio.ensure_future(awaitable)
        self._idle.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if self.stopping and task.cancelled() and not _cancelling():
                raise Stopped from None
            raise
        finally:
            self._idle.discard(task)

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
                return await self.owner.invoke(self.config, payload)
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


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# SQS ------------------------------------------------------------------------------------
class QueuePoller(Poller):
    def __init__(self, owner: Mappings, config: dict[str, Any], after: Poller | None) -> None:
        self.in_flight = 0
        self.busy_since = owner.clock.platform_now()
        self._freed = asyncio.Event()
        super().__init__(owner, config, after)

    def limit(self) -> int:
        cap = (self.config.get("ScalingConfig") or {}).get("MaximumConcurrency")
        cap = cap or SQS_MAX_CONCURRENCY
        minutes = (self.owner.clock.platform_now() - self.busy_since) / 60.0
        return int(min(cap, SQS_START_CONCURRENCY + SQS_SCALE_PER_MINUTE * minutes))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:  # waits for the batches in flight
            with contextlib.suppress(Stopped):
                await self._fetch(group)

    async def _fetch(self, group: asyncio.TaskGroup) -> None:
        queues = self.owner.queues
        while not self.stopping:
            while self.in_flight >= self.limit():
                self._freed.clear()
                step = self.owner.clock.platform_delay(60.0 / SQS_SCALE_PER_MINUTE)
                with _suppress_timeout():
                    await self.idle(asyncio.wait_for(self._freed.wait(), step))
            queue = queues.queue_by_arn(self.config["EventSourceArn"])
            if queue is None or not self.owner.function_exists(self.config):
                self.set_result(SOURCE_MISSING if queue is None else FUNCTION_MISSING)
                await self.idle(self.owner.clock.sleep(PROBLEM_WAIT))
                continue
            batch_size = self.config["BatchSize"]
            window = self.config.get("MaximumBatchingWindowInSeconds") or 0
            try:
                claims = await self.idle(
                    queues.poll(queue, batch_size, window, PAYLOAD_BUDGET, IDLE_WAIT)
                )
            except AwsError:  # the queue was deleted while we waited
                continue
            if not claims:
                self.busy_since = self.owner.clock.platform_now()
                continue
            self.in_flight += 1
            group.create_task(self._handle(queue, claims))

    async def _handle(self, queue: Queue, claims: list[Claim]) -> None:
        self.started()
        try:
            await self._process(queue, claims)
        except Stopped:
            self.owner.queues.release(queue, [c for c in claims if c.owned])
        except Exception:
            log.exception("event source mapping %s: batch failed", self.uuid)
        finally:
            self.ended()
            self.in_flight -= 1
            self._freed.set()

    async def _process(self, queue: Queue, claims: list[Claim]) -> None:
        queues = self.owner.queues
        visibility = queue.int_attribute("VisibilityTimeout")
        held = claims

        def hold(wait: float) -> bool:
            nonlocal held
            self.busy_since = self.owner.clock.platform_now()  # throttled: scale back to 5
            held = queues.hold(queue, held, visibility + wait)
            return bool(held) and not self.stopping

        payload = self.owner.sqs_event(queue, claims)
        try:
            result = await self.invoke(payload, hold)
        except AwsError:  # the function went away
            self.set_result(FUNCTION_MISSING)
            return
        claims = [c for c in claims if c in held]
        self.stats.batches += 1
        self.stats.records += len(claims)
        if result.function_error:
            self.stats.function_errors += 1
            return  # the messages become visible again when their visibility timeout ends
        done = claims
        if "ReportBatchItemFailures" in (self.config.get("FunctionResponseTypes") or []):
            failed = item_failures(result.payload, [c.message.id for c in claims])
            if failed is None:
                self.stats.function_errors += 1
                return
            if failed and queue.fifo:  # after a failure, the rest of its group waits too
                blocked: set[str | None] = set()
                for claim in claims:
                    if claim.message.group in blocked:
                        failed.add(claim.message.id)
                    elif claim.message.id in failed:
                        blocked.add(claim.message.group)
            done = [c for c in claims if c.message.id not in failed]
            self.stats.retried_items += len(claims) - len(done)
        self.stats.deleted += queues.settle(queue, done)


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        return kind is TimeoutError


# Kinesis --------------------------------------------------------------------------------
@dataclass
class Lane:
    records: deque[StoredRecord] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    since: float = 0.0  # monotonic time the oldest waiting record was dealt


class ShardWorker:
    def __init__(self, poller: StreamPoller, stream: Stream, shard: Shard, position: int) -> None:
        self.poller = poller
        self.stream = stream
        self.shard = shard
        self.position = position  # the checkpoint: every record before it is done
        self.read_n = position
        self.pending: deque[int] = deque()
        self.done: set[int] = set()
        self.lanes = [Lane() for _ in range(poller.config.get("ParallelizationFactor") or 1)]
        self.drained = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for lane in self.lanes:
                group.create_task(self._lane(lane))
            with contextlib.suppress(Stopped):
                await self._read()

    async def _read(self) -> None:
        streams = self.poller.owner.streams
        poller = self.poller
        while not poller.stopping:
            room = STREAM_BUFFER - len(self.pending)
            if room <= 0:
                self.drained.clear()
                await poller.idle(self.drained.wait())
                continue
            if self.stream.deleted:
                poller.set_result(SOURCE_MISSING)
                return
            records = streams.read(self.stream, self.shard, self.read_n, min(room, 1000))
            if not records:
                horizon = streams.trim_horizon(self.stream, self.shard)
                if horizon > self.read_n:  # records ran past their retention unread
                    self._skip_to(horizon)
                    continue
                await poller.idle(streams.wait(self.stream, self.shard, self.read_n, IDLE_WAIT))
                continue
            now = time.monotonic()
            for record in records:
                lane = self.lanes[lane_of(record.partition_key, len(self.lanes))]
                if not lane.records:
                    lane.since = now
                lane.records.append(record)
                lane.ready.set()
                self.pending.append(record.n)
            self.read_n = records[-1].n + 1

    def _skip_to(self, position: int) -> None:
        for n in range(self.read_n, position):
            self.pending.append(n)
            self.done.add(n)
        self.read_n = position
        self._advance()

    async def _lane(self, lane: Lane) -> None:
        with contextlib.suppress(Stopped):  # a batch given back is read again later
            await self._deal(lane)

    async def _deal(self, lane: Lane) -> None:
        poller = self.poller
        clock = poller.owner.clock
        while not poller.stopping:
            if not lane.records:
                lane.ready.clear()
                await poller.idle(lane.ready.wait())
                continue
            batch_size = poller.config["BatchSize"]
            window = poller.config.get("MaximumBatchingWindowInSeconds") or 0
            if window and len(lane.records) < batch_size:
                remaining = lane.since + clock.platform_delay(window) - time.monotonic()
                if remaining > 0:
                    lane.ready.clear()
                    with _suppress_timeout():
                        await poller.idle(asyncio.wait_for(lane.ready.wait(), remaining))
                    continue
            batch: list[StoredRecord] = []
            size = 0
            while lane.records and len(batch) < batch_size:
                record = lane.records[0]
                cost = len(record.data) * 4 // 3 + len(record.partition_key) + 400
                if batch and size + cost > PAYLOAD_BUDGET:
                    break
                batch.append(lane.records.popleft())
                size += cost
            lane.since = time.monotonic()
            age = max(0, int((wall_now() - batch[-1].arrival) * 1000))
            poller.stats.iterator_age_ms[self.shard.id] = age
            if poller.owner.on_iterator_age is not None:  # the IteratorAge metric
                poller.owner.on_iterator_age(_function_key(poller.config), age)
            await poller.process(self.stream, self.shard, batch)
            for record in batch:
                self.done.add(record.n)
            self._advance()

    def _advance(self) -> None:
        moved = False
        while self.pending and self.pending[0] in self.done:
            n = self.pending.popleft()
            self.done.discard(n)
            self.position = n + 1
            moved = True
        if moved:
            self.poller.owner.store.set_checkpoint(
                self.poller.uuid, self.shard.index, self.position
            )
            self.drained.set()


class StreamPoller(Poller):
    def __init__(self, owner: Mappings, config: dict[str, Any], after: Poller | None) -> None:
        self.lanes = config.get("ParallelizationFactor") or 1
        super().__init__(owner, config, after)

    async def run(self) -> None:
        owner = self.owner
        stream = owner.streams.stream_by_arn(self.config["EventSourceArn"])
        if stream is None:
            self.set_result(SOURCE_MISSING)
            return
        checkpoints = owner.store.checkpoints(self.uuid)
        workers = []
        for shard in stream.shards:
            position = checkpoints.get(shard.index)
            if position is None:
                position = owner.starting_position(self.config, stream, shard)
                owner.store.set_checkpoint(self.uuid, shard.index, position)
            workers.append(ShardWorker(self, stream, shard, position))
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker.run())

    async def process(self, stream: Stream, shard: Shard, batch: list[StoredRecord]) -> None:
        """Invoke until the batch succeeds or is given up; raises Stopped to leave it."""
        config = self.config
        clock = self.owner.clock
        attempts = 0
        retries = 0
        delay = RETRY_BACKOFF[0]
        pieces = [batch]
        while pieces:
            piece = pieces[0]
            max_age = config.get("MaximumRecordAgeInSeconds", -1)

            def too_old(records: list[StoredRecord] = piece, max_age: int = max_age) -> bool:
                if max_age is None or max_age < 0:
                    return False
                return wall_now() - records[0].arrival > clock.platform_delay(max_age)

            if too_old():
                self._give_up(stream, shard, piece, "RecordAgeExceeded", attempts, None)
                pieces.pop(0)
                continue
            payload = self.owner.kinesis_event(config, stream, shard, piece)
            result: InvokeResult | None = None
            self.started()
            try:
                result = await self.invoke(payload, lambda _wait: not too_old())
            except Stopped:
                if self.stopping or not too_old():
                    raise
            except AwsError:
                pass  # the function went away
            finally:
                self.ended()
            if result is None:
                if too_old():
                    self._give_up(stream, shard, piece, "RecordAgeExceeded", attempts, None)
                    pieces.pop(0)
                else:
                    self.set_result(FUNCTION_MISSING)
                    await self.idle(clock.sleep(PROBLEM_WAIT))
                continue
            attempts += 1
            self.stats.batches += 1
            self.stats.records += len(piece)
            failed_from: int | None = None
            if result.function_error:
                failed_from = 0
                self.stats.function_errors += 1
            elif "ReportBatchItemFailures" in (config.get("FunctionResponseTypes") or []):
                sequences = [sequence_number(r.shard, r.n) for r in piece]
                failed = item_failures(result.payload, sequences)
                if failed is None:
                    failed_from = 0
                elif failed:
                    failed_from = min(sequences.index(s) for s in failed)
            if failed_from is None:
                self.set_result(OK)
                pieces.pop(0)
                retries = 0
                delay = RETRY_BACKOFF[0]
                continue
            self.set_result(FUNCTION_FAILED)
            if failed_from > 0:  # the records before the first failure are done
                piece = piece[failed_from:]
                pieces[0] = piece
            self.stats.retried_items += len(piece)
            if config.get("BisectBatchOnFunctionError") and len(piece) > 1 and failed_from == 0:
                half = len(piece) // 2
                pieces[0:1] = [piece[:half], piece[half:]]
                continue  # splitting does not use up a retry
            retries += 1
            limit = config.get("MaximumRetryAttempts", -1)
            if limit is not None and limit >= 0 and retries > limit:
                self._give_up(stream, shard, piece, "RetryAttemptsExhausted", attempts, result)
                pieces.pop(0)
                retries = 0
                continue
            await self.idle(clock.sleep(delay))
            delay = min(delay * 2, RETRY_BACKOFF[1])

    def _give_up(
        self,
        stream: Stream,
        shard: Shard,
        records: list[StoredRecord],
        condition: str,
        attempts: int,
        result: InvokeResult | None,
    ) -> None:
        self.stats.discarded += len(records)
        destination = ((self.config.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        if not destination:
            return
        document: dict[str, Any] = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.config["FunctionArn"],
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200 if result is not None else 0,
                "executedVersion": result.executed_version if result is not None else "",
                "functionError": (result.function_error or "") if result is not None else "",
            },
            "version": "1.0",
            "timestamp": iso_millis(wall_now()),
            "KinesisBatchInfo": {
                "shardId": shard.id,
                "startSequenceNumber": sequence_number(shard.index, records[0].n),
                "endSequenceNumber": sequence_number(shard.index, records[-1].n),
                "approximateArrivalOfFirstRecord": iso_millis(records[0].arrival),
                "approximateArrivalOfLastRecord": iso_millis(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": stream.arn,
            },
        }
        if self.owner.queues.send_internal(destination, json.dumps(document)) is None:
            log.warning(
                "mapping %s: on-failure destination %s does not exist", self.uuid, destination
            )


# The component ----------------------------------------------------------------------------
class Mappings:
    """Every event source mapping, its persistence and its poller."""

    def __init__(
        self,
        store: MappingStore,
        functions: Functions,
        invocations: Invocations,
        engine: Engine,
        queues: Queues,
        streams: Streams,
        clock: Clock,
    ) -> None:
        self.store = store
        self.functions = functions
        self.invocations = invocations
        self.engine = engine
        self.queues = queues
        self.streams = streams
        self.clock = clock
        self.records: dict[str, dict[str, Any]] = {r["UUID"]: r for r in store.mappings()}
        self.pollers: dict[str, Poller] = {}
        self.retiring: set[Poller] = set()
        self.stats: dict[str, MappingStats] = {}
        self.started = False
        # Called with (function, milliseconds) for every stream batch taken: metrics hook.
        self.on_iterator_age: Callable[[FunctionKey, float], None] | None = None

    # Lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume every enabled mapping (from its checkpoints)."""
        self.started = True
        for record in self.records.values():
            self._apply(record)

    async def close(self) -> None:
        self.started = False
        pollers = [*self.pollers.values(), *self.retiring]
        self.pollers.clear()
        self.retiring.clear()
        for poller in pollers:
            poller.stopping = True
            poller.task.cancel()
        if pollers:
            await asyncio.wait({p.task for p in pollers})

    def forget_function(self, key: FunctionKey) -> None:
        """The function was deleted: its mappings stop polling and stay, disabled, as on
        AWS (where mappings outlive their function until deleted)."""
        for record in self.records.values():
            if _function_key(record) == key and record["State"] != "Disabled":
                record["State"] = "Disabled"
                record["StateTransitionReason"] = "USER_INITIATED"
                if "StartingPosition" in record:
                    record["LastProcessingResult"] = FUNCTION_MISSING
                record["LastModified"] = wall_now()
                self.save(record)
                self._apply(record)

    def _apply(self, record: dict[str, Any], restart: bool = False) -> None:
        """Make the pollers match the record: start, stop or restart."""
        uuid_ = record["UUID"]
        current = self.pollers.get(uuid_)
        wanted = record["State"] == "Enabled" and self.started
        if current is not None and (not wanted or restart):
            current.stop()
            del self.pollers[uuid_]
            self.retiring.add(current)
            retired = current
            current.task.add_done_callback(lambda _task: self.retiring.discard(retired))
        if wanted and uuid_ not in self.pollers:
            kind = QueuePoller if _is_sqs(record["EventSourceArn"]) else StreamPoller
            self.pollers[uuid_] = kind(self, record, current)

    def save(self, record: dict[str, Any]) -> None:
        if record["UUID"] in self.records:
            self.store.update(record["UUID"], record)

    def stats_view(self) -> dict[str, Any]:
        return {uuid_: stats.as_dict() for uuid_, stats in self.stats.items()}

    # Invoking -------------------------------------------------------------------------
    def _ref(self, config: dict[str, Any]) -> tuple[RequestContext, Any]:
        key = _function_key(config)
        ctx = RequestContext(key.account, key.region, str(uuid.uuid4()), "")
        return ctx, resolve(ctx, config["FunctionArn"])

    def function_exists(self, config: dict[str, Any]) -> bool:
        _, ref = self._ref(config)
        try:
            self.functions.record(ref)
        except AwsError:
            return False
        return True

    async def invoke(self, config: dict[str, Any], payload: bytes) -> InvokeResult:
        ctx, ref = self._ref(config)
        record = self.functions.record(ref)
        return await self.engine.invoke(
            ref.key,
            self.invocations.image(ref.key, record),
            InvokeRequest(
                payload=payload, request_id=ctx.request_id, invoked_arn=config["FunctionArn"]
            ),
        )

    # Events, exactly as AWS builds them ----------------------------------------------------
    def sqs_event(self, queue: Queue, claims: list[Claim]) -> bytes:
        records = []
        for claim in claims:
            message = claim.message
            attributes = {}
            for name, value in message.attributes.items():
                item: dict[str, Any] = {
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                if value.get("BinaryValue") is not None:
                    item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
                else:
                    item["stringValue"] = value.get("StringValue", "")
                attributes[name] = item
            system = Queues.system_attributes(message)
            system.pop("DeadLetterQueueSourceArn", None)
            entry: dict[str, Any] = {
                "messageId": message.id,
                "receiptHandle": self.queues.receipt_handle(queue, claim),
                "body": message.body,
                "attributes": system,
                "messageAttributes": attributes,
                "md5OfBody": message.md5_body,
            }
            if message.md5_attributes:
                entry["md5OfMessageAttributes"] = message.md5_attributes
            entry.update(
                {"eventSource": "aws:sqs", "eventSourceARN": queue.arn, "awsRegion": queue.region}
            )
            records.append(entry)
        return json.dumps({"Records": records}).encode()

    def kinesis_event(
        self, config: dict[str, Any], stream: Stream, shard: Shard, records: list[StoredRecord]
    ) -> bytes:
        role = config.get("_Role", "")
        out = []
        for record in records:
            sequence = sequence_number(record.shard, record.n)
            out.append(
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": record.partition_key,
                        "sequenceNumber": sequence,
                        "data": base64.b64encode(record.data).decode(),
                        "approximateArrivalTimestamp": round(record.arrival, 3),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{shard.id}:{sequence}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": role,
                    "awsRegion": stream.region,
                    "eventSourceARN": stream.arn,
                }
            )
        return json.dumps({"Records": out}).encode()

    def starting_position(self, config: dict[str, Any], stream: Stream, shard: Shard) -> int:
        kind = config.get("StartingPosition")
        if kind == "LATEST":
            return shard.next_n
        if kind == "AT_TIMESTAMP":
            return self.streams.at_timestamp(
                stream, shard, config.get("StartingPositionTimestamp") or 0
            )
        return self.streams.trim_horizon(stream, shard)

    # Operations -------------------------------------------------------------------------
    def _mapping(self, uuid_: str) -> dict[str, Any]:
        record = self.records.get(uuid_)
        if record is None:
            raise not_found("The resource you requested does not exist.")
        return record

    @staticmethod
    def _view(record: dict[str, Any], state: str | None = None) -> dict[str, Any]:
        view = {k: v for k, v in record.items() if not k.startswith("_")}
        if state is not None:
            view["State"] = state
        return view

    def _check(self, config: dict[str, Any], params: dict[str, Any], creating: bool) -> None:
        for member, message in UNSUPPORTED.items():
            value = params.get(member)
            if value not in (None, 0, [], {}) and not (
                member == "FilterCriteria" and not value.get("Filters")
            ):
                raise invalid_parameter(message)
        arn = config["EventSourceArn"]
        sqs = _is_sqs(arn)
        if sqs:
            for member in STREAM_ONLY:
                value = params.get(member)
                if member == "DestinationConfig" and value is not None:
                    value = (value.get("OnFailure") or {}).get("Destination")
                if value is not None:
                    raise invalid_parameter(f"{member} is not supported for SQS event sources.")
            queue = self.queues.queue_by_arn(arn)
            fifo = queue.fifo if queue is not None else arn.endswith(".fifo")
            batch = config["BatchSize"]
            if fifo and batch > FIFO_MAX_BATCH:
                raise invalid_parameter(
                    f"BatchSize must be between 1 and {FIFO_MAX_BATCH} for FIFO queues."
                )
            window = config.get("MaximumBatchingWindowInSeconds") or 0
            if batch > SQS_DEFAULT_BATCH and window < 1:
                raise invalid_parameter(
                    "Maximum batch window in seconds must be greater than 0 if maximum batch "
                    "size is greater than 10"
                )
            if fifo and window:
                raise invalid_parameter("Batching window is not supported for FIFO queues.")
        else:
            if params.get("ScalingConfig"):
                raise invalid_parameter("ScalingConfig is only supported for SQS event sources.")
            if creating and not params.get("StartingPosition"):
                raise invalid_parameter(
                    "StartingPosition is required for Kinesis event sources: TRIM_HORIZON, "
                    "LATEST or AT_TIMESTAMP."
                )
            if config.get("StartingPosition") == "AT_TIMESTAMP" and not config.get(
                "StartingPositionTimestamp"
            ):
                raise invalid_parameter(
                    "StartingPositionTimestamp must be set for the AT_TIMESTAMP starting position."
                )
            age = config.get("MaximumRecordAgeInSeconds", -1)
            if age is not None and age != -1 and not 60 <= age <= 604_800:
                raise invalid_parameter(
                    f"MaximumRecordAgeInSeconds must be -1 (infinite) or between 60 and 604800; "
                    f"got {age}."
                )
            destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination"
            )
            if destination:
                if not _is_sqs(destination):
                    raise invalid_parameter(
                        "Lamina supports SQS queues as on-failure destinations only."
                    )
                if self.queues.queue_by_arn(destination) is None:
                    raise invalid_parameter(
                        f"The destination {destination} does not exist: create the queue first."
                    )
        if ((config.get("DestinationConfig") or {}).get("OnSuccess") or {}).get("Destination"):
            raise invalid_parameter(
                "OnSuccess destinations are not supported for event source mappings of SQS or "
                "Kinesis."
            )

    def _function_config(self, ctx: RequestContext, name: str) -> tuple[str, dict[str, Any]]:
        ref = resolve(ctx, name)
        record = self.functions.record(ref)
        arn = ref.key.arn if not ref.qualifier else f"{ref.key.arn}:{ref.qualifier}"
        return arn, record

    async def CreateEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        arn = params.get("EventSourceArn") or ""
        if not arn:
            raise invalid_parameter(
                "EventSourceArn is required: Lamina reads SQS queues and Kinesis streams."
            )
        if not _is_sqs(arn) and not KINESIS_ARN.fullmatch(arn):
            service = arn.split(":")[2] if arn.count(":") >= 2 else arn
            detail = (
                "DynamoDB Streams are out of scope for Lamina. " if service == "dynamodb" else ""
            )
            raise invalid_parameter(
                f"Unsupported event source {arn}: {detail}Lamina reads SQS queues and Kinesis "
                "data streams."
            )
        function_arn, function = self._function_config(ctx, params["FunctionName"])
        region, account = _arn_region_account(arn)
        if region != ctx.region or account != ctx.account:
            raise invalid_parameter(
                f"The event source {arn} is in another account or region than the function."
            )
        sqs = _is_sqs(arn)
        if sqs:
            queue = self.queues.queue_by_arn(arn)
            if queue is None:
                raise invalid_parameter(
                    "Error occurred while ReceiveMessage. SQS Error Code: "
                    "AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified "
                    "queue does not exist for this wsdl version."
                )
        stream = None if sqs else self.streams.stream_by_arn(arn)
        if not sqs and stream is None:
            raise invalid_parameter(f"Stream not found: {arn}")
        mapping_id = str(uuid.uuid4())
        enabled = params.get("Enabled", True)
        config: dict[str, Any] = {"UUID": mapping_id}
        if not sqs:
            config["StartingPosition"] = params.get("StartingPosition")
            if params.get("StartingPositionTimestamp") is not None:
                config["StartingPositionTimestamp"] = params[
                    "StartingPositionTimestamp"
                ].timestamp()
        config["BatchSize"] = params.get("BatchSize") or (
            SQS_DEFAULT_BATCH if sqs else STREAM_DEFAULT_BATCH
        )
        config["MaximumBatchingWindowInSeconds"] = params.get("MaximumBatchingWindowInSeconds") or 0
        if not sqs:
            config["ParallelizationFactor"] = params.get("ParallelizationFactor") or 1
        config["EventSourceArn"] = arn
        config["FunctionArn"] = function_arn
        config["LastModified"] = wall_now()
        if not sqs:
            config["LastProcessingResult"] = NO_RECORDS
        config["State"] = "Enabled" if enabled else "Disabled"
        config["StateTransitionReason"] = "USER_INITIATED"
        if not sqs:
            config["DestinationConfig"] = _destination(params.get("DestinationConfig"))
            config["MaximumRecordAgeInSeconds"] = params.get("MaximumRecordAgeInSeconds", -1)
            config["BisectBatchOnFunctionError"] = bool(params.get("BisectBatchOnFunctionError"))
            config["MaximumRetryAttempts"] = params.get("MaximumRetryAttempts", -1)
            config["TumblingWindowInSeconds"] = 0
        config["FunctionResponseTypes"] = list(params.get("FunctionResponseTypes") or [])
        if params.get("ScalingConfig"):
            config["ScalingConfig"] = dict(params["ScalingConfig"])
        if params.get("MetricsConfig"):
            config["MetricsConfig"] = dict(params["MetricsConfig"])
        config["EventSourceMappingArn"] = (
            f"arn:aws:lambda:{ctx.region}:{ctx.account}:event-source-mapping:{mapping_id}"
        )
        config["_Role"] = function["config"].get("Role", "")
        config["_Account"] = ctx.account
        config["_Region"] = ctx.region
        self._check(config, params, creating=True)
        for other in self.records.values():
            if other["EventSourceArn"] == arn and other["FunctionArn"] == function_arn:
                label = "SQS" if sqs else "Kinesis"
                raise conflict(
                    f'An event source mapping with {label} arn (" {arn} ") and function '
                    f'(" {function["config"]["FunctionName"]} ") already exists. Please update '
                    f"or delete the existing mapping with UUID {other['UUID']}"
                )
        if stream is not None:  # fix the starting point now, so a restart does not move it (LATEST)
            for shard in stream.shards:
                position = self.starting_position(config, stream, shard)
                self.store.set_checkpoint(mapping_id, shard.index, position)
        self.store.insert(mapping_id, config)
        self.records[mapping_id] = config
        self._apply(config)
        return self._view(config, "Creating")

    async def GetEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = self._mapping(params["UUID"])
        if record["_Account"] != ctx.account or record["_Region"] != ctx.region:
            raise not_found("The resource you requested does not exist.")
        return self._view(record)

    async def ListEventSourceMappings(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        source = params.get("EventSourceArn")
        function_arn = None
        if params.get("FunctionName"):
            ref = resolve(ctx, params["FunctionName"])
            function_arn = ref.key.arn if not ref.qualifier else f"{ref.key.arn}:{ref.qualifier}"
        chosen = [
            r
            for r in self.records.values()
            if r["_Account"] == ctx.account
            and r["_Region"] == ctx.region
            and (source is None or r["EventSourceArn"] == source)
            and (function_arn is None or r["FunctionArn"] == function_arn)
        ]
        start = 0
        marker = params.get("Marker")
        if marker:
            ids = [r["UUID"] for r in chosen]
            if marker not in ids:
                raise invalid_parameter(f"Invalid Marker: {marker}")
            start = ids.index(marker) + 1
        limit = params.get("MaxItems") or LIST_LIMIT
        page = chosen[start : start + limit]
        result: dict[str, Any] = {"EventSourceMappings": [self._view(r) for r in page]}
        if start + limit < len(chosen):
            result["NextMarker"] = page[-1]["UUID"]
        return result

    async def UpdateEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = self._mapping(params["UUID"])
        if record["_Account"] != ctx.account or record["_Region"] != ctx.region:
            raise not_found("The resource you requested does not exist.")
        config = {**record}
        if params.get("FunctionName"):
            function_arn, function = self._function_config(ctx, params["FunctionName"])
            config["FunctionArn"] = function_arn
            config["_Role"] = function["config"].get("Role", "")
        for member in UPDATABLE:
            if member in params:
                value = params[member]
                if member == "DestinationConfig":
                    value = _destination(value)
                config[member] = value
        if "Enabled" in params:
            config["State"] = "Enabled" if params["Enabled"] else "Disabled"
        self._check(config, params, creating=False)
        if _is_sqs(config["EventSourceArn"]):
            for member in STREAM_ONLY:
                config.pop(member, None)
        restart = config.get("ParallelizationFactor") != record.get("ParallelizationFactor")
        config["LastModified"] = wall_now()
        config["StateTransitionReason"] = "USER_INITIATED"
        record.clear()
        record.update(config)  # pollers hold this dict: they see the change at once
        self.save(record)
        self._apply(record, restart=restart)
        return self._view(record, "Updating")

    async def DeleteEventSourceMapping(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        record = self._mapping(params["UUID"])
        if record["_Account"] != ctx.account or record["_Region"] != ctx.region:
            raise not_found("The resource you requested does not exist.")
        record["State"] = "Deleting"
        self._apply(record)
        del self.records[record["UUID"]]
        self.store.delete(record["UUID"])
        return self._view(record)


def _is_sqs(arn: str) -> bool:
    return SQS_ARN.fullmatch(arn) is not None


def _arn_region_account(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return parts[3], parts[4]


def _function_key(record: dict[str, Any]) -> FunctionKey:
    name = record["FunctionArn"].split(":")[6]
    return FunctionKey(record["_Account"], record["_Region"], name)


def _destination(value: dict[str, Any] | None) -> dict[str, Any]:
    on_failure = dict((value or {}).get("OnFailure") or {})
    return {"OnFailure": on_failure} if on_failure.get("Destination") else {"OnFailure": {}}

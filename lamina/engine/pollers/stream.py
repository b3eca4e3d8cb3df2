"""The poller of a stream mapping (Kinesis): one reader per shard, one batch in flight
per lane.

Per shard, records are dealt by partition key into ParallelizationFactor lanes; each
lane has at most one batch in flight, so a stream with S shards never has more than
S x ParallelizationFactor invocations, and a key's records stay in order. The shard's
checkpoint is the first record not yet done; it advances only past records whose batch
succeeded (or was given up and reported to the on-failure destination) and is persisted
at each advance, so a restart resumes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lamina.clock import wait_event
from lamina.engine.invoker import InvokeResult
from lamina.engine.pollers.base import (
    FUNCTION_FAILED,
    FUNCTION_MISSING,
    IDLE_WAIT,
    OK,
    PAYLOAD_BUDGET,
    PROBLEM_WAIT,
    RETRY_BACKOFF,
    SOURCE_MISSING,
    Interruptible,
    Poller,
    Stopped,
    function_key,
    iso_millis,
    item_failures,
    log,
    wall_now,
)
from lamina.engine.pollers.sources import ShardView, StreamView
from lamina.errors import AwsError

if TYPE_CHECKING:
    from lamina.engine.pollers.manager import Pollers

STREAM_BUFFER = 10_000  # records read ahead per shard
PARENT_WAIT_S = 1.0  # in a cluster: how often a child shard looks at its parent's checkpoint


def lane_of(partition_key: str, lanes: int) -> int:
    if lanes == 1:
        return 0
    digest = hashlib.md5(partition_key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8]) % lanes


@dataclass
class Lane:
    records: deque[Any] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    since: float = 0.0  # monotonic time the oldest waiting record was dealt


class ShardWorker(Interruptible):
    """Reads one shard from its checkpoint and deals its records to lanes. A shard that
    has a parent starts once the parent's worker has finished; a closed shard's worker
    finishes when every record of it is done."""

    def __init__(
        self,
        poller: StreamPoller,
        stream: StreamView,
        shard: ShardView,
        position: int,
        after: ShardWorker | None = None,
        parent: ShardView | None = None,
    ) -> None:
        super().__init__()  # stopping: its shard given back, the batches in flight finish
        self.poller = poller
        self.after = after
        self.parent = parent  # in a cluster: a parent shard another node may be reading
        self.task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.ended = False
        self.stream = stream
        self.shard = shard
        self.position = position  # the checkpoint: every record before it is done
        self.read_n = position
        self.pending: deque[int] = deque()
        self.done: set[int] = set()
        self.lanes = [Lane() for _ in range(poller.config.get("ParallelizationFactor") or 1)]
        self.drained = asyncio.Event()

    async def run(self) -> None:
        with contextlib.suppress(Stopped):
            if self.after is not None:  # the parent shard first: a key's order holds
                await self.idle(self.after.finished.wait())
            if self.parent is not None:
                await self._parent_done()
        if self.poller.stopping or self.stopping:
            return
        async with asyncio.TaskGroup() as group:
            for lane in self.lanes:
                group.create_task(self._lane(lane))
            with contextlib.suppress(Stopped):
                await self._read()

    def stop(self) -> None:
        """Stop reading (its lease is given back): waits end, batches in flight finish."""
        self.interrupt()

    async def _wait(self, task: asyncio.Future[Any]) -> Any:
        return await self.poller.idle(task)  # the poller's stop interrupts it too

    async def _parent_done(self) -> None:
        """Wait until the parent shard is read to its end, by whichever node: its
        checkpoint in the database reaches its end."""
        parent, poller = self.parent, self.poller
        assert parent is not None
        while not (poller.stopping or self.stopping):
            end = parent.end()
            if end is not None:
                done = poller.owner.store.checkpoints(poller.uuid).get(parent.index)
                if (done is not None and done >= end) or parent.trim_horizon() >= end:
                    return
            await self.idle(asyncio.sleep(PARENT_WAIT_S))

    async def _finish(self) -> None:
        """The shard is closed and read to its end: once its last batches are done, the
        worker ends and its children may start."""
        while self.pending:
            self.drained.clear()
            await self.idle(self.drained.wait())
        self.ended = True
        for lane in self.lanes:
            lane.ready.set()
        self.finished.set()

    async def _read(self) -> None:
        shard = self.shard
        poller = self.poller
        while not (poller.stopping or self.stopping):
            room = STREAM_BUFFER - len(self.pending)
            if room <= 0:
                self.drained.clear()
                await self.idle(self.drained.wait())
                continue
            if self.stream.deleted:
                poller.set_result(SOURCE_MISSING)
                return
            records = shard.read(self.read_n, min(room, 1000))
            if not records:
                horizon = shard.trim_horizon()
                if horizon > self.read_n:  # records ran past their retention unread
                    self._skip_to(horizon)
                    continue
                end = shard.end()
                if end is not None and self.read_n >= end:
                    await self._finish()
                    return
                await self.idle(shard.wait(self.read_n, IDLE_WAIT))
                continue
            now = time.monotonic()
            dropped = False
            keep: list[bool] | None = None
            if poller.patterns():  # records that match no filter are done at once
                events = shard.records(records, poller.config.get("_Role", ""))
                keep = poller.kept(events, shard.filter_form)
            for index, record in enumerate(records):
                if keep is not None and not keep[index]:
                    self.pending.append(record.n)
                    self.done.add(record.n)
                    poller.stats.filtered += 1
                    dropped = True
                    continue
                lane = self.lanes[lane_of(record.partition_key, len(self.lanes))]
                if not lane.records:
                    lane.since = now
                lane.records.append(record)
                lane.ready.set()
                self.pending.append(record.n)
            self.read_n = records[-1].n + 1
            if dropped:
                self._advance()

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
        while not (poller.stopping or self.stopping):
            if not lane.records:
                if self.ended:
                    return
                lane.ready.clear()
                await self.idle(lane.ready.wait())
                continue
            batch_size = poller.config["BatchSize"]
            window = poller.config.get("MaximumBatchingWindowInSeconds") or 0
            if window and len(lane.records) < batch_size:
                remaining = lane.since + clock.platform_delay(window) - time.monotonic()
                if remaining > 0:
                    lane.ready.clear()
                    await self.idle(wait_event(lane.ready, remaining))
                    continue
            batch: list[Any] = []
            size = 0
            while lane.records and len(batch) < batch_size:
                record = lane.records[0]
                cost = self.shard.cost(record)
                if batch and size + cost > PAYLOAD_BUDGET:
                    break
                batch.append(lane.records.popleft())
                size += cost
            lane.since = time.monotonic()
            age = max(0, int((wall_now() - batch[-1].arrival) * 1000))
            poller.stats.iterator_age_ms[self.shard.id] = age
            if poller.owner.recorder is not None:  # the IteratorAge metric
                poller.owner.recorder.iterator_age(function_key(poller.config), age)
            await poller.process(self.shard, batch)
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
    def __init__(self, owner: Pollers, config: dict[str, Any], after: Poller | None) -> None:
        self.lanes = config.get("ParallelizationFactor") or 1
        self.workers: dict[str, ShardWorker] = {}
        self.leases_changed = asyncio.Event()  # in a cluster: this node took shards
        super().__init__(owner, config, after)

    async def drop_shard(self, index: int, grace: float = 0.0) -> None:
        """Stop reading a shard whose lease this node gives back (its batches in flight
        finish within `grace` seconds) or lost (grace 0: abandoned at once). The next
        reader starts from the checkpoint."""
        for shard_id, worker in list(self.workers.items()):
            if worker.shard.index == index:
                del self.workers[shard_id]
                if worker.task is None:
                    continue
                if grace > 0:
                    worker.stop()
                    await asyncio.wait({worker.task}, timeout=grace)
                if not worker.task.done():
                    worker.task.cancel()
                    await asyncio.wait({worker.task})

    async def run(self) -> None:
        owner = self.owner
        stream = owner.stream(self.config["EventSourceArn"])
        if stream is None:
            self.set_result(SOURCE_MISSING)
            return
        workers = self.workers
        shared = owner.store.shared
        async with asyncio.TaskGroup() as group:
            with contextlib.suppress(Stopped):
                while not self.stopping:
                    self.leases_changed.clear()
                    shards = stream.shards()
                    # Read when a shard is started: another node may have advanced it.
                    checkpoints: dict[int, int] | None = None
                    for shard in shards:  # shards that appeared (a handover), or leased
                        if shard.id in workers or not owner.holds(self.uuid, shard.index):
                            continue
                        if checkpoints is None:
                            checkpoints = owner.store.checkpoints(self.uuid)
                        position = checkpoints.get(shard.index)
                        if position is None:  # a child shard: read from its beginning
                            position = shard.trim_horizon()
                            owner.store.set_checkpoint(self.uuid, shard.index, position)
                        parent = workers.get(shard.parent) if shard.parent else None
                        parent_shard = None
                        if shard.parent and shared:  # its reader may be another node
                            parent, parent_shard = (
                                None,
                                next((s for s in shards if s.id == shard.parent), None),
                            )
                        worker = ShardWorker(self, stream, shard, position, parent, parent_shard)
                        workers[shard.id] = worker
                        worker.task = group.create_task(worker.run())
                    await self.idle(_either(stream.changed(IDLE_WAIT), self.leases_changed.wait()))

    async def process(self, shard: ShardView, batch: list[Any]) -> None:
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

            def too_old(records: list[Any] = piece, max_age: int = max_age) -> bool:
                if max_age is None or max_age < 0:
                    return False
                return wall_now() - records[0].arrival > clock.platform_delay(max_age)

            if too_old():
                self._give_up(shard, piece, "RecordAgeExceeded", attempts, None)
                pieces.pop(0)
                continue
            records = shard.records(piece, config.get("_Role", ""))
            payload = json.dumps({"Records": records}).encode()
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
                    self._give_up(shard, piece, "RecordAgeExceeded", attempts, None)
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
                sequences = [shard.sequence_number(r) for r in piece]
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
                self._give_up(shard, piece, "RetryAttemptsExhausted", attempts, result)
                pieces.pop(0)
                retries = 0
                continue
            await self.idle(clock.sleep(delay))
            delay = min(delay * 2, RETRY_BACKOFF[1])

    def _give_up(
        self,
        shard: ShardView,
        records: list[Any],
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
            **shard.batch_info(records),
        }
        if self.owner.queues.send_internal(destination, json.dumps(document)) is None:
            log.warning(
                "mapping %s: on-failure destination %s does not exist", self.uuid, destination
            )


async def _either(*awaitables: Awaitable[Any]) -> None:
    """Wait for the first of them; the others are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()

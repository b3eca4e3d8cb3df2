"""The pollers of every event source mapping: started, stopped and restarted to match
the mappings' records, which the control layer owns (control/mappings.py).

A mapping's record is shared with its poller: an update applies to the next batch. A
poller that must restart (ParallelizationFactor changed) starts only after the one it
replaces has finished, so a shard never has two readers.

In a cluster (the mappings' store shared), each shard of a stream mapping is read by one
node at a time, the holder of the shard's lease (as the KCL's lease table has it): every
node runs the mapping's poller, which reads the shards this node holds. Each node renews
its leases every LEASE_BEAT_S and takes free ones up to its share (the shards over the
live nodes, rounded up), giving back what is beyond it, so that a node that joins gets
its share; a lease not renewed for LEASE_EXPIRY_S (the node died) is free, and
the node that takes it resumes from the shard's checkpoint in the database (records after
a checkpoint may be processed again, none is skipped). SQS mappings poll from every node:
their receives are claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from lamina.clock import Clock
from lamina.engine.pollers.base import MappingStats, Poller
from lamina.engine.pollers.queue import QueuePoller
from lamina.engine.pollers.sources import (
    IteratorAgeRecorder,
    MappingTarget,
    QueueSource,
    ShardView,
    StreamSource,
    StreamView,
)
from lamina.engine.pollers.stream import StreamPoller
from lamina.store.mappings import MappingStore
from lamina.tasks import stop_task

LEASE_BEAT_S = 2.0
LEASE_EXPIRY_S = 6.0
# A shard given back finishes its batches in flight this long before its lease is freed
# (within its expiry: nobody else reads it meanwhile); then they are abandoned.
HANDBACK_GRACE_S = 3.0
log = logging.getLogger("lamina.pollers")


def source_service(arn: str) -> str:
    """The service of an event source ARN: `sqs`, `kinesis`, ..."""
    parts = arn.split(":")
    return parts[2] if len(parts) > 2 else ""


class Pollers:
    def __init__(
        self,
        queues: QueueSource,
        streams: Mapping[str, StreamSource],
        target: MappingTarget,
        store: MappingStore,
        clock: Clock,
        recorder: IteratorAgeRecorder | None = None,
    ) -> None:
        self.queues = queues
        self.streams = streams  # by the service of their ARNs
        self.target = target
        self.store = store  # checkpoints, and the records' LastProcessingResult
        self.clock = clock
        self.recorder = recorder
        self.pollers: dict[str, Poller] = {}
        self.retiring: set[Poller] = set()
        self.stats: dict[str, MappingStats] = {}
        self.started = False
        self.node = uuid.uuid4().hex[:12]
        self.held: set[tuple[str, int]] = set()  # cluster mode: (mapping, shard) leases
        self._leasing: asyncio.Task[None] | None = None
        self._handbacks: set[asyncio.Task[None]] = set()
        self._leaving: set[tuple[str, int]] = set()  # being given back: not taken again

    # Lifecycle ------------------------------------------------------------------------
    def start(self, records: Iterable[dict[str, Any]]) -> None:
        """Resume every enabled mapping (from its checkpoints)."""
        self.started = True
        for record in records:
            self.apply(record)
        if self.store.shared:
            self._leasing = asyncio.get_running_loop().create_task(self._lease_forever())

    def holds(self, uuid_: str, shard: int) -> bool:
        """Whether this node reads the shard for the mapping (always, on a single node)."""
        return not self.store.shared or (uuid_, shard) in self.held

    async def _lease_forever(self) -> None:
        renewed = time.monotonic()
        while True:
            try:
                await self._lease_round()
                renewed = time.monotonic()
            except Exception as error:  # the store away: keep what is held, retry
                log.warning("shard leases: %s", error)
                if time.monotonic() - renewed > LEASE_EXPIRY_S - LEASE_BEAT_S:
                    await self._drop(set(self.held), release=False)  # others may take them
            await asyncio.sleep(LEASE_BEAT_S)

    def _shards(self) -> list[tuple[str, int]]:
        """(mapping, shard) of every enabled stream mapping's open shards."""
        found: list[tuple[str, int]] = []
        for uuid_, poller in list(self.pollers.items()):
            if not isinstance(poller, StreamPoller):
                continue
            stream = self.stream(poller.config["EventSourceArn"])
            if stream is not None:
                found.extend((uuid_, shard.index) for shard in stream.shards())
        return found

    async def _lease_round(self) -> None:
        wanted = self._shards()
        store, node, wall = self.store, self.node, self.clock.wall
        open_shards = set(wanted)
        gone = self.held - open_shards  # mappings stopped, disabled or deleted here
        if gone:
            await self._drop(gone)
        kept = set()
        for uuid_, shard in list(self.held):
            if await asyncio.to_thread(store.lease, uuid_, shard, node, wall(), LEASE_EXPIRY_S):
                kept.add((uuid_, shard))
        lost = self.held - kept  # not renewed in time: another node has it now
        if lost:
            await self._drop(lost, release=False)
        # Said after the leases are renewed, so a dead node's leases run out before it
        # stops being counted: then the others' shares grow and they take them.
        nodes = await asyncio.to_thread(store.beat, node, wall(), LEASE_EXPIRY_S)
        share = math.ceil(len(wanted) / nodes) if wanted else 0
        free = [key for key in wanted if key not in kept and key not in self._leaving]
        random.shuffle(free)
        taken: set[tuple[str, int]] = set()
        for uuid_, shard in free:
            if len(kept) + len(taken) >= share:
                break
            if await asyncio.to_thread(store.lease, uuid_, shard, node, wall(), LEASE_EXPIRY_S):
                taken.add((uuid_, shard))
        self.held = kept | taken
        if len(self.held) > share:  # beyond its share (a node joined): given back
            await self._drop(set(random.sample(sorted(self.held), len(self.held) - share)))
        self._tell({uuid_ for uuid_, _ in taken})

    async def _drop(self, keys: set[tuple[str, int]], release: bool = True) -> None:
        """Stop reading these shards: given back (release: their batches in flight finish
        first, then their leases are freed, off the lease beat), or lost (at once)."""
        self.held -= keys
        for uuid_, shard in keys:
            if release:
                self._leaving.add((uuid_, shard))
                task = asyncio.get_running_loop().create_task(self._hand_back(uuid_, shard))
                self._handbacks.add(task)
                task.add_done_callback(self._handbacks.discard)
                continue
            poller = self.pollers.get(uuid_)
            if isinstance(poller, StreamPoller):
                await poller.drop_shard(shard)

    async def _hand_back(self, uuid_: str, shard: int) -> None:
        try:
            poller = self.pollers.get(uuid_)
            if isinstance(poller, StreamPoller):
                await poller.drop_shard(shard, HANDBACK_GRACE_S)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, uuid_, shard, self.node)
        finally:
            self._leaving.discard((uuid_, shard))

    def _tell(self, mappings: set[str]) -> None:
        for uuid_ in mappings:
            poller = self.pollers.get(uuid_)
            if isinstance(poller, StreamPoller):
                poller.leases_changed.set()

    async def close(self) -> None:
        self.started = False
        await stop_task(self._leasing)
        if self._handbacks:  # shards being given back: their batches finish, leases freed
            await asyncio.wait(set(self._handbacks), timeout=HANDBACK_GRACE_S + 1)
        pollers = [*self.pollers.values(), *self.retiring]
        self.pollers.clear()
        self.retiring.clear()
        for poller in pollers:
            poller.stopping = True
            poller.task.cancel()
        if pollers:
            await asyncio.wait({p.task for p in pollers})
        for uuid_, shard in list(self.held):  # stopped: another node takes over at once
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, uuid_, shard, self.node)
        self.held.clear()
        if self.store.shared:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.leave, self.node)

    def apply(self, record: dict[str, Any], restart: bool = False) -> None:
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
            is_queue = source_service(record["EventSourceArn"]) == "sqs"
            kind = QueuePoller if is_queue else StreamPoller
            self.pollers[uuid_] = kind(self, record, current)

    def save(self, record: dict[str, Any]) -> None:
        self.store.update(record["UUID"], record)

    def stats_view(self) -> dict[str, Any]:
        return {uuid_: stats.as_dict() for uuid_, stats in self.stats.items()}

    # Streams --------------------------------------------------------------------------
    def stream(self, arn: str) -> StreamView | None:
        source = self.streams.get(source_service(arn))
        return None if source is None else source.stream(arn)

    @staticmethod
    def starting_position(config: dict[str, Any], shard: ShardView) -> int:
        kind = config.get("StartingPosition")
        if kind == "LATEST":
            return shard.latest()
        if kind == "AT_TIMESTAMP":
            return shard.at_timestamp(config.get("StartingPositionTimestamp") or 0)
        return shard.trim_horizon()

    def fix_start(self, uuid_: str, config: dict[str, Any]) -> None:
        """Persist a new stream mapping's starting point in each shard now, so that a
        restart does not move it (LATEST)."""
        stream = self.stream(config["EventSourceArn"])
        if stream is None:
            return
        for shard in stream.shards():
            self.store.set_checkpoint(uuid_, shard.index, self.starting_position(config, shard))

"""The pollers of every event source mapping: started, stopped and restarted to match
the mappings' records, which the control layer owns (control/mappings.py).

A mapping's record is shared with its poller: an update applies to the next batch. A
poller that must restart (ParallelizationFactor changed) starts only after the one it
replaces has finished, so a shard never has two readers.

In a cluster (the mappings' store shared), a stream mapping's pollers run on one node at
a time, the holder of its lease: each node renews its leases every LEASE_BEAT_S; a lease
not renewed for LEASE_EXPIRY_S (the node died) is taken by another node, whose pollers
resume from the checkpoints in the database (records after a checkpoint may be processed
again, none is skipped). SQS mappings poll from every node: their receives are claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
        self.leased: set[str] = set()  # cluster mode: stream mappings this node polls
        self._records: Iterable[dict[str, Any]] = ()
        self._leasing: asyncio.Task[None] | None = None

    # Lifecycle ------------------------------------------------------------------------
    def start(self, records: Iterable[dict[str, Any]]) -> None:
        """Resume every enabled mapping (from its checkpoints)."""
        self.started = True
        self._records = records
        for record in records:
            self.apply(record)
        if self.store.shared:
            self._leasing = asyncio.get_running_loop().create_task(self._lease_forever())

    def _leased_only(self, record: dict[str, Any]) -> bool:
        return self.store.shared and source_service(record["EventSourceArn"]) != "sqs"

    async def _lease_forever(self) -> None:
        while True:
            for record in list(self._records):
                uuid_ = record["UUID"]
                if not self._leased_only(record) or record["State"] != "Enabled":
                    continue
                try:
                    held = await asyncio.to_thread(
                        self.store.lease, uuid_, self.node, self.clock.wall(), LEASE_EXPIRY_S
                    )
                except Exception as error:  # the store away: keep what is held, retry
                    log.warning("mapping leases: %s", error)
                    continue
                if held != (uuid_ in self.leased):
                    (self.leased.add if held else self.leased.discard)(uuid_)
                    self.apply(record)
            await asyncio.sleep(LEASE_BEAT_S)

    async def close(self) -> None:
        self.started = False
        await stop_task(self._leasing)
        pollers = [*self.pollers.values(), *self.retiring]
        self.pollers.clear()
        self.retiring.clear()
        for poller in pollers:
            poller.stopping = True
            poller.task.cancel()
        if pollers:
            await asyncio.wait({p.task for p in pollers})
        for uuid_ in list(self.leased):  # stopped: another node takes over at once
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, uuid_, self.node)
        self.leased.clear()

    def apply(self, record: dict[str, Any], restart: bool = False) -> None:
        """Make the pollers match the record: start, stop or restart."""
        uuid_ = record["UUID"]
        current = self.pollers.get(uuid_)
        wanted = record["State"] == "Enabled" and self.started
        if wanted and self._leased_only(record):
            wanted = uuid_ in self.leased  # in a cluster: only where its lease is held
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

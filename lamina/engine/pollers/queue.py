"""The poller of an SQS mapping: long-polls the queue and invokes with batches.

Batches in flight start at 5 and grow by 300 a minute, up to
ScalingConfig.MaximumConcurrency (2-1000) or 1250, falling back to 5 when the function
is throttled. FIFO message groups stay in order because a group with a message in
flight is not received from. A batch is deleted on success; on failure its messages
become visible again when their visibility timeout ends (only the failed ones when the
function reports batch item failures). A throttled batch stays hidden while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from lamina.clock import wait_event
from lamina.engine.pollers.base import (
    FUNCTION_MISSING,
    IDLE_WAIT,
    PAYLOAD_BUDGET,
    PROBLEM_WAIT,
    SOURCE_MISSING,
    Poller,
    Stopped,
    item_failures,
    log,
)
from lamina.engine.pollers.sources import QueueView
from lamina.errors import AwsError

if TYPE_CHECKING:
    from lamina.engine.pollers.manager import Pollers

SQS_START_CONCURRENCY = 5  # batches in flight when an SQS mapping starts
SQS_SCALE_PER_MINUTE = 300
SQS_MAX_CONCURRENCY = 1250


class QueuePoller(Poller):
    def __init__(self, owner: Pollers, config: dict[str, Any], after: Poller | None) -> None:
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
        while not self.stopping:
            while self.in_flight >= self.limit():
                self._freed.clear()
                step = self.owner.clock.platform_delay(60.0 / SQS_SCALE_PER_MINUTE)
                await self.idle(wait_event(self._freed, step))
            queue = self.owner.queues.queue(self.config["EventSourceArn"])
            if queue is None or not self.owner.target.exists(self.config):
                self.set_result(SOURCE_MISSING if queue is None else FUNCTION_MISSING)
                await self.idle(self.owner.clock.sleep(PROBLEM_WAIT))
                continue
            batch_size = self.config["BatchSize"]
            window = self.config.get("MaximumBatchingWindowInSeconds") or 0
            try:
                claims = await self.idle(queue.poll(batch_size, window, PAYLOAD_BUDGET, IDLE_WAIT))
            except AwsError:  # the queue was deleted while we waited
                continue
            if not claims:
                self.busy_since = self.owner.clock.platform_now()
                continue
            records = queue.records(claims)
            keep = self.kept(records, queue.filter_form)
            if not all(keep):  # messages that match no filter are deleted, as on AWS
                dropped = [c for c, k in zip(claims, keep, strict=True) if not k]
                self.stats.filtered += queue.settle(dropped)
                claims = [c for c, k in zip(claims, keep, strict=True) if k]
                records = [r for r, k in zip(records, keep, strict=True) if k]
                if not claims:
                    continue
            self.in_flight += 1
            group.create_task(self._handle(queue, claims, records))

    async def _handle(
        self, queue: QueueView, claims: list[Any], records: list[dict[str, Any]]
    ) -> None:
        self.started()
        try:
            await self._process(queue, claims, records)
        except Stopped:
            queue.release([c for c in claims if c.owned])
        except Exception:
            log.exception("event source mapping %s: batch failed", self.uuid)
        finally:
            self.ended()
            self.in_flight -= 1
            self._freed.set()

    async def _process(
        self, queue: QueueView, claims: list[Any], records: list[dict[str, Any]]
    ) -> None:
        visibility = queue.visibility_timeout
        held = claims

        def hold(wait: float) -> bool:
            nonlocal held
            self.busy_since = self.owner.clock.platform_now()  # throttled: scale back to 5
            held = queue.hold(held, visibility + wait)
            return bool(held) and not self.stopping

        payload = json.dumps({"Records": records}).encode()
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
        self.stats.deleted += queue.settle(done)

"""The concurrency gauges' sampler: once a second, the counting service's figures into the
metrics (observe/metrics.py).

A single node samples its own counts: every execution is its own. A cluster's node samples
its own too (the live view, /metrics and the provisioned invocation counts are the node's),
but the CloudWatch gauges (ConcurrentExecutions and its kin) are the cluster's: they come
from `shared`, the figures of every node's executions together, which one node at a time
gets (lamina/cluster/gauges.py) and the others read from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from lamina.observe.metrics import Metrics
from lamina.tasks import stop_task

log = logging.getLogger("lamina.metrics")

SAMPLE_INTERVAL = 1.0  # seconds between gauge samples

Figures = Iterable[dict[str, Any]]


class Sampler:
    """Samples the counting service into `metrics` every `interval` seconds (real time:
    gauges are read as often whatever the time scale). `shared`: a cluster's figures,
    None when another node samples them (or they cannot be read)."""

    def __init__(
        self,
        metrics: Metrics,
        source: Callable[[], Figures],
        interval: float = SAMPLE_INTERVAL,
        shared: Callable[[], Awaitable[Figures | None]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.source = source
        self.interval = interval
        self.shared = shared
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.metrics.sample(self.source(), gauges=self.shared is None)
            except Exception:
                log.exception("sampling the counting service failed")
            if self.shared is None:
                continue
            try:
                found = await self.shared()
                if found is not None:
                    self.metrics.sample_gauges(found)
            except Exception:
                log.exception("sampling the cluster's counts failed")

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

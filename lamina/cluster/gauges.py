"""The cluster's concurrency gauges, sampled from Redis's counts by one node at a time.

Every node's executions are counted in Redis, so ConcurrentExecutions and its kin are
sampled there: a node that samples only its own would make a minute's Maximum the busiest
node's, not the cluster's. One node samples (scripts.SAMPLE): the holder of a short lease
(`lamina:gauges`), taken when free and renewed by each sample, so when that node stops
another takes over within LEASE seconds. The admission script keeps each count's peak
since the last sample and the sample starts them anew, so whichever node samples, the
gauges carry the exact peaks of the cluster's executions; the sampling node writes them
into its metrics and the other nodes read them from the store (observe/metric_keeper.py).
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lamina.cluster import scripts

log = logging.getLogger("lamina.cluster")

LEASE = 3.0  # seconds the sampling node holds its lease past its last sample
KEY = "lamina:gauges"


class ClusterGauges:
    def __init__(self, client: aioredis.Redis, node: str, lease: float = LEASE) -> None:
        self.node = node
        self._lease_ms = str(int(lease * 1000))
        self._sample = client.register_script(scripts.SAMPLE)
        self.sampling = False  # this node held the lease at its last sample

    async def sample(self) -> list[dict[str, Any]] | None:
        """Every scope's gauges, in the shape of `Counters.sample()`, when this node
        samples for the cluster (it takes the lease if it is free); None when another node
        does, or Redis cannot be reached (its next holder finds the peaks kept)."""
        try:
            reply = await self._sample([KEY, "lamina:scopes"], [self.node, self._lease_ms])
        except (RedisError, OSError) as exc:
            if self.sampling:
                log.warning("cluster: cannot sample the cluster's gauges: %s", exc)
            self.sampling = False
            return None
        sampling = bool(reply[0])
        if sampling and not self.sampling:
            log.info("cluster: this node samples the cluster's concurrency gauges")
        self.sampling = sampling
        return [_figures(entry) for entry in reply[1:]] if sampling else None


def _figures(entry: list[Any]) -> dict[str, Any]:
    scope, limit, reserved, provisioned, unreserved, in_flight, peak, unreserved_peak = entry[:8]
    account, region = scope.decode().split("/", 1)
    return {
        "Account": account,
        "Region": region,
        "ConcurrentExecutions": in_flight,
        "AccountLimit": limit,
        "UnreservedConcurrentExecutions": limit - reserved - provisioned,
        "UnreservedInUse": unreserved,
        "PeakConcurrentExecutions": peak,
        "PeakUnreservedInUse": unreserved_peak,
        "Functions": {
            name.decode(): {
                "ConcurrentExecutions": busy,
                "PeakConcurrentExecutions": busy_peak,
                "ProvisionedConcurrency": configured,
                "ProvisionedConcurrentExecutions": provisioned_busy,
                "PeakProvisionedConcurrentExecutions": provisioned_peak,
            }
            for name, busy, busy_peak, configured, provisioned_busy, provisioned_peak in entry[8]
        },
    }

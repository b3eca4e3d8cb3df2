"""This node's membership in a cluster: its identity and its heartbeat.

The node's leases live as long as it heartbeats (every `heartbeat` seconds; they expire
`expiry` seconds after the last one). Each heartbeat also takes back the leases of nodes
past their expiry, and tells Redis what this node runs (for `lamina cluster status`).
With Redis unreachable the heartbeat keeps trying, at the same pace; when Redis answers
again the node's leases are put back if Redis had lost or taken them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lamina.cluster.counting import RedisCounting
from lamina.engine.counting import CountingUnavailable
from lamina.tasks import stop_task

log = logging.getLogger("lamina.cluster")


def node_id(name: str) -> str:
    """A name for this process's time in the cluster: a node restarted under the same name
    is another incarnation, and the leases of the one before expire on their own."""
    return f"{name}.{secrets.token_hex(3)}".replace("{", "(").replace("}", ")")


class ClusterNode:
    def __init__(
        self,
        counting: RedisCounting,
        name: str,
        advertise: str,
        heartbeat: float,
        expiry: float,
        describe: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.counting = counting
        self.name = name
        self.advertise = advertise
        self.heartbeat = heartbeat
        self.expiry = expiry
        self.describe = describe or dict
        # More of what the node says of itself, and what follows each heartbeat.
        self.details: list[Callable[[], dict[str, str]]] = []
        self.after_beat: list[Callable[[], Awaitable[None]]] = []
        self.started = time.time()
        self.reachable = False
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.counting.node

    def info(self) -> dict[str, str]:
        extra = {k: v for details in self.details for k, v in details().items()}
        return {
            **extra,
            "name": self.name,
            "advertise": self.advertise,
            "pid": str(os.getpid()),
            "started": repr(self.started),
            "heartbeat": repr(time.time()),
            "leases": str(self.counting.leases()),
            "environments": json.dumps(self.describe(), separators=(",", ":")),
        }

    async def beat(self) -> None:
        """One heartbeat; logs (once per outage) when Redis cannot be reached."""
        try:
            await self.counting.heartbeat(self.expiry, self.info())
        except CountingUnavailable as exc:
            if self.reachable or self._task is None:
                log.error("cluster: %s; invocations are refused until it answers", exc)
            self.reachable = False
            return
        if not self.reachable:
            log.info("cluster: node %s (%s) heartbeating to Redis", self.id, self.advertise)
        self.reachable = True
        for hook in self.after_beat:
            await hook()

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await self.beat()

    async def close(self) -> None:
        await stop_task(self._task)
        await self.counting.close()

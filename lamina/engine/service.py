"""The engine as the control plane sees it: admit, invoke, retire, close."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from lamina.clock import Clock
from lamina.engine.concurrency import Counters, Throttle
from lamina.engine.invoker import Invoker, InvokeRequest, InvokeResult
from lamina.engine.pool import Pools
from lamina.keys import FunctionKey
from lamina.observe.logs import LogStore
from lamina.sandbox.environment import Environment
from lamina.sandbox.launch import FunctionImage


class Throttled(Exception):
    """The counting service refused the invocation; nothing was started."""

    def __init__(self, reason: Throttle, retry_after: float) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.retry_after = retry_after


class Engine:
    def __init__(
        self,
        scratch_root: Path,
        clock: Clock,
        keep_alive: float,
        logs: LogStore,
        counters: Counters,
        python: str = "",
    ) -> None:
        self.scratch_root = scratch_root
        shutil.rmtree(scratch_root, ignore_errors=True)  # leftovers of a crashed run
        scratch_root.mkdir(parents=True, exist_ok=True)
        self.python = python or sys.executable
        self.clock = clock
        self.logs = logs
        self.counters = counters
        self.pools = Pools(self._new_environment, clock, keep_alive)
        self.invoker = Invoker(logs)

    def _new_environment(self, key: FunctionKey, image: FunctionImage) -> Environment:
        return Environment(
            image,
            self.scratch_root,
            python=self.python,
            output=self.logs.log(key).write,
        )

    async def invoke(
        self, key: FunctionKey, image: FunctionImage, request: InvokeRequest
    ) -> InvokeResult:
        """Run one invocation under a lease, or raise Throttled before touching anything."""
        counter = self.counters.of(key)
        pool = self.pools.pool_for(key, image)
        # No await between this check and pool.acquire(): the answer still holds there.
        decision = counter.acquire(
            key, self.clock.platform_now(), new_environment=not pool.has_ready()
        )
        if decision.lease is None:
            assert decision.throttle is not None
            raise Throttled(decision.throttle, decision.retry_after)
        try:
            return await self.invoker.invoke(pool, request)
        finally:
            counter.release(decision.lease)  # on every path, cancellation included

    async def retire(self, key: FunctionKey) -> None:
        self.pools.retire(key)

    async def close(self) -> None:
        await self.pools.close()

"""The engine as the control plane sees it: invoke, retire, close."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from lamina.clock import Clock
from lamina.engine.invoker import Invoker, InvokeRequest, InvokeResult
from lamina.engine.pool import Pools
from lamina.keys import FunctionKey
from lamina.observe.logs import LogStore
from lamina.sandbox.environment import Environment
from lamina.sandbox.launch import FunctionImage


class Engine:
    def __init__(
        self, scratch_root: Path, clock: Clock, keep_alive: float, logs: LogStore, python: str = ""
    ) -> None:
        self.scratch_root = scratch_root
        shutil.rmtree(scratch_root, ignore_errors=True)  # leftovers of a crashed run
        scratch_root.mkdir(parents=True, exist_ok=True)
        self.python = python or sys.executable
        self.logs = logs
        self.pools = Pools(self._new_environment, clock, keep_alive)
        self.invoker = Invoker(self.pools, logs)

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
        return await self.invoker.invoke(key, image, request)

    async def retire(self, key: FunctionKey) -> None:
        self.pools.retire(key)

    async def close(self) -> None:
        await self.pools.close()

"""On-demand execution environments per function version: idle ones reused
most-recently-used first, reclaimed after the keep-alive, retired when the version changes.

Each FunctionPool is owned by the event loop; nothing else touches its lists. Stopping
environments happens in tasks that belong to `Pools` and are awaited on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from lamina.clock import Clock
from lamina.keys import FunctionKey
from lamina.sandbox.environment import Environment, State
from lamina.sandbox.launch import FunctionImage

log = logging.getLogger("lamina.pool")

EnvironmentFactory = Callable[[FunctionKey, FunctionImage], Environment]


class FunctionPool:
    def __init__(self, key: FunctionKey, image: FunctionImage, owner: Pools) -> None:
        self.key = key
        self.image = image
        self.owner = owner
        self.idle: list[Environment] = []  # most recently used last
        self.busy: set[Environment] = set()
        self.retired = False
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def acquire(self) -> tuple[Environment, bool]:
        """An environment to run on, and whether it is new (a cold start)."""
        while self.idle:
            env = self.idle.pop()
            self._cancel_timer(env)
            if env.state is State.READY:
                self.busy.add(env)
                return env, False
            self.owner.stop_later(env)
        env = self.owner.factory(self.key, self.image)
        self.busy.add(env)
        return env, True

    def has_ready(self) -> bool:
        """Whether acquire() would reuse an environment rather than start one."""
        return any(env.state is State.READY for env in self.idle)

    def release(self, env: Environment) -> None:
        self.busy.discard(env)
        if self.retired or env.state is not State.READY:
            self.owner.stop_later(env)
            return
        self.idle.append(env)
        self._timers[env.id] = self.owner.clock.call_later(self.owner.keep_alive, self._reap, env)

    def _reap(self, env: Environment) -> None:
        self._timers.pop(env.id, None)
        if env in self.idle:
            self.idle.remove(env)
            self.owner.stop_later(env)

    def _cancel_timer(self, env: Environment) -> None:
        timer = self._timers.pop(env.id, None)
        if timer is not None:
            timer.cancel()

    def retire(self) -> None:
        """Stop idle environments now and busy ones when they are released."""
        self.retired = True
        for env in self.idle:
            self._cancel_timer(env)
            self.owner.stop_later(env)
        self.idle.clear()

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy)


class Pools:
    def __init__(self, factory: EnvironmentFactory, clock: Clock, keep_alive: float) -> None:
        self.factory = factory
        self.clock = clock
        self.keep_alive = keep_alive
        self.pools: dict[tuple[FunctionKey, str], FunctionPool] = {}  # by (function, version)
        self._stopping: set[asyncio.Task[None]] = set()
        self.closed = False

    def pool_for(self, key: FunctionKey, image: FunctionImage) -> FunctionPool:
        pool = self.pools.get((key, image.version))
        if pool is not None and pool.image.revision == image.revision:
            return pool
        if pool is not None:
            pool.retire()  # the function changed: its environments run the old code
        pool = self.pools[(key, image.version)] = FunctionPool(key, image, self)
        return pool

    def retire(self, key: FunctionKey, version: str | None = None) -> None:
        """Retire the pools of one version, or with None of every version of the function."""
        for pool_key in [k for k in self.pools if k[0] == key and version in (None, k[1])]:
            self.pools.pop(pool_key).retire()

    def stop_later(self, env: Environment) -> None:
        task = asyncio.get_running_loop().create_task(env.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def environments(self) -> list[Environment]:
        return [env for pool in self.pools.values() for env in (*pool.idle, *pool.busy)]

    async def close(self) -> None:
        """Stop every environment, busy or idle, and wait until all are gone."""
        self.closed = True
        everything = self.environments()
        for pool in self.pools.values():
            pool.retire()
        self.pools.clear()
        for env in everything:
            self.stop_later(env)
        while self._stopping:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._stopping), return_exceptions=True)

"""On-demand execution environments per function version: idle ones reused
most-recently-used first, reclaimed after the keep-alive, retired when the version changes.
The policy (which one is reused, when one is reclaimed) is engine/policy.py's IdleStack,
which the planner runs too; this module owns the processes and the reaping timer.

Each FunctionPool is owned by the event loop; nothing else touches its lists. Stopping
environments happens in tasks that belong to `Pools` and are awaited on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from lamina.clock import Clock
from lamina.engine.placement import PoolListener
from lamina.engine.policy import IdleStack
from lamina.keys import FunctionKey
from lamina.sandbox.environment import Environment, State
from lamina.sandbox.launch import FunctionImage

log = logging.getLogger("lamina.pool")

EnvironmentFactory = Callable[[FunctionKey, FunctionImage], Environment]


class FunctionPool:
    def __init__(
        self, key: FunctionKey, image: FunctionImage, owner: Pools, tenant: str | None = None
    ) -> None:
        self.key = key
        self.image = image
        self.owner = owner
        self.tenant = tenant  # tenant isolation: its environments serve this tenant only
        # Told of idle / taken environments (a cluster's registry); never of a tenant's.
        self.listener = owner.listener if tenant is None else None
        self.idle: IdleStack[Environment] = IdleStack(owner.keep_alive)  # policy.py
        self.busy: set[Environment] = set()
        self.retired = False
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def listing(self) -> str:
        """What a cluster's registry lists its idle environments under."""
        return self.image.version

    def acquire(self) -> tuple[Environment, bool]:
        """An environment to run on, and whether it is new (a cold start)."""
        now = self.owner.clock.platform_now()
        while (env := self.idle.pop(now)) is not None:
            if self._usable(env):
                self.busy.add(env)
                if self.listener is not None:
                    self.listener.taken(self, env)
                return env, False
            self.owner.stop_later(env)
        self._reap()
        env = self.owner.factory(self.key, self.image)
        self.busy.add(env)
        return env, True

    def take(self, env_id: str) -> Environment | None:
        """The idle environment `env_id` (claimed by another node), taken as acquire()
        takes one; None if it is no longer idle and ready."""
        env = self.idle.take(lambda candidate: candidate.id == env_id)
        if env is None:
            return None
        if not self._usable(env):
            self.owner.stop_later(env)
            return None
        self.busy.add(env)
        if self.listener is not None:
            self.listener.taken(self, env)
        return env

    def has_ready(self) -> bool:
        """Whether acquire() would reuse an environment rather than start one: the most
        recently used idle one is ready (those that died while idle are let go on the way,
        as acquire() would)."""
        idle, now = self.idle, self.owner.clock.platform_now()
        while idle.has_idle(now):
            env = idle.top()
            if env is not None and self._usable(env):
                return True
            gone = idle.pop(now)
            if gone is not None:
                self.owner.stop_later(gone)
        return False

    def _usable(self, env: Environment) -> bool:
        """Ready, and its credentials outlast an invocation of the function's timeout (an
        environment whose credentials would expire is replaced, as Lambda renews them)."""
        if env.state is not State.READY:
            return False
        return env.expires is None or self.owner.clock.wall() + self.image.timeout_s < env.expires

    def release(self, env: Environment) -> None:
        self.busy.discard(env)
        if self.retired or env.state is not State.READY:
            self.owner.stop_later(env)
            return
        self.idle.push(env, self.owner.clock.platform_now())
        if self.listener is not None:
            self.listener.idle(self, env)
        if self._reaper is None:
            self._schedule_reaper()

    def _schedule_reaper(self) -> None:
        due = self.idle.next_expiry()
        if due is None or self.retired:
            self._reaper = None
            return
        wait = max(0.0, due - self.owner.clock.platform_now())
        self._reaper = self.owner.clock.call_later(wait, self._reap)

    def _reap(self) -> None:
        """Stop the environments idle for the keep-alive; wake again for the next one."""
        if self._reaper is not None:
            self._reaper.cancel()
        for env in self.idle.expired(self.owner.clock.platform_now()):
            self.owner.stop_later(env)
        self._schedule_reaper()

    def retire(self) -> None:
        """Stop idle environments now and busy ones when they are released."""
        self.retired = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for env in self.idle.clear():
            self.owner.stop_later(env)

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy)


class Pools:
    def __init__(
        self,
        factory: EnvironmentFactory,
        clock: Clock,
        keep_alive: float,
        listener: PoolListener | None = None,
    ) -> None:
        self.factory = factory
        self.listener = listener
        self.clock = clock
        self.keep_alive = keep_alive
        self.pools: dict[tuple[FunctionKey, str], FunctionPool] = {}  # by (function, version)
        self._stopping: set[asyncio.Task[None]] = set()
        self.closed = False

    def pool_for(
        self, key: FunctionKey, image: FunctionImage, tenant: str | None = None
    ) -> FunctionPool:
        """The pool of one version; in tenant isolation mode, of one tenant of it: an
        environment serves one tenant, ever."""
        version = image.version if tenant is None else f"{image.version}\0{tenant}"
        pool = self.pools.get((key, version))
        if pool is not None and pool.image.revision == image.revision:
            return pool
        if pool is not None:
            pool.retire()  # the function changed: its environments run the old code
        pool = self.pools[(key, version)] = FunctionPool(key, image, self, tenant)
        return pool

    def retire(self, key: FunctionKey, version: str | None = None) -> None:
        """Retire the pools of one version, or with None of every version of the function."""
        for pool_key in [
            k for k in self.pools if k[0] == key and version in (None, k[1].split("\0")[0])
        ]:
            self.pools.pop(pool_key).retire()

    def stop_later(self, env: Environment) -> None:
        if self.listener is not None:
            self.listener.gone(env)
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

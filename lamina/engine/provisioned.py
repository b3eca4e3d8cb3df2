"""Provisioned concurrency: environments initialised ahead of invocations.

A ProvisionedSet keeps `count` environments of one version ready for one alias or version
(the config's qualifier). They run init at once, with
AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency, are never reclaimed for
idleness, and are replaced when they die. If an init fails the set stops trying and
reports FAILED, as AWS does. The Provisioner owns every set, their start tasks and a
periodic check that replaces environments that died while idle; it reports the number
of ready environments per function to the counting service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lamina.engine.concurrency import Counters
from lamina.engine.pool import Pools
from lamina.keys import FunctionKey
from lamina.sandbox.environment import Environment, State
from lamina.sandbox.launch import FunctionImage
from lamina.tasks import stop_task

log = logging.getLogger("lamina.provisioned")

INIT_TYPE = "provisioned-concurrency"
CHECK_INTERVAL = 1.0  # seconds between checks for environments that died while idle

ProvisionedFactory = Callable[[FunctionKey, FunctionImage, str], Environment]


class Spread(Protocol):
    """How a config's environments are shared among machines (a cluster's nodes)."""

    def share(self, key: FunctionKey, qualifier: str, count: int) -> int:
        """How many of the config's `count` environments this machine keeps."""
        ...

    def ready_elsewhere(self, key: FunctionKey, qualifier: str) -> int:
        """How many the other machines have ready (last heard)."""
        ...


@dataclass(frozen=True)
class ProvisionedState:
    requested: int
    ready: int  # initialised environments, busy or idle: Allocated and Available
    failed: bool

    @property
    def status(self) -> str:
        if self.failed:
            return "FAILED"
        return "READY" if self.ready >= self.requested else "IN_PROGRESS"


class ProvisionedSet:
    def __init__(
        self, key: FunctionKey, qualifier: str, image: FunctionImage, count: int,
        owner: Provisioner,
    ) -> None:  # fmt: skip
        self.key = key
        self.qualifier = qualifier
        self.image = image
        self.count = count  # the config's: every machine's together
        self.target = owner.share(key, qualifier, count)  # this machine's part of it
        self.owner = owner
        self.idle: list[Environment] = []
        self.busy: set[Environment] = set()
        self.starting: set[asyncio.Task[None]] = set()
        self.failed = False
        self.retired = False
        self.listing = f"provisioned:{qualifier}"  # in a cluster's registry of idle ones
        self.listener = owner.pools.listener

    @property
    def ready(self) -> int:
        return len(self.idle) + len(self.busy)

    def has_ready(self) -> bool:
        self._drop_dead()
        return bool(self.idle)

    # The interface the invoker runs on (the same as FunctionPool's).
    def acquire(self) -> tuple[Environment, bool]:
        env = self.idle.pop()
        self.busy.add(env)
        if self.listener is not None:
            self.listener.taken(self, env)
        return env, False  # initialised already: never a cold start

    def take(self, env_id: str) -> Environment | None:
        """The idle environment `env_id` (claimed by another node), taken as acquire()
        takes one; None if it is no longer idle and ready."""
        env = next((e for e in self.idle if e.id == env_id and e.state is State.READY), None)
        if env is None:
            return None
        self.idle.remove(env)
        self.busy.add(env)
        if self.listener is not None:
            self.listener.taken(self, env)
        return env

    def release(self, env: Environment) -> None:
        self.busy.discard(env)
        if self.retired or env.state is not State.READY or self.ready >= self.target:
            self.owner.pools.stop_later(env)
            self.owner.changed(self.key)
            self.fill()  # a dead one is replaced
            return
        self.idle.append(env)
        if self.listener is not None:
            self.listener.idle(self, env)

    # Keeping `count` environments ----------------------------------------------------
    def fill(self) -> None:
        while not (self.failed or self.retired) and self.ready + len(self.starting) < self.target:
            task = asyncio.get_running_loop().create_task(self._start_one())
            self.starting.add(task)
            task.add_done_callback(self.starting.discard)

    async def _start_one(self) -> None:
        env = self.owner.factory(self.key, self.image, INIT_TYPE)
        try:
            failure = await env.start()
        except BaseException:
            await env.stop()
            raise
        if failure is not None or self.retired:
            if failure is not None:
                log.warning("provisioned init of %s:%s failed", self.key.name, self.image.version)
                self.failed = True
            await env.stop()
            self.owner.changed(self.key)
            return
        self.idle.append(env)
        if self.listener is not None:
            self.listener.idle(self, env)
        self.owner.changed(self.key)

    def _drop_dead(self) -> None:
        dead = [env for env in self.idle if env.state is not State.READY]
        if dead:
            for env in dead:
                self.idle.remove(env)
                self.owner.pools.stop_later(env)
            self.owner.changed(self.key)
            self.fill()

    def retire(self) -> None:
        self.retired = True
        for task in self.starting:
            task.cancel()
        for env in self.idle:
            self.owner.pools.stop_later(env)
        self.idle.clear()  # busy ones stop when released


class Provisioner:
    def __init__(
        self,
        factory: ProvisionedFactory,
        pools: Pools,
        counters: Counters,
        tell_ready: Callable[[FunctionKey, int], None] | None = None,
        spread: Spread | None = None,
    ) -> None:
        self.factory = factory
        self.spread = spread  # None: this machine keeps every environment of a config
        self.tell_ready = tell_ready  # a cluster's shared counts hear of ready counts too
        self.pools = pools  # owns the tasks that stop environments
        self.counters = counters
        self.sets: dict[tuple[FunctionKey, str], ProvisionedSet] = {}  # by (function, qualifier)
        self._checker: asyncio.Task[None] | None = None

    def provision(self, key: FunctionKey, qualifier: str, image: FunctionImage, count: int) -> None:
        """Keep `count` environments of `image` for the alias or version `qualifier`."""
        current = self.sets.get((key, qualifier))
        if current is not None and current.image.revision == image.revision and not current.failed:
            current.count = count
            self._resize(current)
        else:
            if current is not None:
                current.retire()
            current = self.sets[(key, qualifier)] = ProvisionedSet(
                key, qualifier, image, count, self
            )
        current.fill()
        self.changed(key)
        if self._checker is None:
            self._checker = asyncio.get_running_loop().create_task(self._check_forever())

    def share(self, key: FunctionKey, qualifier: str, count: int) -> int:
        return count if self.spread is None else self.spread.share(key, qualifier, count)

    def _resize(self, current: ProvisionedSet) -> None:
        """Keep this machine's share of the set: idle ones beyond it stop, busy ones
        stop when released; missing ones start."""
        current.target = self.share(current.key, current.qualifier, current.count)
        extra = current.ready - current.target
        while extra > 0 and current.idle:
            self.pools.stop_later(current.idle.pop(0))
            extra -= 1
        current.fill()

    def rebalance(self) -> None:
        """The machines sharing the configs changed: each set takes its new share."""
        for provisioned in list(self.sets.values()):
            if not provisioned.retired:
                self._resize(provisioned)
        for key in {key for key, _ in self.sets}:
            self.changed(key)

    def unprovision(self, key: FunctionKey, qualifier: str | None = None) -> None:
        """Tear down one qualifier's environments, or with None all of the function's."""
        for set_key in [k for k in self.sets if k[0] == key and qualifier in (None, k[1])]:
            self.sets.pop(set_key).retire()
        self.changed(key)

    def find(self, key: FunctionKey, qualifier: str, revision: str) -> ProvisionedSet | None:
        found = self.sets.get((key, qualifier))
        return found if found is not None and found.image.revision == revision else None

    def state(self, key: FunctionKey, qualifier: str) -> ProvisionedState | None:
        found = self.sets.get((key, qualifier))
        if found is None:
            return None
        ready = found.ready
        if self.spread is not None:
            ready += self.spread.ready_elsewhere(key, qualifier)
        return ProvisionedState(found.count, min(ready, found.count), found.failed)

    def changed(self, key: FunctionKey) -> None:
        ready = sum(s.ready for (k, _), s in self.sets.items() if k == key and not s.retired)
        self.counters.of(key).set_provisioned_ready(key, ready)
        if self.tell_ready is not None:
            self.tell_ready(key, ready)

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            for provisioned in list(self.sets.values()):
                provisioned.has_ready()  # drops and replaces environments that died idle

    async def close(self) -> None:
        await stop_task(self._checker)
        starting = [task for s in self.sets.values() for task in s.starting]
        for provisioned in self.sets.values():
            provisioned.retire()
        busy = [env for s in self.sets.values() for env in s.busy]
        self.sets.clear()
        for env in busy:
            self.pools.stop_later(env)
        await asyncio.gather(*starting, return_exceptions=True)

"""The engine as the control plane sees it: admit, invoke, retire, close."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from lamina.clock import Clock
from lamina.engine.concurrency import Counters, Decision, Lease, Pool, SettingsError, Throttle
from lamina.engine.counting import CountingUnavailable, SharedCounting
from lamina.engine.invoker import EnvironmentSource, Invoker, InvokeRequest, InvokeResult
from lamina.engine.placement import Listed, Placement
from lamina.engine.policy import admit, admit_shared
from lamina.engine.pool import FunctionPool, Pools
from lamina.engine.provisioned import ProvisionedSet, ProvisionedState, Provisioner, Spread
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


class CountsUnreachable(Throttled):
    """The shared counts (a cluster's Redis) cannot be reached: refused rather than
    guessed. A Throttled, so that the async queue and the pollers retry it later."""

    def __init__(self, message: str) -> None:
        super().__init__(Throttle.ACCOUNT, 1.0)
        self.message = message


class Observer(Protocol):
    """Told of every finished invocation and every throttle (metrics, traces)."""

    def invoked(self, key: FunctionKey, request: InvokeRequest, result: InvokeResult) -> None: ...

    def throttled(self, key: FunctionKey, request: InvokeRequest, reason: Throttle) -> None: ...


# The temporary credentials of a new environment: (variables, wall-clock expiry).
Identity = Callable[[FunctionKey, FunctionImage], tuple[dict[str, str], float | None]]


async def _claim(
    placement: Placement, warm: ProvisionedSet | None, pool: FunctionPool, request: InvokeRequest
) -> tuple[Listed, object] | None:
    """Before the admission: an idle environment on another node, provisioned first, when
    none is idle here (the local idle path asks nothing of the registry)."""
    if warm is not None and warm.has_ready():
        return None
    sources: list[Listed] = [warm] if warm is not None else []
    if pool.tenant is None and not pool.has_ready():
        sources.append(pool)
    return await placement.claim(sources, request) if sources else None


def _keep(
    placement: Placement,
    claimed: tuple[Listed, object],
    source: object,
    warm: ProvisionedSet | None,
    pool: FunctionPool,
) -> tuple[Listed, object] | None:
    """After the admission: the claim if it is still wanted, else put back (the lease is
    not of its kind, or an environment here became idle meanwhile)."""
    if claimed[0] is warm and warm is not None:
        wanted = source is warm and not warm.has_ready()
    else:
        wanted = source is pool and not pool.has_ready()
    if wanted:
        return claimed
    placement.unclaim(claimed[1])
    return None


async def _late(
    placement: Placement,
    source: EnvironmentSource,
    warm: ProvisionedSet | None,
    pool: FunctionPool,
    request: InvokeRequest,
) -> tuple[tuple[Listed, object] | None, EnvironmentSource]:
    """After the admission, when the environment here it counted on was taken meanwhile
    (while the shared counts were asked): one of the same kind elsewhere, else an
    on-demand one elsewhere; None: start one here. And the source to run on here."""
    if source is warm and warm is not None and not warm.has_ready():
        found = await placement.claim([warm], request)
        if found is not None:
            return found, source
        source = pool
    if source is pool and pool.tenant is None and not pool.has_ready():
        return await placement.claim([pool], request), source
    return None, source


class Engine:
    def __init__(
        self,
        scratch_root: Path,
        clock: Clock,
        keep_alive: float,
        logs: LogStore,
        counters: Counters,
        python: str = "",
        observer: Observer | None = None,
        identity: Identity | None = None,
        shared: SharedCounting | None = None,
        placement: Placement | None = None,
        spread: Spread | None = None,
    ) -> None:
        self.identity = identity
        # A cluster's counts (cluster/counting.py); None: this process counts alone.
        self.shared = shared
        self.scratch_root = scratch_root
        shutil.rmtree(scratch_root, ignore_errors=True)  # leftovers of a crashed run
        scratch_root.mkdir(parents=True, exist_ok=True)
        self.python = python or sys.executable
        self.clock = clock
        self.logs = logs
        self.counters = counters
        # A cluster's registry of idle environments: told of this node's, asked for others'.
        self.placement = placement
        self.pools = Pools(self._new_environment, clock, keep_alive, placement)
        self.provisioner = Provisioner(
            self._new_environment,
            self.pools,
            counters,
            shared.set_provisioned_ready_soon if shared is not None else None,
            spread,  # a cluster: each node keeps its share of a config's environments
        )
        self.invoker = Invoker(logs)
        # Told of every freed slot: the async queue wakes functions it paused on throttles.
        self.on_release: list[Callable[[Lease], None]] = []
        self.observer = observer

    def _new_environment(
        self, key: FunctionKey, image: FunctionImage, init_type: str = "on-demand"
    ) -> Environment:
        identity = self.identity(key, image) if self.identity else ({}, None)
        env = Environment(
            image,
            self.scratch_root,
            python=self.python,
            init_type=init_type,
            output=self.logs.log(key).write,
            identity=identity,
        )
        env.output = self.logs.log(key).sink(env.log_stream)  # its own log stream
        return env

    async def invoke(
        self,
        key: FunctionKey,
        image: FunctionImage,
        request: InvokeRequest,
        provisioned_for: str | None = None,
    ) -> InvokeResult:
        """Run one invocation under a lease, or raise Throttled before touching anything.

        `provisioned_for`: the alias or version the caller named; its provisioned
        environments serve first, and the rest spills over to on-demand ones.
        """
        shared = self.shared
        counter = self.counters.of(key)
        now = self.clock.platform_now() if shared is None else shared.now()
        request.arrived = request.arrived or self.clock.wall()
        request.memory_mb = image.memory_mb
        warm = (
            self.provisioner.find(key, provisioned_for, image.revision) if provisioned_for else None
        )
        source: EnvironmentSource
        # No await from these checks to source.acquire(): the answers still hold there
        # (on a cluster, the shared counts are asked in between; an environment taken
        # meanwhile makes a cold start that the scaling bucket did not count).
        pool = self.pools.pool_for(key, image, request.tenant_id)
        placement = self.placement
        claimed: tuple[Listed, object] | None = None
        if placement is not None:  # a cluster: none idle here, one idle elsewhere is held
            claimed = await _claim(placement, warm, pool, request)
        provisioned_idle = (warm is not None and warm.has_ready()) or (
            claimed is not None and claimed[0] is warm
        )
        decision: Decision
        if shared is None:
            decision = admit(  # policy.py: the same placement the planner replays
                counter,
                key,
                now,
                provisioned_idle=provisioned_idle,
                provisioned_target=warm is not None,
                warm_idle=provisioned_idle or pool.has_ready(),
            )
        else:
            try:
                decision = await admit_shared(
                    shared,
                    key,
                    now,
                    provisioned_idle=provisioned_idle,
                    provisioned_target=warm is not None,
                    warm_idle=provisioned_idle or pool.has_ready() or claimed is not None,
                )
            except CountingUnavailable as exc:
                if claimed is not None and placement is not None:
                    placement.unclaim(claimed[1])
                raise CountsUnreachable(str(exc)) from exc
            # This node's own figures, for its metrics (the shared counts decided).
            if decision.lease is not None:
                counter.adopt(decision.lease)
            elif decision.throttle is not None:
                counter.note_throttle(key, decision.throttle)
        source = warm if provisioned_idle and warm is not None else pool
        if decision.lease is None:
            assert decision.throttle is not None
            if claimed is not None and placement is not None:
                placement.unclaim(claimed[1])
            if self.observer is not None:
                self.observer.throttled(key, request, decision.throttle)
            raise Throttled(decision.throttle, decision.retry_after)
        if decision.lease.pool is not Pool.PROVISIONED and source is warm:
            source = pool  # no provisioned slot after all
        if claimed is not None and placement is not None:
            claimed = _keep(placement, claimed, source, warm, pool)
        try:
            result = None
            if placement is not None:
                if claimed is None:
                    claimed, source = await _late(placement, source, warm, pool, request)
                if claimed is not None:
                    result = await placement.run_claimed(claimed[1], claimed[0], request)
                if result is None and source is warm and warm is not None and not warm.has_ready():
                    source = pool
            if result is None:
                result = await self.invoker.invoke(source, request)
        finally:
            counter.release(decision.lease)  # on every path, cancellation included
            if shared is not None:
                shared.release_soon(decision.lease)
            for listener in self.on_release:
                listener(decision.lease)
        if self.observer is not None:
            self.observer.invoked(key, request, result)
        return result

    # Settings the counting service holds, wherever it keeps them ----------------------
    async def set_reserved(self, key: FunctionKey, reserved: int | None) -> None:
        """Raise SettingsError (nothing changed) or CountingUnavailable."""
        if self.shared is not None:
            await self.shared.set_reserved(key, reserved)
            with contextlib.suppress(SettingsError):  # the shared counts decided
                self.counters.of(key).set_reserved(key, reserved)
            return
        self.counters.of(key).set_reserved(key, reserved)

    async def set_provisioned(self, key: FunctionKey, total: int) -> None:
        if self.shared is not None:
            await self.shared.set_provisioned(key, total)
            with contextlib.suppress(SettingsError):
                self.counters.of(key).set_provisioned(key, total)
            return
        self.counters.of(key).set_provisioned(key, total)

    async def forget(self, key: FunctionKey) -> None:
        if self.shared is not None:
            await self.shared.forget(key)
        self.counters.of(key).forget(key)

    async def reserved(self, key: FunctionKey) -> int | None:
        if self.shared is not None:
            return await self.shared.reserved(key)
        return self.counters.of(key).reserved(key)

    def provision(self, key: FunctionKey, qualifier: str, image: FunctionImage, count: int) -> None:
        self.provisioner.provision(key, qualifier, image, count)

    def unprovision(self, key: FunctionKey, qualifier: str | None = None) -> None:
        self.provisioner.unprovision(key, qualifier)

    def provisioned_state(self, key: FunctionKey, qualifier: str) -> ProvisionedState | None:
        return self.provisioner.state(key, qualifier)

    def provisioned_qualifiers(self, key: FunctionKey) -> list[str]:
        """The aliases and versions of `key` this engine keeps environments for."""
        return [qualifier for found, qualifier in self.provisioner.sets if found == key]

    async def retire(self, key: FunctionKey, version: str | None = None) -> None:
        """The function (or one version) changed or went: its environments go too."""
        self.pools.retire(key, version)
        if version is None:
            self.provisioner.unprovision(key)

    async def close(self) -> None:
        await self.provisioner.close()
        await self.pools.close()

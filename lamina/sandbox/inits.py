"""Inits started ahead: the part of a cold start that depends on no function, done before one.

Joining a cgroup waits, with cgroup v1, for an RCU grace period (0.2 to 20 ms, more on a
loaded machine); entering a network namespace, unsharing the others and making the
Runtime API's socket cost about as much again. A small pool of environments' inits,
forked by the fork server (lamina/runtimes/fork_server.py, "Prepared inits"), has done
all of that already: each is PID 1 of a PID namespace of its own, in a cgroup of its own
(made with the smallest limits; an environment's are written when it takes one), in a
prepared namespace of the default network, and waits. A cold start that takes one only
builds the root and forks the runtime. The pool is refilled REFILL_DELAY_S after a cold
start took from it, so that the refill does not compete with that cold start; with the
pool empty (or for a VPC function, or one the main fork server does not start), a cold
start does everything itself, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lamina.sandbox import cgroups as cg
from lamina.sandbox import network as net
from lamina.tasks import stop_task

log = logging.getLogger("lamina.sandbox")

POOL = 3  # inits kept ready
REFILL_DELAY_S = 0.05  # after a cold start took one
RETRY_S = 1.0  # after a failure
START_MEMORY_MB = 128  # the smallest MemorySize: an init's cgroup until an environment takes it
RELEASE_PATIENCE_S = 5.0  # how long a busy cgroup is retried before it is left to the janitor
WAIT_S = 0.5  # how long a cold start that found none waits for the one being prepared


class Preparer(Protocol):
    """What starts prepared inits (forkserver.ForkServer)."""

    on_exit: Callable[[int], None] | None

    async def prepare(self, key: int, sandbox: dict[str, Any]) -> int: ...


@dataclass
class Prepared:
    """An init waiting for an environment: its key for the fork server, its pid, its
    cgroup and its network namespace (on the default network; None: an empty one)."""

    key: int
    pid: int
    cgroup: cg.Cgroup
    lease: net.Lease | None


class Inits:
    """The pool of prepared inits; owns its refill task."""

    def __init__(
        self,
        server: Preparer,
        cgroups: cg.Cgroups,
        network: net.Network | None,
        sandbox: dict[str, Any],
        pids: int,
        size: int = POOL,
    ) -> None:
        self.server = server
        self.cgroups = cgroups
        self.network = network
        self.sandbox = sandbox  # what every init's early setup needs besides its own
        self.pids = pids
        self.size = size
        self.ready: deque[Prepared] = deque()
        # Whether an environment of this image starts from this pool's fork server.
        self.suits: Callable[[Any], bool] = lambda image: True
        self.taken = 0  # cold starts that found one ready
        self.missed = 0  # cold starts that found none
        self._counter = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._removing: set[asyncio.Task[None]] = set()
        self._waiting: deque[asyncio.Future[None]] = deque()  # cold starts, for the next one
        server.on_exit = self._exited

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._fill())

    def take(self) -> Prepared | None:
        """A ready init (the caller writes its cgroup's limits), or None."""
        found = self.ready.popleft() if self.ready else None
        if found is None:
            self.missed += 1
        else:
            self.taken += 1
        self._refill_later(REFILL_DELAY_S)
        return found

    async def take_soon(self) -> Prepared | None:
        """A ready init, or the one being prepared once it is (the pool is filled at once
        when it is empty): it would take a cold start that started the whole way as long,
        and both compete for the CPU. None if none comes within WAIT_S."""
        if not self.ready and not self._closed:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._refill()
            if self._task is not None and not self._task.done():
                woken = asyncio.get_running_loop().create_future()
                self._waiting.append(woken)
                try:
                    async with asyncio.timeout(WAIT_S):
                        await woken
                except TimeoutError:
                    pass
                finally:
                    if woken in self._waiting:
                        self._waiting.remove(woken)
        return self.take()

    def _wake(self, every: bool = False) -> None:
        while self._waiting and (every or self.ready):
            woken = self._waiting.popleft()
            if not woken.done():
                woken.set_result(None)
                if not every:
                    return

    def discard(self, prepared: Prepared) -> None:
        """An init that will not be used: killed, its cgroup and namespace given back."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(prepared.pid, signal.SIGKILL)
        task = asyncio.get_running_loop().create_task(_release(prepared.cgroup, prepared.lease))
        self._removing.add(task)
        task.add_done_callback(self._removing.discard)

    async def close(self) -> None:
        log.info("prepared inits: %d cold starts took one, %d found none", self.taken, self.missed)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        await stop_task(self._task)
        while self.ready:
            self.discard(self.ready.popleft())
        if self._removing:
            await asyncio.gather(*self._removing, return_exceptions=True)

    # Refilling ----------------------------------------------------------------------------
    def _refill_later(self, delay: float) -> None:
        if self._closed or self._timer is not None:
            return
        if self._task is not None and not self._task.done():
            return  # the running fill goes on until the pool is full
        self._timer = asyncio.get_running_loop().call_later(delay, self._refill)

    def _refill(self) -> None:
        self._timer = None
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        try:
            await self._fill_up()
        finally:
            self._wake(every=True)  # a failure: waiting cold starts go the whole way

    async def _fill_up(self) -> None:
        while not self._closed and len(self.ready) < self.size:
            self._counter += 1
            key = self._counter
            lease = None
            try:  # mkdir in every hierarchy: milliseconds the event loop need not wait
                cgroup = await asyncio.to_thread(
                    self.cgroups.create, f"init-{key}", START_MEMORY_MB, self.pids
                )
            except OSError as exc:
                log.warning("could not prepare an init: %s", exc)
                self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._refill)
                return
            try:
                if self.network is not None:
                    lease = await self.network.take(None)
                sandbox = {**self.sandbox, "cgroups": cgroup.procs_files}
                if lease is not None:  # its fd stays open until the environment starts
                    sandbox["netns"], sandbox["eth0"] = lease.path, lease.eth0
                pid = await self.server.prepare(key, sandbox)
            except asyncio.CancelledError:
                await _release(cgroup, lease)
                raise
            except Exception as exc:  # the fork server is gone, a namespace failed, ...
                log.warning("could not prepare an init: %s", exc)
                await _release(cgroup, lease)
                self._timer = asyncio.get_running_loop().call_later(RETRY_S, self._refill)
                return
            self.ready.append(Prepared(key, pid, cgroup, lease))
            self._wake()

    def _exited(self, pid: int) -> None:
        """A waiting init ended (killed from outside): its resources go back."""
        for prepared in list(self.ready):
            if prepared.pid == pid:
                self.ready.remove(prepared)
                self.discard(prepared)
                self._refill_later(REFILL_DELAY_S)


async def _release(cgroup: cg.Cgroup, lease: net.Lease | None) -> None:
    if lease is not None:
        lease.release()
    await remove_cgroup(cgroup)


async def remove_cgroup(cgroup: cg.Cgroup) -> None:
    """Remove a cgroup once its processes are gone, killing what is left in it."""
    deadline = time.monotonic() + RELEASE_PATIENCE_S
    delay = 0.001
    with contextlib.suppress(OSError):
        cgroup.freeze(False)
    while not cgroup.remove():
        if time.monotonic() > deadline:
            log.warning("cgroup %s still busy; left to the janitor", cgroup.procs_files[0])
            return
        for pid in cgroup.members():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)

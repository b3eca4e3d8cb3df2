"""Counting across nodes: engine/concurrency.py's rules as atomic Redis scripts.

Each admission, release and settings change is one script (cluster/scripts.py), so the
in-flight executions of all nodes together stay within every limit. A lease carries the
node that took it; the node's heartbeat (cluster/node.py) keeps its leases alive, and
they are taken back when it stops. Redis unreachable: every call raises
CountingUnavailable and nothing is guessed; redis-py reconnects by itself, and a Redis
that lost its state gets each scope's settings (from the store) and each node's leases
(from the node) back before it admits again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    NoScriptError,
    RedisError,
    TimeoutError,
)

from lamina.clock import Clock
from lamina.cluster import scripts
from lamina.cluster.wire import Wire
from lamina.engine.concurrency import (
    Decision,
    FunctionCounts,
    Kind,
    Lease,
    Limits,
    Pool,
    SettingsError,
    Throttle,
)
from lamina.engine.counting import CountingUnavailable
from lamina.keys import FunctionKey
from lamina.tasks import stop_task

log = logging.getLogger("lamina.cluster")

# A scope's settings as the store holds them: (function name, reserved, provisioned total).
ScopeSettings = Callable[[str, str], Iterable[tuple[str, int | None, int]]]

POOL_CODE = {Pool.RESERVED: b"R", Pool.UNRESERVED: b"U", Pool.PROVISIONED: b"P"}
POOLS = {code: pool for pool, code in POOL_CODE.items()}
THROTTLES = {
    b"R": Throttle.RESERVED,
    b"A": Throttle.ACCOUNT,
    b"RR": Throttle.RESERVED_RATE,
    b"FR": Throttle.RATE,
}
_build = tuple.__new__
# Seconds a release waits for the function's next admission on this node to carry it.
RELEASE_DELAY = 0.002


def connect(url: str, timeout: float = 1.0) -> aioredis.Redis:
    """A client for `redis://HOST:PORT/DB` (hiredis parses its replies when installed).
    A pooled connection Redis closed (it restarted) is retried once on a new one. (Were
    a connection cut after a script ran but before its answer came, the retry would
    count that admission twice: a slot held for nothing, never a limit exceeded.)"""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[ConnectionError],
    )


def scope_of(account: str, region: str) -> str:
    return f"{account}/{region}"


class RedisCounting:
    """The counts of every account of the cluster, for this node (`node`)."""

    def __init__(
        self,
        client: aioredis.Redis,
        node: str,
        clock: Clock,
        limits_of: Callable[[str, str], Limits],
        settings_of: ScopeSettings | None = None,
        expiry: float = 6.0,
    ) -> None:
        self.client = client
        self.expiry = expiry  # seconds a lease outlives its node's last heartbeat
        self.node = node
        self.clock = clock
        self.limits_of = limits_of
        self.settings_of = settings_of or (lambda account, region: ())
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._release = client.register_script(scripts.RELEASE)
        self._set_reserved = client.register_script(scripts.SET_RESERVED)
        self._set_provisioned = client.register_script(scripts.SET_PROVISIONED)
        self._set_ready = client.register_script(scripts.SET_READY)
        self._init_scope = client.register_script(scripts.INIT_SCOPE)
        self._set_limits = client.register_script(scripts.SET_LIMITS)
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._restore = client.register_script(scripts.RESTORE)
        self._leave = client.register_script(scripts.LEAVE)
        # Admissions and releases: a connection of their own, without redis-py's layers.
        params = client.connection_pool.connection_kwargs
        self._wire = Wire(params, params.get("socket_timeout") or 1.0)
        self._ids = itertools.count(1)
        self._leases: dict[int, Lease] = {}  # this node's, to put back if Redis loses them
        self._keys: dict[FunctionKey, list[str]] = {}
        self._ready: dict[FunctionKey, int] = {}  # last ready count told, to tell again
        # release_soon's: waiting for an admission to carry them, or on their way alone.
        self._to_release: dict[FunctionKey, list[bytes]] = {}
        self._flushes: dict[FunctionKey, asyncio.TimerHandle] = {}
        self._releasing: dict[FunctionKey, set[asyncio.Task[None]]] = {}
        self.registered = False  # heartbeated at least once since this process started
        self._writes: asyncio.Queue[tuple[str, Any]] | None = None
        self._writer: asyncio.Task[None] | None = None

    # Keys -------------------------------------------------------------------------------
    def _keys_of(self, function: FunctionKey) -> list[str]:
        found = self._keys.get(function)
        if found is None:
            scope = scope_of(function.account, function.region)
            found = self._keys[function] = [
                f"lamina:{{{scope}}}:account",
                f"lamina:{{{scope}}}:fn:{function.name}",
                f"lamina:{{{scope}}}:node:{self.node}",
                f"lamina:node:{self.node}:scopes",
                f"lamina:{{{scope}}}:fns",
                scope,
            ]
        return found

    def now(self) -> float:
        return self.clock.wall() / self.clock.scale

    # Admission --------------------------------------------------------------------------
    async def acquire(
        self,
        function: FunctionKey,
        now: float,
        kind: Kind = Kind.ON_DEMAND,
        new_environment: bool = False,
        spillover: bool = False,
    ) -> Decision:
        pending = self._releasing.get(function)
        if pending:  # this node's releases of the function land first, in order
            await asyncio.gather(*pending)
        keys = self._keys_of(function)
        args = [
            self.node,
            function.name,
            repr(now),
            b"1" if kind is Kind.PROVISIONED else b"0",
            b"1" if new_environment else b"0",
            b"1" if spillover else b"0",
            keys[5],
            self._take_releases(function),  # released on the way, in the same script
        ]
        for _ in range(3):
            reply = await self._fast(self._acquire, keys[:5], args)
            args[7] = b""  # done, whatever the answer: never twice
            code = reply[0]
            if code == scripts.GRANTED:
                lease_id = next(self._ids)
                lease = _build(Lease, (lease_id, function, POOLS[reply[1]]))
                self._leases[lease_id] = lease
                return _build(Decision, (lease, None, 0.0))
            if code == scripts.THROTTLED:
                return _build(Decision, (None, THROTTLES[reply[1]], float(reply[2])))
            await self._settle(code, function)
        raise CountingUnavailable("the shared counts did not settle")

    def release_soon(self, lease: Lease) -> None:
        """Release without a round trip of its own: the next admission of the function on
        this node carries it (one script releases, then decides), or, when none comes
        within `RELEASE_DELAY`, a release script of its own. Either way it lands before
        this node's next admission of the function, so a client that invokes again once
        answered never finds its own slot still taken; other nodes see the slot free at
        most that delay later (a limit is never exceeded for it)."""
        if self._leases.pop(lease.id, None) is None:
            raise ValueError(f"lease {lease.id} released twice")
        function = lease.function
        codes = self._to_release.get(function)
        if codes is None:
            self._to_release[function] = [POOL_CODE[lease.pool]]
            self._flushes[function] = asyncio.get_running_loop().call_later(
                RELEASE_DELAY, self._flush, function
            )
        else:
            codes.append(POOL_CODE[lease.pool])

    def _take_releases(self, function: FunctionKey) -> bytes:
        codes = self._to_release.pop(function, None)
        if codes is None:
            return b""
        timer = self._flushes.pop(function, None)
        if timer is not None:
            timer.cancel()
        return b"".join(codes)

    def _flush(self, function: FunctionKey) -> None:
        """No admission came to carry them: the function's releases go on their own."""
        self._flushes.pop(function, None)
        codes = self._take_releases(function)
        if not codes:
            return
        task = asyncio.get_running_loop().create_task(self._release_codes(function, codes))
        pending = self._releasing.get(function)
        if pending is None:
            pending = self._releasing[function] = set()
        pending.add(task)
        task.add_done_callback(lambda done: self._released(function, done))

    async def _release_codes(self, function: FunctionKey, codes: bytes) -> None:
        try:
            await self._fast(self._release, self._keys_of(function)[:3], [function.name, codes])
        except CountingUnavailable:
            log.warning("releasing leases of %s: the shared counts are unreachable",
                        function.name)  # fmt: skip

    async def flush(self) -> None:
        """Every release still waiting for an admission to carry it, now."""
        for function in list(self._to_release):
            self._flush(function)
        pending = [task for tasks in self._releasing.values() for task in tasks]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _released(self, function: FunctionKey, task: asyncio.Task[None]) -> None:
        pending = self._releasing.get(function)
        if pending is not None:
            pending.discard(task)
            if not pending:
                del self._releasing[function]

    async def release(self, lease: Lease) -> None:
        if self._leases.pop(lease.id, None) is None:
            raise ValueError(f"lease {lease.id} released twice")
        # Redis unreachable: the lease is no longer this node's, and when Redis comes back
        # it gets only the leases still held. Nothing to undo.
        await self._release_codes(lease.function, POOL_CODE[lease.pool])

    def leases(self) -> int:
        return len(self._leases)

    # Settings ---------------------------------------------------------------------------
    async def set_reserved(
        self, function: FunctionKey, reserved: int | None, force: bool = False
    ) -> None:
        keys = self._keys_of(function)
        value = "" if reserved is None else str(reserved)
        await self._setting(self._set_reserved, function, [keys[0], keys[1], keys[4]],
                            [function.name, value, "1" if force else "0"])  # fmt: skip

    async def set_provisioned(self, function: FunctionKey, total: int, force: bool = False) -> None:
        keys = self._keys_of(function)
        await self._setting(self._set_provisioned, function, [keys[0], keys[1], keys[4]],
                            [function.name, str(total), "1" if force else "0"])  # fmt: skip

    async def set_provisioned_ready(self, function: FunctionKey, ready: int) -> None:
        self._ready[function] = ready
        await self._call(self._set_ready, [self._keys_of(function)[1]], [str(ready), self.node])

    async def forget(self, function: FunctionKey) -> None:
        await self.set_provisioned(function, 0, force=True)
        await self.set_reserved(function, None, force=True)
        self._ready.pop(function, None)

    async def set_limits(self, account: str, region: str, limits: Limits) -> None:
        scope = scope_of(account, region)
        await self._call(self._set_limits, [f"lamina:{{{scope}}}:account"], _limit_args(limits))

    async def refresh_limits(self) -> None:
        """Every scope Redis knows gets the limits this node now sees for it (an account's
        limits changed in the accounts store)."""
        scopes = await self._call_raw(self.client.smembers("lamina:scopes"))
        for raw in scopes:
            account, region = raw.decode().split("/", 1)
            await self.set_limits(account, region, self.limits_of(account, region))

    async def _setting(self, script: Any, function: FunctionKey, keys: list[str],
                       args: list[str]) -> None:  # fmt: skip
        for _ in range(3):
            reply = await self._call(script, keys, args)
            if reply[0] == scripts.GRANTED:
                return
            if reply[0] == scripts.REFUSED:
                raise SettingsError(reply[1].decode(), user=bool(reply[2]))
            await self._settle(reply[0], function)
        raise CountingUnavailable("the shared counts did not settle")

    # Reading ----------------------------------------------------------------------------
    async def reserved(self, function: FunctionKey) -> int | None:
        value = await self._call_raw(self.client.hget(self._keys_of(function)[1], "r"))
        return None if value is None else int(value)

    async def counts(self, function: FunctionKey) -> FunctionCounts:
        found = await self._call_raw(self.client.hgetall(self._keys_of(function)[1]))
        return _counts(found)

    async def account(self, account: str, region: str) -> dict[str, int]:
        """Σ reserved, Σ provisioned of unreserved functions, leases in flight, the pool."""
        scope = scope_of(account, region)
        return _account(await self._call_raw(self.client.hgetall(f"lamina:{{{scope}}}:account")))

    async def snapshot(
        self, functions: list[FunctionKey]
    ) -> tuple[dict[str, int], dict[FunctionKey, FunctionCounts]]:
        """The account's figures and those of `functions` (all of one scope), at one instant."""
        pipe = self.client.pipeline(transaction=True)
        scope = scope_of(functions[0].account, functions[0].region)
        pipe.hgetall(f"lamina:{{{scope}}}:account")
        for function in functions:
            pipe.hgetall(self._keys_of(function)[1])
        found = await self._call_raw(pipe.execute())
        counts = {
            function: _counts(raw) for function, raw in zip(functions, found[1:], strict=True)
        }
        return _account(found[0]), counts

    async def stats(self) -> list[dict[str, Any]]:
        """Every scope's figures, in the shape of Counters.stats()."""
        scopes = await self._call_raw(self.client.smembers("lamina:scopes"))
        found = []
        for raw in sorted(scopes):
            account, region = raw.decode().split("/", 1)
            figures = await self.account(account, region)
            names = await self._call_raw(self.client.smembers(f"lamina:{{{raw.decode()}}}:fns"))
            functions = {}
            for name in sorted(n.decode() for n in names):
                counts = await self.counts(FunctionKey(account, region, name))
                functions[name] = {
                    "ConcurrentExecutions": counts.in_flight,
                    "ReservedConcurrentExecutions": counts.reserved,
                    "ProvisionedConcurrency": counts.provisioned,
                    "ProvisionedReady": counts.provisioned_ready,
                    "ProvisionedConcurrentExecutions": counts.provisioned_busy,
                    "Throttles": {t.value: n for t, n in counts.throttles.items()},
                }
            found.append(
                {
                    "Account": account,
                    "Region": region,
                    "ConcurrentExecutions": figures["in_flight"],
                    "AccountLimit": figures["limit"],
                    "UnreservedConcurrentExecutions": figures["unreserved_pool"],
                    "UnreservedInUse": figures["unreserved_in_flight"],
                    "Functions": functions,
                }
            )
        return found

    # The node's membership --------------------------------------------------------------
    async def heartbeat(self, expiry: float, info: dict[str, str] | None = None) -> bool:
        """Keep this node's leases alive for `expiry` seconds (and take back those of
        nodes past theirs). True if Redis had forgotten the node (it was away longer than
        the expiry, or Redis lost its state): its leases are put back."""
        fields = [item for pair in (info or {}).items() for item in pair]
        expiry_ms = str(int(expiry * 1000))
        # A Redis that lost its state admits nothing for half an expiry: every live node
        # heartbeats (and puts its leases back) within that.
        grace_ms = str(int(expiry * 500))
        reply = await self._call(
            self._heartbeat,
            ["lamina:nodes", f"lamina:node:{self.node}", "lamina:meta"],
            [self.node, expiry_ms, grace_ms, "1" if self.registered else "0", *fields],
        )
        known, reaped = reply[0], reply[1]
        if reaped:
            log.warning("took back the leases of %d node(s) that stopped heartbeating", reaped)
        forgotten = self.registered and not known
        self.registered = True
        if forgotten:
            await self._put_back()
        return forgotten

    async def leave(self) -> None:
        """This node stops: its leases go at once (none should be left by then)."""
        with contextlib.suppress(CountingUnavailable):
            await self._call(self._leave, [], [self.node])

    async def _put_back(self) -> None:
        for timer in self._flushes.values():  # those leases are gone from Redis already
            timer.cancel()
        self._flushes.clear()
        self._to_release.clear()
        held: dict[tuple[str, str, bytes], int] = {}
        for lease in self._leases.values():
            function = lease.function
            entry = (scope_of(function.account, function.region), function.name,
                     POOL_CODE[lease.pool])  # fmt: skip
            held[entry] = held.get(entry, 0) + 1
        if held:
            args: list[Any] = [self.node]
            for (scope, name, pool), count in held.items():
                args += [scope, name, pool, count]
            await self._call(self._restore, [f"lamina:node:{self.node}:scopes"], args)
            log.warning("put back %d lease(s) of this node", sum(held.values()))
        for function, ready in self._ready.items():
            await self._call(self._set_ready, [self._keys_of(function)[1]], [str(ready), self.node])

    async def _settle(self, code: int, function: FunctionKey) -> None:
        """What a script needs before it can decide: the scope's settings, the node's
        membership; or Redis is rebuilding its counts, and nothing is admitted."""
        if code == scripts.NO_SCOPE:
            await self.ensure_scope(function.account, function.region)
        elif code == scripts.UNKNOWN_NODE:
            await self.heartbeat(self.expiry)
        elif code == scripts.RECOVERING:
            raise CountingUnavailable(
                "the shared counts are being rebuilt after Redis lost them; retry in a few seconds"
            )
        else:
            raise CountingUnavailable(f"unexpected answer {code!r} from the counting script")

    async def ensure_scope(self, account: str, region: str) -> None:
        """Give Redis the scope's limits and settings unless it has them."""
        scope = scope_of(account, region)
        args: list[Any] = [scope, *_limit_args(self.limits_of(account, region))]
        for name, reserved, provisioned in self.settings_of(account, region):
            args += [name, "" if reserved is None else str(reserved), str(provisioned)]
        keys = [f"lamina:{{{scope}}}:account", "lamina:scopes", f"lamina:{{{scope}}}:fns"]
        await self._call(self._init_scope, keys, args)

    # Writes told from synchronous code ----------------------------------------------------
    def set_provisioned_ready_soon(self, function: FunctionKey, ready: int) -> None:
        self._ready[function] = ready
        self._soon("ready", (function, ready))

    def refresh_limits_soon(self) -> None:
        self._soon("limits", ())

    def _soon(self, what: str, args: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # before the server runs: the scope takes its settings when first used
        if self._writes is None:
            self._writes = asyncio.Queue()
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())
        self._writes.put_nowait((what, args))

    async def _write_forever(self) -> None:
        assert self._writes is not None
        while True:
            what, args = await self._writes.get()
            try:
                if what == "ready":
                    await self.set_provisioned_ready(*args)
                else:
                    await self.refresh_limits()
            except CountingUnavailable:
                log.warning("could not tell the shared counts of a %s change", what)

    async def close(self) -> None:
        await self.flush()
        await stop_task(self._writer)
        await self.leave()
        self._wire.close()
        await self.client.aclose()

    # Calls ------------------------------------------------------------------------------
    async def _fast(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        """An admission's or a release's script, on the wire of its own (cluster/wire.py)."""
        try:
            try:
                return await self._wire.call("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:  # Redis restarted, or flushed its scripts
                await self.client.script_load(script.script)
                return await self._wire.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except (ConnectionError, TimeoutError, BusyLoadingError, OSError) as exc:
            raise CountingUnavailable(f"Redis is unreachable: {exc}") from exc
        except RedisError as exc:
            raise CountingUnavailable(f"Redis refused a counting script: {exc}") from exc

    async def ping(self) -> None:
        """A PING on the admissions' connection: the floor under an admission's time."""
        await self._wire.call("PING")

    async def _call(self, script: Any, keys: list[Any], args: list[Any]) -> Any:
        return await self._call_raw(script(keys, args))

    async def _call_raw(self, pending: Any) -> Any:
        try:
            return await pending
        except (ConnectionError, TimeoutError, BusyLoadingError, OSError) as exc:
            raise CountingUnavailable(f"Redis is unreachable: {exc}") from exc
        except RedisError as exc:
            raise CountingUnavailable(f"Redis refused a counting script: {exc}") from exc


def _account(found: dict[bytes, bytes]) -> dict[str, int]:
    figures = {
        name: int(found.get(field, b"0"))
        for name, field in (
            ("reserved_total", b"rt"),
            ("provisioned_unreserved", b"pu"),
            ("unreserved_in_flight", b"ui"),
            ("in_flight", b"inf"),
            ("limit", b"limit"),
        )
    }
    pool = figures["limit"] - figures["reserved_total"] - figures["provisioned_unreserved"]
    figures["unreserved_pool"] = pool
    return figures


def _limit_args(limits: Limits) -> list[str]:
    return [
        str(limits.account),
        str(limits.floor),
        str(limits.burst),
        repr(float(limits.burst_window)),
        repr(float(limits.rate_per_unit)),
    ]


def _counts(found: dict[bytes, bytes]) -> FunctionCounts:
    def number(field: bytes) -> int:
        return int(found.get(field, b"0"))

    reserved = found.get(b"r")
    return FunctionCounts(
        reserved=None if reserved is None else int(reserved),
        provisioned=number(b"p"),
        provisioned_ready=number(b"pr"),
        on_demand=number(b"od"),
        provisioned_busy=number(b"pb"),
        provisioned_invocations=number(b"pi"),
        spillover_invocations=number(b"si"),
        throttles={
            reason: int(found[b"t:" + code])
            for code, reason in THROTTLES.items()
            if b"t:" + code in found
        },
    )

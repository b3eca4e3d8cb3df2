"""Placement across a cluster: an invocation runs on an idle warm environment wherever it
is, and a node starts one only when none is idle anywhere.

Redis keeps a registry of idle on-demand environments per function version and revision,

    lamina:{S}:idle:<name>:<version>:<revision>   zset "<env id> <node id>" → when it
                                                  went idle (ms): most recent first

written by the node that owns each environment as it goes idle (added), is taken by an
invocation of its own node, or stops (removed). A write costs the invoke path no wait:
it goes on the socket as the environment changes hands (before the invocation's answer
leaves) and its reply is only checked. A node that admitted an
invocation (the counting, unchanged, comes first) and has no idle environment of the
version itself claims one in one script, which pops the most recently used entry of
another live node (entries of nodes whose leases expired are dropped on the way), and
forwards the invocation to that node (cluster/forward.py). Only when the registry has
nothing does it start one itself.

The local idle path asks nothing of Redis: a node that has an idle environment uses it.
That keeps a warm invoke at one round trip (the admission), and costs no fairness that
matters: every node prefers idle environments to new ones alike, and keep-alive reaping
stays each owner's, most recently used reused first. The price is a short race: an entry
claimed while its owner is taking it for itself (the removal still queued); the owner
then runs the hop on another idle environment of the version, or answers that it has
none, and the claimer claims again, then starts one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from lamina.cluster.forward import Forwarder, Owner
from lamina.cluster.wire import Wire
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.placement import Listed
from lamina.sandbox.environment import Environment

log = logging.getLogger("lamina.cluster")

CLAIMS = 3  # entries tried (claimed, found taken) before starting one here

# KEYS: idle sets, in the order wanted (a provisioned set's, then the version's).
# ARGV: the claiming node.
# Reply: {key index, entry, score, node address}, or {} when no other live node has one.
CLAIM = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for k = 1, #KEYS do
  local entries = redis.call('ZREVRANGE', KEYS[k], 0, 31, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local entry = entries[i]
    local node = string.match(entry, '^%x+ (.*)$')
    if node and node ~= ARGV[1] then
      redis.call('ZREM', KEYS[k], entry)
      local alive = redis.call('ZSCORE', 'lamina:nodes', node)
      if alive and tonumber(alive) > now then
        local address = redis.call('HGET', 'lamina:node:' .. node, 'advertise')
        if address then return {k, entry, entries[i + 1], address} end
      end
    end
  end
end
return {}
"""


@dataclass(frozen=True)
class Claim:
    registry: str
    entry: str  # "<env id> <node id>"
    score: float  # when it went idle (ms): put back as it was
    address: str  # its node's

    @property
    def env_id(self) -> str:
        return self.entry.split(" ", 1)[0]


class ClusterPlacement:
    """This node's part of the registry, and its claims on the others'."""

    def __init__(
        self,
        client: aioredis.Redis,
        node: str,
        forwarder: Forwarder,
        owner: Owner,
        keep_alive: float,
    ) -> None:
        self.client = client
        self.node = node
        self.forwarder = forwarder
        self.owner = owner  # serves the hops others send here
        self.keep_alive_ms = int(keep_alive * 1000) + 60_000  # a lost registry's lifetime
        self._claim = client.register_script(CLAIM)
        # Claims on a connection of their own, as admissions are (cluster/wire.py); the
        # registry's writes on another, which asks for no replies.
        params = client.connection_pool.connection_kwargs
        self._wire = Wire(params, params.get("socket_timeout") or 1.0)
        self._writes = _Writes(params)
        self._listed: dict[str, tuple[str, str]] = {}  # env id → (set, entry) written
        self._expiring: dict[str, float] = {}  # registry → when its expiry was last pushed
        self.forwarded = 0  # invocations this node sent to others

    @staticmethod
    def registry(source: Listed) -> str:
        key, image = source.key, source.image
        scope = f"{key.account}/{key.region}"
        return f"lamina:{{{scope}}}:idle:{key.name}:{source.listing}:{image.revision}"

    # engine.placement.PoolListener: told synchronously, written at once ----------------
    def idle(self, source: Listed, env: Environment) -> None:
        registry, entry = self._listed[env.id] = (self.registry(source), f"{env.id} {self.node}")
        # Written before the invocation's answer leaves: a client that invokes again
        # through another node finds the environment listed.
        now = time.time()
        if now - self._expiring.get(registry, 0.0) < 60.0:
            self._writes.send(("ZADD", registry, int(now * 1000), entry))
            return
        self._expiring[registry] = now
        self._writes.send(
            ("ZADD", registry, int(now * 1000), entry), ("PEXPIRE", registry, self.keep_alive_ms)
        )

    def taken(self, source: Listed, env: Environment) -> None:
        self.gone(env)

    def gone(self, env: Environment) -> None:
        listed = self._listed.pop(env.id, None)
        if listed is not None:
            self._writes.send(("ZREM", *listed))

    # engine.placement.Placement --------------------------------------------------------
    async def claim(
        self, sources: list[Listed], request: InvokeRequest
    ) -> tuple[Listed, Claim] | None:
        if request.stream is not None:
            return None  # a response stream stays on its node
        registries = [self.registry(source) for source in sources]
        try:
            try:
                claimed: Any = await self._wire.call(
                    "EVALSHA", self._claim.sha, len(registries), *registries, self.node
                )
            except NoScriptError:  # Redis restarted, or flushed its scripts
                claimed = await self._claim(registries, [self.node])
        except (RedisError, OSError):
            return None  # the registry is out of reach: an environment here will do
        if not claimed:
            return None
        index = int(claimed[0]) - 1
        entry, score, address = (part.decode() for part in claimed[1:])
        return sources[index], Claim(registries[index], entry, float(score), address)

    def unclaim(self, claim: object) -> None:
        assert isinstance(claim, Claim)
        self._writes.send(("ZADD", claim.registry, int(claim.score), claim.entry))

    async def run_claimed(
        self, claim: object, source: Listed, request: InvokeRequest
    ) -> InvokeResult | None:
        assert isinstance(claim, Claim)
        found: Claim | None = claim
        for _ in range(CLAIMS):
            if found is None:
                return None
            result = await self.forwarder.forward(found.address, source, found.env_id, request)
            if result is not None:
                self.forwarded += 1
                return result
            again = await self.claim([source], request)  # taken by its node meanwhile
            found = again[1] if again is not None else None
        if found is not None:
            self.unclaim(found)
        return None

    async def close(self) -> None:
        await self._writes.close()
        # This node's entries go with it (others would find them dead anyway).
        listed = list(self._listed.values())
        self._listed.clear()
        if listed:
            pipe = self.client.pipeline(transaction=False)
            for registry, entry in listed:
                pipe.zrem(registry, entry)
            with contextlib.suppress(RedisError, OSError):
                await pipe.execute()
        await self.forwarder.close()
        self._wire.close()


class _Writes(asyncio.Protocol):
    """The registry's writes on a connection that asks Redis for no replies (CLIENT REPLY
    OFF): a write is one `transport.write`, in the order made, and nothing comes back to
    parse. While it is not connected, writes wait (the last WAITING of them) for the
    connection a task opens; a write lost leaves an environment unlisted until its next
    change, or listed while gone, and then its node answers a claim that it is."""

    WAITING = 10_000

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[bytes] = deque(maxlen=self.WAITING)
        self._connecting: asyncio.Task[None] | None = None
        self.failing = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        pass  # AUTH's and SELECT's replies (errors show on the claims' connection)

    def send(self, *commands: tuple[Any, ...]) -> None:
        data = b"".join(hiredis.pack_command(command) for command in commands)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            return
        self.waiting.append(data)
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop, params = asyncio.get_running_loop(), self.params
        try:
            async with asyncio.timeout(1.0):
                if params.get("path"):
                    transport, _ = await loop.create_unix_connection(lambda: self, params["path"])
                else:
                    transport, _ = await loop.create_connection(
                        lambda: self, params.get("host", "localhost"), int(params.get("port", 6379))
                    )
        except (OSError, TimeoutError) as exc:
            if not self.failing:
                log.warning("placement: cannot write the idle registry: %s", exc)
            self.failing = True
            return  # the next write tries again
        self.failing = False
        prelude: list[tuple[Any, ...]] = []
        if params.get("password"):
            user = params.get("username")
            prelude.append(
                ("AUTH", user, params["password"]) if user else ("AUTH", params["password"])
            )
        if int(params.get("db") or 0):
            prelude.append(("SELECT", int(params["db"])))
        prelude.append(("CLIENT", "REPLY", "OFF"))
        waiting = b"".join(self.waiting)
        self.waiting.clear()
        transport.write(b"".join(hiredis.pack_command(c) for c in prelude) + waiting)
        self.transport = cast(asyncio.Transport, transport)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self.transport is not None:
            self.transport.close()

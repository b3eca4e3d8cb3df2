"""Provisioned concurrency across a cluster: a config of N environments means N in the
whole cluster, shared among the live nodes.

The assignment is Redis's list of live nodes (`lamina:nodes`, those whose leases have
not expired), read at every heartbeat: for each config the nodes are ranked by a hash of
(node, function, qualifier), and each keeps N // nodes, the first N % nodes one more
(so the odd ones of many configs fall on different nodes). Every node computes the same
ranking from the same list; no node hands out shares. When the list changes (a node
joined, or one died and its leases expired) each node takes its new share: a dead node's
environments are started again on the others within the lease expiry and a heartbeat.
A node also tells, with its heartbeat, how many of each config it has ready, so that any
node reports the whole cluster's (GetProvisionedConcurrencyConfig's Available).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lamina.keys import FunctionKey

log = logging.getLogger("lamina.cluster")

# The live nodes (their leases not expired) and what each says it has ready.
LIVE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nodes = redis.call('ZRANGEBYSCORE', 'lamina:nodes', '(' .. now, '+inf')
local found = {}
for _, node in ipairs(nodes) do
  found[#found + 1] = node
  found[#found + 1] = redis.call('HGET', 'lamina:node:' .. node, 'provisioned') or ''
end
return found
"""


def config_name(key: FunctionKey, qualifier: str) -> str:
    return f"{key.account}/{key.region}/{key.name}/{qualifier}"


class ProvisionedSpread:
    """engine.provisioned.Spread for one node of a cluster."""

    def __init__(self, client: aioredis.Redis, node: str) -> None:
        self.node = node
        self.live: list[str] = [node]  # until the first heartbeat says otherwise
        self._elsewhere: dict[str, int] = {}  # config → ready on the other nodes
        self._live = client.register_script(LIVE)
        self.on_change: list[Callable[[], None]] = []  # the provisioner rebalances

    def share(self, key: FunctionKey, qualifier: str, count: int) -> int:
        name = config_name(key, qualifier)
        ranked = sorted(
            self.live, key=lambda node: hashlib.blake2b(f"{node}|{name}".encode()).digest()
        )
        base, extra = divmod(count, len(ranked))
        return base + (1 if ranked.index(self.node) < extra else 0)

    def ready_elsewhere(self, key: FunctionKey, qualifier: str) -> int:
        return self._elsewhere.get(config_name(key, qualifier), 0)

    async def refresh(self) -> None:
        """After a heartbeat: the live nodes, and what the others have ready."""
        try:
            found: Any = await self._live([], [])
        except (RedisError, OSError):
            return  # the heartbeat reports Redis's absence; the shares stay as they were
        live: list[str] = []
        elsewhere: dict[str, int] = {}
        for index in range(0, len(found), 2):
            node = found[index].decode()
            live.append(node)
            if node != self.node and found[index + 1]:
                for name, ready in json.loads(found[index + 1]).items():
                    elsewhere[name] = elsewhere.get(name, 0) + int(ready)
        self._elsewhere = elsewhere
        if self.node not in live:
            live.append(self.node)  # heartbeating again: this node counts itself
        live.sort()
        if live != self.live:
            log.info("cluster: %d live node(s); provisioned environments re-shared", len(live))
            self.live = live
            for listener in self.on_change:
                listener()

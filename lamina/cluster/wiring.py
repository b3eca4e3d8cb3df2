"""How a server joins a cluster: its node built from the settings, what it tells Redis of
itself, and the `/_lamina/cluster` answer. server.py calls these; nothing here runs on
the invoke path."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from lamina.clock import Clock
from lamina.config import Settings
from lamina.engine.concurrency import Counters
from lamina.engine.service import Engine
from lamina.keys import FunctionKey

if TYPE_CHECKING:
    from lamina.cluster.node import ClusterNode
    from lamina.cluster.placement import ClusterPlacement
    from lamina.cluster.spread import ProvisionedSpread

Figures = Iterable[dict[str, Any]]
Records = Callable[[], Iterable[tuple[FunctionKey, dict[str, Any]]]]


def build(
    settings: Settings,
    clock: Clock,
    counters: Counters,
    records: Records,
    engine: Callable[[], Engine],
) -> ClusterNode | None:
    """This server's node, or None when it counts alone (no --redis). `records`: every
    function's record in the store; `engine`: the engine, once built."""
    if not settings.redis_url:
        return None
    # Redis's client is imported only by a node that joins a cluster: a single node's
    # start does not pay for it.
    from lamina.cluster.counting import RedisCounting, connect
    from lamina.cluster.node import ClusterNode, node_id

    def scope_settings(account: str, region: str) -> list[tuple[str, int | None, int]]:
        """The concurrency settings the store holds for one account and region: what
        Redis gets when it does not know them yet (or lost them)."""
        found = []
        for key, record in records():
            if key.account == account and key.region == region:
                provisioned = record.get("provisioned") or {}
                total = sum(config["Requested"] for config in provisioned.values())
                found.append((key.name, record.get("reserved"), total))
        return found

    name = settings.node_name or f"{settings.host}:{settings.port}"
    counting = RedisCounting(
        connect(settings.redis_url),
        node_id(name),
        clock,
        counters.limits_of,
        settings_of=scope_settings,
        expiry=settings.lease_expiry,
    )
    return ClusterNode(
        counting,
        name,
        settings.advertise or f"http://{settings.host}:{settings.port}",
        settings.heartbeat,
        settings.lease_expiry,
        describe=lambda: environments(engine()),
    )


def placement(
    node: ClusterNode | None, settings: Settings, link_key: bytes, engine: Callable[[], Engine]
) -> ClusterPlacement | None:
    """Where this node's invocations run when it has no idle environment: on one idle on
    another node (None: a single node). `link_key`: derived from the secrets key every
    node shares; the hops between nodes are signed with a key derived from it."""
    if node is None:
        return None
    from lamina.cluster.forward import Forwarder, Owner, hop_key
    from lamina.cluster.placement import ClusterPlacement

    key = hop_key(link_key)
    return ClusterPlacement(
        node.counting.client, node.id, Forwarder(key), Owner(key, engine), settings.keep_alive
    )


def gauges(node: ClusterNode | None) -> Callable[[], Awaitable[Figures | None]] | None:
    """The cluster's concurrency gauges, when this node is the one sampling them (None: a
    single node samples its own counts)."""
    if node is None:
        return None
    from lamina.cluster.gauges import ClusterGauges

    return ClusterGauges(node.counting.client, node.id).sample


def spread(node: ClusterNode | None, engine: Callable[[], Engine]) -> ProvisionedSpread | None:
    """How provisioned configs share their environments among the live nodes (None: a
    single node keeps them all); re-shared when the live nodes change."""
    if node is None:
        return None
    from lamina.cluster.spread import ProvisionedSpread, config_name

    shared = ProvisionedSpread(node.counting.client, node.id)

    def ready() -> dict[str, str]:
        sets = engine().provisioner.sets.items()
        mine = {config_name(key, qualifier): s.ready for (key, qualifier), s in sets}
        return {"provisioned": json.dumps(mine, separators=(",", ":"))}

    node.details.append(ready)
    node.after_beat.append(shared.refresh)
    shared.on_change.append(lambda: engine().provisioner.rebalance())
    return shared


def environments(engine: Engine) -> dict[str, dict[str, int]]:
    """This node's environments per function (for `lamina cluster status`)."""
    found: dict[str, dict[str, int]] = {}
    for (key, _), pool in engine.pools.pools.items():
        entry = found.setdefault(f"{key.account}/{key.region}/{key.name}", {})
        entry["idle"] = entry.get("idle", 0) + len(pool.idle)
        entry["busy"] = entry.get("busy", 0) + len(pool.busy)
    for (key, _), provisioned in engine.provisioner.sets.items():
        entry = found.setdefault(f"{key.account}/{key.region}/{key.name}", {})
        entry["provisioned"] = entry.get("provisioned", 0) + provisioned.ready
    return found


async def answer(node: ClusterNode | None, account: str | None) -> dict[str, Any]:
    """GET /_lamina/cluster: the cluster's nodes, their environments and leases; with
    `account` (auth on), that account's functions only."""
    body: dict[str, Any] = {"Cluster": node is not None, "Nodes": []}
    if node is None:
        return body
    from lamina.cluster import status

    try:
        body.update(await status.read(node.counting.client))
    except Exception as exc:  # Redis unreachable: say so, this node's view stays up
        body["Error"] = f"Redis is unreachable: {exc}"
    if account is not None:
        mine = f"{account}/"
        for entry in body["Nodes"]:
            for part in ("Environments", "Leases"):
                entry[part] = {k: v for k, v in entry[part].items() if k.startswith(mine)}
            entry["LeaseCount"] = sum(sum(v.values()) for v in entry["Leases"].values())
    body["Self"] = node.id
    return body

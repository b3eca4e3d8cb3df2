"""What the cluster looks like, read from Redis: its nodes, what each runs and the leases
each holds. `lamina cluster status` prints it; a node serves it at /_lamina/cluster for
the console."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis


async def read(client: aioredis.Redis) -> dict[str, Any]:
    """{"Nodes": [...], "Time": seconds}: every node that heartbeats (or whose leases have not
    expired yet), with its address, environments and leases per function."""
    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    members: list[Any] = list(await client.zrange("lamina:nodes", 0, -1, withscores=True))
    nodes = []
    for raw, score in members:
        node, expires = _text(raw), float(score)
        info = {
            _text(k): _text(v) for k, v in (await client.hgetall(f"lamina:node:{node}")).items()
        }
        leases: dict[str, dict[str, int]] = {}
        for scope in sorted(_text(s) for s in await client.smembers(f"lamina:node:{node}:scopes")):
            held = await client.hgetall(f"lamina:{{{scope}}}:node:{node}")
            for field, count in held.items():
                name, pool = _text(field).rsplit(" ", 1)
                if int(count) > 0:
                    entry = leases.setdefault(f"{scope}/{name}", {})
                    entry[_POOLS.get(pool, pool)] = int(count)
        try:
            environments = json.loads(info.get("environments", "{}"))
        except ValueError:
            environments = {}
        nodes.append(
            {
                "Id": node,
                "Name": info.get("name", node),
                "Advertise": info.get("advertise", ""),
                "Pid": int(info.get("pid", "0") or 0),
                "Started": float(info.get("started", "0") or 0),
                "Alive": expires > now_ms,
                "ExpiresInSeconds": round((expires - now_ms) / 1000, 3),
                "Environments": environments,
                "Leases": leases,
                "LeaseCount": sum(sum(v.values()) for v in leases.values()),
            }
        )
    nodes.sort(key=lambda n: (n["Name"], n["Id"]))
    return {"Nodes": nodes, "Time": time.time()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_POOLS = {"R": "reserved", "U": "unreserved", "P": "provisioned"}


def render(status: dict[str, Any]) -> str:
    """The text `lamina cluster status` prints."""
    nodes = status["Nodes"]
    if not nodes:
        return "No node of this cluster is heartbeating.\n"
    lines = [f"{len(nodes)} node(s)"]
    for node in nodes:
        state = "alive" if node["Alive"] else "expired"
        lines.append(
            f"\n{node['Name']}  {node['Advertise']}  ({state}; id {node['Id']}, "
            f"pid {node['Pid']}, {node['LeaseCount']} lease(s))"
        )
        environments = node["Environments"]
        if environments:
            lines.append("  environments:")
            for function, figures in sorted(environments.items()):
                shown = ", ".join(f"{k} {v}" for k, v in sorted(figures.items()))
                lines.append(f"    {function}: {shown}")
        if node["Leases"]:
            lines.append("  leases:")
            for function, pools in sorted(node["Leases"].items()):
                shown = ", ".join(f"{k} {v}" for k, v in sorted(pools.items()))
                lines.append(f"    {function}: {shown}")
    return "\n".join(lines) + "\n"

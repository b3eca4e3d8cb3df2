"""`lamina cluster status`: the cluster's nodes, their environments and their leases."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from typing import Any

from lamina.config import env_default


def add_parser(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser("cluster", help="the nodes of a cluster, as Redis sees them")
    actions = cluster.add_subparsers(dest="cluster_command", required=True)
    status = actions.add_parser("status", help="nodes, their environments and leases")
    status.add_argument(
        "--redis",
        default=env_default("REDIS_URL", ""),
        help="redis://HOST:PORT/DB of the cluster (default LAMINA_REDIS_URL; without it, "
        "the node at --endpoint is asked)",
    )
    status.add_argument("--endpoint", default=env_default("ENDPOINT", "http://127.0.0.1:9700"))
    status.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    try:
        found = asyncio.run(_from_redis(args.redis)) if args.redis else _from_node(args.endpoint)
    except Exception as exc:  # what the user must see is why, not a traceback
        print(f"lamina cluster status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    from lamina.cluster.status import render

    if found.get("Cluster") is False:
        print(f"{args.endpoint} runs alone (it was started without --redis).")
        return 0
    sys.stdout.write(render(found))
    return 0


async def _from_redis(url: str) -> dict[str, Any]:
    from lamina.cluster.counting import connect
    from lamina.cluster.status import read

    client = connect(url, timeout=5.0)
    try:
        return await read(client)
    finally:
        await client.aclose()


def _from_node(endpoint: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{endpoint.rstrip('/')}/_lamina/cluster", timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())
    if "Error" in found:
        raise RuntimeError(found["Error"])
    return found

"""Three nodes of one cluster, started as an operator would: node a first, then b and c
together, each given a's secrets key (the accounts key a cluster's nodes share)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers import Server


def three_nodes(base: Path, args: Callable[[str], list[str]]) -> Iterator[list[Server]]:
    """Yield nodes a, b and c (`args(name)`: each one's flags), stopped afterwards."""
    started: list[Server] = []

    def start(name: str) -> Server:
        return Server(base / name / "data", args=args(name)).start()

    try:
        (base / "a" / "data").mkdir(parents=True)
        started.append(start("a"))
        for name in ("b", "c"):
            (base / name / "data").mkdir(parents=True)
            key = base / name / "data" / "accounts.key"
            key.write_bytes((started[0].data_dir / "accounts.key").read_bytes())
            key.chmod(0o600)
        with ThreadPoolExecutor(2) as pool:  # b and c start together
            starting = [pool.submit(start, name) for name in ("b", "c")]
        failed = [error for f in starting if (error := f.exception()) is not None]
        started += [f.result() for f in starting if f.exception() is None]
        if failed:
            raise failed[0]
        yield started
    finally:
        for server in started:
            server.stop()

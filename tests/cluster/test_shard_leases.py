"""Three `lamina serve --database` nodes on one PostgreSQL of the suite's own read one
Kinesis stream mapping: each shard under its own lease, the shards spread over the nodes;
when one node is killed, its shards move to the others within 10 s and every record is
processed (from the checkpoints in the database: none skipped)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.cluster.postgres_server import PostgresServer, fresh_database
from tests.cluster.test_shared_store import node
from tests.e2e.test_async import WORKER, Recorder
from tests.helpers import Server, python_function

SHARDS = 6


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


def leases(url: str) -> dict[int, str]:
    """Each shard's live lease: shard → node."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT shard, node FROM shard_leases WHERE expires >= extract(epoch from now())"
        ).fetchall()
    return {int(shard): str(holder) for shard, holder in rows}


def seen(recorder: Recorder) -> list[str]:
    return [
        base64.b64decode(record["kinesis"]["data"]).decode()
        for report in recorder.of("reader")
        for record in report["event"].get("Records", [])
    ]


def wait_for(recorder: Recorder, wanted: set[str], seconds: float) -> set[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not set(seen(recorder)) >= wanted:
        time.sleep(0.05)
    return set(seen(recorder))


def test_shards_spread_and_move_when_a_node_dies(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory, recorder: Recorder
) -> None:
    url = fresh_database(postgres)
    root = tmp_path_factory.mktemp("shards")
    a = node(root, "a", url)
    with ThreadPoolExecutor(2) as pool:
        b, c = pool.map(lambda name: node(root, name, url, first=a), ["b", "c"])
    nodes: list[Server] = [a, b, c]
    try:
        kinesis = a.client("kinesis")
        kinesis.create_stream(StreamName="spread", ShardCount=SHARDS)
        arn = kinesis.describe_stream(StreamName="spread")["StreamDescription"]["StreamARN"]
        python_function(
            a.client(),
            "reader",
            WORKER,
            Environment={"Variables": {"RECORDER_PORT": str(recorder.port)}},
        )
        a.client().create_event_source_mapping(
            FunctionName="reader", EventSourceArn=arn, StartingPosition="TRIM_HORIZON"
        )

        def put(label: str, count: int) -> set[str]:
            data = {f"{label}-{i}" for i in range(count)}
            kinesis.put_records(
                StreamName="spread",
                Records=[{"Data": d.encode(), "PartitionKey": d} for d in sorted(data)],
            )
            return data

        before = put("before", 60)
        assert wait_for(recorder, before, 20) >= before
        # Spread: every shard leased, two a node, once the nodes have seen each other.
        deadline = time.monotonic() + 15
        held = leases(url)
        while time.monotonic() < deadline and sorted(
            list(held.values()).count(n) for n in set(held.values())
        ) != [2, 2, 2]:
            time.sleep(0.2)
            held = leases(url)
        assert len(held) == SHARDS and len(set(held.values())) == 3, held
        during = put("during", 60)
        b.kill()
        killed = time.monotonic()
        moved = None
        while time.monotonic() - killed < 15:
            held = leases(url)
            if len(held) == SHARDS and len(set(held.values())) == 2:
                moved = time.monotonic() - killed
                break
            time.sleep(0.1)
        assert moved is not None and moved < 10, held
        print(f"\nthe killed node's shards were leased by the others {moved:.1f} s after the kill")
        after = put("after", 60)
        everything = before | during | after
        assert wait_for(recorder, everything, 20) == everything  # none skipped
        print(f"records processed twice: {len(seen(recorder)) - len(everything)}")
    finally:
        for server in nodes:
            server.stop()

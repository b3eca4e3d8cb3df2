"""Streams shared by the nodes of a cluster (their store in the cluster's PostgreSQL).

A record's position in its shard is given by the database (under a lock of the shard,
so two nodes appending at once never take the same one), and every append is announced
with each shard's next position: the other nodes move their shards on and wake their
readers (GetRecords, mappings). Streams made, changed or deleted through another node are
read again when announced, or when a name is not found here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from lamina.services.kinesis.store import StreamStore

CHANNEL = "lamina_kinesis"  # "<node> streams" | "<node> <stream id> <shard>:<next>,..."


class StreamSync:
    def __init__(self, store: StreamStore) -> None:
        self.store = store
        self.node = uuid.uuid4().hex[:12]
        self.on_streams: Callable[[], None] = lambda: None
        self.on_appended: Callable[[int, dict[int, int]], None] = lambda _id, _next: None

    def changed_streams(self) -> None:
        self.store.notify(CHANNEL, f"{self.node} streams")

    def appended(self, stream_id: int, positions: Iterable[tuple[int, int]]) -> None:
        shards = ",".join(f"{shard}:{after}" for shard, after in positions)
        self.store.notify(CHANNEL, f"{self.node} {stream_id} {shards}")

    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        def told(payload: str) -> None:
            deliver(lambda: self._told(payload))

        self.store.listen(CHANNEL, told)

    def _told(self, payload: str) -> None:
        node, _, rest = payload.partition(" ")
        if node == self.node:
            return
        what, _, shards = rest.partition(" ")
        if not what.isdigit():  # "streams", or "" (the listening connection was lost)
            self.on_streams()
            return
        positions = {}
        for part in filter(None, shards.split(",")):
            shard, _, after = part.partition(":")
            positions[int(shard)] = int(after)
        self.on_appended(int(what), positions)

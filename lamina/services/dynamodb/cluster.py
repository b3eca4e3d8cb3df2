"""Table streams shared by the nodes of a cluster (their store in the cluster's
PostgreSQL): the database numbers each stream record (TableStore._numbered), and every
write that made records is announced with the stream's last sequence number and each
shard's next position, so the other nodes move their view on and wake their readers
(GetRecords, mappings)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from lamina.services.dynamodb.store import TableStore

CHANNEL = "lamina_dynamodb_streams"  # "<node> <stream id> <last sequence> <shard>:<next>,..."


class StreamSync:
    def __init__(self, store: TableStore) -> None:
        self.store = store
        self.node = uuid.uuid4().hex[:12]
        self.on_appended: Callable[[int, int, dict[int, int]], None] = lambda *_: None

    def appended(self, stream_id: int, last: int, positions: Iterable[tuple[int, int]]) -> None:
        shards = ",".join(f"{shard}:{after}" for shard, after in positions)
        self.store.notify(CHANNEL, f"{self.node} {stream_id} {last} {shards}")

    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        def told(payload: str) -> None:
            deliver(lambda: self._told(payload))

        self.store.listen(CHANNEL, told)

    def _told(self, payload: str) -> None:
        parts = payload.split(" ")
        if len(parts) != 4 or parts[0] == self.node or not parts[1].isdigit():
            return  # its own, or "" (the listening connection was lost: nothing to redo)
        positions = {}
        for part in filter(None, parts[3].split(",")):
            shard, _, after = part.partition(":")
            positions[int(shard)] = int(after)
        self.on_appended(int(parts[1]), int(parts[2]), positions)

"""DynamoDB Streams: the stream of a table, its shards, and the records item changes
make.

A table's items are spread over partitions by the hash of their partition key; each
partition has one open shard, so a key's changes are in one shard, in order. The number
of partitions follows AWS's rule for provisioned throughput (one per 3,000 read or
1,000 write units) and, for any table, the tag `lamina:partitions` (a Lamina tag: a test
or a demo can have a stream of four shards on an on-demand table). When it changes, and
when asked (POST /_lamina/dynamodb/handover), every open shard closes and children take
over its hash range, their ParentShardId naming it, as on AWS.

A stream record is written only when an item's data changes (a put of the same item, a
delete of a missing one, write nothing); it holds the keys and the images the view type
asks for. Records are kept 24 hours (a platform delay).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.store import SEQUENCE_BASE, StreamRecord, sequence_text

HASH_SPACE = 2**128
RETENTION = 24 * 3600.0
PARTITIONS_TAG = "lamina:partitions"
MAX_PARTITIONS = 64
VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")


def label_of(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def parse_sequence(text: str) -> int | None:
    return int(text) - SEQUENCE_BASE if text.isdigit() and int(text) >= SEQUENCE_BASE else None


@dataclass
class Shard:
    index: int
    id: str
    parent: str | None
    start_hash: int
    end_hash: int
    first_sequence: int
    next_n: int = 0
    end_sequence: int | None = None  # set when the shard closes
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.end_sequence is not None

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def record(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "parent": self.parent,
            "start_hash": str(self.start_hash),
            "end_hash": str(self.end_hash),
            "first_sequence": self.first_sequence,
            "end_sequence": self.end_sequence,
        }

    @classmethod
    def load(cls, record: dict[str, Any]) -> Shard:
        return cls(
            record["index"],
            record["id"],
            record["parent"],
            int(record["start_hash"]),
            int(record["end_hash"]),
            record["first_sequence"],
            end_sequence=record["end_sequence"],
        )


@dataclass(eq=False)
class Stream:
    """One stream of one table (a table has a new stream, a new label, each time its
    stream is turned on)."""

    id: int
    table_arn: str
    table_name: str
    region: str
    label: str
    view: str
    created: float
    key_schema: list[dict[str, str]]
    shards: list[Shard]
    enabled: bool = True
    last_sequence: int = 0
    changes: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def arn(self) -> str:
        return f"{self.table_arn}/stream/{self.label}"

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "view": self.view,
            "created": self.created,
            "enabled": self.enabled,
            "shards": [s.record() for s in self.shards],
        }

    def open_shards(self) -> list[Shard]:
        return [s for s in self.shards if not s.closed]

    def shard_for(self, hash_key: int) -> Shard:
        for shard in self.open_shards():
            if shard.start_hash <= hash_key <= shard.end_hash:
                return shard
        return self.open_shards()[-1]

    def changed(self) -> None:
        """Its shards changed (a handover, the stream turned off): wake pollers."""
        waiters, self.changes = self.changes, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
        for shard in self.shards:
            shard.wake()

    async def wait_changed(self, timeout: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.changes.append(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            if future in self.changes:
                self.changes.remove(future)

    # Shards ------------------------------------------------------------------------------
    def open(self, partitions: int, now: float) -> None:
        """Close the open shards (if any) and open `partitions` children over the hash
        space; a child's parent is the shard that held the start of its range."""
        previous = self.open_shards()
        for shard in previous:
            shard.end_sequence = self.last_sequence
        step = HASH_SPACE // partitions
        for part in range(partitions):
            start = part * step
            end = HASH_SPACE - 1 if part == partitions - 1 else (part + 1) * step - 1
            parent = next((s.id for s in previous if s.start_hash <= start <= s.end_hash), None)
            index = len(self.shards)
            self.shards.append(
                Shard(index, shard_id(now, index), parent, start, end, self.last_sequence + 1)
            )
        self.changed()

    def close(self) -> None:
        for shard in self.open_shards():
            shard.end_sequence = self.last_sequence
        self.enabled = False
        self.changed()


def shard_id(now: float, index: int) -> str:
    """AWS's form: shardId-<20 digits of creation time>-<8 hex digits>."""
    return f"shardId-{int(now * 1000) + index:020d}-{secrets.token_hex(4)}"


def partitions_for(record: dict[str, Any]) -> int:
    """AWS's partitions for throughput, or the table's `lamina:partitions` tag."""
    tagged = (record.get("tags") or {}).get(PARTITIONS_TAG)
    if tagged is not None and tagged.isdigit():
        return max(1, min(MAX_PARTITIONS, int(tagged)))
    throughput = record.get("ProvisionedThroughput") or {}
    reads = throughput.get("ReadCapacityUnits") or 0
    writes = throughput.get("WriteCapacityUnits") or 0
    return max(1, min(MAX_PARTITIONS, math.ceil(reads / 3000 + writes / 1000)))


def change_record(
    stream: Stream,
    keys: v.Item,
    hash_value: v.Value,
    old: v.Item | None,
    new: v.Item | None,
    now: float,
) -> StreamRecord | None:
    """The stream record of a change of one item; None when nothing changed."""
    if old is None and new is None:
        return None
    if old is not None and new is not None and _same(old, new):
        return None
    name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
    shard = stream.shard_for(v.partition_hash(hash_value))
    stream.last_sequence += 1
    sequence = stream.last_sequence
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": int(now),
        "Keys": keys,
    }
    size = v.item_size(keys)
    if stream.view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and new is not None:
        dynamodb["NewImage"] = new
        size += v.item_size(new)
    if stream.view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and old is not None:
        dynamodb["OldImage"] = old
        size += v.item_size(old)
    dynamodb["SequenceNumber"] = sequence_text(sequence)
    dynamodb["SizeBytes"] = size
    dynamodb["StreamViewType"] = stream.view
    record = {
        "eventID": uuid.uuid4().hex,
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": stream.region,
        "dynamodb": dynamodb,
    }
    key_text = "|".join(f"{k}={v.key_bytes(keys[k]).hex()}" for k in sorted(keys))
    n = shard.next_n
    shard.next_n += 1
    return StreamRecord(shard.index, n, sequence, key_text, record, now)


def _same(a: v.Item, b: v.Item) -> bool:
    return a.keys() == b.keys() and all(v.equal(a[k], b[k]) for k in a)


def now_wall() -> float:
    return time.time()

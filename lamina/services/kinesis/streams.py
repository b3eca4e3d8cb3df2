"""Kinesis data streams: their shards, sequence numbers and records.

Records live in the store (store.py), keyed by shard and position n; `Streams` keeps
each shard's next position and the futures of readers waiting at the tip, and is the
one owner of the streams' state. A partition key goes to the shard whose hash key range
holds the MD5 of the key, as on AWS. Sequence numbers are 56-digit decimals that grow
within a shard and encode the shard and the position, so an iterator can start at or
after any of them.

The operations are in provider.py; event source mappings read shards through poll.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lamina.clock import Clock
from lamina.errors import AwsError
from lamina.services.kinesis.cluster import StreamSync
from lamina.services.kinesis.store import StoredRecord, StreamStore

HASH_SPACE = 2**128
SEQUENCE_BASE = 49 * 10**54  # 56 digits, like AWS's
SHARD_SLOTS = 10_000  # sequence = BASE + n * SHARD_SLOTS + shard index
NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
DEFAULT_RETENTION = 24
MAX_RETENTION = 8760
ON_DEMAND_SHARDS = 4
MAX_SHARDS = 500  # the default shard quota of an account in most regions
RECORD_LIMIT = 1_048_576  # data + partition key
PUT_RECORDS_LIMIT = 500
PUT_RECORDS_BYTES = 5 * 1_048_576
GET_RECORDS_LIMIT = 10_000
GET_RECORDS_BYTES = 10 * 1_048_576
ITERATOR_LIFETIME = 300.0  # seconds, a platform delay
TRIM_EVERY = 1000  # puts between retention sweeps of a stream


def kinesis_error(code: str, message: str) -> AwsError:
    return AwsError(code, message, 400)


def invalid_argument(message: str) -> AwsError:
    return kinesis_error("InvalidArgumentException", message)


def shard_id(index: int) -> str:
    return f"shardId-{index:012d}"


def sequence_number(shard: int, n: int) -> str:
    return str(SEQUENCE_BASE + n * SHARD_SLOTS + shard)


def parse_sequence(raw: str) -> tuple[int, int] | None:
    """(shard index, n) of a sequence number, or None if it is not one of ours."""
    if not raw.isdigit():
        return None
    value = int(raw) - SEQUENCE_BASE
    if value < 0:
        return None
    n, shard = divmod(value, SHARD_SLOTS)
    return shard, n


def hash_ranges(count: int) -> list[tuple[int, int]]:
    """AWS's even split of the 128-bit hash key space over `count` shards."""
    step = HASH_SPACE // count
    ranges = []
    for index in range(count):
        start = index * step
        end = HASH_SPACE - 1 if index == count - 1 else (index + 1) * step - 1
        ranges.append((start, end))
    return ranges


def iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Shard:
    index: int
    start_hash: int
    end_hash: int
    next_n: int = 0
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return shard_id(self.index)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)


@dataclass(eq=False)
class Stream:
    id: int
    account: str
    region: str
    name: str
    record: dict[str, Any]  # created, retention, mode, tags
    shards: list[Shard]
    deleted: bool = False
    puts: int = 0
    changes: list[asyncio.Future[None]] = field(default_factory=list)

    async def wait_changed(self, timeout: float) -> None:
        """Until the stream goes (Kinesis shards here never change), or `timeout`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.changes.append(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            if future in self.changes:
                self.changes.remove(future)

    @property
    def arn(self) -> str:
        return f"arn:aws:kinesis:{self.region}:{self.account}:stream/{self.name}"

    @property
    def retention_hours(self) -> int:
        return int(self.record.get("retention", DEFAULT_RETENTION))

    def shard_for(self, hash_key: int) -> Shard:
        for shard in self.shards:
            if shard.start_hash <= hash_key <= shard.end_hash:
                return shard
        return self.shards[-1]


@dataclass(frozen=True, slots=True)
class Iterator:
    stream_id: int
    shard: int
    n: int
    issued: float  # wall-clock seconds

    def encode(self) -> str:
        raw = json.dumps([self.stream_id, self.shard, self.n, self.issued])
        return base64.b64encode(raw.encode()).decode()

    @classmethod
    def decode(cls, token: str) -> Iterator:
        try:
            stream_id, shard, n, issued = json.loads(base64.b64decode(token, validate=True))
            return cls(int(stream_id), int(shard), int(n), float(issued))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
            raise invalid_argument("Invalid ShardIterator.") from None


class Streams:
    """Every stream of every account and region: the one owner of their state."""

    def __init__(self, store: StreamStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.streams: dict[tuple[str, str, str], Stream] = {}
        self.by_id: dict[int, Stream] = {}
        # Cluster mode: positions from the database, changes announced (cluster.py).
        self.sync = StreamSync(store) if store.shared else None
        if self.sync is not None:
            self.sync.on_streams = self.reload
            self.sync.on_appended = self._appended_elsewhere
        for row in list(store.streams.all()):
            stream = self._loaded(*row)
            self._register(stream)
            self.trim(stream)

    def _loaded(
        self, stream_id: int, account: str, region: str, name: str, record: dict[str, Any]
    ) -> Stream:
        ranges = hash_ranges(record["shards"])
        shards = [Shard(i, start, end) for i, (start, end) in enumerate(ranges)]
        for index, next_n in self.store.next_positions(stream_id).items():
            if index < len(shards):
                shards[index].next_n = next_n
        return Stream(stream_id, account, region, name, record, shards)

    def reload(self) -> None:
        """Cluster mode: streams made, changed or deleted through other nodes."""
        rows = {row[0]: row for row in self.store.streams.all()}
        for stream in [s for s in self.by_id.values() if s.id not in rows]:
            self._gone(stream)
        for stream_id, row in rows.items():
            known = self.by_id.get(stream_id)
            if known is None:
                self._register(self._loaded(*row))
            else:
                known.record = row[4]

    def _appended_elsewhere(self, stream_id: int, positions: dict[int, int]) -> None:
        stream = self.by_id.get(stream_id)
        if stream is None:
            self.reload()
            return
        for index, after in positions.items():
            if index < len(stream.shards) and after > stream.shards[index].next_n:
                stream.shards[index].next_n = after
                stream.shards[index].wake()

    def find(self, key: tuple[str, str, str]) -> Stream | None:
        """The stream (account, region, name); in cluster mode one made through another
        node a moment ago is found too."""
        stream = self.streams.get(key)
        if stream is None and self.sync is not None:
            self.reload()
            stream = self.streams.get(key)
        return stream

    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        if self.sync is not None:
            self.sync.listen(deliver)

    def _register(self, stream: Stream) -> None:
        self.streams[(stream.account, stream.region, stream.name)] = stream
        self.by_id[stream.id] = stream

    # Lookup ----------------------------------------------------------------------------
    def stream_by_arn(self, arn: str) -> Stream | None:
        found = re.fullmatch(r"arn:aws[a-zA-Z-]*:kinesis:([^:]+):(\d{12}):stream/(.+)", arn)
        if found is None:
            return None
        return self.find((found.group(2), found.group(1), found.group(3)))

    # Reading, for GetRecords and for mappings ------------------------------------------
    def _horizon(self, stream: Stream) -> float:
        """Records that arrived before this wall-clock time are past their retention."""
        return self.clock.wall() - self.clock.platform_delay(stream.retention_hours * 3600.0)

    def read(
        self,
        stream: Stream,
        shard: Shard,
        start: int,
        limit: int,
        max_bytes: int = GET_RECORDS_BYTES,
    ) -> list[StoredRecord]:
        records = self.store.read(stream.id, shard.index, start, limit, max_bytes)
        horizon = self._horizon(stream)
        return [r for r in records if r.arrival >= horizon]

    def trim_horizon(self, stream: Stream, shard: Shard) -> int:
        oldest = self.store.oldest(stream.id, shard.index)
        if oldest is None:
            return shard.next_n
        first = self.store.first_at(stream.id, shard.index, self._horizon(stream))
        return shard.next_n if first is None else max(first, oldest)

    def at_timestamp(self, stream: Stream, shard: Shard, timestamp: float) -> int:
        first = self.store.first_at(stream.id, shard.index, max(timestamp, self._horizon(stream)))
        return shard.next_n if first is None else first

    async def wait(self, stream: Stream, shard: Shard, position: int, timeout: float) -> None:
        """Until a record at or after `position` exists, the stream goes, or `timeout`."""
        if shard.next_n > position or stream.deleted:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shard.waiters.append(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            if future in shard.waiters:
                shard.waiters.remove(future)

    def trim(self, stream: Stream) -> None:
        self.store.trim(stream.id, self._horizon(stream))

    # Writing ---------------------------------------------------------------------------
    def place(self, stream: Stream, entry: dict[str, Any]) -> tuple[Shard, str, bytes]:
        key = entry.get("PartitionKey")
        data = entry.get("Data")
        if key is None:
            raise invalid_argument("PartitionKey is required.")
        if data is None:
            raise invalid_argument("Data is required.")
        if not 1 <= len(key) <= 256:
            raise kinesis_error(
                "ValidationException",
                f"1 validation error detected: Value '{key}' at 'partitionKey' failed to satisfy "
                "constraint: Member must have length between 1 and 256",
            )
        data = bytes(data)
        if len(data) + len(key.encode()) > RECORD_LIMIT:
            raise kinesis_error(
                "ValidationException",
                "1 validation error detected: Value at 'data' failed to satisfy constraint: "
                f"Member must have length less than or equal to {RECORD_LIMIT}",
            )
        explicit = entry.get("ExplicitHashKey")
        if explicit is not None:
            if not re.fullmatch(r"0|[1-9]\d{0,38}", explicit) or int(explicit) >= HASH_SPACE:
                raise invalid_argument(
                    f"Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, "
                    f"{HASH_SPACE - 1}]. Specified value was {explicit}"
                )
            hash_key = int(explicit)
        else:
            hash_key = int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest())
        return stream.shard_for(hash_key), key, data

    def append(self, stream: Stream, placed: list[tuple[Shard, str, bytes]]) -> list[StoredRecord]:
        now = self.clock.wall()
        records = []
        if self.sync is not None:  # numbered by the database, announced to the others
            rows = [(shard.index, key, data, now) for shard, key, data in placed]
            records = self.store.append_numbered(stream.id, rows)
            after = {r.shard: r.n + 1 for r in records}
            for index, n in after.items():
                stream.shards[index].next_n = max(stream.shards[index].next_n, n)
            self.sync.appended(stream.id, after.items())
        else:
            for shard, key, data in placed:
                records.append(StoredRecord(shard.index, shard.next_n, key, data, now))
                shard.next_n += 1
            self.store.append(stream.id, records)
        for shard in {shard.index: shard for shard, _, _ in placed}.values():
            shard.wake()
        stream.puts += len(records)
        if stream.puts >= TRIM_EVERY:
            stream.puts = 0
            self.trim(stream)
        return records

    # Changes the operations ask for ----------------------------------------------------
    def create(
        self, account: str, region: str, name: str, record: dict[str, Any], count: int
    ) -> Stream:
        stream_id = self.store.streams.insert(account, region, name, record)
        shards = [Shard(i, start, end) for i, (start, end) in enumerate(hash_ranges(count))]
        stream = Stream(stream_id, account, region, name, record, shards)
        self._register(stream)
        if self.sync is not None:
            self.sync.changed_streams()
        return stream

    def delete(self, stream: Stream) -> None:
        self.store.delete_stream(stream.id)
        self._gone(stream)
        if self.sync is not None:
            self.sync.changed_streams()

    def _gone(self, stream: Stream) -> None:
        stream.deleted = True
        key = (stream.account, stream.region, stream.name)
        if self.streams.get(key) is stream:
            del self.streams[key]
        self.by_id.pop(stream.id, None)
        for shard in stream.shards:
            shard.wake()
        for future in stream.changes:
            if not future.done():
                future.set_result(None)

    def save(self, stream: Stream) -> None:
        """The stream's record (retention, tags) changed."""
        self.store.streams.update(stream.id, stream.record)
        if self.sync is not None:
            self.sync.changed_streams()

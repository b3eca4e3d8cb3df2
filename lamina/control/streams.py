"""Kinesis-compatible data streams: the Kinesis operations and the shards behind them.

Records live in the store (store/streams.py), keyed by shard and position n; this module
keeps each shard's next position and the futures of readers waiting at the tip. A
partition key goes to the shard whose hash key range holds the MD5 of the key, as on
AWS. Sequence numbers are 56-digit decimals that grow within a shard and encode the
shard and the position, so an iterator can start at or after any of them.

Event source mappings read shards through `read` and `wait` (control/mappings.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.store.streams import StoredRecord, StreamStore

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
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise invalid_argument("Invalid ShardIterator.") from None


class Streams:
    """Every stream of every account and region, and the Kinesis operations on them."""

    def __init__(self, store: StreamStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.streams: dict[tuple[str, str, str], Stream] = {}
        self.by_id: dict[int, Stream] = {}
        for stream_id, account, region, name, record in list(store.streams()):
            shards = [
                Shard(i, start, end) for i, (start, end) in enumerate(hash_ranges(record["shards"]))
            ]
            for index, next_n in store.next_positions(stream_id).items():
                if index < len(shards):
                    shards[index].next_n = next_n
            stream = Stream(stream_id, account, region, name, record, shards)
            self._register(stream)
            self._trim(stream)

    def _register(self, stream: Stream) -> None:
        self.streams[(stream.account, stream.region, stream.name)] = stream
        self.by_id[stream.id] = stream

    # Lookup ----------------------------------------------------------------------------
    def stream_by_arn(self, arn: str) -> Stream | None:
        found = re.fullmatch(r"arn:aws[a-zA-Z-]*:kinesis:([^:]+):(\d{12}):stream/(.+)", arn)
        if found is None:
            return None
        return self.streams.get((found.group(2), found.group(1), found.group(3)))

    def _stream(self, ctx: RequestContext, params: dict[str, Any]) -> Stream:
        name = params.get("StreamName")
        arn = params.get("StreamARN")
        if arn:
            stream = self.stream_by_arn(arn)
            found = re.fullmatch(r"arn:aws[a-zA-Z-]*:kinesis:[^:]+:(\d{12}):stream/(.+)", arn)
            if found is None:
                raise invalid_argument(f"Invalid StreamARN {arn}.")
            if name and name != found.group(2):
                raise invalid_argument("StreamName and StreamARN do not refer to the same stream.")
            if stream is None:
                raise kinesis_error(
                    "ResourceNotFoundException",
                    f"Stream {found.group(2)} under account {found.group(1)} not found.",
                )
            return stream
        if not name:
            raise invalid_argument("Either StreamName or StreamARN must be provided.")
        stream = self.streams.get((ctx.account, ctx.region, name))
        if stream is None:
            raise kinesis_error(
                "ResourceNotFoundException", f"Stream {name} under account {ctx.account} not found."
            )
        return stream

    def _shard(self, stream: Stream, raw_id: str) -> Shard:
        found = re.fullmatch(r"(?:shardId-)?(\d{1,12})", raw_id)
        if found is not None and int(found.group(1)) < len(stream.shards):
            return stream.shards[int(found.group(1))]
        raise kinesis_error(
            "ResourceNotFoundException",
            f"Shard {raw_id} in stream {stream.name} under account {stream.account} does not exist",
        )

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

    def _trim(self, stream: Stream) -> None:
        self.store.trim(stream.id, self._horizon(stream))

    # Writing ---------------------------------------------------------------------------
    def _place(self, stream: Stream, entry: dict[str, Any]) -> tuple[Shard, str, bytes]:
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

    def _append(self, stream: Stream, placed: list[tuple[Shard, str, bytes]]) -> list[StoredRecord]:
        now = self.clock.wall()
        records = []
        for shard, key, data in placed:
            records.append(StoredRecord(shard.index, shard.next_n, key, data, now))
            shard.next_n += 1
        self.store.append(stream.id, records)
        for shard in {shard.index: shard for shard, _, _ in placed}.values():
            shard.wake()
        stream.puts += len(records)
        if stream.puts >= TRIM_EVERY:
            stream.puts = 0
            self._trim(stream)
        return records

    # Operations ------------------------------------------------------------------------
    async def CreateStream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["StreamName"]
        if not NAME.fullmatch(name):
            raise kinesis_error(
                "ValidationException",
                f"1 validation error detected: Value '{name}' at 'streamName' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
            )
        mode = (params.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
        count = params.get("ShardCount")
        if count is None:
            if mode != "ON_DEMAND":
                raise invalid_argument("ShardCount is required for a PROVISIONED stream.")
            count = ON_DEMAND_SHARDS
        if not 1 <= count <= MAX_SHARDS:
            raise kinesis_error(
                "LimitExceededException",
                f"This request would exceed the shard limit for the account {ctx.account} in "
                f"{ctx.region}. Current shard count for the account: 0. Limit: {MAX_SHARDS}. "
                f"Number of additional shards that would have resulted from this request: "
                f"{count}.",
            )
        if (ctx.account, ctx.region, name) in self.streams:
            raise kinesis_error(
                "ResourceInUseException",
                f"Stream {name} under account {ctx.account} already exists.",
            )
        record = {
            "shards": count,
            "created": self.clock.wall(),
            "retention": DEFAULT_RETENTION,
            "mode": mode,
            "tags": dict(params.get("Tags") or {}),
        }
        stream_id = self.store.insert_stream(ctx.account, ctx.region, name, record)
        shards = [Shard(i, start, end) for i, (start, end) in enumerate(hash_ranges(count))]
        self._register(Stream(stream_id, ctx.account, ctx.region, name, record, shards))
        return {}

    async def DeleteStream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        self.store.delete_stream(stream.id)
        stream.deleted = True
        del self.streams[(stream.account, stream.region, stream.name)]
        self.by_id.pop(stream.id, None)
        for shard in stream.shards:
            shard.wake()
        return {}

    def _shard_description(self, shard: Shard) -> dict[str, Any]:
        return {
            "ShardId": shard.id,
            "HashKeyRange": {
                "StartingHashKey": str(shard.start_hash),
                "EndingHashKey": str(shard.end_hash),
            },
            "SequenceNumberRange": {"StartingSequenceNumber": sequence_number(shard.index, 0)},
        }

    def _summary(self, stream: Stream) -> dict[str, Any]:
        return {
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": stream.record.get("mode", "PROVISIONED")},
            "RetentionPeriodHours": stream.retention_hours,
            "StreamCreationTimestamp": dt.datetime.fromtimestamp(stream.record["created"], dt.UTC),
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
        }

    async def DescribeStream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        limit = params.get("Limit") or 100
        shards = stream.shards
        after = params.get("ExclusiveStartShardId")
        if after:
            shards = [s for s in shards if s.id > after]
        description = self._summary(stream)
        description["Shards"] = [self._shard_description(s) for s in shards[:limit]]
        description["HasMoreShards"] = len(shards) > limit
        return {"StreamDescription": description}

    async def DescribeStreamSummary(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        summary = self._summary(stream)
        summary["OpenShardCount"] = len(stream.shards)
        summary["ConsumerCount"] = 0
        return {"StreamDescriptionSummary": summary}

    async def ListShards(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        token = params.get("NextToken")
        if token:
            if params.get("StreamName") or params.get("ExclusiveStartShardId"):
                raise invalid_argument(
                    "NextToken and StreamName or ExclusiveStartShardId cannot be provided together."
                )
            try:
                stream_name, after = json.loads(base64.b64decode(token, validate=True))
            except (binascii.Error, ValueError, TypeError):
                raise invalid_argument("Invalid NextToken.") from None
            stream = self._stream(ctx, {"StreamName": stream_name})
        else:
            stream = self._stream(ctx, params)
            after = params.get("ExclusiveStartShardId") or ""
        limit = params.get("MaxResults") or 1000
        shards = [s for s in stream.shards if s.id > after]
        result: dict[str, Any] = {"Shards": [self._shard_description(s) for s in shards[:limit]]}
        if len(shards) > limit:
            raw = json.dumps([stream.name, shards[limit - 1].id]).encode()
            result["NextToken"] = base64.b64encode(raw).decode()
        return result

    async def ListStreams(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        limit = params.get("Limit") or 100
        after = params.get("ExclusiveStartStreamName") or ""
        if params.get("NextToken"):
            try:
                after = base64.b64decode(params["NextToken"], validate=True).decode()
            except (binascii.Error, ValueError):
                raise invalid_argument("Invalid NextToken.") from None
        streams = sorted(
            (s for (a, r, n), s in self.streams.items() if a == ctx.account and r == ctx.region),
            key=lambda s: s.name,
        )
        streams = [s for s in streams if s.name > after]
        page = streams[:limit]
        result: dict[str, Any] = {
            "StreamNames": [s.name for s in page],
            "HasMoreStreams": len(streams) > limit,
            "StreamSummaries": [
                {
                    "StreamName": s.name,
                    "StreamARN": s.arn,
                    "StreamStatus": "ACTIVE",
                    "StreamModeDetails": {"StreamMode": s.record.get("mode", "PROVISIONED")},
                    "StreamCreationTimestamp": dt.datetime.fromtimestamp(
                        s.record["created"], dt.UTC
                    ),
                }
                for s in page
            ],
        }
        if len(streams) > limit:
            result["NextToken"] = base64.b64encode(page[-1].name.encode()).decode()
        return result

    async def IncreaseStreamRetentionPeriod(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return self._retention(ctx, params, increase=True)

    async def DecreaseStreamRetentionPeriod(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return self._retention(ctx, params, increase=False)

    def _retention(
        self, ctx: RequestContext, params: dict[str, Any], increase: bool
    ) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        hours = params["RetentionPeriodHours"]
        if not DEFAULT_RETENTION <= hours <= MAX_RETENTION:
            raise invalid_argument(
                f"Minimum allowed retention period is {DEFAULT_RETENTION} hours. Maximum allowed "
                f"retention period is {MAX_RETENTION} hours. Requested retention period "
                f"({hours} hours) is out of range."
            )
        current = stream.retention_hours
        if increase and hours < current:
            raise invalid_argument(
                f"Requested retention period ({hours} hours) for stream {stream.name} can not be "
                f"shorter than existing retention period ({current} hours). Use "
                "DecreaseRetentionPeriod API."
            )
        if not increase and hours > current:
            raise invalid_argument(
                f"Requested retention period ({hours} hours) for stream {stream.name} can not be "
                f"longer than existing retention period ({current} hours). Use "
                "IncreaseRetentionPeriod API."
            )
        stream.record["retention"] = hours
        self.store.update_stream(stream.id, stream.record)
        self._trim(stream)
        return {}

    async def AddTagsToStream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        stream.record.setdefault("tags", {}).update(params.get("Tags") or {})
        self.store.update_stream(stream.id, stream.record)
        return {}

    async def ListTagsForStream(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        tags = sorted((stream.record.get("tags") or {}).items())
        return {"Tags": [{"Key": k, "Value": v} for k, v in tags], "HasMoreTags": False}

    async def PutRecord(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        placed = self._place(stream, params)
        (record,) = self._append(stream, [placed])
        return {
            "ShardId": shard_id(record.shard),
            "SequenceNumber": sequence_number(record.shard, record.n),
            "EncryptionType": "NONE",
        }

    async def PutRecords(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        entries = params.get("Records") or []
        if not 1 <= len(entries) <= PUT_RECORDS_LIMIT:
            raise kinesis_error(
                "ValidationException",
                f"1 validation error detected: Value '{len(entries)}' at 'records' failed to "
                f"satisfy constraint: Member must have length less than or equal to "
                f"{PUT_RECORDS_LIMIT}",
            )
        total = sum(
            len(bytes(e.get("Data") or b"")) + len(e.get("PartitionKey") or "") for e in entries
        )
        if total > PUT_RECORDS_BYTES:
            raise invalid_argument(
                f"Records size exceeds {PUT_RECORDS_BYTES // 1_048_576} MB limit"
            )
        placed = [self._place(stream, entry) for entry in entries]
        records = self._append(stream, placed)
        return {
            "FailedRecordCount": 0,
            "Records": [
                {"SequenceNumber": sequence_number(r.shard, r.n), "ShardId": shard_id(r.shard)}
                for r in records
            ],
            "EncryptionType": "NONE",
        }

    async def GetShardIterator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params)
        shard = self._shard(stream, params["ShardId"])
        kind = params["ShardIteratorType"]
        sequence = params.get("StartingSequenceNumber")
        if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            if not sequence:
                raise invalid_argument(
                    f"Must specify a StartingSequenceNumber for {kind} iterator type."
                )
            parsed = parse_sequence(sequence)
            if parsed is None:
                raise invalid_argument(
                    f"StartingSequenceNumber {sequence} used in GetShardIterator on shard "
                    f"{shard.id} in stream {stream.name} under account {stream.account} is "
                    "invalid."
                )
            if parsed[0] != shard.index:
                raise invalid_argument(
                    f"Invalid StartingSequenceNumber. It encodes {shard_id(parsed[0])}, while it "
                    f"was used in a call to a shard with {shard.id}"
                )
            position = parsed[1] + (1 if kind == "AFTER_SEQUENCE_NUMBER" else 0)
        elif kind == "AT_TIMESTAMP":
            stamp = params.get("Timestamp")
            if stamp is None:
                raise invalid_argument(
                    "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP."
                )
            position = self.at_timestamp(stream, shard, stamp.timestamp())
        elif kind == "LATEST":
            position = shard.next_n
        else:
            position = self.trim_horizon(stream, shard)
        iterator = Iterator(stream.id, shard.index, position, self.clock.wall())
        return {"ShardIterator": iterator.encode()}

    async def GetRecords(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        iterator = Iterator.decode(params["ShardIterator"])
        stream = self.by_id.get(iterator.stream_id)
        if stream is None or stream.account != ctx.account:
            raise kinesis_error(
                "ResourceNotFoundException",
                "Shard iterator refers to a stream that does not exist.",
            )
        now = self.clock.wall()
        lifetime = self.clock.platform_delay(ITERATOR_LIFETIME)
        if now - iterator.issued > lifetime:
            raise kinesis_error(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {iso(iterator.issued)} "
                f"while right now it is {iso(now)} which is further in the future than the "
                f"tolerated delay of {int(lifetime * 1000)} milliseconds.",
            )
        limit = params.get("Limit") or GET_RECORDS_LIMIT
        if not 1 <= limit <= GET_RECORDS_LIMIT:
            raise invalid_argument(
                f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
                f"constraint: Member must have value less than or equal to {GET_RECORDS_LIMIT}"
            )
        shard = stream.shards[iterator.shard]
        start = (
            max(iterator.n, self.trim_horizon(stream, shard))
            if iterator.n < shard.next_n
            else iterator.n
        )
        records = self.read(stream, shard, start, limit)
        next_n = records[-1].n + 1 if records else start
        behind = 0
        if next_n < shard.next_n:
            arrival = self.store.arrival(stream.id, shard.index, shard.next_n - 1)
            if arrival is not None and records:
                behind = max(0, int((arrival - records[-1].arrival) * 1000))
        return {
            "Records": [
                {
                    "SequenceNumber": sequence_number(r.shard, r.n),
                    "ApproximateArrivalTimestamp": dt.datetime.fromtimestamp(r.arrival, dt.UTC),
                    "Data": r.data,
                    "PartitionKey": r.partition_key,
                }
                for r in records
            ],
            "NextShardIterator": Iterator(stream.id, shard.index, next_n, now).encode(),
            "MillisBehindLatest": behind,
        }


def millis_behind(arrival: float, now: float | None = None) -> int:
    return max(0, math.floor(((now if now is not None else time.time()) - arrival) * 1000))

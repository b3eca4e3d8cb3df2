"""The Kinesis operations (botocore's `kinesis` model, json 1.1), over the streams of
streams.py: requests are checked here, state is changed by `Streams`."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.services.kinesis import policy
from lamina.services.kinesis.streams import (
    DEFAULT_RETENTION,
    GET_RECORDS_LIMIT,
    ITERATOR_LIFETIME,
    MAX_RETENTION,
    MAX_SHARDS,
    NAME,
    ON_DEMAND_SHARDS,
    PUT_RECORDS_BYTES,
    PUT_RECORDS_LIMIT,
    Iterator,
    Shard,
    Stream,
    Streams,
    invalid_argument,
    iso,
    kinesis_error,
    parse_sequence,
    sequence_number,
    shard_id,
)


class KinesisProvider:
    """The Kinesis operations the gateway dispatches to."""

    def __init__(self, streams: Streams, clock: Clock) -> None:
        self.streams = streams
        self.clock = clock

    def _stream(self, ctx: RequestContext, params: dict[str, Any], operation: str) -> Stream:
        name = params.get("StreamName")
        arn = params.get("StreamARN")
        if arn:
            stream = self.streams.stream_by_arn(arn)
            found = re.fullmatch(r"arn:aws[a-zA-Z-]*:kinesis:[^:]+:(\d{12}):stream/(.+)", arn)
            if found is None:
                raise invalid_argument(f"Invalid StreamARN {arn}.")
            if name and name != found.group(2):
                raise invalid_argument("StreamName and StreamARN do not refer to the same stream.")
            if found.group(1) != ctx.account:
                # Walls: another account's stream, through its resource policy only;
                # answered alike whether or not it exists.
                if stream is None or not policy.permitted(stream, ctx, operation):
                    raise policy.denied(ctx, operation, arn)
                return stream
            if stream is None:
                raise kinesis_error(
                    "ResourceNotFoundException",
                    f"Stream {found.group(2)} under account {found.group(1)} not found.",
                )
            return stream
        if not name:
            raise invalid_argument("Either StreamName or StreamARN must be provided.")
        stream = self.streams.find((ctx.account, ctx.region, name))
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
        if self.streams.find((ctx.account, ctx.region, name)) is not None:
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
        self.streams.create(ctx.account, ctx.region, name, record, count)
        return {}

    async def DeleteStream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self.streams.delete(self._stream(ctx, params, "DeleteStream"))
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
        stream = self._stream(ctx, params, "DescribeStream")
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
        stream = self._stream(ctx, params, "DescribeStreamSummary")
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
            except (binascii.Error, ValueError, TypeError, RecursionError):
                raise invalid_argument("Invalid NextToken.") from None
            named = "StreamARN" if str(stream_name).startswith("arn:") else "StreamName"
            stream = self._stream(ctx, {named: stream_name}, "ListShards")
        else:
            stream = self._stream(ctx, params, "ListShards")
            after = params.get("ExclusiveStartShardId") or ""
        limit = params.get("MaxResults") or 1000
        shards = [s for s in stream.shards if s.id > after]
        result: dict[str, Any] = {"Shards": [self._shard_description(s) for s in shards[:limit]]}
        if len(shards) > limit:
            named = stream.arn if stream.account != ctx.account else stream.name
            raw = json.dumps([named, shards[limit - 1].id]).encode()
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
            (
                s
                for (a, r, n), s in self.streams.streams.items()
                if a == ctx.account and r == ctx.region
            ),
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
        operation = f"{'Increase' if increase else 'Decrease'}StreamRetentionPeriod"
        stream = self._stream(ctx, params, operation)
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
        self.streams.save(stream)
        self.streams.trim(stream)
        return {}

    async def AddTagsToStream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params, "AddTagsToStream")
        stream.record.setdefault("tags", {}).update(params.get("Tags") or {})
        self.streams.save(stream)
        return {}

    async def ListTagsForStream(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        stream = self._stream(ctx, params, "ListTagsForStream")
        tags = sorted((stream.record.get("tags") or {}).items())
        return {"Tags": [{"Key": k, "Value": v} for k, v in tags], "HasMoreTags": False}

    async def PutResourcePolicy(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return policy.put(self.streams, ctx, params)

    async def GetResourcePolicy(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return policy.get(self.streams, ctx, params)

    async def DeleteResourcePolicy(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return policy.delete(self.streams, ctx, params)

    async def PutRecord(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params, "PutRecord")
        placed = self.streams.place(stream, params)
        (record,) = self.streams.append(stream, [placed])
        return {
            "ShardId": shard_id(record.shard),
            "SequenceNumber": sequence_number(record.shard, record.n),
            "EncryptionType": "NONE",
        }

    async def PutRecords(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params, "PutRecords")
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
        placed = [self.streams.place(stream, entry) for entry in entries]
        records = self.streams.append(stream, placed)
        return {
            "FailedRecordCount": 0,
            "Records": [
                {"SequenceNumber": sequence_number(r.shard, r.n), "ShardId": shard_id(r.shard)}
                for r in records
            ],
            "EncryptionType": "NONE",
        }

    async def GetShardIterator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params, "GetShardIterator")
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
            position = self.streams.at_timestamp(stream, shard, stamp.timestamp())
        elif kind == "LATEST":
            position = shard.next_n
        else:
            position = self.streams.trim_horizon(stream, shard)
        iterator = Iterator(stream.id, shard.index, position, self.clock.wall())
        return {"ShardIterator": iterator.encode()}

    async def GetRecords(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        iterator = Iterator.decode(params["ShardIterator"])
        stream = self.streams.by_id.get(iterator.stream_id)
        if stream is None or (
            stream.account != ctx.account and not policy.permitted(stream, ctx, "GetRecords")
        ):
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
            max(iterator.n, self.streams.trim_horizon(stream, shard))
            if iterator.n < shard.next_n
            else iterator.n
        )
        records = self.streams.read(stream, shard, start, limit)
        next_n = records[-1].n + 1 if records else start
        behind = 0
        if next_n < shard.next_n:
            arrival = self.streams.store.arrival(stream.id, shard.index, shard.next_n - 1)
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

"""The DynamoDB Streams operations (botocore's `dynamodbstreams` model): ListStreams,
DescribeStream, GetShardIterator, GetRecords, over the streams of tables.py."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.store import StreamRecord
from lamina.services.dynamodb.streams import (
    Shard,
    Stream,
    parse_sequence,
    sequence_text,
)
from lamina.services.dynamodb.tables import Tables

ITERATOR_LIFETIME = 900.0  # 15 minutes, a platform delay
GET_RECORDS_LIMIT = 1000
LIST_LIMIT = 100


def stream_not_found(arn: str) -> AwsError:
    return AwsError(
        "ResourceNotFoundException", f"Requested resource not found: Stream: {arn} not found", 400
    )


def shown_record(record: StreamRecord) -> dict[str, Any]:
    """A stream record as GetRecords returns it."""
    out = json.loads(json.dumps(record.record, default=_bytes))  # a copy
    dynamodb = dict(record.record["dynamodb"])
    dynamodb["ApproximateCreationDateTime"] = dt.datetime.fromtimestamp(
        dynamodb["ApproximateCreationDateTime"], dt.UTC
    )
    out["dynamodb"] = dynamodb
    return dict(out)


def _bytes(value: Any) -> str:
    return base64.b64encode(value).decode()


class StreamsProvider:
    def __init__(self, tables: Tables, clock: Clock) -> None:
        self.tables = tables
        self.clock = clock

    def _stream(self, ctx: RequestContext, arn: str) -> Stream:
        stream = self.tables.stream_by_arn(arn)
        if stream is None or f":{ctx.account}:" not in arn:
            raise stream_not_found(arn)
        return stream

    def horizon(self) -> float:
        return self.tables.horizon()

    # Positions -----------------------------------------------------------------------------
    def trim_horizon(self, stream: Stream, shard: Shard) -> int:
        oldest = self.tables.store.first_at(stream.id, shard.index, self.horizon())
        return shard.next_n if oldest is None else oldest

    def read(self, stream: Stream, shard: Shard, start: int, limit: int) -> list[StreamRecord]:
        records = self.tables.store.read(stream.id, shard.index, start, limit)
        horizon = self.horizon()
        return [r for r in records if r.arrival >= horizon]

    # Operations ------------------------------------------------------------------------------
    async def ListStreams(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("TableName")
        after = params.get("ExclusiveStartStreamArn")
        limit = params.get("Limit") or LIST_LIMIT
        streams = [
            s
            for s in self.tables.streams.values()
            if f":{ctx.account}:" in s.arn
            and s.region == ctx.region
            and (name is None or s.table_name == name)
        ]
        streams.sort(key=lambda s: s.arn)
        if after:
            streams = [s for s in streams if s.arn > after]
        page = streams[:limit]
        result: dict[str, Any] = {
            "Streams": [
                {"StreamArn": s.arn, "TableName": s.table_name, "StreamLabel": s.label}
                for s in page
            ]
        }
        if len(streams) > limit:
            result["LastEvaluatedStreamArn"] = page[-1].arn
        return result

    async def DescribeStream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params["StreamArn"])
        limit = params.get("Limit") or LIST_LIMIT
        shards = list(stream.shards)
        after = params.get("ExclusiveStartShardId")
        if after:
            at = next((i for i, s in enumerate(shards) if s.id == after), -1)
            shards = shards[at + 1 :]
        page = shards[:limit]
        description: dict[str, Any] = {
            "StreamArn": stream.arn,
            "StreamLabel": stream.label,
            "StreamStatus": "ENABLED" if stream.enabled else "DISABLED",
            "StreamViewType": stream.view,
            "CreationRequestDateTime": dt.datetime.fromtimestamp(stream.created, dt.UTC),
            "TableName": stream.table_name,
            "KeySchema": stream.key_schema,
            "Shards": [self._shard(stream, s) for s in page],
        }
        if len(shards) > limit:
            description["LastEvaluatedShardId"] = page[-1].id
        return {"StreamDescription": description}

    def _shard(self, stream: Stream, shard: Shard) -> dict[str, Any]:
        first = self.tables.store.read(stream.id, shard.index, 0, 1)
        start = first[0].sequence if first else shard.first_sequence
        ranges: dict[str, Any] = {"StartingSequenceNumber": sequence_text(start)}
        if shard.end_sequence is not None:
            ranges["EndingSequenceNumber"] = sequence_text(max(shard.end_sequence, start))
        shown: dict[str, Any] = {"ShardId": shard.id, "SequenceNumberRange": ranges}
        if shard.parent is not None:
            shown["ParentShardId"] = shard.parent
        return shown

    async def GetShardIterator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream(ctx, params["StreamArn"])
        shard = next((s for s in stream.shards if s.id == params["ShardId"]), None)
        if shard is None:
            raise AwsError(
                "ResourceNotFoundException",
                f"Requested resource not found: Shard: {params['ShardId']} in Stream: "
                f"{stream.arn} not found",
                400,
            )
        kind = params["ShardIteratorType"]
        if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            text = params.get("SequenceNumber")
            if not text:
                raise v.validation(f"SequenceNumber is required for {kind} iterators")
            sequence = parse_sequence(text)
            position = (
                None
                if sequence is None
                else self.tables.store.position_of(stream.id, shard.index, sequence)
            )
            if position is None:
                raise v.validation(
                    f"Invalid SequenceNumber: {text} for shard: {shard.id} in stream: {stream.arn}"
                )
            position += 1 if kind == "AFTER_SEQUENCE_NUMBER" else 0
        elif kind == "LATEST":
            position = shard.next_n
        else:
            position = self.trim_horizon(stream, shard)
        return {"ShardIterator": self._iterator(stream, shard, position)}

    def _iterator(self, stream: Stream, shard: Shard, position: int) -> str:
        raw = json.dumps([stream.arn, shard.index, position, self.clock.wall()])
        return base64.b64encode(raw.encode()).decode()

    async def GetRecords(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        try:
            arn, index, position, issued = json.loads(
                base64.b64decode(params["ShardIterator"], validate=True)
            )
        except (binascii.Error, ValueError, TypeError):
            raise v.validation("Invalid ShardIterator") from None
        stream = self._stream(ctx, arn)
        if self.clock.wall() - issued > self.clock.platform_delay(ITERATOR_LIFETIME):
            raise AwsError("ExpiredIteratorException", "Iterator expired", 400)
        limit = params.get("Limit") or GET_RECORDS_LIMIT
        if not 1 <= limit <= GET_RECORDS_LIMIT:
            raise v.validation(
                f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
                f"constraint: Member must have value less than or equal to {GET_RECORDS_LIMIT}"
            )
        shard = stream.shards[index]
        start = (
            max(position, self.trim_horizon(stream, shard)) if position < shard.next_n else position
        )
        records = self.read(stream, shard, start, limit)
        next_n = records[-1].n + 1 if records else start
        result: dict[str, Any] = {"Records": [shown_record(r) for r in records]}
        if not (shard.closed and next_n >= shard.next_n):  # a closed shard read to its end
            result["NextShardIterator"] = self._iterator(stream, shard, next_n)
        return result

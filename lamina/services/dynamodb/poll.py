"""DynamoDB Streams as event source mappings read them (engine/pollers/sources.py's
StreamSource), and Lambda's DynamoDB event record, exactly as AWS builds it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lamina.services.dynamodb.store import StreamRecord, encode_value
from lamina.services.dynamodb.streams import Shard, Stream, label_of, sequence_text
from lamina.services.dynamodb.tables import Tables


def iso_millis(timestamp: float) -> str:
    return label_of(timestamp) + "Z"


def event_record(stream: Stream, record: StreamRecord) -> dict[str, Any]:
    """Lambda's record of a change: the stream record, its images as JSON (binary values
    in base64), and the stream's ARN."""
    dynamodb: dict[str, Any] = {}
    for name, value in record.record["dynamodb"].items():
        if name in ("Keys", "NewImage", "OldImage"):
            dynamodb[name] = {k: encode_value(x) for k, x in value.items()}
        else:
            dynamodb[name] = value
    return {
        "eventID": record.record["eventID"],
        "eventName": record.record["eventName"],
        "eventVersion": record.record["eventVersion"],
        "eventSource": "aws:dynamodb",
        "awsRegion": record.record["awsRegion"],
        "dynamodb": dynamodb,
        "eventSourceARN": stream.arn,
    }


class ShardView:
    def __init__(self, tables: Tables, stream: Stream, shard: Shard) -> None:
        self._tables = tables
        self._stream = stream
        self._shard = shard

    @property
    def index(self) -> int:
        return self._shard.index

    @property
    def id(self) -> str:
        return self._shard.id

    @property
    def parent(self) -> str | None:
        return self._shard.parent

    def end(self) -> int | None:
        return self._shard.next_n if self._shard.closed else None

    def read(self, start: int, limit: int) -> list[StreamRecord]:
        horizon = self._tables.horizon()
        records = self._tables.store.read(self._stream.id, self._shard.index, start, limit)
        return [r for r in records if r.arrival >= horizon]

    def trim_horizon(self) -> int:
        first = self._tables.store.first_at(
            self._stream.id, self._shard.index, self._tables.horizon()
        )
        return self._shard.next_n if first is None else first

    def latest(self) -> int:
        return self._shard.next_n

    def at_timestamp(self, timestamp: float) -> int:
        first = self._tables.store.first_at(
            self._stream.id, self._shard.index, max(timestamp, self._tables.horizon())
        )
        return self._shard.next_n if first is None else first

    async def wait(self, position: int, timeout: float) -> None:
        await self._tables.wait(self._stream, self._shard.index, position, timeout)

    @staticmethod
    def cost(record: StreamRecord) -> int:
        return int(record.record["dynamodb"].get("SizeBytes", 0)) * 2 + 400

    @staticmethod
    def sequence_number(record: StreamRecord) -> str:
        return sequence_text(record.sequence)

    def records(self, records: Sequence[StreamRecord], role: str) -> list[dict[str, Any]]:
        return [event_record(self._stream, r) for r in records]

    @staticmethod
    def filter_form(record: dict[str, Any]) -> dict[str, Any]:
        return record

    def batch_info(self, records: Sequence[StreamRecord]) -> dict[str, Any]:
        return {
            "DDBStreamBatchInfo": {
                "shardId": self._shard.id,
                "startSequenceNumber": sequence_text(records[0].sequence),
                "endSequenceNumber": sequence_text(records[-1].sequence),
                "approximateArrivalOfFirstRecord": iso_millis(records[0].arrival),
                "approximateArrivalOfLastRecord": iso_millis(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": self._stream.arn,
            }
        }


class StreamView:
    def __init__(self, tables: Tables, stream: Stream) -> None:
        self._tables = tables
        self._stream = stream

    @property
    def deleted(self) -> bool:
        return False  # a table's stream stays readable after the table goes

    def shards(self) -> list[ShardView]:
        return [ShardView(self._tables, self._stream, s) for s in self._stream.shards]

    async def changed(self, timeout: float) -> None:
        await self._stream.wait_changed(timeout)


class StreamSource:
    """Every table's streams, for pollers."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def stream(self, arn: str) -> StreamView | None:
        stream = self._tables.stream_by_arn(arn)
        return None if stream is None else StreamView(self._tables, stream)

"""Kinesis as event source mappings read it (engine/pollers/sources.py's StreamSource),
and Lambda's Kinesis event record, exactly as AWS builds it."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from lamina.services.kinesis.store import StoredRecord
from lamina.services.kinesis.streams import Shard, Stream, Streams, iso, sequence_number


class ShardView:
    """One shard, for a poller."""

    def __init__(self, streams: Streams, stream: Stream, shard: Shard) -> None:
        self._streams = streams
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
        return None  # no resharding: every shard is open and has no parent

    @staticmethod
    def end() -> int | None:
        return None

    def read(self, start: int, limit: int) -> list[StoredRecord]:
        return self._streams.read(self._stream, self._shard, start, limit)

    def trim_horizon(self) -> int:
        return self._streams.trim_horizon(self._stream, self._shard)

    def latest(self) -> int:
        return self._shard.next_n

    def at_timestamp(self, timestamp: float) -> int:
        return self._streams.at_timestamp(self._stream, self._shard, timestamp)

    async def wait(self, position: int, timeout: float) -> None:
        await self._streams.wait(self._stream, self._shard, position, timeout)

    @staticmethod
    def cost(record: StoredRecord) -> int:
        return len(record.data) * 4 // 3 + len(record.partition_key) + 400

    @staticmethod
    def sequence_number(record: StoredRecord) -> str:
        return sequence_number(record.shard, record.n)

    def records(self, records: Sequence[StoredRecord], role: str) -> list[dict[str, Any]]:
        stream = self._stream
        out = []
        for record in records:
            sequence = sequence_number(record.shard, record.n)
            out.append(
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": record.partition_key,
                        "sequenceNumber": sequence,
                        "data": base64.b64encode(record.data).decode(),
                        "approximateArrivalTimestamp": round(record.arrival, 3),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{self._shard.id}:{sequence}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": role,
                    "awsRegion": stream.region,
                    "eventSourceARN": stream.arn,
                }
            )
        return out

    @staticmethod
    def filter_form(record: dict[str, Any]) -> dict[str, Any]:
        """The record's Kinesis fields, `data` decoded and parsed when it is JSON (Lambda
        filters Kinesis records on `data`; data that is not JSON matches no data pattern)."""
        fields = dict(record["kinesis"])
        # Data that is not JSON stays a string: an object pattern on it does not match.
        with contextlib.suppress(ValueError):
            fields["data"] = json.loads(base64.b64decode(fields["data"]))
        return fields

    def batch_info(self, records: Sequence[StoredRecord]) -> dict[str, Any]:
        shard = self._shard
        return {
            "KinesisBatchInfo": {
                "shardId": shard.id,
                "startSequenceNumber": sequence_number(shard.index, records[0].n),
                "endSequenceNumber": sequence_number(shard.index, records[-1].n),
                "approximateArrivalOfFirstRecord": iso(records[0].arrival),
                "approximateArrivalOfLastRecord": iso(records[-1].arrival),
                "batchSize": len(records),
                "streamArn": self._stream.arn,
            }
        }


class StreamView:
    def __init__(self, streams: Streams, stream: Stream) -> None:
        self._streams = streams
        self._stream = stream

    @property
    def deleted(self) -> bool:
        return self._stream.deleted

    def shards(self) -> list[ShardView]:
        return [ShardView(self._streams, self._stream, s) for s in self._stream.shards]

    async def changed(self, timeout: float) -> None:
        await self._stream.wait_changed(timeout)


class StreamSource:
    """Every Kinesis stream, for pollers."""

    def __init__(self, streams: Streams) -> None:
        self._streams = streams

    def stream(self, arn: str) -> StreamView | None:
        stream = self._streams.stream_by_arn(arn)
        return None if stream is None else StreamView(self._streams, stream)

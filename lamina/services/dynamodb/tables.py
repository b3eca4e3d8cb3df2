"""Every DynamoDB table, its items and its stream: the one owner of their state.

Items live in the store (store.py); a table here is its settings, its key schema and
its streams. Every write of an item goes through `write`, which stores the item and the
stream record it makes in one transaction before the operation answers, then wakes the
stream's readers. Conditions and updates are evaluated here, on the item as stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lamina.clock import Clock
from lamina.services.dynamodb import values as v
from lamina.services.dynamodb.cluster import StreamSync
from lamina.services.dynamodb.store import StreamRecord, TableStore
from lamina.services.dynamodb.streams import (
    RETENTION,
    Shard,
    Stream,
    change_record,
    label_of,
    partitions_for,
)

STREAM_IDS_PER_TABLE = 1000
TRIM_EVERY = 1000  # stream records between retention sweeps


@dataclass(eq=False)
class Table:
    id: int
    account: str
    region: str
    name: str
    record: dict[str, Any]  # KeySchema, AttributeDefinitions, BillingMode, ..., streams
    streams: list[Stream]
    deleted: bool = False

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{self.name}"

    @property
    def hash_key(self) -> str:
        return next(k["AttributeName"] for k in self.record["KeySchema"] if k["KeyType"] == "HASH")

    @property
    def range_key(self) -> str | None:
        found = [k["AttributeName"] for k in self.record["KeySchema"] if k["KeyType"] == "RANGE"]
        return found[0] if found else None

    @property
    def key_names(self) -> tuple[str, ...]:
        return (self.hash_key,) if self.range_key is None else (self.hash_key, self.range_key)

    def key_type(self, name: str) -> str:
        return next(
            d["AttributeType"]
            for d in self.record["AttributeDefinitions"]
            if d["AttributeName"] == name
        )

    @property
    def stream(self) -> Stream | None:
        """The stream items write to now, if the table's stream is on."""
        latest = self.streams[-1] if self.streams else None
        return latest if latest is not None and latest.enabled else None

    def save_streams(self) -> None:
        self.record["streams"] = [s.record() for s in self.streams]

    # Keys --------------------------------------------------------------------------------
    def check_key(self, key: dict[str, Any], exact: bool = True) -> v.Item:
        """A key given for an item (GetItem, DeleteItem, ...): exactly the key attributes,
        of their types."""
        checked = v.check_item(key)
        if exact and set(checked) != set(self.key_names):
            raise v.validation("The provided key element does not match the schema")
        for name in self.key_names:
            value = checked.get(name)
            if value is None:
                raise v.invalid(f"Missing the key {name} in the item")
            self._check_key_value(name, value)
        return {name: checked[name] for name in self.key_names}

    def _check_key_value(self, name: str, value: v.Value) -> None:
        expected, actual = self.key_type(name), v.kind_of(value)
        if expected != actual:
            raise v.invalid(f"Type mismatch for key {name} expected: {expected} actual: {actual}")
        if actual in ("S", "B") and len(value[actual]) == 0:
            raise v.invalid(
                f"An AttributeValue may not contain an empty string. Key: {name}"
                if actual == "S"
                else f"An AttributeValue may not contain an empty binary value. Key: {name}"
            )

    def key_of(self, item: v.Item) -> v.Item:
        return {name: item[name] for name in self.key_names}

    def storage_key(self, key: v.Item) -> tuple[bytes, bytes]:
        range_key = self.range_key
        range_bytes = v.key_bytes(key[range_key]) if range_key is not None else b""
        return hash_bytes(key[self.hash_key]), range_bytes


class Tables:
    def __init__(self, store: TableStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.tables: dict[tuple[str, str, str], Table] = {}
        self.streams: dict[str, Stream] = {}  # by ARN, including those of deleted tables
        self.writes = 0  # stream records since the last retention sweep
        # Cluster mode: items are read from the shared database; tables made, changed or
        # deleted through another node are announced and read again.
        self.announcer = store.announcer(self.reload)
        # Their streams' records are numbered by the database, and announced.
        self.sync = StreamSync(store) if store.shared else None
        if self.sync is not None:
            self.sync.on_appended = self._appended
        for row in list(store.tables.all()):
            self._register(self._loaded(*row))
        self.trim()

    def _loaded(
        self, table_id: int, account: str, region: str, name: str, record: dict[str, Any]
    ) -> Table:
        table = Table(table_id, account, region, name, record, [])
        for saved in record.get("streams") or []:
            table.streams.append(self._stream_from(table, saved))
        return table

    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        self.announcer.listen(deliver)
        if self.sync is not None:
            self.sync.listen(deliver)

    def _appended(self, stream_id: int, last: int, positions: dict[int, int]) -> None:
        """Another node wrote records of a stream: its shards move on, readers wake."""
        stream = next((s for s in self.streams.values() if s.id == stream_id), None)
        if stream is None:
            return
        stream.last_sequence = max(stream.last_sequence, last)
        for index, after in positions.items():
            if index < len(stream.shards):
                shard = stream.shards[index]
                shard.next_n = max(shard.next_n, after)
                shard.wake()

    def reload(self) -> None:
        rows = {row[0]: row for row in self.store.tables.all()}
        for table in [t for t in self.tables.values() if t.id not in rows]:
            table.deleted = True
            del self.tables[(table.account, table.region, table.name)]
        known = {t.id: t for t in self.tables.values()}
        for table_id, row in rows.items():
            if table_id not in known:
                self._register(self._loaded(*row))
            else:
                known[table_id].record.update({k: v for k, v in row[4].items() if k != "streams"})

    def _register(self, table: Table) -> None:
        self.tables[(table.account, table.region, table.name)] = table
        for stream in table.streams:
            self.streams[stream.arn] = stream

    def _stream_from(self, table: Table, saved: dict[str, Any]) -> Stream:
        shards = [Shard.load(s) for s in saved["shards"]]
        stream = Stream(
            saved["id"],
            table.arn,
            table.name,
            table.region,
            saved["label"],
            saved["view"],
            saved["created"],
            table.record["KeySchema"],
            shards,
            enabled=saved["enabled"],
        )
        positions, last = self.store.stream_positions(stream.id)
        stream.last_sequence = max(
            [last, *(s.end_sequence or 0 for s in shards), *(s.first_sequence - 1 for s in shards)]
        )
        for shard in shards:
            shard.next_n = positions.get(shard.index, 0)
        return stream

    def table(self, account: str, region: str, name: str) -> Table | None:
        found = self.tables.get((account, region, name))
        if found is None and self.store.shared:  # made through another node a moment ago?
            self.reload()
            found = self.tables.get((account, region, name))
        return found

    def stream_by_arn(self, arn: str) -> Stream | None:
        return self.streams.get(arn)

    # Tables ------------------------------------------------------------------------------
    def create(self, account: str, region: str, name: str, record: dict[str, Any]) -> Table:
        record.setdefault("streams", [])
        table_id = self.store.tables.insert(account, region, name, record)
        table = Table(table_id, account, region, name, record, [])
        self._register(table)
        spec = record.get("StreamSpecification") or {}
        if spec.get("StreamEnabled"):
            self.enable_stream(table, spec["StreamViewType"])
        self.announcer.written()
        return table

    def save(self, table: Table) -> None:
        table.save_streams()
        self.store.tables.update(table.id, table.record)
        self.announcer.written()

    def delete(self, table: Table) -> None:
        if table.stream is not None:
            table.stream.close()
        self.store.delete_table(table.id)
        table.deleted = True
        del self.tables[(table.account, table.region, table.name)]
        self.announcer.written()

    def enable_stream(self, table: Table, view: str) -> Stream:
        now = self.clock.wall()
        stream = Stream(
            table.id * STREAM_IDS_PER_TABLE + len(table.streams),
            table.arn,
            table.name,
            table.region,
            label_of(now),
            view,
            now,
            table.record["KeySchema"],
            [],
        )
        stream.open(partitions_for(table.record), now)
        table.streams.append(stream)
        self.streams[stream.arn] = stream
        self.save(table)
        return stream

    def disable_stream(self, table: Table) -> None:
        if table.stream is not None:
            table.stream.close()
            self.save(table)

    def handover(self, table: Table) -> Stream | None:
        """Close the stream's open shards; children (as many as the table has partitions
        now) take over."""
        stream = table.stream
        if stream is not None:
            stream.open(partitions_for(table.record), self.clock.wall())
            self.save(table)
        return stream

    # Items -------------------------------------------------------------------------------
    def get(self, table: Table, key: v.Item) -> v.Item | None:
        return self.store.get(table.id, *table.storage_key(key))

    def write(self, changes: Iterable[tuple[Table, v.Item, v.Item | None, v.Item | None]]) -> None:
        """Store each (table, key, old, new) change (new None: delete) and the stream
        records they make, in one transaction."""
        rows: list[tuple[int, bytes, bytes, v.Item | None]] = []
        records: list[tuple[int, StreamRecord]] = []
        woken: list[Stream] = []
        now = self.clock.wall()
        for table, key, old, new in changes:
            rows.append((table.id, *table.storage_key(key), new))
            stream = table.stream
            if stream is not None:
                made = change_record(stream, key, key[table.hash_key], old, new, now)
                if made is not None:
                    records.append((stream.id, made))
                    woken.append(stream)
        stored = self.store.write(rows, records)
        if self.sync is not None and stored:  # numbered by the database: tell the others
            touched: dict[int, tuple[Stream, dict[int, int]]] = {}
            for (stream_id, record), stream in zip(stored, woken, strict=True):
                shard = stream.shards[record.shard]
                shard.next_n = max(shard.next_n, record.n + 1)
                stream.last_sequence = max(stream.last_sequence, record.sequence)
                touched.setdefault(stream_id, (stream, {}))[1][record.shard] = shard.next_n
            for stream_id, (stream, positions) in touched.items():
                self.sync.appended(stream_id, stream.last_sequence, positions.items())
        self.writes += len(records)
        if self.writes >= TRIM_EVERY:
            self.writes = 0
            self.trim()
        for stream in woken:
            for shard in stream.open_shards():
                shard.wake()

    def query(
        self,
        table: Table,
        hash_value: v.Value,
        low: bytes | None,
        high: bytes | None,
        forward: bool,
        after: v.Item | None,
    ) -> Iterator[v.Item]:
        after_bytes = None
        if after is not None and table.range_key is not None:
            after_bytes = v.key_bytes(after[table.range_key])
        rows = self.store.query(table.id, hash_bytes(hash_value), low, high, forward, after_bytes)
        for _, item in rows:
            yield item

    def scan(self, table: Table, after: v.Item | None) -> Iterator[v.Item]:
        start = table.storage_key(after) if after is not None else None
        for _, _, item in self.store.scan(table.id, start):
            yield item

    def horizon(self) -> float:
        """Stream records that arrived before this wall-clock time are past retention."""
        return self.clock.wall() - self.clock.platform_delay(RETENTION)

    def trim(self) -> None:
        self.store.trim(self.horizon())

    async def wait(self, stream: Stream, shard_index: int, position: int, timeout: float) -> None:
        shard = stream.shards[shard_index]
        if shard.next_n > position or shard.closed:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        shard.waiters.append(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            if future in shard.waiters:
                shard.waiters.remove(future)


def hash_bytes(value: v.Value) -> bytes:
    return v.kind_of(value).encode() + v.key_bytes(value)

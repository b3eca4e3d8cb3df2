"""Durable tables: table records, items and stream records (`dynamodb.db`, or the cluster's
PostgreSQL).

Items are keyed by (table id, partition key bytes, sort key bytes); key bytes sort as
DynamoDB sorts keys (values.key_bytes), so a Query is one index range scan. A write of
an item and the stream record it makes are one transaction: a crash keeps both or
neither. Stream records are keyed by (stream id, shard index, n), n counting up from 0
in each shard, with the stream's sequence number beside them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.services.dynamodb.values import Item, Value
from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import Announcer, NamedResources, named_resources_ddl, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    table_id INTEGER NOT NULL,
    hash BLOB NOT NULL,
    range BLOB NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (table_id, hash, range)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_records (
    stream_id INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    key TEXT NOT NULL,
    record TEXT NOT NULL,
    arrival REAL NOT NULL,
    PRIMARY KEY (stream_id, shard, n)
);
CREATE INDEX IF NOT EXISTS stream_sequences ON stream_records (stream_id, sequence);
"""
MIGRATIONS = [named_resources_ddl("tables") + SCHEMA]
SEQUENCE_BASE = 10**20  # 21-digit sequence numbers
# PostgreSQL's advisory lock of one stream's numbering: this base plus the stream's id
# (one 64-bit key: a space apart from the two-key locks of Kinesis shards).
STREAM_LOCK = 0x64796E616D6F0000


def sequence_text(sequence: int) -> str:
    return str(SEQUENCE_BASE + sequence)


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One change of one item, as its stream keeps it."""

    shard: int
    n: int
    sequence: int
    key: str  # the item's key, as text: what its lane is chosen by
    record: dict[str, Any]  # eventID, eventName, dynamodb: {Keys, NewImage, ...}
    arrival: float  # wall-clock seconds

    @property
    def partition_key(self) -> str:
        return self.key


def encode_value(value: Value) -> Any:
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(bytes(inner)).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(bytes(b)).decode() for b in inner]}
    if kind == "M":
        return {"M": {k: encode_value(x) for k, x in inner.items()}}
    if kind == "L":
        return {"L": [encode_value(x) for x in inner]}
    return value


def decode_value(value: Any) -> Value:
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in inner]}
    if kind == "M":
        return {"M": {k: decode_value(x) for k, x in inner.items()}}
    if kind == "L":
        return {"L": [decode_value(x) for x in inner]}
    return dict(value)


def encode_item(item: Item) -> str:
    return json.dumps({name: encode_value(value) for name, value in item.items()})


def decode_item(text: str) -> Item:
    return {name: decode_value(value) for name, value in json.loads(text).items()}


def encode_record(record: dict[str, Any]) -> str:
    dynamodb = {
        k: (
            {n: encode_value(x) for n, x in value.items()}
            if k in ("Keys", "NewImage", "OldImage")
            else value
        )
        for k, value in record["dynamodb"].items()
    }
    return json.dumps({**record, "dynamodb": dynamodb})


def decode_record(text: str) -> dict[str, Any]:
    record = json.loads(text)
    for k in ("Keys", "NewImage", "OldImage"):
        if k in record["dynamodb"]:
            record["dynamodb"][k] = {n: decode_value(x) for n, x in record["dynamodb"][k].items()}
    return dict(record)


class TableStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "dynamodb.db", db)
        schema.ensure(self._db, "dynamodb", MIGRATIONS)
        self.tables = NamedResources(self._db, "tables")

    def close(self) -> None:
        self._db.close()

    @property
    def shared(self) -> bool:
        return self._db.dialect != "sqlite"

    def announcer(self, reload: Callable[[], None]) -> Announcer:
        """Cluster mode: table changes told to the other nodes, whose `reload` runs."""
        return Announcer(self._db, "lamina_dynamodb", reload)

    def delete_table(self, table_id: int) -> None:
        """The table and its items; its stream records stay readable (24 hours)."""
        with self._db.transaction() as tx:
            self.tables.delete(table_id, tx)
            tx.execute("DELETE FROM items WHERE table_id=?", (table_id,))

    # Items -----------------------------------------------------------------------------
    def get(self, table_id: int, hash_key: bytes, range_key: bytes) -> Item | None:
        row = self._db.execute(
            "SELECT item FROM items WHERE table_id=? AND hash=? AND range=?",
            (table_id, hash_key, range_key),
        ).fetchone()
        return None if row is None else decode_item(row[0])

    def write(
        self,
        changes: list[tuple[int, bytes, bytes, Item | None]],
        records: list[tuple[int, StreamRecord]],
    ) -> list[tuple[int, StreamRecord]]:
        """Put (item) or delete (None) items, and append stream records, atomically; the
        records as stored. In a cluster the database numbers them (see `_numbered`)."""
        with self._db.transaction() as tx:
            if records and self.shared:
                records = self._numbered(tx, records)
            for table_id, hash_key, range_key, item in changes:
                if item is None:
                    tx.execute(
                        "DELETE FROM items WHERE table_id=? AND hash=? AND range=?",
                        (table_id, hash_key, range_key),
                    )
                else:
                    tx.execute(
                        "INSERT INTO items (table_id, hash, range, item) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (table_id, hash, range) DO UPDATE SET item=excluded.item",
                        (table_id, hash_key, range_key, encode_item(item)),
                    )
            for stream_id, r in records:
                tx.execute(
                    "INSERT INTO stream_records (stream_id, shard, n, sequence, key, record, "
                    "arrival) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        stream_id,
                        r.shard,
                        r.n,
                        r.sequence,
                        r.key,
                        encode_record(r.record),
                        r.arrival,
                    ),
                )
        return records

    @staticmethod
    def _numbered(
        tx: Any, records: list[tuple[int, StreamRecord]]
    ) -> list[tuple[int, StreamRecord]]:
        """Cluster mode: each record's sequence number (in its stream) and position (in its
        shard) follow the highest the database holds, whichever node wrote them, under a
        lock of the stream held to the commit (the numbers a node gave are kept when
        higher: a shard's first sequence number after a handover)."""
        sequences: dict[int, int] = {}
        positions: dict[tuple[int, int], int] = {}
        for stream_id in sorted({stream_id for stream_id, _ in records}):
            tx.execute("SELECT pg_advisory_xact_lock(?)", (STREAM_LOCK + stream_id,))
            top = tx.execute(
                "SELECT MAX(sequence) FROM stream_records WHERE stream_id=?", (stream_id,)
            ).fetchone()
            sequences[stream_id] = int(top[0]) if top and top[0] is not None else 0
            for shard, n in tx.execute(
                "SELECT shard, MAX(n) FROM stream_records WHERE stream_id=? GROUP BY shard",
                (stream_id,),
            ):
                positions[(stream_id, int(shard))] = int(n)
        numbered = []
        for stream_id, r in records:
            sequence = max(sequences[stream_id] + 1, r.sequence)
            n = max(positions.get((stream_id, r.shard), -1) + 1, r.n)
            sequences[stream_id], positions[(stream_id, r.shard)] = sequence, n
            record = {**r.record, "dynamodb": {**r.record["dynamodb"]}}
            record["dynamodb"]["SequenceNumber"] = sequence_text(sequence)
            numbered.append(
                (stream_id, StreamRecord(r.shard, n, sequence, r.key, record, r.arrival))
            )
        return numbered

    def notify(self, channel: str, payload: str) -> None:
        self._db.notify(channel, payload)

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        self._db.listen(channel, callback)

    def query(
        self,
        table_id: int,
        hash_key: bytes,
        low: bytes | None,
        high: bytes | None,
        forward: bool,
        after: bytes | None,
    ) -> Iterator[tuple[bytes, Item]]:
        """Items of one partition key with sort key bytes in [low, high], in order,
        starting after `after` (ExclusiveStartKey)."""
        clauses = ["table_id=?", "hash=?"]
        params: list[Any] = [table_id, hash_key]
        if low is not None:
            clauses.append("range>=?")
            params.append(low)
        if high is not None:
            clauses.append("range<=?")
            params.append(high)
        if after is not None:
            clauses.append("range>?" if forward else "range<?")
            params.append(after)
        order = "ASC" if forward else "DESC"
        sql = f"SELECT range, item FROM items WHERE {' AND '.join(clauses)} ORDER BY range {order}"
        for range_key, text in self._db.execute(sql, params):
            yield bytes(range_key), decode_item(text)

    def scan(
        self, table_id: int, after: tuple[bytes, bytes] | None
    ) -> Iterator[tuple[bytes, bytes, Item]]:
        if after is None:
            rows = self._db.execute(
                "SELECT hash, range, item FROM items WHERE table_id=? ORDER BY hash, range",
                (table_id,),
            )
        else:
            rows = self._db.execute(
                "SELECT hash, range, item FROM items WHERE table_id=? AND (hash, range) > (?, ?) "
                "ORDER BY hash, range",
                (table_id, *after),
            )
        for hash_key, range_key, text in rows:
            yield bytes(hash_key), bytes(range_key), decode_item(text)

    def count(self, table_id: int) -> tuple[int, int]:
        """(items, bytes of their JSON): DescribeTable's ItemCount and TableSizeBytes."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(item)), 0) FROM items WHERE table_id=?",
            (table_id,),
        ).fetchone()
        return int(row[0]), int(row[1])

    # Stream records --------------------------------------------------------------------
    def stream_positions(self, stream_id: int) -> tuple[dict[int, int], int]:
        """Each shard's next n, and the stream's highest sequence number."""
        rows = self._db.execute(
            "SELECT shard, MAX(n), MAX(sequence) FROM stream_records WHERE stream_id=? "
            "GROUP BY shard",
            (stream_id,),
        ).fetchall()
        return {shard: top + 1 for shard, top, _ in rows}, max((s for *_, s in rows), default=0)

    def read(self, stream_id: int, shard: int, start: int, limit: int) -> list[StreamRecord]:
        return [
            StreamRecord(shard, n, sequence, key, decode_record(record), arrival)
            for n, sequence, key, record, arrival in self._db.execute(
                "SELECT n, sequence, key, record, arrival FROM stream_records "
                "WHERE stream_id=? AND shard=? AND n>=? ORDER BY n LIMIT ?",
                (stream_id, shard, start, limit),
            )
        ]

    def position_of(self, stream_id: int, shard: int, sequence: int) -> int | None:
        """The n of the record with this sequence number in the shard."""
        row = self._db.execute(
            "SELECT n FROM stream_records WHERE stream_id=? AND shard=? AND sequence=?",
            (stream_id, shard, sequence),
        ).fetchone()
        return None if row is None else int(row[0])

    def first_at(self, stream_id: int, shard: int, timestamp: float) -> int | None:
        row = self._db.execute(
            "SELECT MIN(n) FROM stream_records WHERE stream_id=? AND shard=? AND arrival>=?",
            (stream_id, shard, timestamp),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def oldest(self, stream_id: int, shard: int) -> int | None:
        row = self._db.execute(
            "SELECT MIN(n) FROM stream_records WHERE stream_id=? AND shard=?", (stream_id, shard)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def trim(self, before: float) -> None:
        """Drop stream records older than the 24-hour retention, keeping each shard's
        newest so that its n keeps counting after a restart."""
        self._db.execute(
            "DELETE FROM stream_records WHERE arrival<? AND n < (SELECT MAX(n) FROM "
            "stream_records AS newest WHERE newest.stream_id=stream_records.stream_id AND "
            "newest.shard=stream_records.shard)",
            (before,),
        )

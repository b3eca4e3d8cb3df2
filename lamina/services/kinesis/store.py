"""Durable streams: stream records and their data records (`streams.db`, or the cluster's
PostgreSQL).

Records are keyed by (stream id, shard index, n), n counting up from 0 in each shard, so
a read from a position is one index range scan. The streams (streams.py)
keeps only each shard's next n and its waiters in memory; the records stay here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import NamedResources, named_resources_ddl, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    stream_id INTEGER NOT NULL,
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    arrival REAL NOT NULL,
    PRIMARY KEY (stream_id, shard, n)
);
"""
MIGRATIONS = [named_resources_ddl("streams") + SCHEMA]


@dataclass(frozen=True, slots=True)
class StoredRecord:
    shard: int
    n: int
    partition_key: str
    data: bytes
    arrival: float  # wall-clock seconds


class StreamStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "streams.db", db)
        schema.ensure(self._db, "kinesis", MIGRATIONS)
        self.streams = NamedResources(self._db, "streams")

    def close(self) -> None:
        self._db.close()

    # Cluster mode ------------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self._db.dialect != "sqlite"

    def notify(self, channel: str, payload: str) -> None:
        self._db.notify(channel, payload)

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        self._db.listen(channel, callback)

    def append_numbered(
        self, stream_id: int, rows: list[tuple[int, str, bytes, float]]
    ) -> list[StoredRecord]:
        """(shard, partition key, data, arrival) each, numbered in its shard by the
        database: each shard is locked for the transaction (no two nodes take one n)."""
        out: list[StoredRecord] = []
        with self._db.transaction() as tx:
            following: dict[int, int] = {}
            for shard in sorted({row[0] for row in rows}):
                tx.execute("SELECT pg_advisory_xact_lock(?, ?)", (stream_id, shard))
                top = tx.execute(
                    "SELECT MAX(n) FROM records WHERE stream_id=? AND shard=?", (stream_id, shard)
                ).fetchone()
                following[shard] = -1 if top is None or top[0] is None else int(top[0])
            for shard, key, data, arrival in rows:
                following[shard] += 1
                out.append(StoredRecord(shard, following[shard], key, data, arrival))
            tx.executemany(
                "INSERT INTO records (stream_id, shard, n, partition_key, data, arrival) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(stream_id, r.shard, r.n, r.partition_key, r.data, r.arrival) for r in out],
            )
        return out

    # Streams ------------------------------------------------------------------------------
    def delete_stream(self, stream_id: int) -> None:
        with self._db.transaction() as tx:
            self.streams.delete(stream_id, tx)
            tx.execute("DELETE FROM records WHERE stream_id=?", (stream_id,))

    # Records ---------------------------------------------------------------------------
    def next_positions(self, stream_id: int) -> dict[int, int]:
        """Each shard's next n (one past its newest record)."""
        rows = self._db.execute(
            "SELECT shard, MAX(n) FROM records WHERE stream_id=? GROUP BY shard", (stream_id,)
        )
        return {shard: top + 1 for shard, top in rows}

    def append(self, stream_id: int, records: Iterable[StoredRecord]) -> None:
        rows = [(stream_id, r.shard, r.n, r.partition_key, r.data, r.arrival) for r in records]
        with self._db.transaction() as tx:
            tx.executemany(
                "INSERT INTO records (stream_id, shard, n, partition_key, data, arrival) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

    def read(
        self, stream_id: int, shard: int, start: int, limit: int, max_bytes: int
    ) -> list[StoredRecord]:
        """Records with n >= start, oldest first, at most `limit` and about `max_bytes`."""
        out: list[StoredRecord] = []
        size = 0
        for n, key, data, arrival in self._db.execute(
            "SELECT n, partition_key, data, arrival FROM records "
            "WHERE stream_id=? AND shard=? AND n>=? ORDER BY n LIMIT ?",
            (stream_id, shard, start, limit),
        ):
            size += len(data) + len(key)
            if out and size > max_bytes:
                break
            out.append(StoredRecord(shard, n, key, bytes(data), arrival))
        return out

    def oldest(self, stream_id: int, shard: int) -> int | None:
        row = self._db.execute(
            "SELECT MIN(n) FROM records WHERE stream_id=? AND shard=?", (stream_id, shard)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def first_at(self, stream_id: int, shard: int, timestamp: float) -> int | None:
        """The first n that arrived at or after `timestamp`."""
        row = self._db.execute(
            "SELECT MIN(n) FROM records WHERE stream_id=? AND shard=? AND arrival>=?",
            (stream_id, shard, timestamp),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def arrival(self, stream_id: int, shard: int, n: int) -> float | None:
        row = self._db.execute(
            "SELECT arrival FROM records WHERE stream_id=? AND shard=? AND n=?",
            (stream_id, shard, n),
        ).fetchone()
        return None if row is None else float(row[0])

    def trim(self, stream_id: int, before: float) -> int:
        """Drop records that arrived before `before` (the retention period ran out).

        Each shard's newest record stays, so that its n keeps counting up after a restart;
        readers skip it once it is too old."""
        cursor = self._db.execute(
            "DELETE FROM records WHERE stream_id=? AND arrival<? AND n < (SELECT MAX(n) FROM "
            "records AS newest WHERE newest.stream_id=records.stream_id "
            "AND newest.shard=records.shard)",
            (stream_id, before),
        )
        return cursor.rowcount

"""Durable event source mappings and their stream checkpoints (`mappings.db`, or the
cluster's PostgreSQL).

A checkpoint is, per mapping and shard, the position (n) of the first record not yet
processed: every record before it was handled (or sent to the on-failure destination).
It is written after each advance, so a restart resumes there and skips nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import Announcer, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS mappings (
    uuid TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    uuid TEXT NOT NULL,
    shard INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (uuid, shard)
);
"""
LEASES = """
CREATE TABLE IF NOT EXISTS mapping_leases (
    uuid TEXT PRIMARY KEY,
    node TEXT NOT NULL,     -- the node whose pollers read the mapping's source
    expires REAL NOT NULL   -- wall-clock seconds; renewed while the node lives
);
"""
SHARD_LEASES = """
CREATE TABLE IF NOT EXISTS shard_leases (
    uuid TEXT NOT NULL,
    shard INTEGER NOT NULL,
    node TEXT NOT NULL,     -- the node whose poller reads the shard for the mapping
    expires REAL NOT NULL,  -- wall-clock seconds; renewed while the node lives
    PRIMARY KEY (uuid, shard)
);
CREATE TABLE IF NOT EXISTS poller_nodes (
    node TEXT PRIMARY KEY,  -- a node whose pollers take shard leases
    expires REAL NOT NULL
);
DROP TABLE IF EXISTS mapping_leases;  -- a lease per mapping, before the shards had theirs
"""
MIGRATIONS = [SCHEMA, LEASES, SHARD_LEASES]


class MappingStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "mappings.db", db)
        schema.ensure(self._db, "mappings", MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    # Cluster mode ------------------------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self._db.dialect != "sqlite"

    def announcer(self, reload: Callable[[], None]) -> Announcer:
        """Mappings made, changed or deleted through a node, told to the others."""
        return Announcer(self._db, "lamina_mappings", reload)

    def lease(self, uuid: str, shard: int, node: str, now: float, expiry: float) -> bool:
        """Take or renew the lease of a mapping's shard: True if `node` holds it (it did,
        nobody did, or the holder's ran out)."""
        held = self._db.execute(
            "INSERT INTO shard_leases (uuid, shard, node, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (uuid, shard) DO UPDATE SET node=excluded.node, "
            "expires=excluded.expires "
            "WHERE shard_leases.node=excluded.node OR shard_leases.expires < ? "
            "RETURNING node",
            (uuid, shard, node, now + expiry, now),
        ).fetchall()
        return bool(held)

    def release(self, uuid: str, shard: int, node: str) -> None:
        self._db.execute(
            "DELETE FROM shard_leases WHERE uuid=? AND shard=? AND node=?", (uuid, shard, node)
        )

    def beat(self, node: str, now: float, expiry: float) -> int:
        """Say that `node` reads shards until now + expiry; how many nodes do."""
        self._db.execute(
            "INSERT INTO poller_nodes (node, expires) VALUES (?, ?) "
            "ON CONFLICT (node) DO UPDATE SET expires=excluded.expires",
            (node, now + expiry),
        )
        self._db.execute("DELETE FROM poller_nodes WHERE expires < ?", (now - 3600.0,))
        row = self._db.execute(
            "SELECT COUNT(*) FROM poller_nodes WHERE expires >= ?", (now,)
        ).fetchone()
        return max(1, int(row[0]))

    def leave(self, node: str) -> None:
        """`node` stops reading shards (its leases released): the others' shares grow."""
        self._db.execute("DELETE FROM poller_nodes WHERE node=?", (node,))

    def mappings(self) -> Iterator[dict[str, Any]]:
        for (record,) in self._db.execute("SELECT record FROM mappings ORDER BY created"):
            yield json.loads(record)

    def insert(self, uuid: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO mappings (uuid, created, record) VALUES (?, "
            "(SELECT COALESCE(MAX(created), 0) + 1 FROM mappings), ?)",
            (uuid, json.dumps(record)),
        )

    def update(self, uuid: str, record: dict[str, Any]) -> None:
        self._db.execute("UPDATE mappings SET record=? WHERE uuid=?", (json.dumps(record), uuid))

    def delete(self, uuid: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM mappings WHERE uuid=?", (uuid,))
            tx.execute("DELETE FROM checkpoints WHERE uuid=?", (uuid,))
            tx.execute("DELETE FROM shard_leases WHERE uuid=?", (uuid,))

    def checkpoints(self, uuid: str) -> dict[int, int]:
        rows = self._db.execute("SELECT shard, position FROM checkpoints WHERE uuid=?", (uuid,))
        return {shard: position for shard, position in rows}

    def set_checkpoint(self, uuid: str, shard: int, position: int) -> None:
        self._db.execute(
            "INSERT INTO checkpoints (uuid, shard, position) VALUES (?, ?, ?) "
            "ON CONFLICT (uuid, shard) DO UPDATE SET position=excluded.position",
            (uuid, shard, position),
        )

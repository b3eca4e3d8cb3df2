"""Layer versions (`layers.db`, or the cluster's PostgreSQL), keyed by account, region,
name and version.

A layer's content is a zip and its extracted tree under the code store's content address
(SqliteStore.put_code), shared with any function or layer of the same bytes. Version
numbers are never reused: `layer_names` keeps each name's next number, even after every
version of it was deleted. Deleting a version removes its record only: functions that
use it keep their merged /opt (built from the content, which stays).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS layer_versions (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (account, region, name, version)
);
CREATE TABLE IF NOT EXISTS layer_names (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    next_version INTEGER NOT NULL,
    PRIMARY KEY (account, region, name)
);
"""
MIGRATIONS = [SCHEMA]


class LayerStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "layers.db", db)
        schema.ensure(self._db, "layers", MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def add(self, account: str, region: str, name: str, record: dict[str, Any]) -> int:
        """Store `record` as the name's next version; returns its number."""
        with self._db.transaction() as tx:
            # The name's row is taken first (made, or its number counted up, locked by the
            # update until commit), so two nodes publishing at once get different numbers.
            row = tx.execute(
                "INSERT INTO layer_names (account, region, name, next_version) "
                "VALUES (?, ?, ?, 2) ON CONFLICT (account, region, name) DO UPDATE SET "
                "next_version=layer_names.next_version + 1 RETURNING next_version",
                (account, region, name),
            ).fetchall()
            version = int(row[0][0]) - 1
            record["Version"] = version
            tx.execute(
                "INSERT INTO layer_versions VALUES (?, ?, ?, ?, ?)",
                (account, region, name, version, json.dumps(record)),
            )
        return version

    def get(self, account: str, region: str, name: str, version: int) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT record FROM layer_versions WHERE account=? AND region=? AND name=? "
            "AND version=?",
            (account, region, name, version),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, account: str, region: str, name: str, record: dict[str, Any]) -> None:
        self._db.execute(
            "UPDATE layer_versions SET record=? WHERE account=? AND region=? AND name=? "
            "AND version=?",
            (json.dumps(record), account, region, name, record["Version"]),
        )

    def delete(self, account: str, region: str, name: str, version: int) -> None:
        self._db.execute(
            "DELETE FROM layer_versions WHERE account=? AND region=? AND name=? AND version=?",
            (account, region, name, version),
        )

    def uses(self, digest: str) -> bool:
        """Whether a layer version (of any account) is the zip `digest`."""
        row = self._db.execute(
            "SELECT 1 FROM layer_versions WHERE record LIKE ? LIMIT 1", (f"%{digest}%",)
        ).fetchone()
        return row is not None

    def versions(self, account: str, region: str, name: str) -> list[dict[str, Any]]:
        """Every version of a layer, newest first."""
        rows = self._db.execute(
            "SELECT record FROM layer_versions WHERE account=? AND region=? AND name=? "
            "ORDER BY version DESC",
            (account, region, name),
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def names(self, account: str, region: str) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT name FROM layer_versions WHERE account=? AND region=? ORDER BY name",
            (account, region),
        ).fetchall()
        return [row[0] for row in rows]

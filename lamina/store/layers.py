"""Layer versions in SQLite, keyed by account, region, name and version.

A layer's content is a zip and its extracted tree under the code store's content address
(SqliteStore.put_code), shared with any function or layer of the same bytes. Version
numbers are never reused: `layer_names` keeps each name's next number, even after every
version of it was deleted. Deleting a version removes its record only: functions that
use it keep their merged /opt (built from the content, which stays).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

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


class LayerStore:
    def __init__(self, data_dir: Path) -> None:
        self._db = sqlite3.connect(data_dir / "layers.db", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, account: str, region: str, name: str, record: dict[str, Any]) -> int:
        """Store `record` as the name's next version; returns its number."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT next_version FROM layer_names WHERE account=? AND region=? AND name=?",
                (account, region, name),
            ).fetchone()
            version = row[0] if row else 1
            self._db.execute(
                "INSERT OR REPLACE INTO layer_names VALUES (?, ?, ?, ?)",
                (account, region, name, version + 1),
            )
            record["Version"] = version
            self._db.execute(
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
            "SELECT 1 FROM layer_versions WHERE instr(record, ?) > 0 LIMIT 1", (digest,)
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

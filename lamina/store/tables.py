"""What every service's store shares: a SQLite connection for the event loop, and the
table of named resources (a queue, a stream, a table: one row each).

A named resource is keyed by (account, region, name) and carries its settings as one
JSON record; its rows of data (messages, records, items) live in tables of the service's
own store module, keyed by the resource's integer id.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def connect(path: Path) -> sqlite3.Connection:
    """A connection for the event loop: autocommit, WAL, synchronous=NORMAL. Survives a
    `kill -9` of the server with every committed row."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class NamedResources:
    """The table `name` of named resources in `db`: (id, account, region, name, record)."""

    def __init__(self, db: sqlite3.Connection, name: str) -> None:
        self._db = db
        self._name = name
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {name} ("
            "id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, "
            "region TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL, "
            "UNIQUE (account, region, name))"
        )

    def all(self) -> Iterator[tuple[int, str, str, str, dict[str, Any]]]:
        """(id, account, region, name, record) of every resource."""
        rows = self._db.execute(f"SELECT id, account, region, name, record FROM {self._name}")
        for row in rows.fetchall():
            yield row[0], row[1], row[2], row[3], json.loads(row[4])

    def insert(self, account: str, region: str, name: str, record: dict[str, Any]) -> int:
        cursor = self._db.execute(
            f"INSERT INTO {self._name} (account, region, name, record) VALUES (?, ?, ?, ?)",
            (account, region, name, json.dumps(record)),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def update(self, resource_id: int, record: dict[str, Any]) -> None:
        self._db.execute(
            f"UPDATE {self._name} SET record=? WHERE id=?", (json.dumps(record), resource_id)
        )

    def delete(self, resource_id: int) -> None:
        """Within the caller's transaction, which removes the resource's rows of data too."""
        self._db.execute(f"DELETE FROM {self._name} WHERE id=?", (resource_id,))

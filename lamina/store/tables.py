"""What every service's store shares: its database (a SQLite file of its own, or the
cluster's PostgreSQL), and the table of named resources (a queue, a stream, a table: one
row each).

A named resource is keyed by (account, region, name) and carries its settings as one
JSON record; its rows of data (messages, records, items) live in tables of the service's
own store module, keyed by the resource's integer id.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lamina.store.database import Database, Executor, SqliteDatabase, ddl


def connect(path: Path) -> sqlite3.Connection:
    """A bare SQLite connection for the event loop: autocommit, WAL, synchronous=NORMAL.
    Survives a `kill -9` of the server with every committed row. A store that should live
    in the cluster's PostgreSQL too takes a Database instead (`open_database`)."""
    return SqliteDatabase(path).raw


def open_database(data_dir: Path, name: str, db: Database | None) -> Database:
    """`db` (the cluster's), or the SQLite file `name` under the data directory."""
    return db if db is not None else SqliteDatabase(data_dir / name)


def named_resources_ddl(name: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ("
        "id INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT NOT NULL, "
        "region TEXT NOT NULL, name TEXT NOT NULL, record TEXT NOT NULL, "
        "UNIQUE (account, region, name));"
    )


class NamedResources:
    """The table `name` of named resources in `db`: (id, account, region, name, record).
    Its definition (named_resources_ddl) belongs in its store's schema; made here too if
    missing."""

    def __init__(self, db: Database | sqlite3.Connection, name: str) -> None:
        if isinstance(db, sqlite3.Connection):  # a store on tables.connect's connection
            db = SqliteDatabase(Path(), connection=db)
        self._db = db
        self._name = name
        db.execute(ddl(named_resources_ddl(name).rstrip(";"), db.dialect))

    def all(self) -> Iterator[tuple[int, str, str, str, dict[str, Any]]]:
        """(id, account, region, name, record) of every resource."""
        rows = self._db.execute(
            f"SELECT id, account, region, name, record FROM {self._name} ORDER BY id"
        )
        for row in rows.fetchall():
            yield row[0], row[1], row[2], row[3], json.loads(row[4])

    def insert(self, account: str, region: str, name: str, record: dict[str, Any]) -> int:
        return self._db.insert_id(
            f"INSERT INTO {self._name} (account, region, name, record) VALUES (?, ?, ?, ?)",
            (account, region, name, json.dumps(record)),
        )

    def update(self, resource_id: int, record: dict[str, Any]) -> None:
        self._db.execute(
            f"UPDATE {self._name} SET record=? WHERE id=?", (json.dumps(record), resource_id)
        )

    def delete(self, resource_id: int, tx: Executor | None = None) -> None:
        """Within the caller's transaction `tx`, which removes the resource's rows too."""
        (tx or self._db).execute(f"DELETE FROM {self._name} WHERE id=?", (resource_id,))


class Announcer:
    """Cluster mode, for a store whose rows every node holds in memory: its writes are
    announced on `channel` (NOTIFY), and another node's announcement calls `reload`
    where the store is used (deliver: the event loop's call_soon_threadsafe). On SQLite
    (one node) it does nothing."""

    def __init__(self, db: Database, channel: str, reload: Callable[[], None]) -> None:
        self._db = db
        self._channel = channel
        self._reload = reload
        self.node = uuid.uuid4().hex[:12]

    def written(self) -> None:
        if self._db.dialect != "sqlite":
            self._db.notify(self._channel, self.node)

    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:

        def told(payload: str) -> None:
            if payload != self.node:  # "" too: the connection was lost, read everything
                deliver(self._reload)

        self._db.listen(self._channel, told)

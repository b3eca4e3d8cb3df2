"""HTTP APIs on disk (`apigateway.db`): one JSON record per API (its settings, routes,
integrations, stages and deployments), keyed by its id; all of them are held in memory
too, so a request to an API reads no row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import Announcer, open_database

MIGRATIONS = [
    "CREATE TABLE IF NOT EXISTS apis (api_id TEXT PRIMARY KEY, account TEXT NOT NULL, "
    "region TEXT NOT NULL, record TEXT NOT NULL)"
]


class ApiStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "apigateway.db", db)
        schema.ensure(self._db, "apigateway", MIGRATIONS)
        # In a cluster, a node's writes are announced and the other nodes read the APIs again.
        self.announcer = Announcer(self._db, "lamina_apis", self.reload)
        self.listen = self.announcer.listen
        self.apis: dict[str, dict[str, Any]] = {}
        self.reload()

    def reload(self) -> None:
        rows = self._db.execute("SELECT api_id, record FROM apis").fetchall()
        self.apis = {api_id: json.loads(record) for api_id, record in rows}

    def put(self, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO apis (api_id, account, region, record) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (api_id) DO UPDATE SET record=excluded.record",
            (record["ApiId"], record["account"], record["region"], json.dumps(record)),
        )
        self.apis[record["ApiId"]] = record
        self.announcer.written()

    def delete(self, api_id: str) -> None:
        self._db.execute("DELETE FROM apis WHERE api_id=?", (api_id,))
        self.apis.pop(api_id, None)
        self.announcer.written()

    def close(self) -> None:
        self._db.close()

"""Function URL configurations, one row each, keyed by the URL's id (the first label of its
host) and unique per function and qualifier (an alias, or '' for the unqualified
function). Every row is also held in memory: a request to a URL reads no row. In a
cluster, a node's writes are announced and the other nodes read the rows again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lamina.keys import FunctionKey
from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import Announcer, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS function_urls (
    url_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (account, region, function, qualifier)
);
"""
MIGRATIONS = [SCHEMA]


@dataclass
class UrlConfig:
    url_id: str
    key: FunctionKey
    qualifier: str  # an alias, or '' (the unqualified function: $LATEST)
    auth_type: str  # NONE | AWS_IAM
    invoke_mode: str  # BUFFERED | RESPONSE_STREAM
    cors: dict[str, Any] | None
    created: str
    modified: str

    def record(self) -> str:
        fields = asdict(self)
        for name in ("url_id", "key", "qualifier"):
            del fields[name]
        return json.dumps(fields)


class UrlStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "urls.db", db)
        schema.ensure(self._db, "urls", MIGRATIONS)
        self.announcer = Announcer(self._db, "lamina_urls", self.reload)
        self.listen = self.announcer.listen
        self._by_id: dict[str, UrlConfig] = {}
        self._by_target: dict[tuple[FunctionKey, str], UrlConfig] = {}
        self.reload()

    def reload(self) -> None:
        """Every row, read again (at start; in a cluster, when another node wrote)."""
        self._by_id, self._by_target = {}, {}
        rows = self._db.execute(
            "SELECT url_id, account, region, function, qualifier, record FROM function_urls"
        )
        for url_id, account, region, function, qualifier, record in rows.fetchall():
            config = UrlConfig(
                url_id, FunctionKey(account, region, function), qualifier, **json.loads(record)
            )
            self._remember(config)

    def _remember(self, config: UrlConfig) -> None:
        self._by_id[config.url_id] = config
        self._by_target[(config.key, config.qualifier)] = config

    def get(self, url_id: str) -> UrlConfig | None:
        return self._by_id.get(url_id)

    def find(self, key: FunctionKey, qualifier: str) -> UrlConfig | None:
        return self._by_target.get((key, qualifier))

    def of_function(self, key: FunctionKey) -> list[UrlConfig]:
        found = [c for (k, _), c in self._by_target.items() if k == key]
        return sorted(found, key=lambda c: (c.qualifier, c.url_id))

    def put(self, config: UrlConfig) -> None:
        """Insert a new configuration or replace the one with its id."""
        self._db.execute(
            "INSERT INTO function_urls (url_id, account, region, function, qualifier, record) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (url_id) DO UPDATE SET record=excluded.record",
            (
                config.url_id,
                config.key.account,
                config.key.region,
                config.key.name,
                config.qualifier,
                config.record(),
            ),
        )
        self._remember(config)
        self.announcer.written()

    def delete(self, config: UrlConfig) -> None:
        self._db.execute("DELETE FROM function_urls WHERE url_id=?", (config.url_id,))
        self._by_id.pop(config.url_id, None)
        self._by_target.pop((config.key, config.qualifier), None)
        self.announcer.written()

    def close(self) -> None:
        self._db.close()

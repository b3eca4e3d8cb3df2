"""What the telemetry archives (logs, metrics, traces) share: a database of their own in
single-node mode, the cluster's otherwise, and one call at a time from worker threads."""

from __future__ import annotations

import threading
from pathlib import Path

from lamina.store import schema
from lamina.store.database import Database, SqliteDatabase


class Archive:
    """Used from worker threads, one call at a time (a lock keeps it so)."""

    def __init__(
        self,
        data_dir: Path,
        file_name: str,
        component: str,
        migrations: list[str],
        node: str,
        db: Database | None = None,
    ) -> None:
        self._db: Database = db or SqliteDatabase(data_dir / file_name, check_same_thread=False)
        schema.ensure(self._db, component, migrations)
        self.node = node
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        return self._db.dialect != "sqlite"

    def close(self) -> None:
        self._db.close()

"""X-Ray documents kept in the database (`traces.db`, or the cluster's PostgreSQL), so
that a restart, even after `kill -9`, keeps them, and every node reads every node's.

Documents (segments and subsegments, as received, with the account the sender named) are
appended in batches by the trace keeper and numbered by the database; a node reads the
others' after the last number it saw. Retention: documents older than RETENTION_S, and
beyond the newest MAX_DOCUMENTS, are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lamina.store.archive import Archive
from lamina.store.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS trace_documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace TEXT NOT NULL,
    account TEXT NOT NULL,     -- '' when the sender did not say (the daemon's datagrams)
    region TEXT NOT NULL,
    at REAL NOT NULL,          -- wall-clock seconds it was received
    body TEXT NOT NULL,        -- the document's JSON
    node TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trace_documents_by_time ON trace_documents (at);
"""
MIGRATIONS = [SCHEMA]
RETENTION_S = 30 * 86400.0  # X-Ray keeps traces 30 days
MAX_DOCUMENTS = 200_000

Document = tuple[str, str, str, float, str]  # (trace, account, region, at, body)


class TraceArchive(Archive):
    def __init__(self, data_dir: Path, node: str, db: Database | None = None) -> None:
        super().__init__(data_dir, "traces.db", "traces", MIGRATIONS, node, db)

    def append(self, documents: Sequence[Document]) -> None:
        with self._lock, self._db.transaction() as tx:
            tx.executemany(
                "INSERT INTO trace_documents (trace, account, region, at, body, node) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*document, self.node) for document in documents],
            )

    def last_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(id) FROM trace_documents").fetchone()
        return int(row[0] or 0) if row else 0

    def recent(self, limit: int) -> list[tuple[int, Document]]:
        """The newest `limit` documents, oldest first: a start's reload."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, trace, account, region, at, body FROM trace_documents "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(r[0], (r[1], r[2], r[3], r[4], r[5])) for r in rows[::-1]]

    def since(self, after: int, limit: int = 10_000) -> list[tuple[int, Document]]:
        """Other nodes' documents numbered after `after`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, trace, account, region, at, body FROM trace_documents "
                "WHERE id > ? AND node <> ? ORDER BY id LIMIT ?",
                (after, self.node, limit),
            ).fetchall()
        return [(r[0], (r[1], r[2], r[3], r[4], r[5])) for r in rows]

    def trim(self, now: float) -> int:
        with self._lock:
            gone = self._db.execute(
                "DELETE FROM trace_documents WHERE at < ?", (now - RETENTION_S,)
            ).rowcount
            gone += self._db.execute(
                "DELETE FROM trace_documents WHERE id <= "
                "(SELECT id FROM trace_documents ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (MAX_DOCUMENTS,),
            ).rowcount
        return gone

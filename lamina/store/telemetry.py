"""Function log lines kept in the database (`telemetry.db`, or the cluster's PostgreSQL),
so that a restart, even after `kill -9`, keeps them, and every node of a cluster reads
the lines of every node's environments.

Lines are appended in batches (the node's log keeper flushes at least twice a second) and
numbered by the database; a node reads the others' lines after the last number it saw.
Retention is enforced here: lines older than their group's retention (or the default),
and beyond the newest `MAX_LINES` of a function, are deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from lamina.keys import FunctionKey
from lamina.store.archive import Archive
from lamina.store.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS log_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    function TEXT NOT NULL,
    stream TEXT NOT NULL,
    at REAL NOT NULL,          -- wall-clock seconds
    text TEXT NOT NULL,
    node TEXT NOT NULL         -- the node whose environment wrote it
);
CREATE INDEX IF NOT EXISTS log_lines_by_function ON log_lines (account, region, function, id);
CREATE INDEX IF NOT EXISTS log_lines_by_time ON log_lines (at);
"""
MIGRATIONS = [SCHEMA]
MAX_LINES = 100_000  # per function, the newest kept
DEFAULT_RETENTION_S = 30 * 86400.0

Line = tuple[FunctionKey, str, float, str]  # (function, stream, at, text)


class LogArchive(Archive):
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        super().__init__(
            data_dir, "telemetry.db", "telemetry", MIGRATIONS, uuid.uuid4().hex[:12], db
        )

    def append(self, lines: Sequence[Line]) -> None:
        rows = [(k.account, k.region, k.name, s, at, t, self.node) for k, s, at, t in lines]
        with self._lock, self._db.transaction() as tx:
            tx.executemany(
                "INSERT INTO log_lines (account, region, function, stream, at, text, node) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def last_id(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(id) FROM log_lines").fetchone()
        return int(row[0] or 0) if row else 0

    def recent(self, since: float, limit: int = 200_000) -> list[tuple[int, Line]]:
        """Lines written after `since` (wall seconds), oldest first: a start's reload."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, account, region, function, stream, at, text FROM log_lines "
                "WHERE at >= ? ORDER BY id DESC LIMIT ?",
                (since, limit),
            ).fetchall()
        return [(r[0], (FunctionKey(r[1], r[2], r[3]), r[4], r[5], r[6])) for r in rows[::-1]]

    def since(self, after: int, limit: int = 10_000) -> list[tuple[int, Line]]:
        """Other nodes' lines numbered after `after`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, account, region, function, stream, at, text FROM log_lines "
                "WHERE id > ? AND node <> ? ORDER BY id LIMIT ?",
                (after, self.node, limit),
            ).fetchall()
        return [(r[0], (FunctionKey(r[1], r[2], r[3]), r[4], r[5], r[6])) for r in rows]

    def forget(self, key: FunctionKey) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM log_lines WHERE account=? AND region=? AND function=?",
                (key.account, key.region, key.name),
            )

    def trim(self, now: float, retention: Iterable[tuple[FunctionKey, float]]) -> int:
        """Delete what retention no longer keeps: lines older than DEFAULT_RETENTION_S,
        older than a group's own retention (seconds, given), beyond MAX_LINES a function."""
        gone = 0
        with self._lock:
            gone += self._db.execute(
                "DELETE FROM log_lines WHERE at < ?", (now - DEFAULT_RETENTION_S,)
            ).rowcount
            for key, seconds in retention:
                gone += self._db.execute(
                    "DELETE FROM log_lines WHERE account=? AND region=? AND function=? AND at < ?",
                    (key.account, key.region, key.name, now - seconds),
                ).rowcount
            crowded = self._db.execute(
                "SELECT account, region, function FROM log_lines "
                "GROUP BY account, region, function HAVING COUNT(*) > ?",
                (MAX_LINES,),
            ).fetchall()
            for account, region, function in crowded:
                gone += self._db.execute(
                    "DELETE FROM log_lines WHERE account=? AND region=? AND function=? AND "
                    "id <= (SELECT id FROM log_lines WHERE account=? AND region=? AND "
                    "function=? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (account, region, function, account, region, function, MAX_LINES),
                ).rowcount
        return gone

"""Metrics kept in the database (`metrics.db`, or the cluster's PostgreSQL), so that a
restart, even after `kill -9`, keeps them, and every node answers for the whole cluster.

Each node writes its own one-minute datapoints: one row per (node, series, minute),
replaced as the minute fills (the metric keeper flushes at least once a second), so a
series costs one row a minute whatever the invocation rate. Beside them each node keeps
one row per account of its cumulative totals (what Prometheus's counters show). A node
reads what the others wrote by the time of the write (`stamp`), looking a few seconds
back: a row read twice replaces itself. Retention: minutes older than RETENTION_MINUTES
go, and so do the totals of a node silent that long.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lamina.store.archive import Archive
from lamina.store.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_minutes (
    node TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    dims TEXT NOT NULL,        -- JSON: [[name, value], ...] sorted by name
    minute INTEGER NOT NULL,   -- wall-clock seconds // 60
    unit TEXT NOT NULL,
    n REAL NOT NULL,
    total REAL NOT NULL,
    low REAL NOT NULL,
    high REAL NOT NULL,
    stamp REAL NOT NULL,       -- wall-clock seconds of the write
    PRIMARY KEY (node, account, region, namespace, name, dims, minute)
);
CREATE INDEX IF NOT EXISTS metric_minutes_by_stamp ON metric_minutes (stamp);
CREATE INDEX IF NOT EXISTS metric_minutes_by_minute ON metric_minutes (minute);
CREATE TABLE IF NOT EXISTS metric_totals (
    node TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    body TEXT NOT NULL,        -- JSON: the node's cumulative totals (observe/totals.py)
    stamp REAL NOT NULL,
    PRIMARY KEY (node, account, region)
);
"""
MIGRATIONS = [SCHEMA]

# (account, region, namespace, name, dims JSON, minute, unit, n, total, low, high)
MinuteRow = tuple[str, str, str, str, str, int, str, float, float, float, float]
TotalsRow = tuple[str, str, str]  # (account, region, body JSON)
MINUTE_COLUMNS = "node, account, region, namespace, name, dims, minute, unit, n, total, low, high"


class MetricArchive(Archive):
    def __init__(self, data_dir: Path, node: str, db: Database | None = None) -> None:
        super().__init__(data_dir, "metrics.db", "metrics", MIGRATIONS, node, db)

    def write(self, minutes: Sequence[MinuteRow], totals: Sequence[TotalsRow], at: float) -> None:
        with self._lock, self._db.transaction() as tx:
            if minutes:
                tx.executemany(
                    f"INSERT INTO metric_minutes ({MINUTE_COLUMNS}, stamp) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (node, account, region, namespace, name, dims, minute) "
                    "DO UPDATE SET unit=excluded.unit, n=excluded.n, total=excluded.total, "
                    "low=excluded.low, high=excluded.high, stamp=excluded.stamp",
                    [(self.node, *row, at) for row in minutes],
                )
            if totals:
                tx.executemany(
                    "INSERT INTO metric_totals (node, account, region, body, stamp) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (node, account, region) "
                    "DO UPDATE SET body=excluded.body, stamp=excluded.stamp",
                    [(self.node, *row, at) for row in totals],
                )

    def others(
        self, since: float, first_minute: int, end_minute: int = 2**62
    ) -> tuple[list[Any], list[Any]]:
        """What other nodes wrote at `since` or later (wall seconds), of minutes in
        [first_minute, end_minute): (node + MinuteRow rows, (node, account, region, body)
        rows)."""
        with self._lock:
            minutes = self._db.execute(
                f"SELECT {MINUTE_COLUMNS} FROM metric_minutes "
                "WHERE stamp >= ? AND minute >= ? AND minute < ? AND node <> ? "
                "ORDER BY node, minute",
                (since, first_minute, end_minute, self.node),
            ).fetchall()
            totals = self._db.execute(
                "SELECT node, account, region, body FROM metric_totals "
                "WHERE stamp >= ? AND node <> ?",
                (since, self.node),
            ).fetchall()
        return minutes, totals

    def trim(self, first_minute: int, since: float) -> int:
        """Delete minutes before `first_minute`, and totals not written since `since`."""
        with self._lock:
            gone = self._db.execute(
                "DELETE FROM metric_minutes WHERE minute < ?", (first_minute,)
            ).rowcount
            gone += self._db.execute("DELETE FROM metric_totals WHERE stamp < ?", (since,)).rowcount
        return gone

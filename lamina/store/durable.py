"""The store of durable executions: one row per execution, and a callback index
(`durable.db`, or the cluster's PostgreSQL).

An execution is written whole (its operations and history are one JSON record) in the
same transaction as the callbacks it minted, on every change a caller is told about:
a checkpoint is answered only once it is committed. WAL mode keeps every committed
change across a `kill -9` of the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    arn TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    start REAL NOT NULL,
    expires REAL,               -- ended: when its retention period is over (wall seconds)
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_function
    ON executions (account, region, function, start);
CREATE INDEX IF NOT EXISTS executions_by_name ON executions (account, region, function, name);
CREATE INDEX IF NOT EXISTS executions_running ON executions (status);
CREATE INDEX IF NOT EXISTS executions_expiring ON executions (expires);
CREATE TABLE IF NOT EXISTS callbacks (
    id TEXT PRIMARY KEY,
    arn TEXT NOT NULL,
    op TEXT NOT NULL
);
"""
MIGRATIONS = [SCHEMA]


class DurableStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "durable.db", db)
        schema.ensure(self._db, "durable", MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def save(
        self,
        record: dict[str, Any],
        callbacks: Sequence[tuple[str, str]] = (),
        expires: float | None = None,
    ) -> None:
        """Write an execution (and the callbacks it minted) in one transaction."""
        row = (
            record["arn"],
            record["account"],
            record["region"],
            record["function"],
            record["name"],
            record["status"],
            record["start"],
            expires,
            json.dumps(record, separators=(",", ":")),
        )
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO executions (arn, account, region, function, name, status, start, "
                "expires, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(arn) DO UPDATE "
                "SET status=excluded.status, expires=excluded.expires, record=excluded.record",
                row,
            )
            for callback_id, op_id in callbacks:
                tx.execute(
                    "INSERT INTO callbacks (id, arn, op) VALUES (?, ?, ?) ON CONFLICT (id) "
                    "DO UPDATE SET arn=excluded.arn, op=excluded.op",
                    (callback_id, record["arn"], op_id),
                )

    def load(self, arn: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT record FROM executions WHERE arn=?", (arn,)).fetchone()
        return json.loads(row[0]) if row else None

    def by_name(self, account: str, region: str, function: str, name: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT record FROM executions WHERE account=? AND region=? AND function=? "
            "AND name=? ORDER BY start DESC LIMIT 1",
            (account, region, function, name),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def callback(self, callback_id: str) -> tuple[str, str] | None:
        row = self._db.execute(
            "SELECT arn, op FROM callbacks WHERE id=?", (callback_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def running(self) -> Iterator[dict[str, Any]]:
        rows = self._db.execute("SELECT record FROM executions WHERE status='RUNNING'").fetchall()
        for (record,) in rows:
            yield json.loads(record)

    def list(self, account: str, region: str, function: str) -> list[dict[str, Any]]:
        """Summaries (no operations or events) of a function's executions, oldest first."""
        rows = self._db.execute(
            "SELECT arn, name, status, start, record FROM executions "
            "WHERE account=? AND region=? AND function=? ORDER BY start, arn",
            (account, region, function),
        ).fetchall()
        out = []
        for arn, name, status, start, record in rows:
            data = json.loads(record)
            out.append(
                {
                    "arn": arn,
                    "name": name,
                    "status": status,
                    "start": start,
                    "end": data.get("end"),
                    "version": data.get("version"),
                }
            )
        return out

    def next_expiry(self) -> float | None:
        row = self._db.execute("SELECT MIN(expires) FROM executions").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def expire(self, now: float) -> int:
        """Remove the executions whose retention period is over; how many."""
        with self._db.transaction() as tx:
            tx.execute(
                "DELETE FROM callbacks WHERE arn IN (SELECT arn FROM executions WHERE expires<=?)",
                (now,),
            )
            gone = tx.execute("DELETE FROM executions WHERE expires<=?", (now,)).rowcount
        return int(gone)

    def delete(self, arn: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM executions WHERE arn=?", (arn,))
            tx.execute("DELETE FROM callbacks WHERE arn=?", (arn,))

    def delete_function(self, account: str, region: str, function: str) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "DELETE FROM callbacks WHERE arn IN (SELECT arn FROM executions WHERE "
                "account=? AND region=? AND function=?)",
                (account, region, function),
            )
            tx.execute(
                "DELETE FROM executions WHERE account=? AND region=? AND function=?",
                (account, region, function),
            )

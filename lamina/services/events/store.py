"""Durable event buses and rules (`eventbridge.db` under the data dir, used from the event
loop only, WAL; the cluster's PostgreSQL in cluster mode). A rule's record carries its
targets and, for a schedule, when it last fired, so a restart knows what it missed; the
`firings` table lets one node of a cluster send each firing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.store import schema
from lamina.store.database import Database
from lamina.store.tables import NamedResources, named_resources_ddl, open_database

CHANNEL = "lamina_events"  # payload: the node that changed buses or rules
MIGRATIONS = [
    named_resources_ddl("buses") + named_resources_ddl("rules"),  # rules named "<bus>/<rule>"
    # A scheduled firing is claimed before it is sent: of the nodes sharing a database,
    # one sends it.
    "CREATE TABLE IF NOT EXISTS firings (rule_id INTEGER NOT NULL, moment REAL NOT NULL, "
    "PRIMARY KEY (rule_id, moment))",
    # Deliveries to retry (a target's RetryPolicy), so that a restart loses none.
    "CREATE TABLE IF NOT EXISTS retries (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "rule_id INTEGER NOT NULL, target_id TEXT NOT NULL, event TEXT NOT NULL, "
    "accepted REAL NOT NULL, attempt INTEGER NOT NULL, due REAL NOT NULL)",
]


@dataclass(slots=True)
class Retry:
    id: int
    rule_id: int
    target_id: str
    event: dict[str, Any]
    accepted: float  # wall-clock seconds the event was first sent
    attempt: int  # the attempt to make next
    due: float


class RuleStore:
    def __init__(self, data_dir: Path, db: Database | None = None) -> None:
        self._db = open_database(data_dir, "eventbridge.db", db)
        schema.ensure(self._db, "eventbridge", MIGRATIONS)
        self.buses = NamedResources(self._db, "buses")
        self.rules = NamedResources(self._db, "rules")

    def close(self) -> None:
        self._db.close()

    # A cluster's nodes: a change announced, the others reload -----------------------------
    def notify(self, payload: str) -> None:
        self._db.notify(CHANNEL, payload)

    def listen(self, callback: Callable[[str], None]) -> None:
        self._db.listen(CHANNEL, callback)

    def claim(self, rule_id: int, moment: float) -> bool:
        """Whether this node sends the rule's firing at `moment` (no other node has)."""
        found = self._db.execute(
            "INSERT INTO firings (rule_id, moment) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (rule_id, moment),
        )
        if found.rowcount == 1:
            self._db.execute("DELETE FROM firings WHERE rule_id=? AND moment<?", (rule_id, moment))
            return True
        return False

    # Retries -------------------------------------------------------------------------------
    def add_retry(self, retry: Retry) -> int:
        return self._db.insert_id(
            "INSERT INTO retries (rule_id, target_id, event, accepted, attempt, due) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (retry.rule_id, retry.target_id, json.dumps(retry.event), retry.accepted,
             retry.attempt, retry.due),
        )  # fmt: skip

    def retries(self) -> list[Retry]:
        rows = self._db.execute(
            "SELECT id, rule_id, target_id, event, accepted, attempt, due FROM retries ORDER BY id"
        ).fetchall()
        return [Retry(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def take_retry(self, retry: Retry, lease_until: float) -> bool:
        """Claim a due retry (its due time moved to `lease_until`, compared and set): of
        the nodes sharing the database, one makes it; if that one dies, it comes due
        again when the lease ends."""
        found = self._db.execute(
            "UPDATE retries SET due=? WHERE id=? AND due=?", (lease_until, retry.id, retry.due)
        )
        if found.rowcount == 1:
            retry.due = lease_until
            return True
        return False

    def retry_later(self, retry: Retry) -> None:
        self._db.execute(
            "UPDATE retries SET attempt=?, due=? WHERE id=?", (retry.attempt, retry.due, retry.id)
        )

    def retry_done(self, retry_id: int) -> None:
        self._db.execute("DELETE FROM retries WHERE id=?", (retry_id,))

    def delete_bus(self, bus_id: int, rule_ids: list[int]) -> None:
        with self._db.transaction() as tx:
            for rule_id in rule_ids:
                self.rules.delete(rule_id, tx)
            self.buses.delete(bus_id, tx)

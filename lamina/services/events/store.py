"""Durable event buses and rules (`eventbridge.db` under the data dir, used from the event
loop only, WAL; the cluster's PostgreSQL in cluster mode). A rule's record carries its
targets and, for a schedule, when it last fired, so a restart knows what it missed; the
`firings` table lets one node of a cluster send each firing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
]


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
        listen = getattr(self._db, "listen", None)
        if listen is not None:  # PostgreSQL; a node's own SQLite file has no other reader
            listen(CHANNEL, callback)

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

    def delete_bus(self, bus_id: int, rule_ids: list[int]) -> None:
        with self._db.transaction() as tx:
            for rule_id in rule_ids:
                self.rules.delete(rule_id, tx)
            self.buses.delete(bus_id, tx)

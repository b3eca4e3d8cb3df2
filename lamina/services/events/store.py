"""Durable event buses and rules (`eventbridge.db` under the data dir; one connection
used from the event loop only, WAL). A rule's record carries its targets and, for a
schedule, when it last fired, so a restart knows what it missed."""

from __future__ import annotations

from pathlib import Path

from lamina.store.tables import NamedResources, connect


class RuleStore:
    def __init__(self, data_dir: Path) -> None:
        self._db = connect(data_dir / "eventbridge.db")
        self.buses = NamedResources(self._db, "buses")
        self.rules = NamedResources(self._db, "rules")  # named "<bus>/<rule>"

    def close(self) -> None:
        self._db.close()

    def delete_bus(self, bus_id: int, rule_ids: list[int]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            for rule_id in rule_ids:
                self.rules.delete(rule_id)
            self.buses.delete(bus_id)

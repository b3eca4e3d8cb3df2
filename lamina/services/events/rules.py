"""Every event bus and rule, owned here and written through to the store.

Each account and region has the `default` bus without creating it; custom buses are
made with CreateEventBus. A rule belongs to one bus and has an event pattern (compiled
once with lamina/patterns.py, the same matcher as event source mappings' filters) or a
schedule (schedule.py; on the default bus only), and up to five targets.

On a cluster's shared database every change is announced; the other nodes read every
bus and rule again and plan their schedules anew (firings are claimed: store.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lamina.patterns import EVENTBRIDGE, Pattern, compile_pattern
from lamina.services.events import schedule
from lamina.services.events.store import RuleStore

log = logging.getLogger("lamina.events")

DEFAULT_BUS = "default"


def bus_arn(account: str, region: str, name: str) -> str:
    return f"arn:aws:events:{region}:{account}:event-bus/{name}"


@dataclass
class Bus:
    id: int | None  # None: the default bus, which is not stored
    account: str
    region: str
    name: str
    record: dict[str, Any] = field(default_factory=dict)  # Description, Tags, CreationTime

    @property
    def arn(self) -> str:
        return bus_arn(self.account, self.region, self.name)


@dataclass
class Rule:
    id: int
    account: str
    region: str
    bus: str
    name: str
    record: dict[str, Any]  # EventPattern, ScheduleExpression, State, Targets, ...
    pattern: Pattern | None = None
    schedule: schedule.Schedule | None = None
    generation: int = 0  # bumped on every change: the scheduler drops stale wake-ups

    @property
    def arn(self) -> str:
        path = self.name if self.bus == DEFAULT_BUS else f"{self.bus}/{self.name}"
        return f"arn:aws:events:{self.region}:{self.account}:rule/{path}"

    @property
    def enabled(self) -> bool:
        return self.record.get("State", "ENABLED") != "DISABLED"  # or …_WITH_ALL_CLOUDTRAIL…

    @property
    def targets(self) -> dict[str, dict[str, Any]]:
        targets: dict[str, dict[str, Any]] = self.record.setdefault("Targets", {})
        return targets

    def compile(self) -> None:
        text = self.record.get("EventPattern")
        self.pattern = compile_pattern(text, EVENTBRIDGE) if text else None
        expression = self.record.get("ScheduleExpression")
        anchor = float(self.record.get("Anchor", 0.0))
        self.schedule = schedule.parse(expression, anchor) if expression else None


class Rules:
    """The one owner of buses and rules."""

    def __init__(self, store: RuleStore) -> None:
        self.store = store
        self.buses: dict[tuple[str, str, str], Bus] = {}
        self.rules: dict[tuple[str, str, str], dict[str, Rule]] = {}  # by bus, then name
        self.node = uuid.uuid4().hex[:12]
        self.on_reload: list[Callable[[], None]] = []  # the dispatcher plans schedules anew
        self._load()

    # Nodes sharing the database ------------------------------------------------------------
    def listen(self, deliver: Callable[[Callable[[], None]], None]) -> None:
        """Reload when another node announces a change (`deliver` runs it on the loop)."""

        def told(payload: str) -> None:
            if payload != self.node:  # "" : the listening connection was lost and made again
                deliver(self.reload)

        self.store.listen(told)

    def reload(self) -> None:
        """Read every bus and rule again; on failure (the database out of reach) keep
        what was known, until the next announcement."""
        known = self.buses, self.rules
        self.buses, self.rules = {}, {}
        try:
            self._load()
        except Exception:
            self.buses, self.rules = known
            log.warning("could not read rules again; keeping those known", exc_info=True)
            return
        for hook in self.on_reload:
            hook()

    def _changed(self) -> None:
        self.store.notify(self.node)

    def _load(self) -> None:
        for bus_id, account, region, name, record in list(self.store.buses.all()):
            self.buses[(account, region, name)] = Bus(bus_id, account, region, name, record)
        for rule_id, account, region, name, record in list(self.store.rules.all()):
            bus, _, rule_name = name.partition("/")
            rule = Rule(rule_id, account, region, bus, rule_name, record)
            rule.compile()
            self.rules.setdefault((account, region, bus), {})[rule_name] = rule

    # Buses -------------------------------------------------------------------------------
    def bus(self, account: str, region: str, name: str) -> Bus | None:
        if name == DEFAULT_BUS:
            return self.buses.get((account, region, name)) or Bus(None, account, region, name)
        return self.buses.get((account, region, name))

    def create_bus(self, account: str, region: str, name: str, record: dict[str, Any]) -> Bus:
        bus_id = self.store.buses.insert(account, region, name, record)
        bus = self.buses[(account, region, name)] = Bus(bus_id, account, region, name, record)
        self._changed()
        return bus

    def save_bus(self, bus: Bus) -> Bus:
        if bus.id is None:  # the default bus is stored once it has something to keep
            return self.create_bus(bus.account, bus.region, bus.name, bus.record)
        self.store.buses.update(bus.id, bus.record)
        self._changed()
        return bus

    def delete_bus(self, bus: Bus) -> list[Rule]:
        """Delete the bus and its rules; the rules that went with it."""
        gone = list(self.rules.pop((bus.account, bus.region, bus.name), {}).values())
        if bus.id is not None:
            self.store.delete_bus(bus.id, [r.id for r in gone])
        self.buses.pop((bus.account, bus.region, bus.name), None)
        self._changed()
        return gone

    def buses_of(self, account: str, region: str) -> list[Bus]:
        found = [b for (a, r, _), b in self.buses.items() if a == account and r == region]
        if not any(b.name == DEFAULT_BUS for b in found):
            found.append(Bus(None, account, region, DEFAULT_BUS))
        return sorted(found, key=lambda b: b.name)

    # Rules -------------------------------------------------------------------------------
    def rules_of(self, account: str, region: str, bus: str) -> dict[str, Rule]:
        return self.rules.get((account, region, bus), {})

    def rule(self, account: str, region: str, bus: str, name: str) -> Rule | None:
        return self.rules_of(account, region, bus).get(name)

    def put_rule(
        self, account: str, region: str, bus: str, name: str, record: dict[str, Any]
    ) -> Rule:
        """Create or replace a rule (compiled before anything is stored)."""
        existing = self.rule(account, region, bus, name)
        if existing is not None:
            changed = Rule(existing.id, account, region, bus, name, record)
            changed.compile()
            changed.generation = existing.generation + 1
            self.store.rules.update(existing.id, record)
        else:
            changed = Rule(0, account, region, bus, name, record)
            changed.compile()
            changed.id = self.store.rules.insert(account, region, f"{bus}/{name}", record)
        self.rules.setdefault((account, region, bus), {})[name] = changed
        self._changed()
        return changed

    def save_rule(self, rule: Rule, announce: bool = True) -> None:
        """Store the rule's record; `announce`: tell the other nodes (not for LastFired,
        which each node keeps for itself)."""
        self.store.rules.update(rule.id, rule.record)
        if announce:
            self._changed()

    def delete_rule(self, rule: Rule) -> None:
        self.store.rules.delete(rule.id)
        self.rules_of(rule.account, rule.region, rule.bus).pop(rule.name, None)
        rule.generation += 1
        self._changed()

    def scheduled(self) -> list[Rule]:
        return [r for rules in self.rules.values() for r in rules.values() if r.schedule]

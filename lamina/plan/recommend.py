"""`lamina plan --recommend`: reserved and provisioned concurrency per function for the
lowest cost that keeps every function's throttle and cold start rates within its
objectives, found by replaying the trace (every candidate is a full replay through the
engine's rules, with the same seed, so candidates are compared on the same invocations).

The search, from no reservation and no provisioned concurrency:
1. The demand: a replay under an account large enough that nothing is throttled for
   concurrency gives each function's peak.
2. Throttles: a function over its throttle objective gets the smallest reservation that
   meets it (a reserved function is counted apart from the others, so its throttles
   depend on its reservation alone: a bisection); while unreserved functions still miss
   theirs, the one using the most of the shared pool is capped by a reservation at the
   smallest figure its own objective allows. Reservations never take the unreserved pool
   below its floor.
3. Cold starts: a function over its cold start objective gets the smallest provisioned
   concurrency that meets it (inside its reservation, or from the unreserved pool).
4. Cost: provisioned concurrency that costs less than it saves (a busy function's
   duration is cheaper on provisioned environments) is kept.
Printed as a settings file and as the AWS CLI commands that apply it, with its cost next
to the cost of provisioning every function at its peak.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import yaml

from lamina.plan.settings import (
    FunctionSettings,
    Objectives,
    Settings,
    SettingsProblem,
    as_document,
    check_limits,
)

MAX_ROUNDS = 6


@dataclass
class Candidate:
    settings: Settings
    report: dict[str, Any]

    @property
    def cost(self) -> float:
        return float(sum(a["cost"]["total"] for a in self.report["accounts"]))

    def function(self, name: str) -> dict[str, Any]:
        return next(f for f in self.report["functions"] if f["function"] == name)


class Search:
    def __init__(self, planned: Any) -> None:
        from lamina.plan.command import plan

        self.planned = planned
        self.trace = planned.trace
        self.path = Path(planned.report["trace"].get("file") or "trace")
        self._plan = plan
        self.replays = 0
        base = planned.settings
        names = [function.name for function in planned.setup.functions]
        self.names = names
        self.objectives: dict[str, Objectives] = {
            function.name: planned.setup.objectives(function)
            for function in planned.setup.functions
        }
        # The user's other choices (memory, init, invocation type...) stay; the search
        # owns reserved and provisioned concurrency.
        self.base = base.with_functions(
            {
                name: replace(
                    base.functions.get(name, FunctionSettings()),
                    reserved=None,
                    provisioned=0,
                    schedule=(),
                )
                for name in names
            }
        )

    def evaluate(self, settings: Settings) -> Candidate:
        self.replays += 1
        planned = self._plan(self.path, settings, trace=self.trace)
        return Candidate(settings, planned.report)

    def with_function(self, settings: Settings, name: str, **changes: Any) -> Settings:
        functions = dict(settings.functions)
        functions[name] = replace(functions.get(name, FunctionSettings()), **changes)
        return settings.with_functions(functions)

    def fits(self, settings: Settings) -> bool:
        try:
            check_limits(settings)
        except SettingsProblem:
            return False
        return True

    def throttle_ok(self, candidate: Candidate, name: str) -> bool:
        return candidate.function(name)["throttle_rate"] <= self.objectives[name].max_throttle_rate

    def cold_ok(self, candidate: Candidate, name: str) -> bool:
        figures = candidate.function(name)
        return figures["cold_start_rate"] <= self.objectives[name].max_cold_start_rate

    def smallest(
        self, settings: Settings, name: str, field: str, low: int, high: int, good: Any
    ) -> tuple[int, Candidate] | None:
        """The smallest value of `field` in [low, high] whose replay `good` accepts (the
        figures are monotone in it), or None if even `high` does not do."""
        best: tuple[int, Candidate] | None = None
        top = self.with_function(settings, name, **{field: high})
        if not self.fits(top):
            return None
        candidate = self.evaluate(top)
        if not good(candidate, name):
            return None
        best = (high, candidate)
        while low < high:
            middle = (low + high) // 2
            trial = self.with_function(settings, name, **{field: middle})
            if not self.fits(trial):
                low = middle + 1
                continue
            candidate = self.evaluate(trial)
            if good(candidate, name):
                high, best = middle, (middle, candidate)
            else:
                low = middle + 1
        return best

    # The search ------------------------------------------------------------------------
    def demand(self) -> dict[str, int]:
        limits = self.base.account
        huge = replace(
            self.base,
            account=replace(limits, limit=max(limits.limit, 10**6), unreserved_floor=0),
        )
        candidate = self.evaluate(huge)
        return {f["function"]: max(1, f["peak_concurrency"]) for f in candidate.report["functions"]}

    def run(self) -> dict[str, Any]:
        peaks = self.demand()
        settings = self.base
        current = self.evaluate(settings)
        notes: list[str] = []
        # 2. throttles: reservations for those that miss their objective
        for name in sorted(self.names, key=lambda n: self.objectives[n].max_throttle_rate):
            if self.throttle_ok(current, name):
                continue
            found = self.smallest(settings, name, "reserved", 1, peaks[name], self.throttle_ok)
            if found is None:
                notes.append(
                    f"{name}: no reservation the account can hold meets its throttle objective"
                )
                continue
            settings = found[1].settings
            current = self.evaluate(settings)
        for _ in range(MAX_ROUNDS):
            missing = [
                f["function"]
                for f in current.report["functions"]
                if f["reserved"] is None and not self.throttle_ok(current, f["function"])
            ]
            if not missing:
                break
            noisy = [
                f
                for f in current.report["functions"]
                if f["reserved"] is None and f["function"] not in missing
            ] or [f for f in current.report["functions"] if f["reserved"] is None]
            noisy.sort(key=lambda f: -f["peak_concurrency"])
            capped = False
            for figures in noisy:
                name = figures["function"]
                found = self.smallest(
                    settings,
                    name,
                    "reserved",
                    1,
                    max(1, figures["peak_concurrency"]),
                    self.throttle_ok,
                )
                if found is None:
                    continue
                trial = self.evaluate(found[1].settings)
                if sum(not self.throttle_ok(trial, m) for m in missing) < len(missing):
                    settings, current, capped = found[1].settings, trial, True
                    break
            if not capped:
                notes.append(
                    "still over their throttle objective: "
                    + ", ".join(missing)
                    + " (the account limit is too small for this traffic)"
                )
                break
        # 3. cold starts: provisioned concurrency where needed
        for name in self.names:
            if self.cold_ok(current, name):
                continue
            reserved = settings.functions[name].reserved
            high = min(peaks[name], reserved) if reserved is not None else peaks[name]
            found = self.smallest(settings, name, "provisioned", 1, max(1, high), self.cold_ok)
            if found is None:
                notes.append(
                    f"{name}: no provisioned concurrency the account can hold meets "
                    "its cold start objective"
                )
                continue
            settings, current = found[1].settings, found[1]
        # 4. cost: provisioned concurrency that pays for itself
        for name in self.names:
            reserved = settings.functions[name].reserved
            start = settings.functions[name].provisioned
            ceiling = min(peaks[name], reserved) if reserved is not None else peaks[name]
            for level in sorted(
                {max(start, math.ceil(ceiling * share)) for share in (0.25, 0.5, 0.75, 1.0)}
            ):
                if level <= start:
                    continue
                trial_settings = self.with_function(settings, name, provisioned=level)
                if not self.fits(trial_settings):
                    continue
                trial = self.evaluate(trial_settings)
                if trial.cost < current.cost and all(
                    self.throttle_ok(trial, n) for n in self.names if self.throttle_ok(current, n)
                ):
                    settings, current = trial_settings, trial
        everything = self.provision_everything(peaks)
        return {
            "settings": settings,
            "candidate": current,
            "everything": everything,
            "peaks": peaks,
            "notes": notes,
            "replays": self.replays,
        }

    def provision_everything(self, peaks: dict[str, int]) -> Candidate:
        """Every function provisioned at its peak (the account raised to hold it)."""
        functions = {
            name: replace(self.base.functions[name], provisioned=peaks[name]) for name in self.names
        }
        needed = sum(peaks.values()) + self.base.account.unreserved_floor
        account = self.base.account
        if needed > account.limit:
            account = replace(account, limit=needed)
        return self.evaluate(replace(self.base.with_functions(functions), account=account))


def commands(settings: Settings, planned: Any, original: Settings) -> list[str]:
    qualifiers = {stream.stream.name: stream.stream.qualifier for stream in planned.setup.streams}
    lines = []
    for name, function in settings.functions.items():
        before = original.functions.get(name, FunctionSettings())
        if function.reserved is not None:
            lines.append(
                f"aws lambda put-function-concurrency --function-name {name} "
                f"--reserved-concurrent-executions {function.reserved}"
            )
        elif before.reserved is not None:
            lines.append(f"aws lambda delete-function-concurrency --function-name {name}")
        qualifier = qualifiers.get(name) or "live"
        if function.provisioned:
            lines.append(
                f"aws lambda put-provisioned-concurrency-config --function-name {name} "
                f"--qualifier {qualifier} --provisioned-concurrent-executions "
                f"{function.provisioned}"
            )
        elif before.provisioned_peak:
            lines.append(
                f"aws lambda delete-provisioned-concurrency-config --function-name {name} "
                f"--qualifier {qualifier}"
            )
    return lines


def summary(found: dict[str, Any]) -> dict[str, Any]:
    candidate: Candidate = found["candidate"]
    everything: Candidate = found["everything"]
    return {
        "cost": round(candidate.cost, 6),
        "cost_provisioning_everything": round(everything.cost, 6),
        "functions": {
            f["function"]: {
                "reserved": f["reserved"],
                "provisioned": f["provisioned"],
                "peak_demand": found["peaks"].get(f["function"]),
                "throttled": f["throttled"],
                "throttle_rate": f["throttle_rate"],
                "cold_start_rate": f["cold_start_rate"],
                "cost": f["cost"]["total"],
            }
            for f in candidate.report["functions"]
        },
        "notes": found["notes"],
        "replays": found["replays"],
    }


def recommend_command(planned: Any, args: argparse.Namespace, out: TextIO) -> int:
    search = Search(planned)
    found = search.run()
    settings: Settings = found["settings"]
    document = as_document(settings)
    text = yaml.safe_dump(document, sort_keys=False)
    lines = commands(settings, planned, planned.settings)
    facts = summary(found)
    from lamina.plan.report import table

    out.write("\n# With the recommended settings:\n")
    out.write("".join(f"#   {line}\n" for line in table(found["candidate"].report).splitlines()))
    out.write("\n# Recommended settings (lamina plan --recommend)\n")
    out.write(text)
    out.write("\n# Apply them on AWS\n" + ("\n".join(lines) or "# (nothing to change)") + "\n")
    out.write(
        f"\n# cost over the trace: ${facts['cost']:.4f}; provisioning every function at its "
        f"peak: ${facts['cost_provisioning_everything']:.4f} ({search.replays} replays)\n"
    )
    for note in found["notes"]:
        out.write(f"# note: {note}\n")
    if args.out is not None:
        import json

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recommended.yaml").write_text(text)
        (args.out / "apply.sh").write_text("#!/bin/sh\nset -e\n" + "\n".join(lines) + "\n")
        (args.out / "recommendation.json").write_text(json.dumps(facts, indent=1))
    return 0

"""`lamina plan --recommend` on a trace where one function's bursts starve the others:
the recommendation keeps the critical function free of throttles and costs less than
provisioning every function at its peak. Both are checked by replaying the recommended
settings again, apart from the search."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from lamina.cli import main
from lamina.plan.command import plan
from lamina.plan.settings import load

SETTINGS = """
account: {limit: 100, unreserved_floor: 10}
functions:
  shop-checkout: {critical: true}
  shop-batch: {objectives: {max_throttle_rate: 0.9, max_cold_start_rate: 0.5}}
objectives: {max_throttle_rate: 0.01, max_cold_start_rate: 0.05}
"""


def starving_trace(path: Path) -> Path:
    """30 minutes: checkout ~10/s for ~1 s, search ~4/s for ~0.5 s, and batch: 300
    invocations within 2 s every 5 minutes, 3 s each, three times the account's limit."""
    rng = random.Random(5)
    rows = []
    for name, rate, duration in (("checkout", 10, 1.0), ("search", 4, 0.5)):
        t = 0.0
        while (t := t + rng.expovariate(rate)) < 1800:
            rows.append((name, t, duration * (0.5 + rng.random())))
    for start in range(30, 1800, 300):
        rows.extend(("batch", start + 2 * rng.random(), 3.0) for _ in range(300))
    lines = ["app,func,end_timestamp,duration"]
    lines += [f"shop,{name},{t + d!r},{d!r}" for name, t, d in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_recommend_protects_the_critical_function_for_less_than_provisioning_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = starving_trace(tmp_path / "trace.csv")
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    before = plan(trace, load(tmp_path / "settings.yaml")).report
    checkout = next(f for f in before["functions"] if f["function"] == "shop-checkout")
    assert checkout["throttles"]["ConcurrentInvocationLimitExceeded"] > 50  # starved

    out = tmp_path / "out"
    status = main(
        [
            "plan",
            str(trace),
            "--settings",
            str(tmp_path / "settings.yaml"),
            "--recommend",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "# Recommended settings" in printed
    assert (
        "aws lambda put-function-concurrency --function-name shop-checkout "
        "--reserved-concurrent-executions" in printed
    )
    recommended = yaml.safe_load((out / "recommended.yaml").read_text())
    reserved = recommended["functions"]["shop-checkout"]["reserved"]
    assert 15 <= reserved <= 40  # about its peak demand, not the whole account
    assert (out / "apply.sh").read_text().count("aws lambda ") >= 1
    facts = json.loads((out / "recommendation.json").read_text())

    # Replayed on its own: zero throttles for the critical function...
    again = plan(trace, load(out / "recommended.yaml")).report
    checkout = next(f for f in again["functions"] if f["function"] == "shop-checkout")
    assert checkout["throttled"] == 0 and checkout["failed"] == 0
    search = next(f for f in again["functions"] if f["function"] == "shop-search")
    assert search["throttle_rate"] <= 0.01
    # ...and it costs less than provisioning every function at its peak.
    cost = sum(a["cost"]["total"] for a in again["accounts"])
    assert cost == pytest.approx(facts["cost"], rel=1e-3)
    assert cost < facts["cost_provisioning_everything"] / 2
    # The recommendation respects the unreserved floor.
    total_reserved = sum(f.get("reserved") or 0 for f in recommended["functions"].values())
    assert 100 - total_reserved >= 10

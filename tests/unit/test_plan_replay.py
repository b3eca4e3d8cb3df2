"""The planner's replay: hand-made traces whose outcome follows from Lambda's rules, run
through the engine's counting service and pool policy in virtual time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lamina.plan.command import plan
from lamina.plan.settings import SettingsProblem, parse

Row = tuple[str, float, float]  # function, arrival (s), duration (s)


def write_trace(path: Path, rows: list[Row]) -> Path:
    """An Azure Functions 2021 trace: app,func,end_timestamp,duration (arrival = end - d)."""
    lines = ["app,func,end_timestamp,duration"]
    for function, arrival, duration in rows:
        lines.append(f"app,{function},{arrival + duration!r},{duration!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(tmp_path: Path, rows: list[Row], settings: dict[str, Any]) -> dict[str, Any]:
    trace = write_trace(tmp_path / "trace.csv", rows)
    return plan(trace, parse(settings)).report


def fn(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in report["functions"] if f["function"] == name)


QUIET = {"account": {"limit": 1000, "unreserved_floor": 100, "request_rate": 0}}


def with_functions(functions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**QUIET, **extra, "functions": functions}


def test_functions_are_named_by_the_trace_and_settings_find_them(tmp_path: Path) -> None:
    report = run(tmp_path, [("alpha", 0, 1), ("beta", 0, 1)], QUIET)
    assert sorted(f["function"] for f in report["functions"]) == ["app-alpha", "app-beta"]
    with pytest.raises(SettingsProblem, match="functions: nope: no function of the trace"):
        run(tmp_path, [("alpha", 0, 1)], with_functions({"nope": {"reserved": 1}}))
    with pytest.raises(SettingsProblem, match="names 2 functions"):
        run(tmp_path, [("alpha", 0, 1), ("alpine", 0, 1)], with_functions({"app-al": {}}))


def test_a_reservation_throttles_what_is_past_it_with_aws_reason(tmp_path: Path) -> None:
    rows = [("a", 0.0, 10.0)] * 5
    report = run(tmp_path, rows, with_functions({"app-a": {"reserved": 3}}))
    a = fn(report, "app-a")
    assert a["runs"] == 3 and a["failed"] == 2
    assert a["throttles"] == {"ReservedFunctionConcurrentInvocationLimitExceeded": 2}
    assert a["peak_concurrency"] == 3 and a["cold_starts"] == 3


def test_the_unreserved_pool_is_shared_and_what_is_past_it_is_an_account_throttle(
    tmp_path: Path,
) -> None:
    settings = {
        "account": {"limit": 10, "unreserved_floor": 4, "request_rate": 0},
        "functions": {"app-r": {"reserved": 6}},
    }
    rows = [("r", 0.0, 5.0)] * 7 + [("u", 0.0, 5.0)] * 3 + [("v", 0.1, 5.0)] * 3
    report = run(tmp_path, rows, settings)
    assert fn(report, "app-r")["runs"] == 6  # its reservation, whatever the others do
    assert fn(report, "app-u")["runs"] == 3
    v = fn(report, "app-v")
    assert v["runs"] == 1 and v["throttles"] == {"ConcurrentInvocationLimitExceeded": 2}
    account = report["accounts"][0]
    assert account["peak_concurrency"] == 10 and account["unreserved_pool"] == 4
    with pytest.raises(SettingsProblem, match="below its floor of 4"):
        run(tmp_path, rows, {**settings, "functions": {"app-r": {"reserved": 7}}})


def test_environments_are_reused_until_the_keep_alive_then_start_cold(tmp_path: Path) -> None:
    rows = [("a", 0.0, 1.0), ("a", 5.0, 1.0), ("a", 5.5, 1.0), ("a", 100.0, 1.0)]
    report = run(tmp_path, rows, {**QUIET, "keep_alive": 60})
    a = fn(report, "app-a")
    # 0: cold; 5: warm (idle since 1.25); 5.5: cold (the one is busy); 100: both idle since
    # ~6.5, past the 60 s keep-alive: cold.
    assert a["cold_starts"] == 3 and a["runs"] == 4
    assert a["init_ms"] == 250  # the default cold start
    assert a["added_latency_ms"] == {"p50": 250, "p99": 250}


def test_provisioned_environments_serve_first_and_the_rest_spills_over(tmp_path: Path) -> None:
    rows = [("a", 0.0, 10.0)] * 5
    report = run(tmp_path, rows, with_functions({"app-a": {"provisioned": 2}}))
    a = fn(report, "app-a")
    assert a["provisioned_invocations"] == 2 and a["spillover_invocations"] == 3
    assert a["cold_starts"] == 3  # only the on-demand ones start cold
    assert a["gb_seconds"]["provisioned_duration"] == pytest.approx(2 * 10.0005 / 8, rel=1e-5)


def test_the_scaling_rate_limits_new_environments_not_warm_ones(tmp_path: Path) -> None:
    settings = {
        "account": {
            "limit": 1000,
            "unreserved_floor": 100,
            "burst": 3,
            "burst_window": 10,
            "request_rate": 0,
        }
    }
    burst = [("a", 0.0, 1.0)] * 5  # 5 new environments at once: 3 tokens
    later = [("a", 2.0, 1.0)] * 3  # the 3 are idle again: no token needed
    report = run(tmp_path, burst + later, settings)
    a = fn(report, "app-a")
    assert a["throttles"] == {"ConcurrentInvocationLimitExceeded": 2}
    assert a["runs"] == 6 and a["cold_starts"] == 3


def test_the_request_rate_is_ten_per_second_per_unit_of_concurrency(tmp_path: Path) -> None:
    rows = [("a", i * 0.01, 0.001) for i in range(50)]  # 100/s for half a second
    settings = {
        "account": {"limit": 1000, "unreserved_floor": 100, "request_rate": 10},
        "functions": {"app-a": {"reserved": 2, "init_ms": 0}},
    }
    a = fn(run(tmp_path, rows, settings), "app-a")
    # A bucket of 20 that refills at 20/s: 20 + ~0.5 s * 20 admitted of 50.
    assert a["throttles"]["ReservedFunctionInvocationRateLimitExceeded"] == 50 - a["runs"]
    assert 28 <= a["runs"] <= 31


def test_throttled_async_events_are_retried_by_the_queue_rules(tmp_path: Path) -> None:
    rows = [("a", 0.0, 30.0), ("a", 29.0, 1.0)]  # the second finds the one slot busy
    settings = with_functions({"app-a": {"reserved": 1, "invocation": "async"}})
    a = fn(run(tmp_path, rows, settings), "app-a")
    assert a["runs"] == 2 and a["failed"] == 0
    # Refused at 29 s (a backoff of 0.5-1 s), again when that ends, the slot being busy
    # until 30.25 s (30 s and the cold start): a backoff of 1-2 s, then it runs.
    assert a["throttles"] == {"ReservedFunctionConcurrentInvocationLimitExceeded": 2}
    assert 1500 <= a["throttle_delay_ms"]["p99"] <= 3000
    crowd = fn(
        run(
            tmp_path,
            [("a", 0.0, 30.0)] * 4,
            with_functions({"app-a": {"reserved": 2, "invocation": "async"}}),
        ),
        "app-a",
    )
    assert crowd["runs"] == 4 and crowd["failed"] == 0  # all ran in the end, none lost
    assert crowd["throttle_delay_ms"]["p99"] < 120_000  # not after a 5-minute backoff


def test_async_events_past_their_age_are_dropped(tmp_path: Path) -> None:
    rows = [("a", 0.0, 200.0), ("a", 1.0, 1.0)]
    settings = with_functions(
        {"app-a": {"reserved": 1, "invocation": "async", "max_event_age": 60}}
    )
    a = fn(run(tmp_path, rows, settings), "app-a")
    assert a["runs"] == 1 and a["dropped_events"] == 1 and a["failed"] == 1


def test_reserved_zero_sends_async_events_to_failure_at_once(tmp_path: Path) -> None:
    settings = with_functions({"app-a": {"reserved": 0, "invocation": "async"}})
    a = fn(run(tmp_path, [("a", 0.0, 1.0)] * 3, settings), "app-a")
    assert a["runs"] == 0 and a["dropped_events"] == 3 and a["throttled"] == 0


def test_sync_clients_retry_with_botocore_backoff(tmp_path: Path) -> None:
    rows = [("a", 0.0, 0.5)] * 4
    settings = with_functions(
        {"app-a": {"reserved": 2, "retries": {"mode": "standard", "max_attempts": 3}}}
    )
    a = fn(run(tmp_path, rows, settings), "app-a")
    # Standard mode waits rand(0,1) s, then rand(0,2) s: some retries find a free slot.
    assert a["client_retries"] >= 2
    assert a["runs"] + a["failed"] == 4 and a["runs"] >= 3
    no_retries = fn(run(tmp_path, rows, with_functions({"app-a": {"reserved": 2}})), "app-a")
    assert no_retries["runs"] == 2 and no_retries["client_retries"] == 0


def test_a_provisioned_schedule_changes_with_the_time_of_day(tmp_path: Path) -> None:
    rows = [("a", 3600.0 * h + 1, 1.0) for h in range(24)]
    schedule = [{"at": "08:00", "provisioned": 1}, {"at": "20:00", "provisioned": 0}]
    settings = with_functions({"app-a": {"provisioned_schedule": schedule}}, keep_alive=60)
    a = fn(run(tmp_path, rows, settings), "app-a")
    assert a["provisioned_invocations"] == 12  # 08:00 to 19:59
    assert a["cold_starts"] == 12
    # Provisioned for 12 hours of 128 MB
    assert a["gb_seconds"]["provisioned_configured"] == pytest.approx(12 * 3600 / 8)


def test_costs_come_from_the_price_table(tmp_path: Path) -> None:
    rows = [("a", float(i), 0.1) for i in range(1000)]
    settings = with_functions({"app-a": {"memory_mb": 1024, "init_ms": 0}}, keep_alive=3600)
    a = fn(run(tmp_path, rows, settings), "app-a")
    assert a["cold_starts"] == 1
    seconds = 1000 * 0.1005  # billed in whole ms: half of one more on average
    assert a["gb_seconds"]["on_demand"] == pytest.approx(seconds)
    assert a["cost"]["requests"] == pytest.approx(1000 * 0.2 / 1e6, rel=1e-5)
    assert a["cost"]["duration"] == pytest.approx(seconds * 0.0000166667, rel=1e-5)
    arm = run(
        tmp_path,
        rows,
        with_functions(
            {"app-a": {"memory_mb": 1024, "init_ms": 0, "architecture": "arm64"}}, keep_alive=3600
        ),
    )
    assert fn(arm, "app-a")["cost"]["duration"] == pytest.approx(seconds * 0.0000133334, rel=1e-5)


def test_peak_and_p99_concurrency_are_of_each_second(tmp_path: Path) -> None:
    steady = [("a", float(s), 0.5) for s in range(100)]  # 100 seconds at 1
    one_burst = fn(run(tmp_path, [*steady, *[("a", 50.2, 0.5)] * 4], QUIET), "app-a")
    assert one_burst["peak_concurrency"] == 5 and one_burst["p99_concurrency"] == 1
    two = [*steady, *[("a", 50.2, 0.5)] * 4, *[("a", 70.2, 0.5)] * 4]
    two_bursts = fn(run(tmp_path, two, QUIET), "app-a")  # 2 seconds of 100 at 5: the p99
    assert two_bursts["peak_concurrency"] == 5 and two_bursts["p99_concurrency"] == 5


def test_settings_say_what_is_wrong(tmp_path: Path) -> None:
    cases = [
        ({"account": {"limit": 0}}, "account: limit: 0 is below the minimum 1"),
        ({"account": {"limit": 10, "unreserved_floor": 20}}, "unreserved_floor 20 is above"),
        ({"keep_alive": "long"}, "keep_alive: expected a number"),
        ({"functions": {"a": {"reserved": 1.5}}}, "reserved: expected a whole number"),
        ({"functions": {"a": {"reserved": 1, "provisioned": 2}}}, "provisioned 2 is more"),
        ({"functions": {"a": {"memory_mb": 64}}}, "memory_mb: 64 is below the minimum 128"),
        ({"functions": {"a": {"invocation": "maybe"}}}, "invocation must be sync or async"),
        ({"functions": {"a": {"retries": {"mode": "eager"}}}}, "mode must be one of"),
        (
            {"functions": {"a": {"provisioned_schedule": [{"at": "25:00", "provisioned": 1}]}}},
            "25:00 is not a time of day",
        ),
        ({"functions": {"a": {"colour": "red"}}}, "unknown setting colour"),
        ({"defaults": {"reserved": 3}}, "are per function"),
        ({"bogus": 1}, "unknown setting bogus"),
    ]
    for document, message in cases:
        with pytest.raises(SettingsProblem, match=message):
            parse(document)
    parsed = parse(
        {
            "functions": {
                "a": {
                    "provisioned_schedule": [
                        {"at": "20:00", "provisioned": 2},
                        {"at": 3600, "provisioned": 1},
                    ]
                }
            }
        }
    )
    assert parsed.functions["a"].schedule == ((3600.0, 1), (72000.0, 2))
    assert parsed.functions["a"].provisioned_at(0) == 2  # wraps from yesterday's last step

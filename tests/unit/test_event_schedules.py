"""EventBridge schedule expressions, and the scheduler driven by a virtual clock: a cron
rule fires on exactly the minutes its fields allow; a rate rule every period; a rule that
missed firings while the server was down fires once at the start."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from lamina.clock import Clock
from lamina.deliveries import Delivery
from lamina.services.events import schedule
from lamina.services.events.dispatch import Dispatcher
from lamina.services.events.rules import Rules
from lamina.services.events.store import RuleStore

UTC = dt.UTC
ACCOUNT, REGION = "000000000000", "us-east-1"


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def shown(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, UTC).strftime("%a %Y-%m-%d %H:%M")


def firings(expression: str, start: str, count: int) -> list[str]:
    parsed = schedule.parse(expression, at(start))
    out: list[str] = []
    moment: float | None = at(start)
    for _ in range(count):
        assert moment is not None
        moment = parsed.next_after(moment)
        if moment is None:
            break
        out.append(shown(moment))
    return out


def test_cron_fields() -> None:
    assert firings("cron(0 12 * * ? *)", "2026-12-01T12:00:00", 2) == [
        "Wed 2026-12-02 12:00", "Thu 2026-12-03 12:00",
    ]  # fmt: skip
    assert firings("cron(0/20 23 * * ? *)", "2026-12-31T23:30:00", 3) == [
        "Thu 2026-12-31 23:40", "Fri 2027-01-01 23:00", "Fri 2027-01-01 23:20",
    ]  # fmt: skip
    assert firings("cron(0 18 ? * MON-FRI *)", "2026-12-04T18:00:00", 2) == [
        "Mon 2026-12-07 18:00", "Tue 2026-12-08 18:00",
    ]  # fmt: skip
    assert firings("cron(0 0 ? * FRI-MON *)", "2026-12-01T00:00:00", 4) == [
        "Fri 2026-12-04 00:00", "Sat 2026-12-05 00:00", "Sun 2026-12-06 00:00",
        "Mon 2026-12-07 00:00",
    ]  # fmt: skip
    assert firings("cron(30 22-1 * * ? *)", "2026-12-01T12:00:00", 4) == [
        "Tue 2026-12-01 22:30", "Tue 2026-12-01 23:30", "Wed 2026-12-02 00:30",
        "Wed 2026-12-02 01:30",
    ]  # fmt: skip


def test_cron_last_weekday_and_nth() -> None:
    assert firings("cron(0 9 L * ? *)", "2027-01-31T10:00:00", 2) == [
        "Sun 2027-02-28 09:00", "Wed 2027-03-31 09:00",
    ]  # fmt: skip
    assert firings("cron(0 9 L 2 ? *)", "2027-06-01T00:00:00", 1) == ["Tue 2028-02-29 09:00"]
    # 15W: the weekday nearest the 15th (2027-05-15 is a Saturday: Friday the 14th).
    assert firings("cron(0 9 15W * ? *)", "2027-05-01T00:00:00", 1) == ["Fri 2027-05-14 09:00"]
    # 1W never leaves the month (2027-05-01 is a Saturday: Monday the 3rd).
    assert firings("cron(0 9 1W * ? *)", "2027-04-30T00:00:00", 1) == ["Mon 2027-05-03 09:00"]
    # LW: the last weekday (2027-10-31 is a Sunday: Friday the 29th).
    assert firings("cron(0 9 LW 10 ? *)", "2027-01-01T00:00:00", 1) == ["Fri 2027-10-29 09:00"]
    assert firings("cron(0 10 ? * 6L *)", "2026-12-01T00:00:00", 2) == [
        "Fri 2026-12-25 10:00", "Fri 2027-01-29 10:00",
    ]  # fmt: skip
    assert firings("cron(0 10 ? * 3#2 *)", "2026-12-01T00:00:00", 2) == [
        "Tue 2026-12-08 10:00", "Tue 2027-01-12 10:00",
    ]  # fmt: skip
    assert firings("cron(0 8 1 JAN ? 2027-2028)", "2026-06-01T00:00:00", 3) == [
        "Fri 2027-01-01 08:00", "Sat 2028-01-01 08:00",
    ]  # fmt: skip


def test_rate_counts_from_its_anchor() -> None:
    parsed = schedule.parse("rate(5 minutes)", at("2026-12-01T10:02:00"))
    assert shown(parsed.next_after(at("2026-12-01T10:02:00")) or 0) == "Tue 2026-12-01 10:07"
    assert shown(parsed.next_after(at("2026-12-01T10:07:00")) or 0) == "Tue 2026-12-01 10:12"
    assert schedule.parse("rate(1 day)").next_after(0) == 86400


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 12 * * * *)",  # day-of-month and day-of-week both given
        "cron(0 12 ? * ? *)",  # neither
        "cron(0 12 * * ?)",  # five fields
        "cron(60 * * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 0 32 * ? *)",
        "cron(0 0 ? * 8 *)",
        "cron(0 0 ? * 2#6 *)",
        "cron(0 0 ? FOO * *)",
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 hours)",
        "rate(5 weeks)",
        "every 5 minutes",
    ],
)
def test_refused(expression: str) -> None:
    with pytest.raises(schedule.ScheduleError):
        schedule.parse(expression)


class VirtualClock(Clock):
    """Wall time that moves only when the test says."""

    def __init__(self, start: float) -> None:
        super().__init__(1.0)
        self.now = start

    def wall(self) -> float:
        return self.now


class Recorded:
    """A function target: records the time of each Scheduled Event it is sent."""

    def __init__(self) -> None:
        self.times: list[str] = []

    async def invoke_async(self, function_arn: str, payload: bytes, **_: Any) -> Delivery:
        import json

        self.times.append(json.loads(payload)["time"])
        return Delivery.ACCEPTED


class Unused:
    def send_as_service(self, *args: Any, **kwargs: Any) -> Delivery:
        raise AssertionError("not a queue target")

    async def publish_as_service(self, *args: Any, **kwargs: Any) -> Delivery:
        raise AssertionError("not a topic target")


def make(tmp_path: Path, clock: VirtualClock, target: Recorded) -> tuple[Rules, Dispatcher]:
    rules = Rules(RuleStore(tmp_path))
    return rules, Dispatcher(rules, clock, target, Unused(), Unused())


def put(rules: Rules, dispatcher: Dispatcher, name: str, expression: str, anchor: float) -> None:
    record = {
        "ScheduleExpression": expression,
        "State": "ENABLED",
        "Anchor": anchor,
        "Targets": {"f": {"Id": "f", "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"}},
    }
    dispatcher.reschedule(rules.put_rule(ACCOUNT, REGION, "default", name, record))


def test_cron_rule_fires_on_the_right_minutes(tmp_path: Path) -> None:
    async def run() -> list[str]:
        clock = VirtualClock(at("2026-12-04T08:00:30"))  # a Friday
        target = Recorded()
        rules, dispatcher = make(tmp_path, clock, target)
        put(rules, dispatcher, "weekday-mornings", "cron(0/15 9-10 ? * MON-FRI *)", clock.now)
        for _ in range(4 * 24 * 12):  # four days, five minutes at a time
            clock.now += 300
            dispatcher.step(clock.now)
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        rules.store.close()
        return target.times

    times = asyncio.run(run())
    minutes = ["09:00", "09:15", "09:30", "09:45", "10:00", "10:15", "10:30", "10:45"]
    # Friday and Monday; not the weekend.
    assert times == [f"2026-12-04T{m}:00Z" for m in minutes] + [
        f"2026-12-07T{m}:00Z" for m in minutes
    ]


def test_missed_firings_fire_once_at_start(tmp_path: Path) -> None:
    async def run() -> tuple[list[str], list[str]]:
        start = at("2026-12-01T10:00:00")
        clock = VirtualClock(start)
        target = Recorded()
        rules, dispatcher = make(tmp_path, clock, target)
        put(rules, dispatcher, "every-minute", "rate(1 minute)", start)
        for _ in range(3):
            clock.now += 60
            dispatcher.step(clock.now)
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        before = list(target.times)
        rules.store.close()
        # Down for ten minutes; a new server on the same store.
        clock.now += 600 + 20
        target = Recorded()
        rules, dispatcher = make(tmp_path, clock, target)
        await dispatcher.start()
        await asyncio.sleep(0)
        caught_up = list(target.times)
        clock.now += 40  # the next whole minute after the anchor's cadence
        dispatcher.step(clock.now)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await dispatcher.close()
        rules.store.close()
        return before, caught_up + target.times[len(caught_up) :]

    before, after = asyncio.run(run())
    assert before == ["2026-12-01T10:01:00Z", "2026-12-01T10:02:00Z", "2026-12-01T10:03:00Z"]
    # The catch-up is the last minute missed (the same moment on every node), then 10:14.
    assert after == ["2026-12-01T10:13:00Z", "2026-12-01T10:14:00Z"]


def test_a_firing_due_while_starting_is_the_catch_up_itself(tmp_path: Path) -> None:
    """Down across several minutes and back just before the next one is due: the start
    fires once for everything missed, and the minute that passes while the scheduler gets
    going is not a second firing."""

    async def run() -> list[str]:
        start = at("2026-12-01T10:00:00")
        clock = VirtualClock(start)
        rules, dispatcher = make(tmp_path, clock, Recorded())
        put(rules, dispatcher, "every-minute", "rate(1 minute)", start)
        clock.now += 60
        dispatcher.step(clock.now)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        rules.store.close()
        clock.now = start + 300 - 0.01  # back just before 10:05
        target = Recorded()
        rules, dispatcher = make(tmp_path, clock, target)
        await dispatcher.start()
        clock.now += 0.02  # 10:05 passes before the scheduler first runs
        for _ in range(3):
            await asyncio.sleep(0)
        clock.now = start + 360  # 10:06
        dispatcher.step(clock.now)
        for _ in range(3):
            await asyncio.sleep(0)
        await dispatcher.close()
        rules.store.close()
        return target.times

    assert asyncio.run(run()) == ["2026-12-01T10:04:00Z", "2026-12-01T10:06:00Z"]


def test_nodes_sharing_a_database_send_each_firing_once(tmp_path: Path) -> None:
    async def run() -> tuple[list[str], list[str]]:
        start = at("2026-12-01T10:00:00")
        clock = VirtualClock(start)
        first, second = Recorded(), Recorded()
        rules, dispatcher = make(tmp_path, clock, first)
        put(rules, dispatcher, "every-minute", "rate(1 minute)", start)
        other_rules, other = make(tmp_path, clock, second)  # another node, same database
        other.reschedule(other_rules.rule(ACCOUNT, REGION, "default", "every-minute"))  # type: ignore[arg-type]
        for _ in range(4):
            clock.now += 60
            dispatcher.step(clock.now)
            other.step(clock.now)
            for _ in range(3):
                await asyncio.sleep(0)
        rules.store.close()
        other_rules.store.close()
        return first.times, second.times

    first, second = asyncio.run(run())
    assert sorted(first + second) == [f"2026-12-01T10:0{m}:00Z" for m in range(1, 5)]


class FailsTwice(Recorded):
    """A target whose side fails twice (its store out of reach), then takes the event."""

    async def invoke_async(self, function_arn: str, payload: bytes, **_: Any) -> Delivery:
        await super().invoke_async(function_arn, payload)
        return Delivery.FAILED if len(self.times) <= 2 else Delivery.ACCEPTED


def test_a_failed_delivery_is_retried_across_a_restart(tmp_path: Path) -> None:
    async def run() -> tuple[list[str], list[str], int]:
        start = at("2026-12-01T10:00:00")
        clock = VirtualClock(start)
        first = FailsTwice()
        rules, dispatcher = make(tmp_path, clock, first)
        put(rules, dispatcher, "every-minute", "rate(1 minute)", start)
        clock.now += 60
        dispatcher.step(clock.now)  # fires; the target fails: a retry is stored
        for _ in range(3):
            await asyncio.sleep(0)
        rules.store.close()
        second = FailsTwice()
        second.times = list(first.times)  # the same target, one failure used up
        rules, dispatcher = make(tmp_path, clock, second)  # a restart
        await dispatcher.start()
        for _ in range(2):  # each retry: 2 s at most (1 s doubling, with jitter)
            clock.now += 5
            dispatcher.step(clock.now)
            for _ in range(3):
                await asyncio.sleep(0)
        left = len(rules.store.retries())
        await dispatcher.close()
        rules.store.close()
        return first.times, second.times, left

    first, second, left = asyncio.run(run())
    assert first == ["2026-12-01T10:01:00Z"]
    assert second == ["2026-12-01T10:01:00Z"] * 3  # retried twice after the restart
    assert left == 0

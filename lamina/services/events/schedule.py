"""Schedule expressions, as EventBridge reads them: `rate(5 minutes)` and AWS's six-field
`cron(minutes hours day-of-month month day-of-week year)`, always in UTC.

Cron fields and what each takes:
    minutes       0-59           , - * /
    hours         0-23           , - * /
    day-of-month  1-31           , - * ? / L W      (L: last day; 15W: the weekday nearest
                                                     the 15th, within the month; LW)
    month         1-12, JAN-DEC  , - * /
    day-of-week   1-7, SUN-SAT   , - * ? L #        (1 is Sunday; 6L: the month's last
                                                     Friday; 3#2: its second Tuesday)
    year          1970-2199      , - * /
One of day-of-month and day-of-week must be `?`, and not both.

`Schedule.next_after(t)` is the first firing strictly after `t` (epoch seconds, on the
schedule's own timeline), or None when there is none left (a cron whose years are past).
A rate fires every period from its anchor (when the rule was made); a cron on the whole
minutes its fields allow. Pure functions over plain numbers: the tests drive them with a
virtual clock.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
CRON = re.compile(r"cron\(([^)]*)\)")
UNITS = {"minute": 60, "hour": 3600, "day": 86400}
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTHS = {m: i for i, m in enumerate(MONTH_NAMES, 1)}
DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
MAX_YEAR = 2199
UTC = dt.UTC


class ScheduleError(ValueError):
    """Not a schedule expression EventBridge accepts."""


@dataclass(frozen=True)
class Rate:
    seconds: int
    anchor: float  # epoch seconds the rate counts from

    def last_until(self, t: float, since: float) -> float | None:
        """The last firing in (since, t], or None."""
        if t < self.anchor + self.seconds:
            return None
        found = self.anchor + int((t - self.anchor) // self.seconds) * self.seconds
        return found if found > since else None

    def next_after(self, t: float) -> float | None:
        if t < self.anchor:
            return self.anchor + self.seconds
        periods = int((t - self.anchor) // self.seconds) + 1
        return self.anchor + periods * self.seconds


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int] | None  # None: every year
    day_of_month: str  # the field's text; `?` when day-of-week decides
    day_of_week: str

    def next_after(self, t: float) -> float | None:
        start = dt.datetime.fromtimestamp(t, UTC).replace(second=0, microsecond=0)
        start += dt.timedelta(minutes=1)
        day = start.date()
        first = True
        while day.year <= MAX_YEAR:
            if self.years is not None and day.year not in self.years:
                later = [y for y in self.years if y > day.year]
                if not later:
                    return None
                day, first = dt.date(min(later), 1, 1), False
                continue
            if day.month not in self.months:
                day = _next_month(day)
                first = False
                continue
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    if first and hour < start.hour:
                        continue
                    for minute in sorted(self.minutes):
                        if first and hour == start.hour and minute < start.minute:
                            continue
                        moment = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                        return moment.timestamp()
            day += dt.timedelta(days=1)
            first = False
        return None

    def last_until(self, t: float, since: float) -> float | None:
        """The last firing in (since, t], or None (looking at most 100,000 firings on)."""
        found = None
        moment = self.next_after(since)
        for _ in range(100_000):
            if moment is None or moment > t:
                break
            found, moment = moment, self.next_after(moment)
        return found

    def _day_matches(self, day: dt.date) -> bool:
        if self.day_of_month != "?":
            return _day_of_month(self.day_of_month, day)
        return _day_of_week(self.day_of_week, day)


Schedule = Rate | Cron


def parse(expression: str, anchor: float = 0.0) -> Schedule:
    """A schedule expression; ScheduleError when EventBridge would refuse it."""
    found = RATE.fullmatch(expression.strip())
    if found:
        value, unit = int(found.group(1)), found.group(2)
        if value <= 0 or (value == 1) != (not unit.endswith("s")):
            raise ScheduleError(expression)
        return Rate(value * UNITS[unit.rstrip("s")], anchor)
    found = CRON.fullmatch(expression.strip())
    if not found:
        raise ScheduleError(expression)
    fields = found.group(1).split()
    if len(fields) != 6:
        raise ScheduleError(expression)
    minutes, hours, dom, month, dow, year = (f.upper() for f in fields)
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(expression)
    try:
        cron = Cron(
            _values(minutes, 0, 59),
            _values(hours, 0, 23),
            _values(month, 1, 12, MONTHS),
            None if year == "*" else _values(year, 1970, MAX_YEAR),
            dom,
            dow,
        )
        if dom != "?":
            _check_day_of_month(dom)
        else:
            _check_day_of_week(dow)
    except ValueError:
        raise ScheduleError(expression) from None
    return cron


def _number(text: str, low: int, high: int, names: dict[str, int] | None = None) -> int:
    value = names[text] if names and text in names else int(text)
    if not low <= value <= high:
        raise ValueError(text)
    return value


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """The values of a field of `,` `-` `*` `/` terms."""
    out: set[int] = set()
    for term in field.split(","):
        base, _, step_text = term.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(term)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _number(a, low, high, names), _number(b, low, high, names)
        else:
            first = _number(base, low, high, names)
            last = high if step_text else first
        if first <= last:
            out.update(range(first, last + 1, step))
        else:  # a range that wraps (FRI-MON, 22-2)
            out.update(v for v in range(first, high + 1 + last - low + 1, step))
            out = {v if v <= high else v - (high - low + 1) for v in out}
    return frozenset(out)


# Days of the month and of the week ---------------------------------------------------------
def _check_day_of_month(field: str) -> None:
    for term in field.split(","):
        if term in ("L", "LW"):
            continue
        if term.endswith("W"):
            _number(term[:-1], 1, 31)
            continue
        _values(term, 1, 31)


def _check_day_of_week(field: str) -> None:
    for term in field.split(","):
        if term == "L":
            continue
        if "#" in term:
            day, nth = term.split("#", 1)
            _number(day, 1, 7, DAYS)
            _number(nth, 1, 5)
        elif term.endswith("L"):
            _number(term[:-1], 1, 7, DAYS)
        else:
            _values(term, 1, 7, DAYS)


def _last_day(day: dt.date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _nearest_weekday(year: int, month: int, target: int) -> int:
    """The weekday nearest the `target`th, not leaving the month (AWS's `W`)."""
    last = calendar.monthrange(year, month)[1]
    target = min(target, last)
    weekday = dt.date(year, month, target).weekday()  # Monday 0
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return target - 1 if target > 1 else target + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before at month's end
        return target + 1 if target < last else target - 2
    return target


def _day_of_month(field: str, day: dt.date) -> bool:
    for term in field.split(","):
        if term == "L":
            if day.day == _last_day(day):
                return True
        elif term == "LW":
            if day.day == _nearest_weekday(day.year, day.month, _last_day(day)):
                return True
        elif term.endswith("W"):
            if day.day == _nearest_weekday(day.year, day.month, int(term[:-1])):
                return True
        elif day.day in _values(term, 1, 31):
            return True
    return False


def _aws_weekday(day: dt.date) -> int:
    """1 for Sunday ... 7 for Saturday."""
    return (day.weekday() + 1) % 7 + 1


def _day_of_week(field: str, day: dt.date) -> bool:
    weekday = _aws_weekday(day)
    for term in field.split(","):
        if term == "L":
            if weekday == 7:
                return True
        elif "#" in term:
            wanted, nth = term.split("#", 1)
            if weekday == _number(wanted, 1, 7, DAYS) and (day.day - 1) // 7 + 1 == int(nth):
                return True
        elif term.endswith("L"):
            if weekday == _number(term[:-1], 1, 7, DAYS) and day.day + 7 > _last_day(day):
                return True
        elif weekday in _values(term, 1, 7, DAYS):
            return True
    return False


def _next_month(day: dt.date) -> dt.date:
    if day.month == 12:
        return dt.date(day.year + 1, 1, 1)
    return dt.date(day.year, day.month + 1, 1)

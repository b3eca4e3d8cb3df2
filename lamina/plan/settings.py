"""What a plan replays the trace under, read from YAML:

```yaml
account:                  # Lambda's defaults shown
  id: "000000000000"
  limit: 1000             # concurrent executions (ConcurrentExecutions)
  unreserved_floor: 100
  burst: 1000             # new environments a function may add per burst window
  burst_window: 10        # seconds
  request_rate: 10        # sync invokes per second per unit of concurrency; 0 = off
region: us-east-1
keep_alive: 600           # seconds an idle environment is kept
seed: 1                   # arrivals drawn within a minute, durations, jitter
prices: my-prices.json    # optional: a price table of your own (lamina/plan/prices.json)
defaults:                 # for every function, unless it says otherwise
  memory_mb: 128          # else the trace's (Azure 2019: the app's p99 allocated memory)
  init_ms: 250            # cold start; else the trace's (Lamina's export: its median)
  duration_ms: 100        # for functions the trace gives no duration for
  architecture: x86_64
  invocation: sync        # or async (Azure 2019: timer, event and storage triggers)
  retries: {mode: none, max_attempts: 3}   # sync clients: none | standard | legacy
  max_event_age: 21600    # async events, seconds
functions:
  checkout:               # a function's name, or a unique prefix of its id in the trace
    reserved: 50
    provisioned: 10       # or a schedule, as Application Auto Scaling's scheduled actions:
    provisioned_schedule: [{at: "08:00", provisioned: 20}, {at: "20:00", provisioned: 2}]
    critical: true        # --recommend: no throttle allowed
objectives:               # --recommend's bounds, per function unless it says otherwise
  max_throttle_rate: 0.01
  max_cold_start_rate: 0.05
```
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from lamina.plan.prices import ARCHITECTURES

RETRY_MODES = ("none", "standard", "legacy")
INVOCATIONS = ("sync", "async")
CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


class SettingsProblem(ValueError):
    """A settings file that cannot be planned with; the message says where and why."""


@dataclass(frozen=True)
class Retries:
    mode: str = "none"
    max_attempts: int = 3  # in all, the first one included (botocore's meaning)


@dataclass(frozen=True)
class Objectives:
    max_throttle_rate: float = 0.01
    max_cold_start_rate: float = 0.05


@dataclass(frozen=True)
class FunctionSettings:
    reserved: int | None = None
    provisioned: int = 0
    schedule: tuple[tuple[float, int], ...] = ()  # (seconds into the day, provisioned)
    memory_mb: int | None = None
    init_ms: float | None = None
    duration_ms: float | None = None
    architecture: str | None = None
    invocation: str | None = None
    retries: Retries | None = None
    max_event_age: float | None = None
    critical: bool = False
    objectives: Objectives | None = None

    @property
    def provisioned_peak(self) -> int:
        return max([self.provisioned, *(count for _, count in self.schedule)])

    def provisioned_at(self, day_seconds: float) -> int:
        """Provisioned concurrency at a time of day: the schedule's last step at or before
        it (wrapping to the previous day's last), else the fixed figure."""
        if not self.schedule:
            return self.provisioned
        level = self.schedule[-1][1]
        for at, count in self.schedule:
            if at > day_seconds:
                break
            level = count
        return level


@dataclass(frozen=True)
class AccountSettings:
    id: str = "000000000000"
    limit: int = 1000
    unreserved_floor: int = 100
    burst: int = 1000
    burst_window: float = 10.0
    request_rate: float = 10.0


@dataclass(frozen=True)
class Settings:
    account: AccountSettings = AccountSettings()
    region: str = "us-east-1"
    keep_alive: float = 600.0
    seed: int = 1
    prices: Path | None = None
    defaults: FunctionSettings = FunctionSettings()
    functions: dict[str, FunctionSettings] = field(default_factory=dict)
    objectives: Objectives = Objectives()

    def for_function(self, name: str) -> FunctionSettings:
        return self.functions.get(name, FunctionSettings())

    def with_functions(self, functions: dict[str, FunctionSettings]) -> Settings:
        return replace(self, functions=functions)

    def to_yaml(self) -> str:
        return yaml.safe_dump(as_document(self), sort_keys=False)


# Reading ---------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads an unquoted 20:00 as the base-60 integer 1200; times of day stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def load(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsProblem(f"cannot read the settings file {path}: {exc.strerror}") from exc
    try:
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise SettingsProblem(f"{path} is not valid YAML: {exc}") from exc
    settings = parse(document if document is not None else {}, str(path))
    if settings.prices is not None and not settings.prices.is_absolute():
        settings = replace(settings, prices=path.parent / settings.prices)
    return settings


def parse(document: Any, where: str = "settings") -> Settings:
    top = _mapping(document, where)
    _known(
        top,
        where,
        {
            "account",
            "region",
            "keep_alive",
            "seed",
            "prices",
            "defaults",
            "functions",
            "objectives",
        },
    )
    account = _account(top.get("account", {}), f"{where}: account")
    defaults = _function(top.get("defaults", {}), f"{where}: defaults", defaults=True)
    functions = {
        str(name): _function(body or {}, f"{where}: functions: {name}")
        for name, body in _mapping(top.get("functions", {}), f"{where}: functions").items()
    }
    settings = Settings(
        account=account,
        region=_text(top.get("region", "us-east-1"), f"{where}: region"),
        keep_alive=_number(top.get("keep_alive", 600), f"{where}: keep_alive", low=0.001),
        seed=int(_number(top.get("seed", 1), f"{where}: seed")),
        prices=Path(_text(top["prices"], f"{where}: prices")) if "prices" in top else None,
        defaults=defaults,
        functions=functions,
        objectives=_objectives(top.get("objectives", {}), f"{where}: objectives") or Objectives(),
    )
    check_limits(settings)
    return settings


def check_limits(settings: Settings) -> None:
    """Reservations and provisioned concurrency the account can hold, as AWS checks them
    (the counting service says it again, in AWS's words, when the replay applies them)."""
    account = settings.account
    reserved = sum(f.reserved or 0 for f in settings.functions.values())
    provisioned_unreserved = sum(
        f.provisioned_peak for f in settings.functions.values() if f.reserved is None
    )
    for name, function in settings.functions.items():
        if function.reserved is not None and function.provisioned_peak > function.reserved:
            raise SettingsProblem(
                f"functions: {name}: provisioned {function.provisioned_peak} is more than its "
                f"reserved concurrency {function.reserved}"
            )
    left = account.limit - reserved - provisioned_unreserved
    if left < account.unreserved_floor:
        raise SettingsProblem(
            f"reserved ({reserved}) and provisioned concurrency of unreserved functions "
            f"({provisioned_unreserved}) leave {left} unreserved of the account's "
            f"{account.limit}, below its floor of {account.unreserved_floor}"
        )


def _account(value: Any, where: str) -> AccountSettings:
    body = _mapping(value, where)
    _known(
        body, where, {"id", "limit", "unreserved_floor", "burst", "burst_window", "request_rate"}
    )
    limit = int(_number(body.get("limit", 1000), f"{where}: limit", low=1, whole=True))
    floor = int(
        _number(body.get("unreserved_floor", 100), f"{where}: unreserved_floor", low=0, whole=True)
    )
    if floor > limit:
        raise SettingsProblem(f"{where}: unreserved_floor {floor} is above the limit {limit}")
    return AccountSettings(
        id=_text(body.get("id", "000000000000"), f"{where}: id"),
        limit=limit,
        unreserved_floor=floor,
        burst=int(_number(body.get("burst", 1000), f"{where}: burst", low=1, whole=True)),
        burst_window=_number(body.get("burst_window", 10), f"{where}: burst_window", 0.001),
        request_rate=_number(body.get("request_rate", 10), f"{where}: request_rate", low=0),
    )


FUNCTION_KEYS = {
    "reserved",
    "provisioned",
    "provisioned_schedule",
    "memory_mb",
    "init_ms",
    "duration_ms",
    "architecture",
    "invocation",
    "retries",
    "max_event_age",
    "critical",
    "objectives",
}


def _function(value: Any, where: str, defaults: bool = False) -> FunctionSettings:
    body = _mapping(value, where)
    _known(body, where, FUNCTION_KEYS)
    if defaults and ({"reserved", "provisioned", "provisioned_schedule", "critical"} & set(body)):
        raise SettingsProblem(f"{where}: reserved and provisioned concurrency are per function")
    reserved = body.get("reserved")
    if "provisioned" in body and "provisioned_schedule" in body:
        raise SettingsProblem(f"{where}: give provisioned or provisioned_schedule, not both")
    memory = body.get("memory_mb")
    architecture = body.get("architecture")
    if architecture is not None and architecture not in ARCHITECTURES:
        raise SettingsProblem(f"{where}: architecture must be one of {', '.join(ARCHITECTURES)}")
    invocation = body.get("invocation")
    if invocation is not None and invocation not in INVOCATIONS:
        raise SettingsProblem(f"{where}: invocation must be sync or async")
    return FunctionSettings(
        reserved=None
        if reserved is None
        else int(_number(reserved, f"{where}: reserved", low=0, whole=True)),
        provisioned=int(
            _number(body.get("provisioned", 0), f"{where}: provisioned", low=0, whole=True)
        ),
        schedule=_schedule(body.get("provisioned_schedule", []), f"{where}: provisioned_schedule"),
        memory_mb=None
        if memory is None
        else int(_number(memory, f"{where}: memory_mb", low=128, high=10240, whole=True)),
        init_ms=_optional(body, "init_ms", where),
        duration_ms=_optional(body, "duration_ms", where),
        architecture=architecture,
        invocation=invocation,
        retries=_retries(body["retries"], f"{where}: retries") if "retries" in body else None,
        max_event_age=None
        if body.get("max_event_age") is None
        else _number(body["max_event_age"], f"{where}: max_event_age", low=60, high=21600),
        critical=bool(body.get("critical", False)),
        objectives=_objectives(body.get("objectives", {}), f"{where}: objectives"),
    )


def _schedule(value: Any, where: str) -> tuple[tuple[float, int], ...]:
    if not isinstance(value, list):
        raise SettingsProblem(f"{where}: a list of {{at: HH:MM, provisioned: N}}")
    steps = []
    for index, item in enumerate(value):
        step = _mapping(item, f"{where}[{index}]")
        _known(step, f"{where}[{index}]", {"at", "provisioned"})
        if "at" not in step or "provisioned" not in step:
            raise SettingsProblem(f"{where}[{index}]: needs at and provisioned")
        at = step["at"]
        if isinstance(at, int | float) and not isinstance(at, bool):
            seconds = float(at)  # seconds into the day
        else:
            found = CLOCK.match(str(at))
            if found is None:
                raise SettingsProblem(f"{where}[{index}]: at must be HH:MM (UTC) or seconds")
            hours, minutes, secs = int(found[1]), int(found[2]), int(found[3] or 0)
            if hours > 23 or minutes > 59 or secs > 59:
                raise SettingsProblem(f"{where}[{index}]: {at} is not a time of day")
            seconds = hours * 3600 + minutes * 60 + secs
        count = int(
            _number(step["provisioned"], f"{where}[{index}]: provisioned", low=0, whole=True)
        )
        steps.append((seconds % 86400, count))
    return tuple(sorted(steps))


def _retries(value: Any, where: str) -> Retries:
    body = _mapping(value, where)
    _known(body, where, {"mode", "max_attempts"})
    mode = str(body.get("mode", "standard"))
    if mode not in RETRY_MODES:
        raise SettingsProblem(f"{where}: mode must be one of {', '.join(RETRY_MODES)}")
    default = 3 if mode == "standard" else 5
    attempts = int(_number(body.get("max_attempts", default), f"{where}: max_attempts", 1, 100))
    return Retries(mode, attempts)


def _objectives(value: Any, where: str) -> Objectives | None:
    body = _mapping(value, where)
    if not body:
        return None
    _known(body, where, {"max_throttle_rate", "max_cold_start_rate"})
    return Objectives(
        _number(body.get("max_throttle_rate", 0.01), f"{where}: max_throttle_rate", 0, 1),
        _number(body.get("max_cold_start_rate", 0.05), f"{where}: max_cold_start_rate", 0, 1),
    )


def _optional(body: dict[str, Any], name: str, where: str) -> float | None:
    value = body.get(name)
    return None if value is None else _number(value, f"{where}: {name}", low=0)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingsProblem(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _known(body: dict[str, Any], where: str, names: set[str]) -> None:
    unknown = sorted(str(name) for name in body if name not in names)
    if unknown:
        raise SettingsProblem(
            f"{where}: unknown setting {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise SettingsProblem(f"{where}: expected text")
    return str(value)


def _number(
    value: Any, where: str, low: float | None = None, high: float | None = None, whole: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise SettingsProblem(f"{where}: expected a number, got {value!r}")
    if whole and value != int(value):
        raise SettingsProblem(f"{where}: expected a whole number, got {value}")
    if low is not None and value < low:
        raise SettingsProblem(f"{where}: {value} is below the minimum {low:g}")
    if high is not None and value > high:
        raise SettingsProblem(f"{where}: {value} is above the maximum {high:g}")
    return float(value)


# Writing ---------------------------------------------------------------------------------
def as_document(settings: Settings) -> dict[str, Any]:
    account = settings.account
    document: dict[str, Any] = {
        "account": {
            "id": account.id,
            "limit": account.limit,
            "unreserved_floor": account.unreserved_floor,
            "burst": account.burst,
            "burst_window": account.burst_window,
            "request_rate": account.request_rate,
        },
        "region": settings.region,
        "keep_alive": settings.keep_alive,
        "seed": settings.seed,
    }
    if settings.prices is not None:
        document["prices"] = str(settings.prices)
    defaults = _function_document(settings.defaults)
    if defaults:
        document["defaults"] = defaults
    document["functions"] = {
        name: _function_document(function) for name, function in settings.functions.items()
    }
    document["objectives"] = {
        "max_throttle_rate": settings.objectives.max_throttle_rate,
        "max_cold_start_rate": settings.objectives.max_cold_start_rate,
    }
    return document


def _function_document(function: FunctionSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if function.reserved is not None:
        out["reserved"] = function.reserved
    if function.provisioned:
        out["provisioned"] = function.provisioned
    if function.schedule:
        out["provisioned_schedule"] = [
            {"at": f"{int(at) // 3600:02d}:{int(at) % 3600 // 60:02d}", "provisioned": count}
            for at, count in function.schedule
        ]
    for name in (
        "memory_mb",
        "init_ms",
        "duration_ms",
        "architecture",
        "invocation",
        "max_event_age",
    ):
        value = getattr(function, name)
        if value is not None:
            out[name] = value
    if function.retries is not None:
        out["retries"] = {
            "mode": function.retries.mode,
            "max_attempts": function.retries.max_attempts,
        }
    if function.critical:
        out["critical"] = True
    if function.objectives is not None:
        out["objectives"] = {
            "max_throttle_rate": function.objectives.max_throttle_rate,
            "max_cold_start_rate": function.objectives.max_cold_start_rate,
        }
    return out

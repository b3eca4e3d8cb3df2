"""The settings applied to a trace: what each stream and each function of the replay is
(its key, memory, cold start, invocation type, client retries), and the concurrency
settings of each function, named in the settings by name or by a unique prefix of the
trace's id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lamina.keys import FunctionKey
from lamina.plan.settings import (
    FunctionSettings,
    Objectives,
    Retries,
    Settings,
    SettingsProblem,
)
from lamina.plan.trace import Stream, Trace

DEFAULT_INIT_MS = 250.0
DEFAULT_DURATION_MS = 100.0
DEFAULT_MEMORY_MB = 128
DEFAULT_EVENT_AGE = 21600.0


@dataclass
class FunctionSetup:
    key: FunctionKey
    name: str
    settings: FunctionSettings  # reserved, provisioned (and its schedule), objectives
    memory_mb: int
    architecture: str
    streams: list[int] = field(default_factory=list)


@dataclass
class StreamSetup:
    stream: Stream
    function: int  # index into Setup.functions
    invocation: str  # sync | async
    init_s: float
    retries: Retries
    max_event_age: float


@dataclass
class Setup:
    settings: Settings
    functions: list[FunctionSetup]
    streams: list[StreamSetup]

    def objectives(self, function: FunctionSetup) -> Objectives:
        if function.settings.critical:
            return Objectives(
                0.0, (function.settings.objectives or self.settings.objectives).max_cold_start_rate
            )
        return function.settings.objectives or self.settings.objectives


def match(settings: Settings, streams: list[Stream]) -> dict[str, FunctionSettings]:
    """Each stream's function settings, by stream name; an error for settings that name no
    function of the trace, or more than one."""
    by_name: dict[str, FunctionSettings] = {}
    names = sorted({stream.name for stream in streams})
    for given, function in settings.functions.items():
        if given in names:
            chosen = [given]
        else:
            chosen = sorted(
                {s.name for s in streams if s.id.startswith(given) or s.name.startswith(given)}
            )
        if not chosen:
            raise SettingsProblem(
                f"functions: {given}: no function of the trace is named so or starts so "
                f"(it has {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
            )
        if len(chosen) > 1:
            raise SettingsProblem(
                f"functions: {given}: names {len(chosen)} functions of the trace "
                f"({', '.join(chosen[:5])}); give more of the name"
            )
        if chosen[0] in by_name:
            raise SettingsProblem(f"functions: {given}: {chosen[0]} is set twice")
        by_name[chosen[0]] = function
    return by_name


def default_duration(settings: Settings) -> Callable[[Stream], float]:
    """The duration (seconds) of a stream whose trace gives none: settings, else 100 ms."""

    def pick(stream: Stream) -> float:
        try:
            found = match(settings, [stream]).get(stream.name)
        except SettingsProblem:
            found = None
        for source in (found, settings.defaults):
            if source is not None and source.duration_ms is not None:
                return source.duration_ms / 1000
        return DEFAULT_DURATION_MS / 1000

    return pick


def build(settings: Settings, trace: Trace) -> Setup:
    per_name = match(settings, trace.streams)
    defaults = settings.defaults
    functions: list[FunctionSetup] = []
    index_of: dict[FunctionKey, int] = {}
    streams: list[StreamSetup] = []
    for stream in trace.streams:
        own = per_name.get(stream.name, FunctionSettings())
        key = FunctionKey(
            stream.account or settings.account.id, stream.region or settings.region, stream.name
        )
        index = index_of.get(key)
        if index is None:
            index = index_of[key] = len(functions)
            functions.append(
                FunctionSetup(
                    key=key,
                    name=stream.name,
                    settings=own,
                    memory_mb=own.memory_mb
                    or stream.memory_mb
                    or defaults.memory_mb
                    or DEFAULT_MEMORY_MB,
                    architecture=own.architecture or defaults.architecture or "x86_64",
                )
            )
        functions[index].streams.append(len(streams))
        init_ms = _first(own.init_ms, stream.init_ms, defaults.init_ms, DEFAULT_INIT_MS)
        streams.append(
            StreamSetup(
                stream=stream,
                function=index,
                invocation=own.invocation or defaults.invocation or stream.invocation,
                init_s=init_ms / 1000,
                retries=own.retries or defaults.retries or Retries(),
                max_event_age=_first(own.max_event_age, defaults.max_event_age, DEFAULT_EVENT_AGE),
            )
        )
    return Setup(settings, functions, streams)


def _first(*values: float | None) -> float:
    for value in values:
        if value is not None:
            return float(value)
    raise ValueError("no value")

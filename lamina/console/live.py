"""The live view's data: functions with their settings and limits, per-second series of
concurrency, invocations, errors, throttles, cold starts and durations, recent logs and
recent traces. Served as JSON at /_lamina/live (the console and `lamina top` read it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from lamina.api.wire import HttpRequest, HttpResponse
from lamina.config import DEFAULT_ACCOUNT, DEFAULT_REGION
from lamina.keys import FunctionKey
from lamina.observe.logs import LogStore
from lamina.observe.metrics import Metrics, Second
from lamina.observe.traces import TraceStore

DEFAULT_SECONDS = 300
MAX_SECONDS = 300
WINDOW = 60  # seconds the table's totals cover
RECENT = 5  # complete seconds the rates (per second) cover
JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}

SHOWN = 100  # functions listed at most: those active in the last minute first, then by name


class Catalogue(Protocol):
    """What the live view reads of the function store: no scan of every function."""

    def list_functions(
        self, account: str, region: str, after: str = "", limit: int = -1
    ) -> list[dict[str, Any]]: ...

    def function_view(self, key: FunctionKey) -> dict[str, Any] | None: ...

    def usage(self, account: str, region: str) -> tuple[int, int]: ...


def _series(buckets: list[Second], start: int, end: int) -> dict[str, list[float]]:
    """Per-second columns from `start` to `end` inclusive, seconds without data as 0."""
    by_t = {b.t: b for b in buckets}
    columns: dict[str, list[float]] = {
        "t": [],
        "concurrency": [],
        "provisioned_busy": [],
        "invocations": [],
        "errors": [],
        "throttles": [],
        "cold_starts": [],
        "duration_avg": [],
        "duration_max": [],
    }
    for t in range(start, end + 1):
        b = by_t.get(t)
        columns["t"].append(t)
        if b is None:
            for name in list(columns)[1:]:
                columns[name].append(0)
            continue
        columns["concurrency"].append(b.concurrency)
        columns["provisioned_busy"].append(b.provisioned_busy)
        columns["invocations"].append(b.invocations)
        columns["errors"].append(b.errors)
        columns["throttles"].append(b.throttles)
        columns["cold_starts"].append(b.cold_starts)
        columns["duration_avg"].append(
            round(b.duration_sum / b.invocations, 3) if b.invocations else 0
        )
        columns["duration_max"].append(round(b.duration_max, 3))
    return columns


def _totals(buckets: list[Second], upto: int | None = None) -> dict[str, Any]:
    if upto is not None:
        buckets = [b for b in buckets if b.t <= upto]
    invocations = sum(b.invocations for b in buckets)
    duration = sum(b.duration_sum for b in buckets)
    return {
        "invocations": invocations,
        "errors": sum(b.errors for b in buckets),
        "throttles": sum(b.throttles for b in buckets),
        "cold_starts": sum(b.cold_starts for b in buckets),
        "peak_concurrency": max((b.concurrency for b in buckets), default=0),
        "duration_avg": round(duration / invocations, 3) if invocations else None,
        "duration_max": round(max((b.duration_max for b in buckets), default=0.0), 3),
    }


class LiveView:
    def __init__(
        self,
        catalogue: Catalogue,
        metrics: Metrics,
        logs: LogStore,
        traces: TraceStore,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.catalogue = catalogue
        self.metrics = metrics
        self.logs = logs
        self.traces = traces
        self.wall = wall

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """/_lamina/live, /_lamina/live/logs, /_lamina/live/traces"""
        query = {name: values[0] for name, values in request.query.items() if values}
        account = request.account or query.get("account", DEFAULT_ACCOUNT)
        region = query.get("region", DEFAULT_REGION)
        function = query.get("function", "")
        what = request.path.rstrip("/").rsplit("/", 1)[-1]
        if what == "logs":
            body: Any = self.recent_logs(FunctionKey(account, region, function), query)
        elif what == "traces":
            body = self.recent_traces(account, region, function, query)
        else:
            seconds = min(
                int(query.get("seconds", DEFAULT_SECONDS) or DEFAULT_SECONDS), MAX_SECONDS
            )
            body = self.snapshot(account, region, function, seconds)
        return HttpResponse(200, json.dumps(body).encode(), dict(JSON))

    def snapshot(self, account: str, region: str, function: str, seconds: int) -> dict[str, Any]:
        now = self.wall()
        end = int(now)
        scope = self.metrics.accounts.get((account, region))
        gauges = scope.gauges if scope is not None else None
        live = scope.live if scope is not None else {}
        async_events: dict[str, dict[str, int]] = {}
        for (name, _), events in (scope.async_totals if scope is not None else {}).items():
            entry = async_events.setdefault(name, {"received": 0, "dropped": 0})
            entry["received"] += events.received
            entry["dropped"] += events.dropped
        functions = []
        for record in self._shown(account, region, function, live, end):
            config = record["config"]
            name = config["FunctionName"]
            figures = gauges.functions.get(name) if gauges is not None else None
            buckets = live[name].since(end - WINDOW + 1) if name in live else []
            functions.append(
                {
                    "name": name,
                    "runtime": config.get("Runtime"),
                    "memory": config.get("MemorySize"),
                    "timeout": config.get("Timeout"),
                    "tracing": (config.get("TracingConfig") or {}).get("Mode", "PassThrough"),
                    "reserved": figures.reserved if figures else record.get("reserved"),
                    "provisioned": figures.provisioned if figures else 0,
                    "provisioned_ready": figures.provisioned_ready if figures else 0,
                    "concurrency": figures.concurrent if figures else 0,
                    "provisioned_busy": figures.provisioned_busy if figures else 0,
                    "throttles_by_reason": dict(figures.throttles) if figures else {},
                    "provisioned_invocations": figures.provisioned_invocations if figures else 0,
                    "spillover_invocations": figures.spillover_invocations if figures else 0,
                    "async_events": async_events.get(name, {"received": 0, "dropped": 0}),
                    "last_minute": _totals(buckets),
                    "recent": _totals(
                        live[name].since(end - RECENT) if name in live else [], upto=end - 1
                    ),
                }
            )
        selected = function if any(f["name"] == function for f in functions) else ""
        chosen = live.get(selected)
        buckets = chosen.since(end - seconds + 1) if chosen is not None else []
        limits: dict[str, Any] = {
            "account": gauges.limit if gauges else None,
            "unreserved_pool": gauges.unreserved_pool if gauges else None,
        }
        if selected:
            entry = next(f for f in functions if f["name"] == selected)
            limits["reserved"] = entry["reserved"]
            limits["provisioned"] = entry["provisioned"]
        return {
            "now": now,
            "account": account,
            "region": region,
            "totals": {
                "concurrency": gauges.concurrent if gauges else 0,
                "limit": gauges.limit if gauges else None,
                "unreserved_pool": gauges.unreserved_pool if gauges else None,
                "unreserved_in_use": gauges.unreserved_in_use if gauges else 0,
                "claimed": gauges.claimed if gauges else 0,
                "last_minute": _totals(live[""].since(end - WINDOW + 1) if "" in live else []),
                "recent": _totals(live[""].since(end - RECENT) if "" in live else [], end - 1),
            },
            "recent_seconds": RECENT,
            "function_count": self.catalogue.usage(account, region)[0],
            "functions": functions,
            "selected": selected,
            "limits": limits,
            "series": _series(buckets, end - seconds + 1, end),
        }

    def _shown(
        self, account: str, region: str, selected: str, live: dict[str, Any], end: int
    ) -> list[dict[str, Any]]:
        """The records of at most SHOWN functions, by name: the selected one, those that ran
        in the last minute, then the first by name. Costs what it shows, not what exists."""
        names = [selected] if selected else []
        names += [
            name
            for name, series in live.items()
            if name and series.seconds and series.seconds[-1].t > end - WINDOW
        ]
        records: dict[str, dict[str, Any]] = {}
        for name in names:
            if len(records) >= SHOWN:
                break
            record = self.catalogue.function_view(FunctionKey(account, region, name))
            if record is not None:
                records[name] = record
        if len(records) < SHOWN:
            for record in self.catalogue.list_functions(account, region, limit=SHOWN):
                if len(records) >= SHOWN:
                    break
                records.setdefault(record["config"]["FunctionName"], record)
        return [records[name] for name in sorted(records)]

    def recent_logs(self, key: FunctionKey, query: dict[str, str]) -> dict[str, Any]:
        limit = min(int(query.get("limit", 200) or 200), 2000)
        log = self.logs.find(key)
        lines = list(log.lines)[-limit:] if log is not None else []
        return {
            "function": key.name,
            "lines": [
                {"seq": line.seq, "t": line.timestamp, "stream": line.stream, "text": line.text}
                for line in lines
            ],
        }

    def recent_traces(
        self, account: str, region: str, function: str, query: dict[str, str]
    ) -> dict[str, Any]:
        limit = min(int(query.get("limit", 20) or 20), 200)
        found = []
        for trace in reversed(self.traces.in_scope(account, region)):
            if not trace.segments:
                continue
            if function and not any(s.get("name") == function for s in trace.segments.values()):
                continue
            summary = self.traces.summary(trace)
            found.append(
                {
                    "id": trace.id,
                    "start": summary["StartTime"],
                    "duration": summary["Duration"],
                    "error": summary["HasError"] or summary["HasFault"],
                    "segments": self.traces.assemble(trace),
                }
            )
            if len(found) >= limit:
                break
        return {"function": function, "traces": found}

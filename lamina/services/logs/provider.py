"""CloudWatch Logs operations over functions' logs: DescribeLogGroups, DescribeLogStreams,
GetLogEvents, FilterLogEvents, Put/DeleteRetentionPolicy, DeleteLogGroup.

Each function that has written a line has the group `/aws/lambda/<name>`, with one stream
per execution environment (`YYYY/MM/DD/[version]<id>`), as on Lambda. Tokens are the
sequence numbers of lines, so `aws logs tail --follow` and paginators see each line once.
Filter patterns: terms (all must appear), "quoted phrases", `?term` (any of), `-term`
(none of), and JSON patterns (filters.py); space-delimited and regular
expression patterns are refused with a clear message.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.keys import FunctionKey
from lamina.observe.logs import RETENTION_DAYS, FunctionLog, LogLine, LogStore, group_name
from lamina.services.logs.filters import FilterError, json_matcher

PREFIX = "/aws/lambda/"
PAGE = 50
EVENTS_LIMIT = 10_000
EVENTS_BYTES = 1_048_576


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 400)


def bad(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message, 400)


def _millis(seconds: float) -> int:
    return int(seconds * 1000)


def _event_size(line: LogLine) -> int:
    return len(line.text.encode()) + 26  # CloudWatch Logs counts 26 bytes per event


def matcher(pattern: str | None) -> Callable[[str], bool]:
    """CloudWatch Logs' term filter patterns."""
    if not pattern or not pattern.strip():
        return lambda text: True
    stripped = pattern.strip()
    if stripped.startswith("{"):
        try:
            return json_matcher(stripped)
        except FilterError as exc:
            raise bad(f"Invalid filter pattern: {exc}") from exc
    if stripped.startswith("[") or stripped.startswith("%"):
        raise bad(
            'Lamina supports term filter patterns (words, "phrases", ?any, -none) and JSON '
            "patterns ({ $.field = value }); space-delimited and regular-expression patterns "
            "are not supported."
        )
    try:
        terms = shlex.split(stripped)
    except ValueError as exc:
        raise bad(f"Invalid filter pattern: {exc}") from exc
    required = [t for t in terms if not t.startswith(("?", "-"))]
    any_of = [t[1:] for t in terms if t.startswith("?") and len(t) > 1]
    none_of = [t[1:] for t in terms if t.startswith("-") and len(t) > 1]

    def match(text: str) -> bool:
        return (
            all(term in text for term in required)
            and (not any_of or any(term in text for term in any_of))
            and not any(term in text for term in none_of)
        )

    return match


class LogGroups:
    def __init__(self, logs: LogStore) -> None:
        self.logs = logs

    def _key(self, ctx: RequestContext, params: dict[str, Any]) -> FunctionKey:
        name = params.get("logGroupName") or params.get("logGroupIdentifier") or ""
        if name.startswith("arn:"):
            # arn:aws:logs:<region>:<account>:log-group:<name>[:*]
            parts = name.split(":", 6)
            if len(parts) == 7 and (parts[3], parts[4]) != (ctx.region, ctx.account):
                # Walls: another account's (or region's) group is not the caller's to read.
                raise not_found("The specified log group does not exist.")
            name = parts[6] if len(parts) == 7 else ""
            name = name.removesuffix(":*")
        if not name:
            raise bad("Either logGroupName or logGroupIdentifier must be given.")
        if name.startswith(PREFIX) and len(name) > len(PREFIX):
            return ctx.function_key(name[len(PREFIX) :])
        raise not_found("The specified log group does not exist.")

    def _log(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[FunctionKey, FunctionLog]:
        key = self._key(ctx, params)
        found = self.logs.find(key)
        if found is None:
            raise not_found("The specified log group does not exist.")
        return key, found

    def _arn(self, ctx: RequestContext, group: str) -> str:
        return f"arn:aws:logs:{ctx.region}:{ctx.account}:log-group:{group}"

    async def DescribeLogGroups(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        prefix = params.get("logGroupNamePrefix") or ""
        pattern = params.get("logGroupNamePattern") or ""
        groups = []
        for key, log in self.logs.groups(ctx.account, ctx.region):
            name = group_name(key.name)
            if not name.startswith(prefix) or pattern.lower() not in name.lower():
                continue
            group: dict[str, Any] = {
                "logGroupName": name,
                "creationTime": _millis(log.created),
                "metricFilterCount": 0,
                "arn": self._arn(ctx, name) + ":*",
                "logGroupArn": self._arn(ctx, name),
                "storedBytes": log.size,
                "logGroupClass": "STANDARD",
            }
            if log.retention_days is not None:
                group["retentionInDays"] = log.retention_days
            groups.append(group)
        return _page(groups, "logGroups", params, PAGE)

    async def DescribeLogStreams(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        _, log = self._log(ctx, params)
        prefix = params.get("logStreamNamePrefix") or ""
        order = params.get("orderBy") or "LogStreamName"
        if prefix and order == "LastEventTime":
            raise bad("Cannot order by LastEventTime with a logStreamNamePrefix.")
        group = group_name(self._key(ctx, params).name)
        streams: list[dict[str, Any]] = [
            {
                "logStreamName": name,
                "creationTime": _millis(info.created),
                "firstEventTimestamp": _millis(info.first),
                "lastEventTimestamp": _millis(info.last),
                "lastIngestionTime": _millis(info.last),
                "arn": f"{self._arn(ctx, group)}:log-stream:{name}",
                "storedBytes": info.size,
            }
            for name, info in log.streams.items()
            if name.startswith(prefix)
        ]
        if order == "LastEventTime":
            streams.sort(key=lambda s: (s["lastEventTimestamp"], s["logStreamName"]))
        else:
            streams.sort(key=lambda s: s["logStreamName"])
        if params.get("descending"):
            streams.reverse()
        return _page(streams, "logStreams", params, PAGE)

    async def GetLogEvents(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, log = self._log(ctx, params)
        stream = params["logStreamName"]
        if stream not in log.streams:
            raise not_found("The specified log stream does not exist.")
        limit = min(params.get("limit") or EVENTS_LIMIT, EVENTS_LIMIT)
        start = params.get("startTime")
        end = params.get("endTime")
        token = params.get("nextToken") or ""
        lines = [
            line
            for line in log.lines
            if line.stream == stream
            and (start is None or _millis(line.timestamp) >= start)
            and (end is None or _millis(line.timestamp) < end)
        ]
        if token:
            direction, _, number = token.partition("/")
            if direction not in ("f", "b") or not number.isdigit():
                raise bad("The specified nextToken is invalid.")
            seq = int(number)
            if direction == "f":
                chosen = _fit([line for line in lines if line.seq > seq], limit, head=True)
            else:
                chosen = _fit([line for line in lines if line.seq < seq], limit, head=False)
        else:
            chosen = _fit(lines, limit, head=bool(params.get("startFromHead")))
        if chosen:
            forward, backward = f"f/{chosen[-1].seq}", f"b/{chosen[0].seq}"
        elif token:
            forward = backward = token  # nothing more: the same token tells the caller so
        else:
            last = lines[-1].seq if lines else log.seq
            forward, backward = f"f/{last}", f"b/{last + 1}"
        return {
            "events": [
                {
                    "timestamp": _millis(line.timestamp),
                    "message": line.text,
                    "ingestionTime": _millis(line.timestamp),
                }
                for line in chosen
            ],
            "nextForwardToken": forward,
            "nextBackwardToken": backward,
        }

    async def FilterLogEvents(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, log = self._log(ctx, params)
        names = params.get("logStreamNames")
        prefix = params.get("logStreamNamePrefix")
        if names and prefix:
            raise bad("logStreamNames and logStreamNamePrefix are mutually exclusive.")
        wanted = set(names) if names else None
        match = matcher(params.get("filterPattern"))
        start = params.get("startTime")
        end = params.get("endTime")
        limit = min(params.get("limit") or EVENTS_LIMIT, EVENTS_LIMIT)
        token = params.get("nextToken") or ""
        if token and not token.isdigit():
            raise bad("The specified nextToken is invalid.")
        after = int(token) if token else 0
        events: list[dict[str, Any]] = []
        size = 0
        more = False
        for line in log.lines:
            if line.seq <= after:
                continue
            if wanted is not None and line.stream not in wanted:
                continue
            if prefix and not line.stream.startswith(prefix):
                continue
            stamp = _millis(line.timestamp)
            if (start is not None and stamp < start) or (end is not None and stamp > end):
                continue
            if not match(line.text):
                continue
            size += _event_size(line)
            if len(events) >= limit or (events and size > EVENTS_BYTES):
                more = True
                break
            events.append(
                {
                    "logStreamName": line.stream,
                    "timestamp": stamp,
                    "message": line.text,
                    "ingestionTime": stamp,
                    "eventId": f"{line.seq:056d}",
                }
            )
        searched = sorted(
            name
            for name in log.streams
            if (wanted is None or name in wanted) and (not prefix or name.startswith(prefix))
        )
        result: dict[str, Any] = {
            "events": events,
            "searchedLogStreams": [
                {"logStreamName": name, "searchedCompletely": not more} for name in searched
            ],
        }
        if more and events:
            result["nextToken"] = str(int(events[-1]["eventId"]))
        return result

    async def PutRetentionPolicy(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        _, log = self._log(ctx, params)
        days = params["retentionInDays"]
        if days not in RETENTION_DAYS:
            raise bad(
                f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to "
                "satisfy constraint: Member must satisfy enum value set: "
                f"[{', '.join(str(d) for d in RETENTION_DAYS)}]"
            )
        log.retention_days = days
        log.expire()
        return {}

    async def DeleteRetentionPolicy(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        _, log = self._log(ctx, params)
        log.retention_days = None
        return {}

    async def DeleteLogGroup(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, log = self._log(ctx, params)
        log.clear()
        return {}


def _fit(lines: list[LogLine], limit: int, head: bool) -> list[LogLine]:
    """At most `limit` lines and 1 MB, from the start (`head`) or from the end."""
    chosen: list[LogLine] = []
    size = 0
    for line in lines if head else reversed(lines):
        size += _event_size(line)
        if len(chosen) >= limit or (chosen and size > EVENTS_BYTES):
            break
        chosen.append(line)
    return chosen if head else chosen[::-1]


def _page(
    items: list[dict[str, Any]], member: str, params: dict[str, Any], size: int
) -> dict[str, Any]:
    limit = min(params.get("limit") or size, size)
    token = params.get("nextToken") or ""
    offset = int(token) if token.isdigit() else 0
    result: dict[str, Any] = {member: items[offset : offset + limit]}
    if offset + limit < len(items):
        result["nextToken"] = str(offset + limit)
    return result

"""X-Ray operations over the trace store: PutTraceSegments, GetTraceSummaries and
BatchGetTraces. Filter expressions: `service("name")` and `id("trace id")`."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from lamina.context import RequestContext
from lamina.errors import AwsError
from lamina.observe.traces import StoredTrace, TraceStore

SUMMARY_PAGE = 100
FILTER = re.compile(r'\s*(service|id)\(\s*"([^"]*)"\s*\)\s*')


def invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message, 400)


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def _filter(expression: str | None) -> tuple[str, str] | None:
    if not expression or not expression.strip():
        return None
    found = FILTER.fullmatch(expression)
    if found is None:
        raise invalid(
            f'Lamina supports the filter expressions service("name") and id("trace id"), '
            f"not: {expression}"
        )
    return found.group(1), found.group(2)


def _matches(trace: StoredTrace, wanted: tuple[str, str] | None) -> bool:
    if wanted is None:
        return True
    kind, value = wanted
    if kind == "id":
        return trace.id == value
    return any(segment.get("name") == value for segment in trace.segments.values())


class XRay:
    def __init__(self, traces: TraceStore) -> None:
        self.traces = traces

    async def PutTraceSegments(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        unprocessed = []
        for text in params.get("TraceSegmentDocuments") or []:
            try:
                document = json.loads(text)
            except (ValueError, RecursionError):
                document = None
            if not isinstance(document, dict):
                unprocessed.append({"ErrorCode": "InvalidJson", "Message": "Not a JSON object"})
                continue
            problem = self.traces.put(document, ctx.account, ctx.region)
            if problem:
                unprocessed.append(
                    {"Id": str(document.get("id", "")), "ErrorCode": "Invalid", "Message": problem}
                )
        return {"UnprocessedTraceSegments": unprocessed}

    async def GetTraceSummaries(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
        if end < start:
            raise invalid("EndTime must not be before StartTime.")
        wanted = _filter(params.get("FilterExpression"))
        summaries = []
        for trace in self.traces.in_scope(ctx.account, ctx.region):
            if not trace.segments or not _matches(trace, wanted):
                continue
            summary = self.traces.summary(trace)
            if start <= summary["StartTime"] <= end:
                summaries.append(summary)
        summaries.sort(key=lambda s: s["StartTime"])
        token = params.get("NextToken") or ""
        offset = int(token) if token.isdigit() else 0
        result: dict[str, Any] = {
            "TraceSummaries": summaries[offset : offset + SUMMARY_PAGE],
            "ApproximateTime": dt.datetime.now(dt.UTC),
            "TracesProcessedCount": len(summaries),
        }
        if offset + SUMMARY_PAGE < len(summaries):
            result["NextToken"] = str(offset + SUMMARY_PAGE)
        return result

    async def BatchGetTraces(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        traces = []
        unprocessed = []
        for trace_id in params["TraceIds"]:
            trace = self.traces.get(trace_id)
            if trace is None or (trace.account, trace.region) != (ctx.account, ctx.region):
                unprocessed.append(trace_id)
                continue
            documents = self.traces.assemble(trace)
            summary = self.traces.summary(trace)
            traces.append(
                {
                    "Id": trace.id,
                    "Duration": summary["Duration"],
                    "LimitExceeded": False,
                    "Segments": [
                        {"Id": str(doc.get("id", "")), "Document": json.dumps(doc)}
                        for doc in documents
                    ],
                }
            )
        return {"Traces": traces, "UnprocessedTraceIds": unprocessed}

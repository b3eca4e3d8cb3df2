"""X-Ray: trace context per invocation, Lamina's own segments, a daemon endpoint, a store.

Every invocation gets a trace header (`Root=1-<8 hex epoch>-<24 hex>;Parent=<16 hex>;
Sampled=<0|1>`), continuing an incoming `X-Amzn-Trace-Id` when there is one. The sampling
decision follows the caller's when it made one; otherwise a function with TracingConfig
`Active` is sampled and one with `PassThrough` is not. For a sampled invocation Lamina
records two segments, as Lambda does: the service's (`AWS::Lambda`) and the function's
(`AWS::Lambda::Function`, with Initialization / Invocation / Overhead subsegments). The
function's `Parent` is the function segment's id, so the subsegments that the X-Ray SDK
inside the function sends to the daemon (UDP, `AWS_XRAY_DAEMON_ADDRESS`) land under it.

The store is bounded: at most MAX_TRACES traces (the oldest go first) of at most
MAX_DOCUMENTS documents each. The trace keeper (trace_keeper.py) keeps them in the
database too: a restart keeps them, and every node of a cluster reads every node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lamina.config import DEFAULT_ACCOUNT, DEFAULT_REGION
from lamina.keys import FunctionKey

log = logging.getLogger("lamina.xray")

MAX_TRACES = 10_000
MAX_DOCUMENTS = 1_000  # per trace
MAX_DEPTH = 64  # objects and arrays within one another in a document
DATAGRAM_HEADER = {"format": "json", "version": 1}

# The X-Amzn-Trace-Id of the request being served, set by the gateway: an invocation
# continues it. (A context variable: each request is served in a task of its own.)
incoming_header: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "incoming_trace_header", default=None
)


def parse_header(header: str | None) -> dict[str, str]:
    """`Root=...;Parent=...;Sampled=1` → {"Root": ..., "Parent": ..., "Sampled": "1"}."""
    fields: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            fields[name] = value.strip()
    return fields


def new_id() -> str:
    return f"{random.getrandbits(64):016x}"


@dataclass(slots=True)
class InvocationTrace:
    """The trace of one invocation: its ids, its sampling decision and its timing (wall
    seconds, set by the invoker as the invocation goes)."""

    root: str
    parent: str | None  # the caller's segment, when the header named one
    sampled: bool
    service_id: str  # Lamina's AWS::Lambda segment
    function_id: str  # Lamina's AWS::Lambda::Function segment: the function's Parent
    start: float = 0.0
    init_start: float = 0.0
    init_end: float = 0.0  # 0 when there was no cold start
    invoke_start: float = 0.0
    invoke_end: float = 0.0
    end: float = 0.0
    error_type: str | None = None

    @property
    def header(self) -> str:
        """What the function gets as Lambda-Runtime-Trace-Id / _X_AMZN_TRACE_ID."""
        return f"Root={self.root};Parent={self.function_id};Sampled={int(self.sampled)}"


def begin(incoming: str | None, mode: str) -> InvocationTrace:
    """The trace of a new invocation of a function whose TracingConfig Mode is `mode`."""
    now = time.time()
    bits = random.getrandbits(224)  # two segment ids and, when needed, a root
    service_id = f"{bits & 0xFFFFFFFFFFFFFFFF:016x}"
    function_id = f"{(bits >> 64) & 0xFFFFFFFFFFFFFFFF:016x}"
    if not incoming:  # the common case, on the warm path: no parsing
        root = f"1-{int(now):08x}-{bits >> 128:024x}"
        return InvocationTrace(root, None, mode == "Active", service_id, function_id, now)
    fields = parse_header(incoming)
    decision = fields.get("Sampled")
    return InvocationTrace(
        root=fields.get("Root") or f"1-{int(now):08x}-{bits >> 128:024x}",
        parent=fields.get("Parent"),
        sampled=decision == "1" if decision in ("0", "1") else mode == "Active",
        service_id=service_id,
        function_id=function_id,
        start=now,
    )


def lamina_segments(
    trace: InvocationTrace,
    key: FunctionKey,
    resource_arn: str,
    request_id: str,
    executed_version: str,
) -> list[dict[str, Any]]:
    """Lamina's two segment documents for a finished, sampled invocation."""
    end = trace.end or time.time()
    service: dict[str, Any] = {
        "trace_id": trace.root,
        "id": trace.service_id,
        "name": key.name,
        "origin": "AWS::Lambda",
        "start_time": trace.start,
        "end_time": end,
        "resource_arn": resource_arn,
        "aws": {"request_id": request_id},
        "http": {"response": {"status": 200}},
    }
    if trace.parent:
        service["parent_id"] = trace.parent
    subsegments: list[dict[str, Any]] = []
    if trace.init_end:
        subsegments.append(
            {
                "id": new_id(),
                "name": "Initialization",
                "start_time": trace.init_start,
                "end_time": trace.init_end,
                "aws": {"function_arn": resource_arn},
            }
        )
    if trace.invoke_start:
        invocation: dict[str, Any] = {
            "id": new_id(),
            "name": "Invocation",
            "start_time": trace.invoke_start,
            "end_time": trace.invoke_end or end,
            "aws": {"function_arn": resource_arn},
        }
        if trace.error_type:
            invocation["error"] = True
        subsegments.append(invocation)
        subsegments.append(
            {
                "id": new_id(),
                "name": "Overhead",
                "start_time": trace.invoke_end or end,
                "end_time": end,
                "aws": {"function_arn": resource_arn},
            }
        )
    function: dict[str, Any] = {
        "trace_id": trace.root,
        "id": trace.function_id,
        "parent_id": trace.service_id,
        "name": key.name,
        "origin": "AWS::Lambda::Function",
        "start_time": trace.start,
        "end_time": end,
        "resource_arn": resource_arn,
        "aws": {
            "function_arn": resource_arn,
            "resource_names": [key.name],
            "account_id": key.account,
            "executed_version": executed_version,
        },
        "subsegments": subsegments,
    }
    if trace.error_type:
        function["error"] = True
        function["cause"] = {"exceptions": [{"type": trace.error_type}]}
    return [service, function]


@dataclass
class StoredTrace:
    id: str
    account: str
    region: str
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)  # by segment id
    subsegments: list[dict[str, Any]] = field(default_factory=list)  # sent on their own
    received: float = 0.0
    claimed: bool = False  # its account came from a sender that knew it (not a datagram)

    @property
    def documents(self) -> int:
        return len(self.segments) + len(self.subsegments)


class TraceStore:
    def __init__(self, max_traces: int = MAX_TRACES) -> None:
        self.max_traces = max_traces
        self.traces: OrderedDict[str, StoredTrace] = OrderedDict()
        # Each document kept is handed to the tap (the trace keeper, which stores it).
        self.tap: Callable[[dict[str, Any], str | None, str | None], None] | None = None

    def put(
        self,
        document: dict[str, Any],
        account: str | None = None,
        region: str | None = None,
        tapped: bool = True,
    ) -> str | None:
        """Keep one segment or subsegment document; None if kept, else why not.

        `account` and `region` say whose trace it is when the sender knows (Lamina's own
        segments, PutTraceSegments); the daemon's datagrams don't say, and join the trace
        where it is, or the default account's until a document that knows arrives."""
        trace_id = document.get("trace_id")
        if not isinstance(trace_id, str) or not isinstance(document.get("id"), str):
            return "a document needs a trace_id and an id"
        if _depth(document) > MAX_DEPTH:
            return f"a document may nest at most {MAX_DEPTH} levels"
        trace = self.traces.get(trace_id)
        if trace is None:
            trace = self.traces[trace_id] = StoredTrace(
                trace_id, account or DEFAULT_ACCOUNT, region or DEFAULT_REGION
            )
            trace.claimed = bool(account and region)
            while len(self.traces) > self.max_traces:
                self.traces.popitem(last=False)
        elif account and region and (trace.account, trace.region) != (account, region):
            if trace.claimed:
                # Walls: a trace that a sender who knew its account made is that account's;
                # another account cannot move it into its own view.
                return "the trace belongs to another account"
            trace.account, trace.region = account, region
            trace.claimed = True
        if trace.documents >= MAX_DOCUMENTS:
            return "too many documents in the trace"
        trace.received = time.time()
        if document.get("type") == "subsegment":
            trace.subsegments.append(document)
        else:
            trace.segments[document["id"]] = document  # a later version replaces an earlier
        if tapped and self.tap is not None:
            self.tap(document, account, region)
        return None

    def get(self, trace_id: str) -> StoredTrace | None:
        return self.traces.get(trace_id)

    def in_scope(self, account: str, region: str) -> list[StoredTrace]:
        return [t for t in self.traces.values() if (t.account, t.region) == (account, region)]

    @staticmethod
    def assemble(trace: StoredTrace) -> list[dict[str, Any]]:
        """The trace's segment documents, with subsegments sent on their own placed
        under their parents (a segment or a subsegment, at any depth)."""
        documents = [json.loads(json.dumps(doc)) for doc in trace.segments.values()]
        by_id: dict[str, dict[str, Any]] = {}

        def index(entity: dict[str, Any]) -> None:
            by_id[entity["id"]] = entity
            for child in entity.get("subsegments") or []:
                if isinstance(child, dict) and isinstance(child.get("id"), str):
                    index(child)

        for doc in documents:
            index(doc)
        pending = [json.loads(json.dumps(doc)) for doc in trace.subsegments]
        for doc in pending:
            index(doc)
        orphans = []
        placed_under: dict[str, str] = {}  # subsegment id → parent id, to refuse cycles
        for doc in pending:
            parent_id = doc.get("parent_id") or ""
            parent = by_id.get(parent_id)
            if parent is None or _would_cycle(doc["id"], parent_id, placed_under):
                orphans.append(doc)
                continue
            child = {k: v for k, v in doc.items() if k not in ("type", "trace_id", "parent_id")}
            by_id[doc["id"]] = child
            placed_under[doc["id"]] = parent_id
            parent.setdefault("subsegments", []).append(child)
        return documents + orphans

    @staticmethod
    def summary(trace: StoredTrace) -> dict[str, Any]:
        segments = list(trace.segments.values())
        starts = [s["start_time"] for s in segments if isinstance(s.get("start_time"), int | float)]
        ends = [s["end_time"] for s in segments if isinstance(s.get("end_time"), int | float)]
        start = min(starts, default=trace.received)
        duration = max(0.0, max(ends, default=start) - start)
        services: dict[tuple[str, str], None] = {}
        for segment in segments:
            services[(str(segment.get("name", "")), str(segment.get("origin", "")))] = None
        roots = [s for s in segments if not s.get("parent_id")] or segments
        entry = roots[0] if roots else {}
        return {
            "Id": trace.id,
            "StartTime": start,
            "Duration": duration,
            "ResponseTime": duration,
            "HasFault": any(s.get("fault") for s in segments),
            "HasError": any(s.get("error") for s in segments),
            "HasThrottle": any(s.get("throttle") for s in segments),
            "IsPartial": any(s.get("in_progress") for s in segments),
            "ServiceIds": [
                {"Name": name, "Names": [name], "AccountId": trace.account, "Type": origin}
                for name, origin in services
            ],
            "EntryPoint": {
                "Name": entry.get("name", ""),
                "Names": [entry.get("name", "")],
                "AccountId": trace.account,
                "Type": entry.get("origin", ""),
            },
            "ResourceARNs": [
                {"ARN": s["resource_arn"]}
                for s in segments
                if isinstance(s.get("resource_arn"), str)
            ],
        }


def _would_cycle(child: str, parent: str, placed_under: dict[str, str]) -> bool:
    seen = 0
    while parent and seen <= MAX_DOCUMENTS:
        if parent == child:
            return True
        parent = placed_under.get(parent, "")
        seen += 1
    return False


class _Daemon(asyncio.DatagramProtocol):
    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.received = 0
        self.rejected = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        header, _, body = data.partition(b"\n")
        try:
            if json.loads(header) != DATAGRAM_HEADER:
                raise ValueError(f"unknown header {header[:100]!r}")
            document = json.loads(body)
            if not isinstance(document, dict):
                raise ValueError("the document is not an object")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self.rejected += 1
            log.debug("X-Ray datagram from %s rejected: %s", addr, exc)
            return
        problem = self.store.put(document)
        if problem:
            self.rejected += 1
        else:
            self.received += 1


class XRayDaemon:
    """The X-Ray daemon's UDP endpoint on loopback: `{"format": "json", "version": 1}\\n`
    followed by a segment or subsegment document, per datagram."""

    def __init__(self, store: TraceStore, host: str = "127.0.0.1", port: int = 2000) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.protocol = _Daemon(store)
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self.protocol, local_addr=(self.host, self.port)
            )
        except OSError as exc:
            log.warning(
                "X-Ray daemon endpoint %s unavailable (%s): traces from functions are lost; "
                "choose another with --xray-port",
                self.address,
                exc,
            )
            return
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def close(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
            self._transport = None


def _depth(document: Any) -> int:
    """How deeply objects and arrays nest in `document` (without recursion)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                return deepest
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
    return deepest

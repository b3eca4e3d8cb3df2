"""X-Ray pieces without a server: sampling decisions and header continuation, Lamina's
segments, placing subsegments sent on their own, bounds, and the daemon's UDP endpoint."""

from __future__ import annotations

import asyncio
import json
import re
import socket

from lamina.keys import FunctionKey
from lamina.observe.traces import (
    MAX_DOCUMENTS,
    TraceStore,
    XRayDaemon,
    begin,
    lamina_segments,
    parse_header,
)

KEY = FunctionKey("000000000000", "us-east-1", "fn")
HEADER = re.compile(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]")


def test_sampling_follows_the_caller_then_the_tracing_mode() -> None:
    assert begin(None, "Active").sampled
    assert not begin(None, "PassThrough").sampled
    root = "1-5759e988-bd862e3fe1be46a994272793"
    upstream = f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"
    trace = begin(upstream, "PassThrough")
    assert trace.sampled and trace.root == root and trace.parent == "53995c3f42cd8ad8"
    assert trace.header == f"Root={root};Parent={trace.function_id};Sampled=1"
    assert not begin(f"Root={root};Sampled=0", "Active").sampled  # the caller said no
    assert begin(f"Root={root}", "Active").sampled  # no decision yet: Active decides
    assert HEADER.fullmatch(begin(None, "PassThrough").header)
    assert parse_header(" Root=a ; Parent=b;Sampled=?;Lineage=x:1") == {
        "Root": "a",
        "Parent": "b",
        "Sampled": "?",
        "Lineage": "x:1",
    }


def _finished(cold: bool = True, error: str | None = None):  # type: ignore[no-untyped-def]
    trace = begin(None, "Active")
    trace.start = 100.0
    if cold:
        trace.init_start, trace.init_end = 100.0, 100.2
    trace.invoke_start, trace.invoke_end, trace.end = 100.2, 100.5, 100.51
    trace.error_type = error
    return trace


def test_lamina_segments_have_the_lambda_shape() -> None:
    trace = _finished(error="Sandbox.Timedout")
    service, function = lamina_segments(trace, KEY, KEY.arn, "req-1", "$LATEST")
    assert service["origin"] == "AWS::Lambda" and "parent_id" not in service
    assert function["origin"] == "AWS::Lambda::Function"
    assert function["parent_id"] == service["id"] and function["id"] == trace.function_id
    names = [sub["name"] for sub in function["subsegments"]]
    assert names == ["Initialization", "Invocation", "Overhead"]
    assert function["error"] and function["subsegments"][1]["error"]
    warm = lamina_segments(_finished(cold=False), KEY, KEY.arn, "req-2", "1")[1]
    assert [sub["name"] for sub in warm["subsegments"]] == ["Invocation", "Overhead"]


def test_subsegments_sent_alone_are_placed_under_their_parents() -> None:
    store = TraceStore()
    trace = _finished()
    # The SDK's subsegments arrive first (during the invocation), Lamina's segments after.
    outer = {
        "trace_id": trace.root,
        "id": "aaaaaaaaaaaaaaaa",
        "type": "subsegment",
        "parent_id": trace.function_id,
        "name": "outer",
        "start_time": 100.3,
        "end_time": 100.4,
    }
    inner = {**outer, "id": "bbbbbbbbbbbbbbbb", "parent_id": outer["id"], "name": "inner"}
    lost = {**outer, "id": "cccccccccccccccc", "parent_id": "ffffffffffffffff", "name": "lost"}
    for document in (inner, outer, lost):
        assert store.put(document) is None
    for document in lamina_segments(trace, KEY, KEY.arn, "req", "$LATEST"):
        assert store.put(document, KEY.account, KEY.region) is None
    stored = store.get(trace.root)
    assert stored is not None
    documents = store.assemble(stored)
    function = next(d for d in documents if d.get("origin") == "AWS::Lambda::Function")
    placed = next(s for s in function["subsegments"] if s["name"] == "outer")
    assert [s["name"] for s in placed["subsegments"]] == ["inner"]
    assert any(d["name"] == "lost" for d in documents)  # its parent never came: kept apart
    json.dumps(documents)  # serializable: no cycles
    summary = store.summary(stored)
    assert summary["Id"] == trace.root and abs(summary["Duration"] - 0.51) < 1e-6


def test_cycles_and_floods_are_refused() -> None:
    store = TraceStore(max_traces=3)
    one = {"trace_id": "t", "id": "1", "type": "subsegment", "parent_id": "2", "name": "a"}
    two = {"trace_id": "t", "id": "2", "type": "subsegment", "parent_id": "1", "name": "b"}
    store.put(one)
    store.put(two)
    stored = store.get("t")
    assert stored is not None
    json.dumps(store.assemble(stored))
    for index in range(MAX_DOCUMENTS + 5):
        store.put({"trace_id": "t", "id": f"x{index}", "name": "n"})
    assert stored.documents == MAX_DOCUMENTS
    for index in range(5):
        store.put({"trace_id": f"other{index}", "id": "1", "name": "n"})
    assert len(store.traces) == 3 and store.get("t") is None
    assert store.put({"id": "no trace"}) is not None


def test_the_daemon_takes_datagrams_on_loopback() -> None:
    async def main() -> None:
        store = TraceStore()
        daemon = XRayDaemon(store, "127.0.0.1", 0)
        await daemon.start()
        try:
            host, port = daemon.address.split(":")
            assert int(port) > 0
            segment = {"trace_id": "1-00000000-000000000000000000000001", "id": "1" * 16}
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(
                    b'{"format":"json","version":1}\n' + json.dumps(segment).encode(),
                    (host, int(port)),
                )
                sock.sendto(b'{"format": "json", "version": 1}\n{broken', (host, int(port)))
                sock.sendto(b"no header at all", (host, int(port)))
            for _ in range(100):
                if daemon.protocol.received + daemon.protocol.rejected >= 3:
                    break
                await asyncio.sleep(0.01)
            assert (daemon.protocol.received, daemon.protocol.rejected) == (1, 2)
            assert store.get(segment["trace_id"]) is not None
            # A second daemon on the same port cannot start, and says so without failing.
            clash = XRayDaemon(TraceStore(), "127.0.0.1", int(port))
            await clash.start()
            await clash.close()
        finally:
            await daemon.close()

    asyncio.run(main())

"""The owner's side of the forwarding hop between cluster nodes, without a cluster: what
`POST /_lamina/forward` answers to a hop signed or not, fresh or stale, for an
environment still idle or not, over a stand-in engine."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from lamina.api.cluster_hop import HopEndpoint
from lamina.api.wire import HttpRequest, HttpResponse
from lamina.cluster.forward import Owner, _sign, hop_key
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.keys import FunctionKey
from lamina.observe.traces import InvocationTrace

KEY = hop_key(b"secrets key link")
FN = FunctionKey("000000000000", "us-east-1", "fn")
JSON = {"Content-Type": "application/json"}


@dataclass
class Image:
    revision: str = "r1"
    memory_mb: int = 128


@dataclass
class Pool:
    """A version's environments as the owner sees them: `idle` are taken by id."""

    key: FunctionKey = FN
    image: Image = field(default_factory=Image)
    retired: bool = False
    idle: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def take(self, env_id: str) -> str | None:
        if env_id in self.idle:
            self.idle.remove(env_id)
            return env_id
        return None

    def has_ready(self) -> bool:
        return bool(self.idle)

    def acquire(self) -> tuple[str, bool]:
        return self.idle.pop(), False

    def release(self, env: str) -> None:
        self.released.append(env)


@dataclass
class Invoker:
    trace: InvocationTrace | None = None
    ran: list[tuple[str, InvokeRequest]] = field(default_factory=list)

    async def invoke(self, source: Any, request: InvokeRequest) -> InvokeResult:
        env, _ = source.acquire()
        self.ran.append((env, request))
        source.release(env)
        return InvokeResult(
            payload=b'{"ok":true}',
            function_error="Unhandled",
            executed_version="3",
            request_id=request.request_id,
            log_tail="dGFpbA==",
            duration_ms=1.5,
            init_ms=None,
            trace=self.trace,
            error_type="ValueError",
        )


@dataclass
class Provisioner:
    sets: dict[tuple[FunctionKey, str, str], Pool] = field(default_factory=dict)

    def find(self, key: FunctionKey, qualifier: str, revision: str) -> Pool | None:
        return self.sets.get((key, qualifier, revision))


@dataclass
class Engine:
    pools: Any = None
    provisioner: Provisioner = field(default_factory=Provisioner)
    invoker: Invoker = field(default_factory=Invoker)

    def __post_init__(self) -> None:
        if self.pools is None:
            self.pools = type("Pools", (), {"pools": {}})()


def meta(**changes: Any) -> bytes:
    fields = {
        "a": FN.account, "r": FN.region, "n": FN.name, "v": "3", "l": "3", "rev": "r1",
        "e": "env-1", "id": "req-1", "arn": "arn:fn", "cc": None, "tail": True,
        "t": "RequestResponse", "tr": None, "at": 12.5, "ts": time.time(),
    }  # fmt: skip
    fields.update(changes)
    return json.dumps(fields, separators=(",", ":")).encode()


def hop(
    fields: bytes, body: bytes = b'{"x":1}', key: bytes = KEY, method: str = "POST"
) -> HttpRequest:
    headers = {
        "x-lamina-invoke": fields.decode("latin-1"),
        "x-lamina-forward": _sign(key, fields, body),
    }
    return HttpRequest(method, "/_lamina/forward", {}, headers, body)


def serve(engine: Engine, request: HttpRequest) -> HttpResponse:
    owner = Owner(KEY, lambda: engine)  # type: ignore[arg-type,return-value]
    return asyncio.run(HopEndpoint(owner).serve(request))


def refused(status: int, message: str) -> HttpResponse:
    return HttpResponse(
        status, json.dumps({"message": message}, separators=(",", ":")).encode(), JSON
    )


@pytest.fixture
def engine() -> Engine:
    engine = Engine()
    engine.pools.pools[(FN, "3")] = Pool(idle=["env-0", "env-1"])
    return engine


def test_a_signed_hop_runs_on_the_environment_it_claimed(engine: Engine) -> None:
    answer = serve(engine, hop(meta()))
    assert answer.status == 200 and answer.body == b'{"ok":true}'
    assert answer.headers == {
        "X-Lamina-Result": '{"fe":"Unhandled","v":"3","id":"req-1","tail":"dGFpbA==",'
        '"d":1.5,"init":null,"et":"ValueError","trace":null}'
    }
    [(env, request)] = engine.invoker.ran
    assert env == "env-1" and request.payload == b'{"x":1}' and request.memory_mb == 128
    assert (request.request_id, request.invoked_arn, request.want_tail) == ("req-1", "arn:fn", True)
    assert (request.invocation_type, request.arrived) == ("RequestResponse", 12.5)


def test_the_trace_comes_back_field_by_field(engine: Engine) -> None:
    engine.invoker.trace = InvocationTrace("1-a-b", None, True, "s", "f", start=1.0, end=2.0)
    result = json.loads(serve(engine, hop(meta())).headers["X-Lamina-Result"])
    assert result["trace"] == {
        "root": "1-a-b", "parent": None, "sampled": True, "service_id": "s",
        "function_id": "f", "start": 1.0, "init_start": 0.0, "init_end": 0.0,
        "invoke_start": 0.0, "invoke_end": 0.0, "end": 2.0, "error_type": None,
    }  # fmt: skip


def test_another_idle_environment_of_the_version_serves_when_the_claimed_one_is_gone(
    engine: Engine,
) -> None:
    assert serve(engine, hop(meta(e="env-9"))).status == 200
    assert [env for env, _ in engine.invoker.ran] == ["env-1"]


def test_a_provisioned_set_is_found_by_its_qualifier_and_revision(engine: Engine) -> None:
    engine.provisioner.sets[(FN, "live", "r1")] = Pool(idle=["env-1"])
    assert serve(engine, hop(meta(l="provisioned:live"))).status == 200
    assert serve(engine, hop(meta(l="provisioned:other"))) == refused(409, "no such environment")


def test_hops_not_signed_by_this_cluster_or_signed_long_ago_are_refused(engine: Engine) -> None:
    unsigned = refused(403, "not signed by this cluster")
    assert serve(engine, hop(meta(), key=hop_key(b"another cluster"))) == unsigned
    assert serve(engine, hop(meta(), method="PUT")) == unsigned
    tampered = hop(meta())
    tampered.body = b'{"x":2}'
    assert serve(engine, tampered) == unsigned
    bare = HttpRequest("POST", "/_lamina/forward", {}, {}, b"")
    assert serve(engine, bare) == unsigned
    assert serve(engine, hop(meta(ts=time.time() - 61))) == refused(403, "signed too long ago")
    assert serve(engine, hop(meta(ts=time.time() + 61))) == refused(403, "signed too long ago")
    assert engine.invoker.ran == []


def test_a_hop_for_no_idle_environment_is_answered_409(engine: Engine) -> None:
    gone = refused(409, "no such environment")
    assert serve(engine, hop(meta(v="4"))) == gone
    assert serve(engine, hop(meta(rev="r0"))) == gone
    engine.pools.pools[(FN, "3")].retired = True
    assert serve(engine, hop(meta())) == gone
    engine.pools.pools[(FN, "3")] = Pool(idle=[])
    assert serve(engine, hop(meta())) == refused(409, "no idle environment")
    assert engine.invoker.ran == []

"""The forwarding hop: an admitted invocation sent to the node that owns the idle
environment it claimed, run there, and its result brought back.

`POST /_lamina/forward` on the owner; the invocation's fields in one JSON header, the
payload as the body, both signed with an HMAC key every node derives from the cluster's
secrets key (accounts.key, which nodes share already), with the time it was signed:
a node refuses what another key signed, or what was signed over a minute ago. The owner
answers 409 when the environment is no longer idle (taken by its own node meanwhile) and
no other of that version is: the caller then starts one itself. The sender keeps its
connections to each node open (HTTP/1.1 keep-alive), so a hop costs a request on an
open socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.placement import Listed
from lamina.engine.pool import FunctionPool
from lamina.engine.provisioned import ProvisionedSet
from lamina.engine.service import Engine
from lamina.keys import FunctionKey
from lamina.observe import traces
from lamina.sandbox.environment import Environment
from lamina.sandbox.launch import FunctionImage

PATH = "/_lamina/forward"
META_HEADER = "X-Lamina-Invoke"  # the invocation's fields, as JSON
SIGNATURE_HEADER = "X-Lamina-Forward"  # the HMAC of the fields and the payload
RESULT_HEADER = "X-Lamina-Result"  # the owner's answer: the result's fields, as JSON
MAX_AGE = 60.0  # seconds a signed hop is accepted for
_META, _SIGNATURE = META_HEADER.encode() + b": ", SIGNATURE_HEADER.encode() + b": "


TRACE_FIELDS = tuple(field.name for field in dataclasses.fields(traces.InvocationTrace))


def _fields(trace: traces.InvocationTrace) -> dict[str, Any]:
    return {name: getattr(trace, name) for name in TRACE_FIELDS}


class ForwardFailed(Exception):
    """The hop broke after the invocation was sent: it may have run, so it is not run
    again here."""


class HopRefused(Exception):
    """A hop the owner did not run; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotSigned(HopRefused):
    """Not signed by this cluster's key, or signed too long ago."""


class NotIdle(HopRefused):
    """The claimed environment is no longer idle and no other of its version is: nothing
    ran, and the sender starts one itself."""


def hop_key(secrets_key_link: bytes) -> bytes:
    """The key hops are signed with, derived from the one every node shares."""
    return hmac.new(secrets_key_link, b"lamina cluster forwarding", hashlib.sha256).digest()


def _sign(key: bytes, meta: bytes, body: bytes) -> str:
    mac = hmac.new(key, meta, hashlib.sha256)
    mac.update(b"\n")
    mac.update(body)
    return mac.hexdigest()


class Forwarder:
    """The sending side: one pool of open connections per node address."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._idle: dict[str, list[_Hop]] = {}

    async def forward(
        self, address: str, source: Listed, env_id: str, request: InvokeRequest
    ) -> InvokeResult | None:
        """Run `request` on the owner's environment `env_id` of `source` (an on-demand
        pool or a provisioned set); None if the owner has no idle environment of it
        (nothing ran there)."""
        key, image = source.key, source.image
        meta = json.dumps(
            {
                "a": key.account, "r": key.region, "n": key.name, "v": image.version,
                "l": source.listing,
                "rev": image.revision, "e": env_id, "id": request.request_id,
                "arn": request.invoked_arn, "cc": request.client_context,
                "tail": request.want_tail, "t": request.invocation_type,
                "tr": request.trace_header or traces.incoming_header.get(),
                "at": request.arrived, "ts": time.time(),
            },
            separators=(",", ":"),
        ).encode()  # fmt: skip
        body = request.payload
        head = (
            b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: lamina\r\n"
            + _META + meta + b"\r\n"
            + _SIGNATURE + _sign(self.key, meta, body).encode() + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )  # fmt: skip
        status, headers, data = await self._exchange(address, head + body, image)
        if status == 409:
            return None
        if status != 200:
            raise ForwardFailed(f"the node at {address} answered {status}: {data[:200]!r}")
        result = json.loads(headers[RESULT_HEADER.lower()])
        trace = result.get("trace")
        return InvokeResult(
            payload=data,
            function_error=result.get("fe"),
            executed_version=result["v"],
            request_id=result["id"],
            log_tail=result.get("tail"),
            duration_ms=result.get("d", 0.0),
            init_ms=result.get("init"),
            trace=traces.InvocationTrace(**trace) if trace else None,
            error_type=result.get("et"),
        )

    async def _exchange(
        self, address: str, message: bytes, image: FunctionImage
    ) -> tuple[int, dict[str, str], bytes]:
        idle = self._idle.setdefault(address, [])
        while True:
            hop = None
            while idle and hop is None:
                hop = idle.pop()
                if hop.closed:  # the node closed it while idle
                    hop = None
            reused = hop is not None
            if hop is None:
                parts = urlsplit(address)
                try:
                    async with asyncio.timeout(2.0):
                        _, hop = await asyncio.get_running_loop().create_connection(
                            _Hop, parts.hostname or "127.0.0.1", parts.port or 80
                        )
                except (OSError, TimeoutError):
                    return 409, {}, b""  # never sent: the caller starts one itself
            try:
                answer = await hop.exchange(message, image.timeout_s + 30.0)
            except (OSError, TimeoutError) as exc:
                hop.close()
                if reused and not hop.answered:
                    continue  # closed as it was sent, before reading it: a new one
                raise ForwardFailed(f"the hop to {address} broke: {exc!r}") from exc
            idle.append(hop)
            return answer

    async def close(self) -> None:
        for connections in self._idle.values():
            for hop in connections:
                hop.close()
        self._idle.clear()


class _Hop(asyncio.Protocol):
    """One kept-alive connection to a node, one exchange at a time; the answer parsed as
    it arrives (its head, then Content-Length bytes)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None
        self.head: tuple[int, dict[str, str], int] | None = None
        self.closed = False
        self.answered = False  # bytes of the current exchange's answer came

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError(f"the node closed the hop: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.answered = True
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = buffer[:end].decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            status = int(lines[0].split(" ", 2)[1])
            self.head = (status, headers, int(headers.get("content-length", "0")))
        status, headers, length = self.head
        if len(buffer) >= length:
            data = bytes(buffer[:length])
            del buffer[:length]
            self.head = None
            waiter.set_result((status, headers, data))

    async def exchange(self, message: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.answered = False
        self.transport.write(message)
        async with asyncio.timeout(timeout):
            return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Claimed:
    """One environment of a pool, as the invoker's source: taken already."""

    def __init__(self, pool: FunctionPool | ProvisionedSet, env: Environment) -> None:
        self.pool, self.env = pool, env
        self.key, self.image = pool.key, pool.image

    def acquire(self) -> tuple[Environment, bool]:
        return self.env, False

    def release(self, env: Environment) -> None:
        self.pool.release(env)


class Owner:
    """The receiving side: runs a signed hop on the environment it claimed (served as
    `POST /_lamina/forward` by lamina/api/cluster_hop.py)."""

    def __init__(self, key: bytes, engine: Callable[[], Engine]) -> None:
        self.key = key
        self.engine = engine

    async def run(self, meta: bytes, body: bytes, signature: str, now: float) -> InvokeResult:
        """Run the hop whose fields are `meta` and payload `body`, signed with `signature`
        at most MAX_AGE before `now` (wall seconds, as the sender's). Raises NotSigned or
        NotIdle when nothing ran."""
        if not hmac.compare_digest(_sign(self.key, meta, body), signature):
            raise NotSigned("not signed by this cluster")
        fields: dict[str, Any] = json.loads(meta)
        if abs(now - fields["ts"]) > MAX_AGE:
            raise NotSigned("signed too long ago")
        engine = self.engine()
        key = FunctionKey(fields["a"], fields["r"], fields["n"])
        pool: FunctionPool | ProvisionedSet | None
        listing: str = fields["l"]
        if listing.startswith("provisioned:"):
            pool = engine.provisioner.find(key, listing.split(":", 1)[1], fields["rev"])
        else:
            pool = engine.pools.pools.get((key, fields["v"]))
        if pool is None or pool.retired or pool.image.revision != fields["rev"]:
            raise NotIdle("no such environment")
        env = pool.take(fields["e"])
        if env is None and pool.has_ready():  # another idle one of it: still warm
            env, _ = pool.acquire()
        if env is None:
            raise NotIdle("no idle environment")
        invocation = InvokeRequest(
            payload=body,
            request_id=fields["id"],
            invoked_arn=fields["arn"],
            client_context=fields["cc"],
            want_tail=fields["tail"],
            trace_header=fields["tr"],
            invocation_type=fields["t"],
            arrived=fields["at"],
            memory_mb=pool.image.memory_mb,
        )
        return await engine.invoker.invoke(_Claimed(pool, env), invocation)


def encode_result(result: InvokeResult) -> str:
    """The result's fields but its payload, as the owner answers them in RESULT_HEADER
    (read back by Forwarder.forward)."""
    shown: dict[str, Any] = {
        "fe": result.function_error,
        "v": result.executed_version,
        "id": result.request_id,
        "tail": result.log_tail,
        "d": result.duration_ms,
        "init": result.init_ms,
        "et": result.error_type,
        "trace": _fields(result.trace) if result.trace is not None else None,
    }
    return json.dumps(shown, separators=(",", ":"))

"""The admission scripts' own connection to Redis: commands written as they come on one
socket, their replies parsed by hiredis as they arrive and handed back in order.

redis-py's asyncio client costs a pool checkout, a timeout task per write and a parser
coroutine per reply: on a loopback Redis that was a third of an admission. Here a call is
one `transport.write` and one future; concurrent calls share the socket (pipelined, as
Redis answers in order). Errors are redis-py's own exceptions, so callers handle both
paths alike. A connection that fails or times out fails every call waiting on it; the
next call connects again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import hiredis
from redis import exceptions as redis_errors


class _Protocol(asyncio.Protocol):
    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        if self.wire.protocol is not self:  # a connection given up on
            return
        reader, pending = self.reader, self.wire.pending
        reader.feed(data)
        reply = reader.gets()
        while reply is not False:
            if pending:
                future = pending.popleft()
                if not future.done():
                    future.set_result(reply)
            reply = reader.gets()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.wire.protocol is self:
            self.wire.lost(
                redis_errors.ConnectionError(f"Redis closed the connection: {exc or 'closed'}")
            )


class Wire:
    """Calls on one connection; `params` are redis-py's connection keywords (host, port or
    path, db, username, password)."""

    def __init__(self, params: dict[str, Any], timeout: float = 1.0) -> None:
        self.params = params
        self.timeout = timeout
        self.pending: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self.protocol: _Protocol | None = None  # the current connection's
        self._connecting: asyncio.Task[None] | None = None

    async def call(self, *args: Any) -> Any:
        transport = self._transport
        if transport is None or transport.is_closing():
            await self._connect()
            transport = self._transport
            assert transport is not None
        return await self._send(transport, args)

    async def _send(self, transport: asyncio.Transport, args: tuple[Any, ...]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        transport.write(hiredis.pack_command(args))
        try:
            async with asyncio.timeout(self.timeout):
                reply = await future
        except TimeoutError:  # the replies would no longer match the calls
            failed = redis_errors.TimeoutError("Redis did not answer in time")
            self._drop(failed)
            raise failed from None
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if message.startswith("NOSCRIPT"):
                raise redis_errors.NoScriptError(message)
            raise redis_errors.ResponseError(message)
        return reply

    async def _connect(self) -> None:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._open())
        await asyncio.shield(self._connecting)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        params = self.params
        protocol = self.protocol = _Protocol(self)
        try:
            async with asyncio.timeout(self.timeout):
                if params.get("path"):
                    transport, _ = await loop.create_unix_connection(
                        lambda: protocol, params["path"]
                    )
                else:
                    transport, _ = await loop.create_connection(
                        lambda: protocol,
                        params.get("host", "localhost"),
                        int(params.get("port", 6379)),
                    )
        except (OSError, TimeoutError) as exc:
            raise redis_errors.ConnectionError(f"Redis is unreachable: {exc}") from exc
        transport = cast(asyncio.Transport, transport)  # uvloop's is not asyncio's class
        if params.get("password"):
            user = params.get("username")
            auth = ("AUTH", user, params["password"]) if user else ("AUTH", params["password"])
            await self._checked(transport, auth)
        if int(params.get("db") or 0):
            await self._checked(transport, ("SELECT", int(params["db"])))
        self._transport = transport

    async def _checked(self, transport: asyncio.Transport, args: tuple[Any, ...]) -> None:
        try:
            await self._send(transport, args)
        except redis_errors.ResponseError:
            transport.close()
            raise

    def lost(self, error: Exception) -> None:
        self._transport = self.protocol = None
        self._fail(error)

    def _drop(self, error: Exception) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = self.protocol = None
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        pending, self.pending = self.pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self._drop(redis_errors.ConnectionError("closed"))

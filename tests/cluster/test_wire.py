"""The admissions' connection to Redis (cluster/wire.py) against a redis-server of the
module's own: concurrent calls share the socket and each gets its own reply; Redis's
errors come back as redis-py's exceptions; a connection Redis closed is made again."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from lamina.cluster.wire import Wire
from tests.cluster.redis_server import RedisServer


def test_calls_pipelined_errors_and_reconnection(redis_server: RedisServer) -> None:
    async def run() -> None:
        wire = Wire(parse_url(redis_server.url))
        await wire.call("DEL", "wire:n")
        replies = await asyncio.gather(*(wire.call("INCR", "wire:n") for _ in range(200)))
        assert replies == list(range(1, 201))  # in the order the calls were written
        with pytest.raises(NoScriptError):
            await wire.call("EVALSHA", "0" * 40, 0)
        with pytest.raises(ResponseError):
            await wire.call("INCR", "wire:n", "too many")
        assert await wire.call("GET", "wire:n") == b"200"
        with contextlib.suppress(RedisConnectionError):  # Redis closes this very socket
            await wire.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
        for _ in range(20):  # a call still on the closed socket fails; the next connects
            with contextlib.suppress(RedisConnectionError):
                await wire.call("PING")
                break
            await asyncio.sleep(0.01)
        assert await wire.call("PING") == b"PONG"
        wire.close()

    asyncio.run(run())

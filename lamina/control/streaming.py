"""InvokeWithResponseStream: the function's response leaves as the function writes it.

The invocation runs as a task of its own (owned here until it ends, even if the caller
goes away: a function is never cut off because its caller left, as on AWS). Its response
chunks arrive through a ResponseStream (the runtime's streaming mode, or Node's
`streamifyResponse`, which uses it) and go out as PayloadChunk events; an InvokeComplete
event closes the stream with the error, if any, and the log tail. AWS's limits: 200 MB a
response (enforced where the chunks arrive), the first 6 MB at full speed and the rest at
2 MiB/s at most.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from lamina.context import EventStreamResult, StreamEvent
from lamina.engine.invoker import InvokeResult

UNCAPPED = 6 * 1024 * 1024  # the first bytes of a response go at full speed
RATE = 2 * 1024 * 1024  # bytes a second after them


class ResponseStream:
    """The sink of one streamed response (a StreamSink): chunks queue up for the caller."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.content_type = "application/octet-stream"
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.streamed = False

    def start(self, content_type: str) -> None:
        self.content_type = content_type
        self.streamed = True
        if not self.started.done():
            self.started.set_result(None)

    def chunk(self, data: bytes) -> None:
        if data:
            self.chunks.put_nowait(data)


class Paced:
    """AWS's bandwidth cap: uncapped for the first UNCAPPED bytes, then RATE."""

    def __init__(self) -> None:
        self.sent = 0
        self.capped_since: float | None = None

    async def wait(self, size: int) -> None:
        self.sent += size
        if self.sent <= UNCAPPED:
            return
        now = time.monotonic()  # a contract of the response, like a timeout: never scaled
        if self.capped_since is None:
            self.capped_since = now
            self.sent = UNCAPPED + size
        due = self.capped_since + (self.sent - UNCAPPED) / RATE
        if due > now:
            await asyncio.sleep(due - now)


async def events(
    stream: ResponseStream, task: asyncio.Task[InvokeResult]
) -> AsyncIterator[StreamEvent]:
    pace = Paced()
    while True:
        getter = asyncio.ensure_future(stream.chunks.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            break
        data = getter.result()
        await pace.wait(len(data))
        yield StreamEvent("PayloadChunk", {"Payload": data})
    while not stream.chunks.empty():
        data = stream.chunks.get_nowait()
        await pace.wait(len(data))
        yield StreamEvent("PayloadChunk", {"Payload": data})
    result = task.result()
    if not stream.streamed and result.payload and result.error_type is None:
        yield StreamEvent("PayloadChunk", {"Payload": result.payload})  # a buffered answer
    complete: dict[str, Any] = {}
    if result.error_type is not None:
        complete["ErrorCode"] = result.error_type
        complete["ErrorDetails"] = result.payload.decode("utf-8", "replace")
    if result.log_tail is not None:
        complete["LogResult"] = result.log_tail
    yield StreamEvent("InvokeComplete", complete)


class StreamedInvocations:
    """Owns the tasks of streamed invocations until they end."""

    def __init__(self) -> None:
        self.running: set[asyncio.Task[InvokeResult]] = set()

    async def respond(
        self, started: asyncio.Task[InvokeResult], stream: ResponseStream, version: str
    ) -> EventStreamResult:
        """Once the response starts (or the invocation ends first): the answer's head and
        its events. Raises what the invocation raised before answering (a throttle)."""
        self.running.add(started)
        started.add_done_callback(self.running.discard)
        either: set[asyncio.Future[Any]] = {stream.started, started}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if started.done() and started.exception() is not None:
            raise started.exception()  # type: ignore[misc]
        fields = {
            "StatusCode": 200,
            "ExecutedVersion": version,
            "ResponseStreamContentType": stream.content_type,
        }
        return EventStreamResult(fields, events(stream, started))

    async def close(self) -> None:
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""A request body as it arrives over one connection (lamina/api/http.py feeds it), read
whole by the gateway with `Body.read(limit)`: bounded as it streams (past the limit it is
no longer kept; the rest is dropped for a moment, then the connection closes), held in
memory up to `spool_bytes` and in an unnamed temporary file past that."""

from __future__ import annotations

import asyncio
import tempfile
from typing import IO, Protocol

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
HIGH_WATER = 256 * 1024  # bytes of a body held in memory before reading pauses
# A refused body (too large) is still read, and dropped, for a moment after the answer so
# that a client still sending it gets to read the answer rather than a reset; never more
# than this, nor for longer.
LINGER_BYTES = 160 * 1024 * 1024


class Channel(Protocol):
    """What a body needs of its connection."""

    def write(self, data: bytes | bytearray) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


class Disconnected(Exception):
    """The client went away before its request's body was read."""


class Body:
    """A request's body as it arrives. The gateway reads it whole with `read(limit)`."""

    def __init__(
        self,
        connection: Channel,
        length: int | None,
        expect_continue: bool,
        max_body: int,
        spool_bytes: int,
        spool_dir: str | None,
    ) -> None:
        self._connection = connection
        self._spool_bytes = spool_bytes
        self._spool_dir = spool_dir
        self.length = length  # Content-Length, None when chunked
        self._continue = expect_continue
        self._chunks: list[bytes] = []
        self._buffered = 0
        self.size = 0
        self._spool: IO[bytes] | None = None
        self.complete = False
        self.overflow = False  # past max_body: no longer read
        self.gone = False
        self._limit = max_body
        self._waiter: asyncio.Future[None] | None = None
        self._gone_waiter: asyncio.Future[None] | None = None

    # From the protocol -----------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.overflow:  # read and dropped while the answer goes out, within bounds
            if self.size > LINGER_BYTES:
                self._connection.close()
            return
        if self.size > self._limit:
            self._overflowed()
            return
        if self._spool is not None:
            self._spool.write(chunk)
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > self._spool_bytes:
            self._spool = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115 - closed later
            self._spool.write(b"".join(self._chunks))
            self._chunks.clear()
        elif self._buffered > HIGH_WATER and self._waiter is None:
            self._connection.pause_reading()  # nobody is reading it yet: let TCP push back

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def lost(self) -> None:
        self.gone = True
        self._wake()
        if self._gone_waiter is not None and not self._gone_waiter.done():
            self._gone_waiter.set_result(None)

    def _overflowed(self) -> None:
        self.overflow = True
        self._chunks.clear()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # For the gateway --------------------------------------------------------------------
    async def read(self, limit: int) -> tuple[bytes, bool]:
        """The whole body, or (b"", False) as soon as it is known to be longer than `limit`
        (what is left of it is then never read: the connection closes after the answer)."""
        self._limit = min(self._limit, limit)
        if self.length is not None and self.length > limit:
            self._overflowed()
            return b"", False
        if self.size > limit and not self.overflow:
            self._overflowed()
        if self._continue:
            self._continue = False
            if not self.complete:
                self._connection.write(CONTINUE)
        self._connection.resume_reading()
        while not (self.complete or self.overflow):
            if self.gone:
                raise Disconnected
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        if self.overflow:
            return b"", False
        if self._spool is not None:
            spool, self._spool = self._spool, None
            data: bytes = await asyncio.to_thread(_read_all, spool)
            return data, True
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        return data, True

    async def disconnected(self) -> None:
        """Returns when the client has gone away (a followed stream stops then)."""
        if self.gone:
            return
        if self._gone_waiter is None:
            self._gone_waiter = asyncio.get_running_loop().create_future()
        await self._gone_waiter

    def discard(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._chunks = []


def _read_all(spool: IO[bytes]) -> bytes:
    with spool:
        spool.seek(0)
        return spool.read()

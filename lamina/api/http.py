"""HTTP/1.1 for the gateway: an asyncio protocol on httptools (llhttp), nothing between
the parser and the gateway.

What a connection may cost is bounded: headers must be complete within
`Limits.header_timeout` of a request's first byte (a client that trickles them is
answered 408 and closed) and within `header_bytes` (431); a body may not pause longer
than `body_timeout` between two pieces; an idle kept-alive connection is closed after
`keep_alive`. Past `max_connections` a new connection is answered 503 and closed at once,
before anything of it is read. A body is bounded as it streams: past what its operation
takes (the gateway says, `Body.read(limit)`) or `max_body` it is no longer read, the
answer is 413 and the connection closes; past `spool_bytes` it goes to an unnamed
temporary file rather than staying in memory.

Keep-alive, pipelining (requests answered in order), chunked request bodies,
`Expect: 100-continue` (the interim answer goes out when the gateway first reads the
body), HEAD, and streamed responses (chunked, stopped when the client goes away) are
HTTP/1.1 as RFC 9112 has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qs

import httptools

from lamina.api.body import Body, Disconnected
from lamina.api.wire import HttpRequest, HttpResponse, StreamingResponse
from lamina.tasks import stop_task
from lamina.web.request import WebResponse

log = logging.getLogger("lamina.http")

Response = HttpResponse | StreamingResponse | WebResponse | AsyncIterator[bytes]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 10_000
    header_timeout: float = 10.0  # seconds from a request's first byte to its last header
    body_timeout: float = 30.0  # longest silence inside a body
    keep_alive: float = 5.0  # an idle connection between requests
    header_bytes: int = 64 * 1024  # request line and headers
    max_body: int = 70_167_211 + 1  # the largest any operation takes, and one byte
    spool_bytes: int = 1 << 20  # larger bodies are kept in a file as they arrive
    shutdown_grace: float = 5.0  # seconds requests in flight get when the server stops


REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()}
NO_BODY_STATUSES = frozenset({204, 304})
LINGER_S = 5.0
SWEEP_S = 0.25  # how often timeouts are checked (they fire up to this late)


def _refusal(status: int, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    return (
        STATUS_LINES[status] + b"Content-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


REFUSED = _refusal(503, "Too many connections")
HEADER_TIMEOUT = _refusal(408, "Request headers not received in time")
HEADERS_TOO_LARGE = _refusal(431, "Request headers too large")
BAD_REQUEST = _refusal(400, "Malformed HTTP request")


class _Date:
    """The Date header, made once a second."""

    second = 0
    value = b""

    @classmethod
    def header(cls) -> bytes:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return cls.value


Handler = Callable[[HttpRequest, Body], Awaitable[Response]]


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.local = ""
        self.client = ""
        self.refused = False
        self.closing = False
        self.lingering = False
        self.streaming = False
        self.current: Body | None = None  # the body of the request being answered
        self.paused_reading = False
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.deadline = 0.0  # monotonic time of the timeout in force (0: none)
        self.on_deadline: Callable[[], None] = self._close
        self.task: asyncio.Task[None] | None = None  # the request being answered
        self.queue: deque[tuple[HttpRequest, Body, bool]] = deque()  # pipelined behind it
        self.body: Body | None = None  # the body being received
        self.head_bytes = 0
        self.in_headers = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []

    # asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.connections) >= server.limits.max_connections or server.stopping:
            self.refused = True
            transport.write(REFUSED)  # type: ignore[attr-defined]
            transport.close()
            return
        server.connections.add(self)
        sockname = transport.get_extra_info("sockname")
        if isinstance(sockname, tuple):
            self.local = f"{sockname[0]}:{sockname[1]}"
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            self.client = str(peername[0])
        self._set_timer(server.limits.header_timeout, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self._cancel_timer()
        if self.body is not None:
            self.body.lost()
        for _, body, _ in self.queue:
            body.lost()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.task is None and not self.in_headers and self.body is None and not self.lingering:
            # The first byte of a request: its headers are due within the header timeout.
            self._set_timer(self.server.limits.header_timeout, self._header_timeout)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BAD_REQUEST)
        except httptools.HttpParserError:
            self._fail(BAD_REQUEST)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_headers = True
        self.head_bytes = 0
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.server.limits.header_bytes:
            raise httptools.HttpParserError("headers too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.server.limits.header_bytes:
            self._fail(HEADERS_TOO_LARGE)
            raise httptools.HttpParserError("headers too large")
        if self.in_headers:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_headers = False
        headers: dict[str, str] = {}
        for name, value in self._headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        raw = self._url.decode("latin-1")
        path, _, query = raw.partition("?")
        method = self.parser.get_method().decode("latin-1")
        request = HttpRequest(
            method,
            path,
            parse_qs(query, keep_blank_values=True) if query else {},
            headers,
            raw_query=query,
            local=self.local,
            raw_headers=self._headers,
            client=self.client,
            http_version=self.parser.get_http_version(),
        )
        length_text = headers.get("content-length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        expect = headers.get("expect", "").lower() == "100-continue"
        if length is None and "chunked" not in headers.get("transfer-encoding", "").lower():
            length = 0
        limits = self.server.limits
        body = Body(
            self,
            length,
            expect and length != 0,
            limits.max_body,
            limits.spool_bytes,
            self.server.spool_dir,
        )
        if length == 0:
            body.complete = True
        self.body = None if body.complete else body
        keep_alive = self.parser.should_keep_alive()
        if body.complete:
            self._cancel_timer()
        else:
            self._set_timer(self.server.limits.body_timeout, self._body_timeout)
        if self.task is None:
            self._start(request, body, keep_alive)
        else:
            self.queue.append((request, body, keep_alive))
            self.pause_reading()

    def on_body(self, chunk: bytes) -> None:
        if self.body is not None:
            self.body.feed(chunk)
            if self.deadline:
                self.deadline = time.monotonic() + self.server.limits.body_timeout

    def on_message_complete(self) -> None:
        if self.lingering:
            self._close()
            return
        if self.body is not None:
            self.body.finish()
            self.body = None
            self._cancel_timer()

    # Answering ---------------------------------------------------------------------------
    def _start(self, request: HttpRequest, body: Body, keep_alive: bool) -> None:
        self.current = body
        self.task = self.loop.create_task(self._answer(request, body, keep_alive))

    async def _answer(self, request: HttpRequest, body: Body, keep_alive: bool) -> None:
        try:
            response = await self.server.handler(request, body)
        except Disconnected:
            self._close()
            return
        except Exception:
            log.exception("answering %s %s failed", request.method, request.path)
            response = HttpResponse(500, b'{"message":"Internal error"}', {})
        reusable = keep_alive and body.complete and not body.overflow and not self.closing
        try:
            if isinstance(response, HttpResponse):
                self._write_response(request, response, reusable)
            elif isinstance(response, WebResponse) and isinstance(response.body, bytes):
                self._write_pairs(request, response, response.body, reusable)
            else:
                self.streaming = True
                await self._stream(request, body, response, reusable)
        finally:
            self.streaming = False
            self.current = None
            body.discard()
        self.task = None
        if self.transport is None:
            return
        if not body.complete and not body.gone:
            self.lingering = True  # drop the rest of the body for a moment, then close
            if not body.overflow:
                body._overflowed()
            self.resume_reading()
            self._set_timer(LINGER_S, self._close)
            return
        if not reusable:
            self._close()
            return
        if self.queue:
            self._start(*self.queue.popleft())
            if not self.queue:
                self.resume_reading()
            return
        self.resume_reading()
        if self.server.stopping:
            self._close()
        elif self.body is None and not self.in_headers:
            self._set_timer(self.server.limits.keep_alive, self._close)

    def _head(
        self, status: int, headers: dict[str, str] | list[tuple[str, str]], reusable: bool
    ) -> bytearray:
        out = bytearray(STATUS_LINES.get(status) or f"HTTP/1.1 {status} Status\r\n".encode())
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            out += f"{name.lower()}: {value}\r\n".encode("latin-1")  # lower-case, as in HTTP/2
        out += _Date.header()
        if not reusable:
            out += b"connection: close\r\n"
        return out

    def _write_response(self, request: HttpRequest, response: HttpResponse, reusable: bool) -> None:
        out = self._head(response.status, response.headers, reusable)
        if response.status in NO_BODY_STATUSES:
            out += b"\r\n"
        else:
            if "Content-Length" in response.headers:  # S3's HEAD: the object's, not 0
                out += b"\r\n"
            else:
                out += b"content-length: %d\r\n\r\n" % len(response.body)
            if request.method != "HEAD":
                out += response.body
        self.write(out)

    def _write_pairs(
        self, request: HttpRequest, response: WebResponse, body: bytes, reusable: bool
    ) -> None:
        """An answer with header pairs (repeats kept: several Set-Cookie)."""
        out = self._head(response.status, response.headers, reusable)
        if response.status in NO_BODY_STATUSES:
            out += b"\r\n"
        else:
            if not any(name.lower() == "content-length" for name, _ in response.headers):
                out += b"content-length: %d\r\n" % len(body)
            out += b"\r\n"
            if request.method != "HEAD":
                out += body
        self.write(out)

    async def _stream(
        self,
        request: HttpRequest,
        body: Body,
        response: StreamingResponse | WebResponse | AsyncIterator[bytes],
        reusable: bool,
    ) -> None:
        headers: dict[str, str] | list[tuple[str, str]]
        if isinstance(response, StreamingResponse):
            status, headers, chunks = response.status, response.headers, response.body
        elif isinstance(response, WebResponse):
            assert not isinstance(response.body, bytes)
            status, chunks = response.status, response.body
            headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        else:
            status, headers = 200, {"Content-Type": "text/plain; charset=utf-8"}
            chunks = response
        out = self._head(status, headers, reusable)
        out += b"transfer-encoding: chunked\r\n\r\n"
        self.write(out)
        iterator = aiter(chunks)
        gone = asyncio.ensure_future(body.disconnected())
        try:
            while True:
                following = asyncio.ensure_future(anext(iterator))
                await asyncio.wait({following, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():  # the client went away: a follower would wait forever
                    following.cancel()
                    with contextlib.suppress(BaseException):
                        await following
                    return
                try:
                    chunk = following.result()
                except StopAsyncIteration:
                    break
                if chunk:
                    self.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    if self.writable is not None:
                        await self.writable
            self.write(b"0\r\n\r\n")
        finally:
            gone.cancel()
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    # Plumbing ------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause_reading(self) -> None:
        if not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused_reading and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()

    def _fail(self, answer: bytes) -> None:
        if self.task is None:
            self.write(answer)
        self._close()

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # Deadlines are checked by the server's sweep (HttpServer._sweep), not by a timer
    # each: setting one costs a request no more than reading the clock.
    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        self.deadline = time.monotonic() + delay
        self.on_deadline = callback

    def _cancel_timer(self) -> None:
        self.deadline = 0.0

    def _header_timeout(self) -> None:
        if self.task is None:
            self._fail(HEADER_TIMEOUT if self.in_headers else b"")

    def _body_timeout(self) -> None:
        self._close()  # the gateway's read ends with Disconnected

    def shutdown(self) -> None:
        """The server stops: idle connections close now, busy ones after their answer."""
        self.closing = True
        if self.task is None:
            self._close()
        elif self.streaming and self.current is not None:
            self.current.lost()  # a followed stream would never end


class HttpServer:
    """Serves `handler` on (host, port) until stopped."""

    def __init__(self, handler: Handler, limits: Limits | None = None, spool_dir: str = "") -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.spool_dir = spool_dir or None
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.loop = asyncio.get_event_loop()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, backlog=4096, reuse_address=True
        )
        self._sweeper = self.loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Every SWEEP_S, the connections whose timeout has passed are dealt with."""
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for connection in list(self.connections):
                if connection.deadline and connection.deadline <= now:
                    connection.deadline = 0.0
                    connection.on_deadline()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting; close idle connections and end followed streams now; give the
        requests in flight `shutdown_grace` seconds to be answered."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.shutdown()
        await self.drain(self.limits.shutdown_grace)

    async def drain(self, timeout: float) -> None:
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self) -> None:
        """Whatever is still in flight is cancelled; every connection closes."""
        if self._sweeper is not None:
            await stop_task(self._sweeper)
            self._sweeper = None
        tasks = [c.task for c in self.connections if c.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for connection in list(self.connections):
            connection._close()


def raise_descriptor_limit() -> int:
    """The soft limit on open descriptors raised to the hard one (each connection is one);
    returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            log.warning("could not raise the descriptor limit from %d to %d", soft, hard)
    return soft


def connection_ceiling(descriptors: int) -> int:
    """Connections served at once: what the descriptors allow, less room for environments
    (each a few descriptors), databases and logs."""
    return max(64, min(Limits.max_connections, descriptors - 2048, int(descriptors * 0.6)))

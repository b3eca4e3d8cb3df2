"""The Lambda Runtime API that one execution environment talks to.

Each environment gets its own listener, made inside its own network namespace, so
`AWS_LAMBDA_RUNTIME_API` names exactly one environment, is reachable from that one only,
and a request never has to say which one it is. It serves one runtime: a second
`GET /next` while one waits is refused (it never displaces the first), and answers for a
request id other than the one handed over are refused. HTTP/1.1 with
keep-alive, parsed by httptools; the work is delegated to a `RuntimeApiHandler`.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httptools

PREFIX = "/2018-06-01/runtime/"
RESPONSE_LIMIT = 6_291_556  # bytes a function may return (AWS's figure)
BODY_CAP = RESPONSE_LIMIT + 1  # stop buffering past this; the answer is 413 anyway
MODE = "lambda-runtime-function-response-mode"  # "streaming": a chunked body, as written


class StreamSink(Protocol):
    """Where a streamed response goes as the runtime writes it."""

    def start(self, content_type: str) -> None: ...

    def chunk(self, data: bytes) -> None: ...


@dataclass
class Invocation:
    """One event handed to the runtime, as the Runtime API's headers describe it."""

    request_id: str
    payload: bytes
    deadline_ms: int
    invoked_arn: str
    trace_id: str
    client_context: str | None = None
    cognito_identity: str | None = None
    stream: StreamSink | None = None  # InvokeWithResponseStream: where chunks go
    tenant_id: str | None = None  # tenant isolation mode: the tenant it runs for

    def headers(self) -> dict[str, str]:
        headers = {
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.invoked_arn,
            "Lambda-Runtime-Trace-Id": self.trace_id,
            "Content-Type": "application/json",
        }
        if self.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = self.client_context
        if self.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = self.cognito_identity
        if self.tenant_id is not None:
            headers["Lambda-Runtime-Aws-Tenant-Id"] = self.tenant_id
        return headers


@dataclass
class ApiReply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, error_type: str, message: str) -> ApiReply:
    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
    return ApiReply(status, body, {"Content-Type": "application/json"})


ACCEPTED = ApiReply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})


Deliver = Callable[[Invocation], None]


class RuntimeApiHandler(Protocol):
    def next_invocation(self, deliver: Deliver) -> ApiReply | None:
        """Call `deliver` with the next invocation, now or when there is one (None); or
        refuse the request (another runtime is waiting already) with the reply."""
        ...

    def next_abandoned(self, deliver: Deliver) -> None:
        """The connection waiting with `deliver` is gone."""
        ...

    def post_response(self, request_id: str, body: bytes, oversized: bool) -> ApiReply: ...

    def post_error(self, request_id: str, body: bytes, error_type: str | None) -> ApiReply: ...

    def post_init_error(self, body: bytes, error_type: str | None) -> ApiReply: ...

    def stream_start(self, request_id: str, headers: dict[str, str]) -> ApiReply | None:
        """A streamed response begins (None: accepted; else the refusal to answer)."""
        ...

    def stream_chunk(self, request_id: str, data: bytes) -> None: ...

    def stream_end(self, request_id: str, trailers: dict[str, str]) -> ApiReply: ...


_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


def dispatch(
    handler: RuntimeApiHandler,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    oversized: bool,
) -> ApiReply:
    """Every request but `GET /invocation/next`, answered at once."""
    if not path.startswith(PREFIX):
        return error_reply(404, "NotFound", f"No route for {method} {path}")
    route = path[len(PREFIX) :].split("?", 1)[0].split("/")
    error_type = headers.get("lambda-runtime-function-error-type")
    if method == "POST" and len(route) == 3 and route[0] == "invocation":
        if route[2] == "response":
            return handler.post_response(route[1], body, oversized)
        if route[2] == "error":
            return handler.post_error(route[1], body, error_type)
    if method == "POST" and route == ["init", "error"]:
        return handler.post_init_error(body, error_type)
    return error_reply(404, "NotFound", f"No route for {method} {path}")


def is_next(method: str, path: str) -> bool:
    return method == "GET" and path.split("?", 1)[0] == PREFIX + "invocation/next"


def encode(reply: ApiReply) -> bytes:
    if reply is ACCEPTED:
        return _ACCEPTED  # every answer of a runtime that posts a result
    head = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'OK')}\r\n"
    for name, value in reply.headers.items():
        head += f"{name}: {value}\r\n"
    head += f"Content-Length: {len(reply.body)}\r\n\r\n"
    return head.encode("latin-1") + reply.body


def event_message(invocation: Invocation) -> bytes:
    """The answer to `GET /invocation/next` that hands `invocation` over: what
    encode(ApiReply(200, payload, invocation.headers())) makes, in one format."""
    head = (
        f"HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: {invocation.request_id}\r\n"
        f"Lambda-Runtime-Deadline-Ms: {invocation.deadline_ms}\r\n"
        f"Lambda-Runtime-Invoked-Function-Arn: {invocation.invoked_arn}\r\n"
        f"Lambda-Runtime-Trace-Id: {invocation.trace_id}\r\nContent-Type: application/json\r\n"
    )
    if invocation.client_context is not None:
        head += f"Lambda-Runtime-Client-Context: {invocation.client_context}\r\n"
    if invocation.cognito_identity is not None:
        head += f"Lambda-Runtime-Cognito-Identity: {invocation.cognito_identity}\r\n"
    if invocation.tenant_id is not None:
        head += f"Lambda-Runtime-Aws-Tenant-Id: {invocation.tenant_id}\r\n"
    head += f"Content-Length: {len(invocation.payload)}\r\n\r\n"
    return head.encode("latin-1") + invocation.payload


_ACCEPTED = encode(ApiReply(ACCEPTED.status, ACCEPTED.body, ACCEPTED.headers))


Request = tuple[str, str, bytes, dict[str, str], bool]

# What Lamina's own runtimes send after each invocation, in one write: the answer and the
# next GET, with no header but Host and Content-Length. Recognised whole, at a message
# boundary, it is answered without the parser's callbacks; anything else (other headers,
# a body split across reads, a runtime of another make) goes through httptools as ever.
PIPELINED_ANSWER = re.compile(
    rb"POST /2018-06-01/runtime/invocation/([^/?\s]+)/response HTTP/1\.1\r\n"
    rb"Host: [^\r\n]*\r\nContent-Length: (\d{1,7})\r\n\r\n"
)
NEXT_HEAD = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: "
NEXT: Request = ("GET", PREFIX + "invocation/next", b"", {}, False)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection from the runtime; requests are answered in order.

    Everything is answered from the parser's callbacks, without a task: posts at once,
    `GET /invocation/next` when the environment delivers an invocation. Requests behind a
    waiting GET wait their turn. Replies made while reading are written together at the
    end of the read, and when a GET that came in the same read has to wait, the replies
    before it (the 202 of a pipelined answer) go out with the event it waits for: one
    write per invocation for a runtime that pipelines, as Lamina's does.
    """

    def __init__(self, server: RuntimeApiServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a GET /next is waiting for its invocation
        self.backlog: deque[Request] = deque()  # requests behind it
        self.out: list[bytes] = []  # replies not written yet
        self.reading = False
        self._between = True  # the parser is between two messages
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._head_done = False
        self._stream_id: str | None = None  # a streamed response in progress
        self._stream_refusal: ApiReply | None = None
        self._trailers: dict[str, str] = {}

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.reading = True
        if self._between and not self.waiting and self._pipelined(data):
            self.reading = False
            if not self.waiting:
                self._flush()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()
        finally:
            self.reading = False
        if not self.waiting:
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.waiting:
            self.waiting = False
            self.server.handler.next_abandoned(self._deliver)

    def _pipelined(self, data: bytes) -> bool:
        """An answer and the next GET, exactly as Lamina's runtimes write them: handled
        here, as the parser's callbacks would (False: not that, nothing done)."""
        found = PIPELINED_ANSWER.match(data)
        if found is None:
            return False
        end = found.end() + int(found.group(2))
        following = len(data) - end
        if (
            following <= len(NEXT_HEAD)
            or not data.startswith(NEXT_HEAD, end)
            or data.find(b"\r\n", end + len(NEXT_HEAD)) != len(data) - 4
            or not data.endswith(b"\r\n\r\n")
        ):
            return False
        size = end - found.end()
        oversized = size > RESPONSE_LIMIT
        body = b"" if oversized else data[found.end() : end]
        request_id = found.group(1).decode("latin-1")
        self.out.append(encode(self.server.handler.post_response(request_id, body, oversized)))
        self._handle(NEXT)
        return True

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._between = False
        self._url, self._headers, self._body, self._size = b"", {}, [], 0
        self._head_done, self._stream_id, self._stream_refusal = False, None, None
        self._trailers = {}

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        target = self._trailers if self._head_done else self._headers
        target[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._head_done = True
        if self._headers.get(MODE, "").lower() != "streaming":
            return
        route = self._url.decode("latin-1").split("?", 1)[0]
        parts = route[len(PREFIX) :].split("/") if route.startswith(PREFIX) else []
        post = self.parser.get_method() == b"POST"
        if post and len(parts) == 3 and parts[0] == "invocation" and parts[2] == "response":
            self._stream_id = parts[1]
            self._stream_refusal = self.server.handler.stream_start(parts[1], self._headers)

    def on_body(self, body: bytes) -> None:
        if self._stream_id is not None:  # passed on as it arrives, never buffered
            if self._stream_refusal is None:
                self.server.handler.stream_chunk(self._stream_id, body)
            return
        self._size += len(body)
        if self._size <= BODY_CAP:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._between = True
        if self._stream_id is not None:
            reply = self._stream_refusal or self.server.handler.stream_end(
                self._stream_id, self._trailers
            )
            self.out.append(encode(reply))
            return
        method = self.parser.get_method().decode()
        oversized = self._size > RESPONSE_LIMIT
        body = b"" if oversized else b"".join(self._body)
        request = (method, self._url.decode("latin-1"), body, self._headers, oversized)
        if self.waiting:
            self.backlog.append(request)
        else:
            self._handle(request)

    # Answering
    def _handle(self, request: Request) -> None:
        if is_next(request[0], request[1]):
            self.waiting = True
            refused = self.server.handler.next_invocation(self._deliver)
            if refused is not None:
                self.waiting = False
                self.out.append(encode(refused))
        else:
            self.out.append(encode(dispatch(self.server.handler, *request)))

    def _deliver(self, invocation: Invocation) -> None:
        self.waiting = False
        self.out.append(event_message(invocation))
        while self.backlog and not self.waiting:
            self._handle(self.backlog.popleft())
        if not self.reading:
            self._flush()

    def _flush(self) -> None:
        if not self.out:
            return
        data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
        self.out.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class RuntimeApiServer:
    """A listener on 127.0.0.1 with a port of its own, serving one environment."""

    def __init__(self, handler: RuntimeApiHandler) -> None:
        self.handler = handler
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self, host: str = "127.0.0.1", sock: socket.socket | None = None) -> str:
        """Listen on a free port of `host`, or serve on `sock`, a listening socket made in
        the environment's own network namespace (its address is the same inside)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Connection(self), sock=sock)
        else:
            self._server = await loop.create_server(lambda: _Connection(self), host, 0)
        name = self._server.sockets[0].getsockname()
        self.address = f"{name[0]}:{name[1]}"
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        self.connections.clear()

"""The Lambda Runtime API that one execution environment talks to.

Each environment gets its own listener on loopback, so `AWS_LAMBDA_RUNTIME_API` names
exactly one environment and a request never has to say which one it is. HTTP/1.1 with
keep-alive, parsed by httptools; the work is delegated to a `RuntimeApiHandler`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Protocol

import httptools

PREFIX = "/2018-06-01/runtime/"
RESPONSE_LIMIT = 6_291_556  # bytes a function may return (AWS's figure)
BODY_CAP = RESPONSE_LIMIT + 1  # stop buffering past this; the answer is 413 anyway


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


class RuntimeApiHandler(Protocol):
    async def next_invocation(self) -> Invocation: ...

    def post_response(self, request_id: str, body: bytes, oversized: bool) -> ApiReply: ...

    def post_error(self, request_id: str, body: bytes, error_type: str | None) -> ApiReply: ...

    def post_init_error(self, body: bytes, error_type: str | None) -> ApiReply: ...


async def dispatch(
    handler: RuntimeApiHandler,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    oversized: bool,
) -> ApiReply:
    if not path.startswith(PREFIX):
        return error_reply(404, "NotFound", f"No route for {method} {path}")
    route = path[len(PREFIX) :].split("?", 1)[0].split("/")
    error_type = headers.get("lambda-runtime-function-error-type")
    if method == "GET" and route == ["invocation", "next"]:
        invocation = await handler.next_invocation()
        return ApiReply(200, invocation.payload, invocation.headers())
    if method == "POST" and len(route) == 3 and route[0] == "invocation":
        if route[2] == "response":
            return handler.post_response(route[1], body, oversized)
        if route[2] == "error":
            return handler.post_error(route[1], body, error_type)
    if method == "POST" and route == ["init", "error"]:
        return handler.post_init_error(body, error_type)
    return error_reply(404, "NotFound", f"No route for {method} {path}")


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection from the runtime; requests are answered in order."""

    def __init__(self, server: RuntimeApiServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[tuple[str, str, bytes, dict[str, str], bool] | None] = (
            asyncio.Queue()
        )
        self.worker: asyncio.Task[None] | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.worker = asyncio.get_running_loop().create_task(self._serve())
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.worker is not None:
            self.worker.cancel()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", {}, [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= BODY_CAP:
            self._body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        oversized = self._size > RESPONSE_LIMIT
        body = b"" if oversized else b"".join(self._body)
        self.queue.put_nowait((method, self._url.decode("latin-1"), body, self._headers, oversized))

    async def _serve(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None or self.transport is None:
                return
            method, path, body, headers, oversized = item
            reply = await dispatch(self.server.handler, method, path, body, headers, oversized)
            if self.transport.is_closing():
                return
            head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'OK')}"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            head.append(f"Content-Length: {len(reply.body)}")
            self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)


_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


class RuntimeApiServer:
    """A listener on 127.0.0.1 with a port of its own, serving one environment."""

    def __init__(self, handler: RuntimeApiHandler) -> None:
        self.handler = handler
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self, host: str = "127.0.0.1") -> str:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"{host}:{port}"
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
            if connection.worker is not None:
                connection.worker.cancel()
        self.connections.clear()

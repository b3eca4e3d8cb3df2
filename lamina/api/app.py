"""The ASGI application: one endpoint for every service, routed by the service models.

HTTP stays here. A request is matched to a service and operation, parsed and validated
against the model, handed to the operation as plain values, and the result or error is
serialized back. Lamina's own endpoints live under /_lamina/.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from lamina.api import eventstream
from lamina.api.auth import Authenticator, AuthFailure, Caller, auth_error, signing_name
from lamina.api.front import Claim, FrontDoor
from lamina.api.protocols import PROTOCOLS, WireProtocol
from lamina.api.spec import Service
from lamina.api.validate import validate
from lamina.api.wire import HttpRequest, HttpResponse, StreamingResponse, current_request_id
from lamina.config import DEFAULT_ACCOUNT, DEFAULT_REGION
from lamina.context import EventStreamResult, RequestContext
from lamina.errors import AwsError, not_implemented
from lamina.observe.traces import incoming_header
from lamina.web.request import PAYLOAD_LIMIT, WebRequest, WebResponse

log = logging.getLogger("lamina.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Streamer = Callable[[HttpRequest], Awaitable[HttpResponse | AsyncIterator[bytes]]]

CREDENTIAL_REGION = re.compile(r"Credential=[^/]*/[^/]*/([^/]+)/")
DEFAULT_BODY_LIMIT = 70_167_211
# Request size limits per operation: (bytes, error code, status).
BODY_LIMITS: dict[str, tuple[int, str]] = {
    "Invoke": (6_291_456, "RequestTooLargeException"),
    "CreateFunction": (70_167_211, "RequestEntityTooLargeException"),
    "UpdateFunctionCode": (70_167_211, "RequestEntityTooLargeException"),
}
OPERATION_LABELS = {"Invoke": "InvokeFunction"}


def new_request_id() -> str:
    """A random version-4 UUID, as text (uuid.uuid4() costs more on the hot path)."""
    h = f"{random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@dataclass
class Mounted:
    service: Service
    provider: object
    # Every protocol of the model Lamina speaks (CloudWatch: json for new clients, query
    # for older ones), in the model's order of preference.
    protocols: tuple[WireProtocol, ...] = ()
    signing_name: str = ""  # the service in a SigV4 credential scope (CloudWatch: monitoring)


class Gateway:
    """Routes HTTP requests to the providers of the mounted services."""

    def __init__(self, authenticator: Authenticator | None = None) -> None:
        # Who is calling, for every service (None: no check, every caller the default
        # account, the region from the credential scope).
        self.authenticator = authenticator
        self.mounted: list[Mounted] = []
        self.internal: dict[str, Streamer] = {}
        self.public: set[str] = set()  # internal prefixes that check their callers themselves
        self.pages: dict[str, Streamer] = {}
        self.public_pages: set[str] = set()
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.front: FrontDoor | None = None  # function URLs and HTTP APIs

    def mount(self, service: Service, provider: object) -> None:
        names = service.model.metadata.get("protocols") or [service.protocol]
        protocols = tuple(PROTOCOLS[name] for name in names if name in PROTOCOLS)
        self.mounted.append(Mounted(service, provider, protocols, signing_name(service)))

    def mount_internal(self, prefix: str, handler: Streamer, public: bool = False) -> None:
        """Serve Lamina's own endpoint `/_lamina/<prefix>/...`: to a caller verified as
        every service's are (the request's `account` is the caller's), unless `public`
        (the health check; code links, which carry a signature of their own)."""
        self.internal[prefix] = handler
        if public:
            self.public.add(prefix)

    def mount_page(self, prefix: str, handler: Streamer, public: bool = False) -> None:
        """Serve `GET /<prefix>[/...]` at the top level (/metrics, /console), to callers
        checked as /_lamina/*'s are unless `public` (the console's static files)."""
        self.pages[prefix] = handler
        if public:
            self.public_pages.add(prefix)

    # ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if self.front is not None:
            claim = self.front.claim(headers.get("host", ""), path)
            if claim is not None:
                await _send(send, receive, await self._front(self.front, claim, scope, receive))
                return
        raw_query = scope.get("query_string", b"").decode("latin-1")
        request = HttpRequest(scope["method"], path, query, headers, raw_query=raw_query)
        response: HttpResponse | StreamingResponse | WebResponse | AsyncIterator[bytes]
        if path.startswith("/_lamina/"):
            response = await self._internal(request, receive)
        elif request.method in ("GET", "HEAD") and (page := self._page(path)) is not None:
            await _read_body(receive, 0)
            prefix = path.split("/", 2)[1]
            refused = None
            if self.authenticator is not None and prefix not in self.public_pages:
                refused = self._internal_caller(request)
            response = refused or await page(request)
        else:
            response = await self._service(request, scope, receive)
        await _send(send, receive, response)

    @staticmethod
    async def _front(front: FrontDoor, claim: Claim, scope: Scope, receive: Receive) -> WebResponse:
        """A request to a function URL or an HTTP API, as its handler sees it."""
        body, complete = await _read_body(receive, PAYLOAD_LIMIT)
        if not complete:
            return claim.handler.too_large()
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        client = scope.get("client") or ("", 0)
        server = scope.get("server") or ("", 0)
        request = WebRequest(
            scope["method"],
            raw_path.split("?", 1)[0],
            scope.get("query_string", b"").decode("latin-1"),
            [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]],
            body,
            str(client[0]),
            scope.get("scheme", "http"),
            scope.get("http_version", "1.1"),
            int(server[1] or 0),
        )
        return await front.serve(claim, request)

    def _page(self, path: str) -> Streamer | None:
        return self.pages.get(path.split("/", 2)[1]) if self.pages else None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    for hook in self.on_startup:
                        await hook()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in self.on_shutdown:
                    try:
                        await hook()
                    except Exception:
                        log.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _internal(
        self, request: HttpRequest, receive: Receive
    ) -> HttpResponse | AsyncIterator[bytes]:
        prefix = request.path[len("/_lamina/") :].split("/", 1)[0]
        handler = self.internal.get(prefix)
        if handler is None:
            return HttpResponse(
                404, b'{"message":"Not found"}', {"Content-Type": "application/json"}
            )
        request.body = (await _read_body(receive, DEFAULT_BODY_LIMIT))[0]
        if self.authenticator is not None and prefix not in self.public:
            refused = self._internal_caller(request)
            if refused is not None:
                return refused
        return await handler(request)

    def _internal_caller(self, request: HttpRequest) -> HttpResponse | None:
        """Who reads Lamina's own endpoints, checked as a Lambda request is: with auth on,
        a SigV4 signature (header or presigned) of the account whose data it reads, and
        nobody reads another account's; with auth off, the `account` parameter or the
        access key id names it. None when let in, else the error to answer."""
        assert self.authenticator is not None
        lam = next((m for m in self.mounted if m.service.name == "lambda"), self.mounted[0])
        try:
            caller = self.authenticator.check(
                request.method,
                request.path,
                request.raw_query,
                request.headers,
                request.body,
                lam.signing_name,
            )
        except AuthFailure as failure:
            return PROTOCOLS["rest-json"].serialize_error(
                lam.service, auth_error(lam.service, failure)
            )
        asked = (request.query.get("account") or [""])[0]
        if self.authenticator.mode == "on":
            if asked and asked != caller.account:
                denied = AwsError(
                    "AccessDeniedException",
                    f"User: {caller.principal} is not authorized to read account {asked}'s "
                    f"{request.path}",
                    403,
                )
                return PROTOCOLS["rest-json"].serialize_error(lam.service, denied)
            request.account, request.verified = caller.account, True
        else:
            request.account = asked or caller.account
        return None

    async def _service(
        self, request: HttpRequest, scope: Scope, receive: Receive
    ) -> HttpResponse | StreamingResponse:
        request_id = new_request_id()
        current_request_id.set(request_id)
        trace_header = request.headers.get("x-amzn-trace-id")
        if trace_header is not None:
            incoming_header.set(trace_header)  # an invocation continues the caller's trace
        response = await self._answer(request, scope, receive, request_id)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    async def _answer(
        self, request: HttpRequest, scope: Scope, receive: Receive, request_id: str
    ) -> HttpResponse | StreamingResponse:
        prefetched = None
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            # The query protocol names its operation in the body: read it before routing.
            prefetched = await _read_body(receive, DEFAULT_BODY_LIMIT)
            request.body = prefetched[0]
        found = self._route(request)
        if found is None:
            if prefetched is None:
                await _read_body(receive, 0)
            error = AwsError(
                "UnknownOperationException",
                f"No operation matches {request.method} {request.path}",
                404,
            )
            return PROTOCOLS["rest-json"].serialize_error(self.mounted[0].service, error)
        mounted, protocol, operation, match = found
        try:
            limit, code = BODY_LIMITS.get(
                operation.name, (DEFAULT_BODY_LIMIT, "RequestTooLargeException")
            )
            if prefetched is not None:
                body, complete = prefetched[0], prefetched[1] and len(prefetched[0]) <= limit
            else:
                body, complete = await _read_body(receive, limit)
            if not complete:
                label = OPERATION_LABELS.get(operation.name, operation.name)
                raise AwsError(
                    code,
                    f"Request must be smaller than {limit} bytes for the {label} operation",
                    413,
                )
            request.body = body
            caller = self._caller(mounted, request)
            handler = getattr(mounted.provider, operation.name, None)
            if handler is None:
                raise not_implemented(mounted.service.model.service_id.hyphenize(), operation.name)
            params = protocol.parse(mounted.service, operation, match, request)
            if operation.input_shape is not None:
                validate(operation.input_shape, params, mounted.service.extra_constraints)
            context = self._context(request, scope, request_id, caller)
            result = await handler(context, params)
            if isinstance(result, EventStreamResult):
                return _event_stream(protocol.serialize(mounted.service, operation, result.fields),
                                     operation, result)  # fmt: skip
            return protocol.serialize(mounted.service, operation, result or {})
        except AwsError as error:
            return protocol.serialize_error(mounted.service, error)
        except Exception:
            log.exception("%s failed", operation.name)
            internal = AwsError("ServiceException", "An internal error occurred in Lamina.", 500)
            return protocol.serialize_error(mounted.service, internal)

    def _route(self, request: HttpRequest) -> tuple[Mounted, WireProtocol, Any, Any] | None:
        for mounted in self.mounted:
            for protocol in mounted.protocols:
                found = protocol.route(mounted.service, request)
                if found is not None:
                    return mounted, protocol, found[0], found[1]
        return None

    def _caller(self, mounted: Mounted, request: HttpRequest) -> Caller | None:
        """The verified (or, with auth off, named) caller; an AWS error of the service's
        own family when the request is not let in."""
        if self.authenticator is None:
            return None
        try:
            return self.authenticator.check(
                request.method,
                request.path,
                request.raw_query,
                request.headers,
                request.body,
                mounted.signing_name,
            )
        except AuthFailure as failure:
            raise auth_error(mounted.service, failure) from None

    @staticmethod
    def _context(
        request: HttpRequest, scope: Scope, request_id: str, caller: Caller | None
    ) -> RequestContext:
        scheme = scope.get("scheme", "http")
        host = request.headers.get("host") or "{}:{}".format(
            *scope.get("server", ("127.0.0.1", 80))
        )
        if caller is not None:
            return RequestContext(
                caller.account, caller.region, request_id, f"{scheme}://{host}", caller.principal
            )
        region = DEFAULT_REGION
        found = CREDENTIAL_REGION.search(request.headers.get("authorization", ""))
        if found:
            region = found.group(1)
        return RequestContext(DEFAULT_ACCOUNT, region, request_id, f"{scheme}://{host}")


def _event_stream(
    head: HttpResponse, operation: Any, result: EventStreamResult
) -> StreamingResponse:
    """The output's other members first (status, headers), then its event stream, each
    event encoded as it comes."""
    output = operation.output_shape
    stream_shape = output.members[output.serialization["payload"]]

    async def encoded() -> AsyncIterator[bytes]:
        async for item in result.events:
            yield eventstream.event(stream_shape, item.name, item.members)

    headers = {k: v for k, v in head.headers.items() if k.lower() != "content-length"}
    return StreamingResponse(head.status, headers, encoded())


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Read the whole body, keeping at most `limit` bytes; False if it was longer."""
    chunks: list[bytes] = []
    size = 0
    complete = True
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            complete = False
            chunks.clear()
        elif complete:
            chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks), complete


async def _send(
    send: Send,
    receive: Receive,
    response: HttpResponse | StreamingResponse | WebResponse | AsyncIterator[bytes],
) -> None:
    pairs: list[tuple[str, str]]
    body: bytes | AsyncIterator[bytes]
    if isinstance(response, WebResponse):
        status, pairs, body = response.status, response.headers, response.body
    elif isinstance(response, HttpResponse | StreamingResponse):
        status, pairs, body = response.status, list(response.headers.items()), response.body
    else:
        status, pairs, body = 200, [("content-type", "text/plain; charset=utf-8")], response
    head = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    if isinstance(body, bytes):
        if not any(k.lower() == "content-length" for k, _ in pairs):
            head.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": status, "headers": head})
    # A followed stream may wait for ever: stop when the client goes away.
    disconnected = asyncio.ensure_future(_disconnect(receive))
    chunks = aiter(body)
    try:
        while True:
            following = asyncio.ensure_future(anext(chunks))
            await asyncio.wait({following, disconnected}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                return
            try:
                chunk = following.result()
            except StopAsyncIteration:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        disconnected.cancel()
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass

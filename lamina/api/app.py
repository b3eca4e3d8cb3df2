"""The gateway: one endpoint for every service, routed by the service models.

HTTP stays here. A request is matched to a service and operation, parsed and validated
against the model, handed to the operation as plain values, and the result or error is
serialized back. Lamina's own endpoints live under /_lamina/.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lamina.api import eventstream
from lamina.api.auth import Authenticator, AuthFailure, Caller, auth_error, signing_name
from lamina.api.bindings import Endpoint, endpoint
from lamina.api.front import Claim, FrontDoor
from lamina.api.http import Body, Disconnected
from lamina.api.protocols import PROTOCOLS, WireProtocol
from lamina.api.spec import Service
from lamina.api.wire import HttpRequest, HttpResponse, StreamingResponse, current_request_id
from lamina.config import DEFAULT_ACCOUNT, DEFAULT_REGION
from lamina.context import EventStreamResult, RequestContext
from lamina.errors import AwsError, not_implemented, store_unavailable, validation_error
from lamina.observe.traces import incoming_header
from lamina.store.database import StoreUnavailable
from lamina.web.payload import new_request_id
from lamina.web.request import PAYLOAD_LIMIT, WebRequest, WebResponse

log = logging.getLogger("lamina.api")

Response = HttpResponse | StreamingResponse | WebResponse | AsyncIterator[bytes]
Streamer = Callable[[HttpRequest], Awaitable[HttpResponse | AsyncIterator[bytes]]]

CREDENTIAL_REGION = re.compile(r"Credential=[^/]*/[^/]*/([^/]+)/")
DEFAULT_BODY_LIMIT = 70_167_211
# Request size limits per operation: (bytes, error code, status).
BODY_LIMITS: dict[str, tuple[int, str]] = {
    "Invoke": (6_291_456, "RequestTooLargeException"),
    "CreateFunction": (70_167_211, "RequestEntityTooLargeException"),
    "UpdateFunctionCode": (70_167_211, "RequestEntityTooLargeException"),
    "PutObject": (70_167_211, "EntityTooLarge"),
    "UploadPart": (70_167_211, "EntityTooLarge"),
}
OPERATION_LABELS = {"Invoke": "InvokeFunction"}
# Operations AWS lets in unsigned: the token or the ARN in the link an endpoint was sent
# is the credential (SNS's SubscribeURL and UnsubscribeURL). Their caller's account is "".
ANONYMOUS = frozenset({("sns", "ConfirmSubscription"), ("sns", "Unsubscribe")})
LARGE_BODY = 8 * 1024 * 1024  # bodies past this are parsed one at a time, off the loop
FORM = "application/x-www-form-urlencoded"
INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"


@dataclass
class Mounted:
    service: Service
    provider: object
    # Every protocol of the model Lamina speaks (CloudWatch: json for new clients, query
    # for older ones), in the model's order of preference.
    protocols: tuple[WireProtocol, ...] = ()
    signing_name: str = ""  # the service in a SigV4 credential scope (CloudWatch: monitoring)
    # A service whose requests are told apart before routing (S3: by its host names and
    # its signature scope): it routes only those, and no other service sees them.
    claims: Callable[[HttpRequest], bool] | None = None


class Gateway:
    """Routes HTTP requests to the providers of the mounted services."""

    def __init__(self, authenticator: Authenticator | None = None) -> None:
        # Who is calling, for every service (None: no check, every caller the default
        # account, the region from the credential scope).
        self.authenticator = authenticator
        self.mounted: list[Mounted] = []
        self.endpoints: dict[tuple[int, int, str], Endpoint] = {}
        self.invoke: Endpoint | None = None  # the direct route's
        self._large = asyncio.Semaphore(1)
        self.internal: dict[str, Streamer] = {}
        self.public: set[str] = set()  # internal prefixes that check their callers themselves
        self.pages: dict[str, Streamer] = {}
        self.public_pages: set[str] = set()
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self.on_shutdown: list[Callable[[], Awaitable[None]]] = []
        self.front: FrontDoor | None = None  # function URLs and HTTP APIs

    def mount(
        self,
        service: Service,
        provider: object,
        claims: Callable[[HttpRequest], bool] | None = None,
    ) -> None:
        names = service.model.metadata.get("protocols") or [service.protocol]
        protocols = tuple(PROTOCOLS[name] for name in names if name in PROTOCOLS)
        mounted = Mounted(service, provider, protocols, signing_name(service), claims)
        self.mounted.append(mounted)
        if service.name == "lambda" and self.invoke is None:
            self.invoke = self._endpoint(
                mounted, PROTOCOLS["rest-json"], service.model.operation_model("Invoke")
            )

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

    # HTTP (lamina/api/http.py) ----------------------------------------------------------
    def handle(self, request: HttpRequest, body: Body) -> Awaitable[Response]:
        """The answer to one request. Not a coroutine of its own: it hands back the one
        that answers (a frame fewer on every request's way in and out)."""
        path = request.path
        if self.front is not None:
            claim = self.front.claim(request.headers.get("host", ""), path)
            if claim is not None:
                return self._front(self.front, claim, request, body)
        if path.startswith("/_lamina/"):
            return self._internal(request, body)
        if request.method in ("GET", "HEAD") and (page := self._page(path)) is not None:
            return self._serve_page(page, path, request, body)
        return self._service(request, body)

    async def _serve_page(
        self, page: Streamer, path: str, request: HttpRequest, body: Body
    ) -> HttpResponse | AsyncIterator[bytes]:
        await body.read(0)
        prefix = path.split("/", 2)[1]
        if self.authenticator is not None and prefix not in self.public_pages:
            refused = self._internal_caller(request)
            if refused is not None:
                return refused
        return await page(request)

    async def startup(self) -> None:
        for hook in self.on_startup:
            await hook()

    async def shutdown(self) -> None:
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")

    @staticmethod
    async def _front(
        front: FrontDoor, claim: Claim, request: HttpRequest, reader: Body
    ) -> WebResponse:
        """A request to a function URL or an HTTP API, as its handler sees it."""
        body, complete = await reader.read(PAYLOAD_LIMIT)
        if not complete:
            return claim.handler.too_large()
        web = WebRequest(
            request.method,
            request.path,
            request.raw_query,
            [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.raw_headers],
            body,
            request.client,
            "http",
            request.http_version,
            int(request.local.rsplit(":", 1)[-1] or 0) if request.local else 0,
        )
        return await front.serve(claim, web)

    def _page(self, path: str) -> Streamer | None:
        return self.pages.get(path.split("/", 2)[1]) if self.pages else None

    async def _internal(
        self, request: HttpRequest, body: Body
    ) -> HttpResponse | AsyncIterator[bytes]:
        prefix = request.path[len("/_lamina/") :].split("/", 1)[0]
        handler = self.internal.get(prefix)
        if handler is None:
            return HttpResponse(
                404, b'{"message":"Not found"}', {"Content-Type": "application/json"}
            )
        request.body = (await body.read(DEFAULT_BODY_LIMIT))[0]
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

    async def _service(self, request: HttpRequest, body: Body) -> HttpResponse | StreamingResponse:
        request_id = new_request_id()
        current_request_id.set(request_id)
        trace_header = request.headers.get("x-amzn-trace-id")
        if trace_header is not None:
            incoming_header.set(trace_header)  # an invocation continues the caller's trace
        form = request.headers.get("content-type", "").startswith(FORM)
        direct = None if form else self._direct(request)
        if direct is not None:  # Invoke, the hot path: its body is never large (6 MB)
            response = await self._call(*direct, request, body, None, request_id, False)
        else:
            response = await self._answer(request, body, request_id, form)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    async def _answer(
        self, request: HttpRequest, reader: Body, request_id: str, form: bool
    ) -> HttpResponse | StreamingResponse:
        prefetched = None
        if form:
            # The query protocol names its operation in the body: read it before routing.
            prefetched = await reader.read(DEFAULT_BODY_LIMIT)
            request.body = prefetched[0]
        found = self._direct(request) or self._route(request)
        if found is None:
            if prefetched is None:
                await reader.read(0)
            claimed = next((m for m in self.mounted if m.claims and m.claims(request)), None)
            if claimed is not None and claimed.protocols:  # S3's: in its own words
                refused = AwsError(
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                    405,
                    fields={"Method": request.method, "ResourceType": "OBJECT"},
                )
                return claimed.protocols[0].serialize_error(claimed.service, refused)
            error = AwsError(
                "UnknownOperationException",
                f"No operation matches {request.method} {request.path}",
                404,
            )
            return PROTOCOLS["rest-json"].serialize_error(self.mounted[0].service, error)
        endpoint, match = found
        if prefetched is None and endpoint.limit > LARGE_BODY and _maybe_large(request):
            # One large body at a time is read into memory and parsed (off the loop): eight
            # uploads of 70 MB cost what one does, and the loop keeps answering others.
            async with self._large:
                return await self._call(endpoint, match, request, reader, None, request_id, True)
        return await self._call(endpoint, match, request, reader, prefetched, request_id, False)

    async def _call(
        self,
        endpoint: Endpoint,
        match: Any,
        request: HttpRequest,
        reader: Body,
        prefetched: tuple[bytes, bool] | None,
        request_id: str,
        large: bool,
    ) -> HttpResponse | StreamingResponse:
        try:
            limit = endpoint.limit
            if prefetched is not None:
                body, complete = prefetched[0], prefetched[1] and len(prefetched[0]) <= limit
            else:
                body, complete = await reader.read(limit)
            if not complete:
                raise AwsError(
                    endpoint.limit_code,
                    f"Request must be smaller than {limit} bytes for the {endpoint.label} "
                    "operation",
                    413,
                )
            request.body = body
            caller = self._caller(endpoint, request)
            handler = endpoint.handler
            if handler is None:
                service_id = endpoint.service.model.service_id.hyphenize()
                raise not_implemented(service_id, endpoint.operation.name)
            if large:
                params = await asyncio.to_thread(endpoint.parse, match, request)
                request.body = body = b""
            else:
                params = endpoint.parse(match, request)
            if endpoint.check is not None:
                problems: list[str] = []
                endpoint.check(params, "", problems)
                if problems:
                    raise validation_error(problems)
            context = self._context(request, request_id, caller)
            result = await handler(context, params)
            if isinstance(result, EventStreamResult):
                return _event_stream(endpoint.serialize(result.fields), endpoint.operation, result)
            return endpoint.serialize(result or {})
        except AwsError as error:
            return endpoint.protocol.serialize_error(endpoint.service, error)
        except Disconnected:
            raise
        except StoreUnavailable as error:
            # Nothing was acknowledged that is not durable: the caller retries later.
            log.warning("%s refused: %s", endpoint.operation.name, error)
            return endpoint.protocol.serialize_error(endpoint.service, store_unavailable())
        except Exception:
            log.exception("%s failed", endpoint.operation.name)
            internal = AwsError("ServiceException", "An internal error occurred in Lamina.", 500)
            return endpoint.protocol.serialize_error(endpoint.service, internal)

    def _direct(self, request: HttpRequest) -> tuple[Endpoint, Any] | None:
        """Invoke, the hot path, found without trying every route: the same operation and
        labels the model's route gives (POST /2015-03-31/functions/{FunctionName}/invocations)."""
        path = request.path
        if (
            request.method == "POST"
            and path.startswith(INVOKE_PREFIX)
            and path.endswith(INVOKE_SUFFIX)
            and self.invoke is not None
        ):
            name = path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)]
            if name and "/" not in name:
                return self.invoke, {"FunctionName": name}
        return None

    def _route(self, request: HttpRequest) -> tuple[Endpoint, Any] | None:
        claimed = next(
            (m for m in self.mounted if m.claims is not None and m.claims(request)), None
        )
        for mounted in (claimed,) if claimed is not None else self.mounted:
            if mounted.claims is not None and claimed is None:
                continue
            for protocol in mounted.protocols:
                found = protocol.route(mounted.service, request)
                if found is not None:
                    return self._endpoint(mounted, protocol, found[0]), found[1]
        return None

    def _endpoint(self, mounted: Mounted, protocol: WireProtocol, operation: Any) -> Endpoint:
        key = (id(mounted), id(protocol), operation.name)
        found = self.endpoints.get(key)
        if found is None:
            limit = BODY_LIMITS.get(
                operation.name, (DEFAULT_BODY_LIMIT, "RequestTooLargeException")
            )
            label = OPERATION_LABELS.get(operation.name, operation.name)
            found = endpoint(
                mounted.service,
                protocol,
                operation,
                mounted.provider,
                limit,
                label,
                mounted.signing_name,
            )
            self.endpoints[key] = found
        return found

    def _caller(self, endpoint: Endpoint, request: HttpRequest) -> Caller | None:
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
                endpoint.signing_name,
            )
        except AuthFailure as failure:
            if failure.kind == "missing" and (
                (endpoint.service.name, endpoint.operation.name) in ANONYMOUS
            ):
                return Caller("", "anonymous", DEFAULT_REGION)
            raise auth_error(endpoint.service, failure) from None

    @staticmethod
    def _context(request: HttpRequest, request_id: str, caller: Caller | None) -> RequestContext:
        host = request.headers.get("host") or request.local
        if caller is not None:
            return RequestContext(
                caller.account,
                caller.region,
                request_id,
                f"http://{host}",
                caller.principal,
                request.client,
            )
        region = DEFAULT_REGION
        found = CREDENTIAL_REGION.search(request.headers.get("authorization", ""))
        if found:
            region = found.group(1)
        return RequestContext(
            DEFAULT_ACCOUNT, region, request_id, f"http://{host}", client=request.client
        )


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


def _maybe_large(request: HttpRequest) -> bool:
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        return "chunked" in request.headers.get("transfer-encoding", "")
    return int(length) > LARGE_BODY

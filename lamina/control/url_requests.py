"""A request to a function URL, from the front door to the function and back.

In order: the URL (an unknown id is AWS's 403), who may call it (UrlGuard: AWS_IAM wants
a SigV4 signature; both auth types need the function's resource policy to let the caller
in), CORS (a preflight is answered here, without invoking), the payload format 2.0 event,
one invocation through the engine (leases, metrics, logs, a trace continuing the
request's X-Amzn-Trace-Id), and the answer: the function's response mapped to HTTP,
streamed as it is written in RESPONSE_STREAM mode, or AWS's error for a function error
(502), a throttle (429) or a timeout (504).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from lamina.clock import Clock
from lamina.control.functions import FunctionRef, Target
from lamina.control.http_invoke import HttpInvoker
from lamina.control.urls import FunctionUrls, url_host
from lamina.store.urls import UrlConfig
from lamina.web import cors
from lamina.web.invoke import Outcome, Result
from lamina.web.payload import (
    BadResponse,
    EventContext,
    event_v2,
    forwarded,
    new_request_id,
    new_trace_header,
    response_v2,
)
from lamina.web.prelude import streamed_answer
from lamina.web.request import PAYLOAD_LIMIT, WebRequest, WebResponse, json_answer

log = logging.getLogger("lamina.urls")

FORBIDDEN = (
    b'{"Message":"Forbidden. For troubleshooting Function URL authorization issues, see: '
    b'https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"}'
)
TOO_LARGE = (
    f'{{"Message":"Request must be smaller than {PAYLOAD_LIMIT} bytes for the '
    'InvokeFunction operation"}'
).encode()


class Denied(Exception):
    """The caller may not invoke this URL; the message says why (logged, never sent)."""


class UrlGuard(Protocol):
    def admit(
        self, config: UrlConfig, request: WebRequest, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The event's `requestContext.authorizer` (AWS_IAM: the caller's identity; None
        for NONE), or raise Denied. `record`: the function's (its policies)."""
        ...


def forbidden() -> WebResponse:
    return json_answer(403, FORBIDDEN, [("x-amzn-ErrorType", "AccessDeniedException")])


def error_answer(outcome: Outcome) -> WebResponse:
    """AWS's answers when the function did not answer."""
    if outcome.result is Result.THROTTLED:
        return json_answer(
            429,
            b'{"Message":"Rate Exceeded."}',
            [
                ("x-amzn-ErrorType", "TooManyRequestsException"),
                ("Retry-After", str(max(1, round(outcome.retry_after)))),
            ],
        )
    if outcome.result is Result.TIMEOUT:
        return json_answer(504, b'{"Message":"Endpoint request timed out"}')
    if outcome.result in (Result.MISSING, Result.DENIED):
        return forbidden()
    return WebResponse(502, [("Content-Type", "application/json")], b"Internal Server Error")


class UrlRequests:
    def __init__(
        self, urls: FunctionUrls, invoker: HttpInvoker, guard: UrlGuard, clock: Clock
    ) -> None:
        self.urls = urls
        self.invoker = invoker
        self.guard = guard
        self.clock = clock

    def too_large(self) -> WebResponse:
        return json_answer(413, TOO_LARGE)

    async def serve(self, url_id: str, request: WebRequest, raw_path: str) -> WebResponse:
        request_id = new_request_id()
        config = self.urls.get(url_id)
        if config is None:
            return forbidden()
        rules = cors.CorsRules.of(config.cors)
        if rules is not None and cors.is_preflight(request):
            return cors.preflight(rules, request)
        ref = FunctionRef(config.key, config.qualifier or None)
        target = self.invoker.target(ref)  # the one read of the function's record
        try:
            if target is None:
                raise Denied("its function (or alias) is gone")
            authorizer = self.guard.admit(config, request, target.record)
        except Denied as denied:
            log.warning("function URL %s (%s): %s", config.url_id, config.key.arn, denied)
            return forbidden()
        response = await self._invoke(config, request, raw_path, request_id, authorizer, target)
        if rules is not None:
            cors.decorate(rules, request, response)
        response.headers.append(("x-amzn-RequestId", request_id))
        return response

    async def _invoke(
        self,
        config: UrlConfig,
        request: WebRequest,
        raw_path: str,
        request_id: str,
        authorizer: dict[str, Any] | None,
        target: Target,
    ) -> WebResponse:
        now = self.clock.wall()
        trace = request.header("x-amzn-trace-id") or new_trace_header(now)
        seen = forwarded(request, trace)
        context = EventContext(
            account=config.key.account,
            api_id=config.url_id,
            domain_name=url_host(config),
            domain_prefix=config.url_id,
            request_id=request_id,
            epoch=now,
            authorizer={"iam": authorizer} if authorizer is not None else None,
        )
        event = event_v2(seen, raw_path, context, url=True)
        payload = json.dumps(event, separators=(",", ":")).encode()  # compact
        if len(payload) > PAYLOAD_LIMIT:
            return json_answer(413, TOO_LARGE)
        ref = FunctionRef(config.key, config.qualifier or None)
        streaming = config.invoke_mode == "RESPONSE_STREAM"
        outcome = await self.invoker.run(
            ref, payload, request_id, trace, stream=streaming, target=target
        )
        try:
            if outcome.result is not Result.OK:
                response = error_answer(outcome)
            elif outcome.chunks is not None:
                response = await streamed_answer(outcome.content_type, outcome.chunks)
            else:
                response = response_v2(outcome.payload, unquote_strings=False)
        except BadResponse as bad:
            log.warning("function URL %s: %s", config.url_id, bad)
            response = error_answer(Outcome(Result.FUNCTION_ERROR))
        response.headers.append(("X-Amzn-Trace-Id", trace))
        return response

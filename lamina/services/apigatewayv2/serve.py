"""Requests to an HTTP API: `http://<api-id>.execute-api.localhost:<port>/[<stage>/]<path>`
(or `/_lamina/api/<api-id>/...` on the same port).

The stage is the path's first segment when a stage of that name exists, else `$default`;
the route is chosen as API Gateway chooses it (apis.py); its AWS_PROXY integration gets
the request as a payload format 1.0 or 2.0 event (path parameters, stage variables, which
the integration URI may also use: `${stageVariables.fn}`) and its answer is mapped back.
Lambda is reached only through FunctionInvoker, as the service `apigateway.amazonaws.com`
with the route's execute-api ARN as source: the function's resource policy must allow it.

AWS's answers: no stage or route, 404 `{"message":"Not Found"}`; anything that keeps the
function from answering well (its error, a throttle, a denied permission, a malformed
response), 500 `{"message":"Internal Server Error"}`; past the integration's timeout
(30 s by default), 503 `{"message":"Service Unavailable"}`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import uuid
from typing import Any

from lamina.clock import Clock
from lamina.services.apigatewayv2.apis import (
    DEFAULT,
    parse_route_key,
    select_route,
    select_stage,
    served,
)
from lamina.services.apigatewayv2.provider import api_host
from lamina.services.apigatewayv2.store import ApiStore
from lamina.web import cors
from lamina.web.invoke import FunctionInvoker, Outcome, Result
from lamina.web.payload import (
    BadResponse,
    EventContext,
    event_v1,
    event_v2,
    forwarded,
    new_trace_header,
    response_v1,
    response_v2,
)
from lamina.web.request import PAYLOAD_LIMIT, WebRequest, WebResponse, json_answer

log = logging.getLogger("lamina.apigateway")

SERVICE = "apigateway.amazonaws.com"
STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
NOT_FOUND = b'{"message":"Not Found"}'
INTERNAL = b'{"message":"Internal Server Error"}'
UNAVAILABLE = b'{"message":"Service Unavailable"}'
TOO_LARGE = b'{"message":"Request Entity Too Large"}'


def api_request_id() -> str:
    """An id in the shape of API Gateway's (`JHK4kj0eIAMEVgQ=`)."""
    return base64.b64encode(secrets.token_bytes(11)).decode()


class ApiRequests:
    def __init__(self, store: ApiStore, invoker: FunctionInvoker, clock: Clock) -> None:
        self.store = store
        self.invoker = invoker
        self.clock = clock
        # Invocations still running after their integration timed out: owned until done.
        self.running: set[asyncio.Task[Outcome]] = set()

    def too_large(self) -> WebResponse:
        return json_answer(413, TOO_LARGE)

    async def serve(self, api_id: str, request: WebRequest, path: str) -> WebResponse:
        api = self.store.apis.get(api_id)
        if api is None or api.get("DisableExecuteApiEndpoint"):
            return json_answer(404, NOT_FOUND)
        rules = cors.CorsRules.of(api.get("CorsConfiguration"))
        if rules is not None and cors.is_preflight(request):
            return cors.preflight(rules, request)
        response = await self._route(api, request, path)
        if rules is not None:
            cors.decorate(rules, request, response)
        return response

    async def _route(self, api: dict[str, Any], request: WebRequest, path: str) -> WebResponse:
        request_id = api_request_id()
        headers = [("apigw-requestid", request_id)]
        selected = select_stage(api, path)
        config = served(api, selected[0]) if selected is not None else None
        if selected is None or config is None:
            return json_answer(404, NOT_FOUND, headers)
        stage, inner = selected
        found = select_route(config["routes"], request.method, inner)
        target = (found[0].get("Target") or "") if found is not None else ""
        integration = config["integrations"].get(target.partition("/")[2])
        if found is None or integration is None:
            return json_answer(404, NOT_FOUND, headers)
        route, parameters = found
        key = parse_route_key(route["RouteKey"])
        now = self.clock.wall()
        trace = request.header("x-amzn-trace-id") or new_trace_header(now)
        variables = stage.get("StageVariables") or {}
        context = EventContext(
            account=api["account"],
            api_id=api["ApiId"],
            domain_name=api_host(api["ApiId"]),
            domain_prefix=api["ApiId"],
            request_id=request_id,
            epoch=now,
            route_key=route["RouteKey"],
            stage=stage["StageName"],
            resource=key.path or DEFAULT,
            path_parameters=parameters or None,
            stage_variables=variables or None,
        )
        seen = forwarded(request, trace)
        version = integration.get("PayloadFormatVersion", "1.0")
        event = (
            event_v2(seen, path, context, url=False)
            if version == "2.0"
            else event_v1(seen, path, context)
        )
        payload = json.dumps(event, separators=(",", ":")).encode()
        if len(payload) > PAYLOAD_LIMIT:
            return json_answer(413, TOO_LARGE, headers)
        uri = STAGE_VARIABLE.sub(
            lambda m: variables.get(m.group(1), ""), integration["IntegrationUri"]
        )
        method = request.method if key.method in ("ANY", "") else key.method
        resource = f"{method}{key.path}" if key.method else DEFAULT
        source = (
            f"arn:aws:execute-api:{api['region']}:{api['account']}:{api['ApiId']}/"
            f"{stage['StageName']}/{resource}"
        )
        outcome = await self._invoke(
            uri, payload, source, api["account"], trace, integration.get("TimeoutInMillis")
        )
        if outcome is None:
            return json_answer(503, UNAVAILABLE, headers)
        try:
            if outcome.result is not Result.OK:
                raise BadResponse(f"the invocation ended with {outcome.result.value}")
            if version == "2.0":
                response = response_v2(outcome.payload, unquote_strings=True)
            else:
                response = response_v1(outcome.payload)
        except BadResponse as bad:
            log.warning("HTTP API %s route %s: %s", api["ApiId"], route["RouteKey"], bad)
            return json_answer(500, INTERNAL, headers)
        response.headers.extend(headers)
        return response

    async def _invoke(
        self,
        uri: str,
        payload: bytes,
        source_arn: str,
        account: str,
        trace: str,
        timeout_ms: int | None,
    ) -> Outcome | None:
        """The outcome, or None past the integration's timeout (the invocation runs on)."""
        task = asyncio.ensure_future(
            self.invoker.invoke_as_service(
                uri,
                payload,
                service=SERVICE,
                source_arn=source_arn,
                source_account=account,
                request_id=str(uuid.uuid4()),
                trace_header=trace,
            )
        )
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        done, _ = await asyncio.wait({task}, timeout=(timeout_ms or 30000) / 1000)
        if not done:
            return None
        return task.result()

    async def close(self) -> None:
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

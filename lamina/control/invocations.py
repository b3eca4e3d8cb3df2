"""The Invoke operation: checks the request, resolves the function, asks the engine."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import random
from typing import Any, Protocol

from lamina.context import EventStreamResult, RequestContext
from lamina.control.functions import LATEST, FunctionRef, Functions, Target, resolve
from lamina.control.streaming import ResponseStream, StreamedInvocations
from lamina.engine.async_queue import AsyncQueue
from lamina.engine.counting import counts_unreachable
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.service import CountsUnreachable, Engine, Throttled
from lamina.errors import AwsError
from lamina.keys import FunctionKey
from lamina.sandbox.launch import FunctionImage

ASYNC_PAYLOAD_LIMIT = 262_144  # 256 KB


def bad_content(message: str) -> AwsError:
    return AwsError("InvalidRequestContentException", message, 400, user=True)


def check_payload(payload: bytes) -> bytes:
    if not payload.strip():
        return b"{}"
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise bad_content(
            f"Could not parse request body into json: Could not parse payload into json: {exc}"
        ) from exc
    return payload


def weighted_version(record: dict[str, Any], alias: str) -> str:
    """The version an invocation of `alias` runs: its routing weights decide."""
    config = record["aliases"][alias]
    weights = (config.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    draw = random.random()
    for version, weight in weights.items():
        if draw < weight:
            return str(version)
        draw -= weight
    return str(config["FunctionVersion"])


def too_many_requests(throttled: Throttled) -> AwsError:
    """AWS's 429: the reason says which limit; Retry-After is whole seconds, at least 1."""
    return AwsError(
        "TooManyRequestsException",
        "Rate Exceeded.",
        429,
        user=True,
        fields={
            "Reason": throttled.reason.value,
            "retryAfterSeconds": str(max(1, math.ceil(throttled.retry_after))),
        },
    )


def check_tenant(config: dict[str, Any], tenant: str | None) -> str | None:
    """A function in tenant isolation mode needs a TenantId; any other refuses one."""
    isolated = (config.get("TenancyConfig") or {}).get("TenantIsolationMode") == "PER_TENANT"
    if isolated and not tenant:
        raise AwsError(
            "InvalidParameterValueException",
            "The invoked function is enabled with tenancy configuration. Add a valid tenant ID "
            "in your request and try again.",
            400,
            user=True,
        )
    if tenant and not isolated:
        raise AwsError(
            "InvalidParameterValueException",
            "The invoked function is not enabled with tenancy configuration. Remove the tenant "
            "ID from your request and try again.",
            400,
            user=True,
        )
    return tenant or None


def decode_client_context(encoded: str | None) -> str | None:
    """The header is base64 of a JSON object; the runtime gets the JSON itself."""
    if encoded is None:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
        if not isinstance(json.loads(decoded), dict):
            raise ValueError("not an object")
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise bad_content("Client context must be a valid Base64-encoded JSON object.") from None
    return decoded


def _read_stream(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return bytes(value.read()) if hasattr(value, "read") else str(value).encode()


class DurableInvoker(Protocol):
    """Starts executions of durable functions (control.durable.api.DurableApi)."""

    async def invoke(
        self,
        ctx: RequestContext,
        ref: FunctionRef,
        target: Target,
        kind: str,
        payload: bytes,
        name: str | None,
    ) -> dict[str, Any]: ...


class Invocations:
    def __init__(
        self,
        functions: Functions,
        engine: Engine,
        async_queue: AsyncQueue,
        durable: DurableInvoker | None = None,
    ) -> None:
        self.functions = functions
        self.engine = engine
        self.async_queue = async_queue
        self.streamed = StreamedInvocations()
        self.durable = durable  # invocations of functions with a DurableConfig

    def image(self, key: FunctionKey, record: dict[str, Any]) -> FunctionImage:
        return self.functions.image(key, record)

    async def enqueue(
        self, ref: FunctionRef, request_id: str, payload: bytes, tenant: str | None = None
    ) -> None:
        """Accept an asynchronous invocation: returns once the event is on disk (with the
        tenant it runs for, in tenant isolation mode)."""
        if len(payload) > ASYNC_PAYLOAD_LIMIT:
            raise AwsError(
                "RequestTooLargeException",
                f"Request must be smaller than {ASYNC_PAYLOAD_LIMIT} bytes for the "
                "InvokeFunction operation",
                413,
            )
        await self.async_queue.submit(ref.key, ref.qualifier or "", request_id, payload, tenant)

    async def InvokeAsync(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The legacy asynchronous API: the same queue as InvocationType Event."""
        ref = resolve(ctx, params["FunctionName"])
        check_tenant(self.functions.target(ref).config, None)  # it cannot name a tenant
        payload = check_payload(_read_stream(params.get("InvokeArgs")))
        await self.enqueue(ref, ctx.request_id, payload)
        return {"Status": 202}

    async def Invoke(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref, target, payload, client_context = self._prepare(ctx, params)
        kind = params.get("InvocationType") or "RequestResponse"
        if kind == "DryRun":
            return {"StatusCode": 204, "ExecutedVersion": target.version}
        if self.durable is not None and target.config.get("DurableConfig"):
            if target.alias is not None:
                target = self.functions.target(
                    FunctionRef(ref.key, weighted_version(target.record, target.alias))
                )
            return await self.durable.invoke(
                ctx, ref, target, kind, payload, params.get("DurableExecutionName")
            )
        if kind == "Event":
            await self.enqueue(ref, ctx.request_id, payload, params.get("TenantId") or None)
            return {"StatusCode": 202}
        result = await self._run(ctx, params, ref, target, payload, client_context)
        response: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": result.executed_version,
            "Payload": result.payload,
        }
        if result.function_error:
            response["FunctionError"] = result.function_error
        if result.log_tail is not None:
            response["LogResult"] = result.log_tail
        return response

    async def InvokeWithResponseStream(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any] | EventStreamResult:
        ref, target, payload, client_context = self._prepare(ctx, params)
        if (params.get("InvocationType") or "RequestResponse") == "DryRun":
            return {"StatusCode": 204, "ExecutedVersion": target.version}
        stream = ResponseStream()
        running = asyncio.ensure_future(
            self._run(ctx, params, ref, target, payload, client_context, stream)
        )
        version = target.version if target.alias is None else ""
        result = await self.streamed.respond(running, stream, version)
        if not version and running.done():
            result.fields["ExecutedVersion"] = running.result().executed_version
        return result

    def _prepare(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> tuple[FunctionRef, Target, bytes, str | None]:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        target = self.functions.target(ref)
        payload = check_payload(params.get("Payload") or b"")
        check_tenant(target.config, params.get("TenantId"))  # _run passes it on
        return ref, target, payload, decode_client_context(params.get("ClientContext"))

    async def _run(
        self,
        ctx: RequestContext,
        params: dict[str, Any],
        ref: FunctionRef,
        target: Target,
        payload: bytes,
        client_context: str | None,
        stream: ResponseStream | None = None,
    ) -> InvokeResult:
        if target.alias is not None:
            target = self.functions.target(
                FunctionRef(ref.key, weighted_version(target.record, target.alias))
            )
        try:
            return await self.engine.invoke(
                ref.key,
                self.image(ref.key, target.view),
                InvokeRequest(
                    payload=payload,
                    request_id=ctx.request_id,
                    invoked_arn=f"{ref.key.arn}:{ref.qualifier}" if ref.qualifier else ref.key.arn,
                    client_context=client_context,
                    want_tail=params.get("LogType") == "Tail",
                    stream=stream,
                    tenant_id=params.get("TenantId") or None,
                ),
                # $LATEST never has provisioned environments; a version or alias may.
                provisioned_for=ref.qualifier if target.version != LATEST else None,
            )
        except CountsUnreachable as unreachable:
            raise counts_unreachable(unreachable.message) from None
        except Throttled as throttled:
            raise too_many_requests(throttled) from None

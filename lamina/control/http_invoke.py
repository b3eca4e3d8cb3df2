"""Invocations that come in over HTTP (function URLs, API Gateway's integrations): the
same path as Invoke (resolve the alias, lease, run, release, with metrics, logs and a
trace that continues the request's), answered as an Outcome instead of an API response.

A function URL in RESPONSE_STREAM mode gets the function's chunks as it writes them,
through the same ResponseStream InvokeWithResponseStream uses (AWS's pacing included).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from lamina.context import StreamEvent
from lamina.control.functions import LATEST, FunctionRef, Functions, Target
from lamina.control.invocations import weighted_version
from lamina.control.streaming import ResponseStream, StreamedInvocations
from lamina.engine.invoker import InvokeRequest, InvokeResult
from lamina.engine.service import Engine, Throttled
from lamina.errors import AwsError
from lamina.keys import FunctionKey
from lamina.web.invoke import TIMEOUT_ERROR, Outcome, Result


class ServiceAccess(Protocol):
    """Whether a function's resource policy lets an AWS service invoke it."""

    def service_may_invoke(
        self, ref: FunctionRef, service: str, source_arn: str, source_account: str
    ) -> bool: ...


def outcome_of(result: InvokeResult) -> Outcome:
    if result.error_type == TIMEOUT_ERROR:
        return Outcome(Result.TIMEOUT, result.payload, error_type=result.error_type)
    if result.error_type is not None:
        return Outcome(Result.FUNCTION_ERROR, result.payload, error_type=result.error_type)
    return Outcome(Result.OK, result.payload)


async def _body(events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    """The chunks of a streamed response; an error midway ends the body there."""
    async for event in events:
        if event.name == "PayloadChunk":
            yield bytes(event.members["Payload"])


class HttpInvoker:
    def __init__(
        self,
        functions: Functions,
        engine: Engine,
        streamed: StreamedInvocations,
        access: ServiceAccess | None = None,
    ) -> None:
        self.functions = functions
        self.engine = engine
        self.streamed = streamed
        self.access = access

    def target(self, ref: FunctionRef) -> Target | None:
        """The version an invocation of `ref` runs (an alias's weights decide), or None."""
        try:
            target = self.functions.target(ref)
            if target.alias is not None:
                version = weighted_version(target.record, target.alias)
                target = self.functions.target(FunctionRef(ref.key, version))
        except AwsError:
            return None
        return target

    async def run(
        self,
        ref: FunctionRef,
        payload: bytes,
        request_id: str,
        trace_header: str,
        *,
        stream: bool = False,
        target: Target | None = None,
    ) -> Outcome:
        """One invocation; `target`: the version, when the caller resolved it already."""
        target = target or self.target(ref)
        if target is None:
            return Outcome(Result.MISSING)
        sink = ResponseStream() if stream else None
        request = InvokeRequest(
            payload=payload,
            request_id=request_id,
            invoked_arn=f"{ref.key.arn}:{ref.qualifier}" if ref.qualifier else ref.key.arn,
            trace_header=trace_header,
            stream=sink,
        )
        running = self.engine.invoke(
            ref.key,
            self.functions.image(ref.key, target.view),
            request,
            provisioned_for=ref.qualifier if target.version != LATEST else None,
        )
        try:
            if sink is None:
                return outcome_of(await running)
            task = asyncio.ensure_future(running)
            answer = await self.streamed.respond(task, sink, target.version)
        except Throttled as throttled:
            return Outcome(Result.THROTTLED, retry_after=throttled.retry_after)
        if not sink.streamed:  # the function answered without streaming: it is done
            await answer.events.aclose()  # type: ignore[attr-defined]
            return outcome_of(task.result())
        return Outcome(Result.OK, content_type=sink.content_type, chunks=_body(answer.events))

    async def invoke_as_service(
        self,
        function_arn: str,
        payload: bytes,
        *,
        service: str,
        source_arn: str,
        source_account: str,
        request_id: str,
        trace_header: str,
    ) -> Outcome:
        ref = self.functions_ref(function_arn)
        if ref is None or self.target(ref) is None:
            return Outcome(Result.MISSING)
        if self.access is not None and not self.access.service_may_invoke(
            ref, service, source_arn, source_account
        ):
            return Outcome(Result.DENIED)
        return await self.run(ref, payload, request_id, trace_header)

    @staticmethod
    def functions_ref(function_arn: str) -> FunctionRef | None:
        """`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]` (an
        integration's URI may also be API Gateway's invocation path around it)."""
        arn = function_arn
        if arn.startswith("arn:aws:apigateway:") and "/functions/" in arn:
            arn = arn.split("/functions/", 1)[1].split("/invocations", 1)[0]
        parts = arn.split(":")
        if len(parts) not in (7, 8) or parts[:3] != ["arn", "aws", "lambda"]:
            return None
        if parts[5] != "function":
            return None
        qualifier = parts[7] if len(parts) == 8 else None
        return FunctionRef(FunctionKey(parts[4], parts[3], parts[6]), qualifier)

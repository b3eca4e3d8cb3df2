"""How an HTTP front (a function URL, an HTTP API) asks Lambda to run a function, and what
comes back: the narrow interface services reach Lambda through (control/ implements it,
server.py wires it)."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

TIMEOUT_ERROR = "Sandbox.Timedout"


class Result(enum.Enum):
    OK = "ok"
    FUNCTION_ERROR = "function_error"  # the function failed (its error payload)
    TIMEOUT = "timeout"  # it ran past its timeout
    THROTTLED = "throttled"  # the counting service refused: nothing ran
    DENIED = "denied"  # the function's resource policy does not let the caller in
    MISSING = "missing"  # no such function (or version, alias)


@dataclass(slots=True)
class Outcome:
    result: Result
    payload: bytes = b""
    # A streamed answer (function URLs in RESPONSE_STREAM mode): its content type and the
    # chunks as the function writes them; `payload` is unused then.
    content_type: str = ""
    chunks: AsyncIterator[bytes] | None = None
    error_type: str | None = None
    retry_after: float = 0.0


class FunctionInvoker(Protocol):
    """Lambda as an AWS service calling it sees it (API Gateway's integrations)."""

    async def invoke_as_service(
        self,
        function_arn: str,
        payload: bytes,
        *,
        service: str,  # the calling service's principal: apigateway.amazonaws.com
        source_arn: str,  # the resource the call comes from (a route's execute-api ARN)
        source_account: str,
        request_id: str,
        trace_header: str,
    ) -> Outcome: ...

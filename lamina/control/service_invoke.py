"""Events other services deliver to functions (S3 notifications, SNS, EventBridge): an
asynchronous invocation on behalf of a service principal, as AWS makes it.

The function's resource policy must let the service (`s3.amazonaws.com`, ...) perform
lambda:InvokeFunction for the source resource (`aws:SourceArn`) of the source account
(`aws:SourceAccount`), as AddPermission writes it. The event then goes through the same
durable queue as an `InvocationType: Event` call: throttles, retries, event age,
dead-letter queue and destinations all apply, and AsyncEventsReceived counts it.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from lamina.control.functions import FunctionRef, Functions
from lamina.control.http_invoke import HttpInvoker, ServiceAccess
from lamina.control.invocations import ASYNC_PAYLOAD_LIMIT, Invocations
from lamina.deliveries import Delivery
from lamina.errors import AwsError, not_found


def _denied(service: str, function_arn: str) -> AwsError:
    return AwsError(
        "AccessDeniedException",
        f"The resource-based policy of {function_arn} does not allow {service} to perform "
        "lambda:InvokeFunction for this source",
        403,
    )


class Enqueue(Protocol):
    async def enqueue(
        self, ref: FunctionRef, request_id: str, payload: bytes, tenant: str | None = None
    ) -> None: ...


class ServiceInvoker:
    """The one way a service hands a function an event."""

    def __init__(
        self, functions: Functions, invocations: Invocations | Enqueue, access: ServiceAccess
    ) -> None:
        self.functions = functions
        self.invocations = invocations
        self.access = access

    def _ref(self, function_arn: str) -> FunctionRef:
        ref = HttpInvoker.functions_ref(function_arn)
        if ref is None:
            raise AwsError("InvalidParameterValueException", f"Not a function ARN: {function_arn}")
        self.functions.target(ref)  # ResourceNotFoundException when it is gone
        return ref

    def may_invoke(
        self, function_arn: str, *, service: str, source_arn: str, source_account: str
    ) -> bool:
        """Whether the function exists and its policy lets `service` invoke it for
        `source_arn` (a service checks this when a notification is configured)."""
        try:
            ref = self._ref(function_arn)
        except AwsError:
            return False
        return self.access.service_may_invoke(ref, service, source_arn, source_account)

    async def submit(
        self,
        function_arn: str,
        payload: bytes,
        *,
        service: str,
        source_arn: str,
        source_account: str,
    ) -> str:
        """Queue one event for the function; returns once it is on disk, with the
        invocation's request id. ResourceNotFoundException when the function (version,
        alias) does not exist, AccessDeniedException when its policy does not allow it."""
        try:
            ref = self._ref(function_arn)
        except AwsError as error:
            if error.code == "ResourceNotFoundException":
                raise
            raise not_found(f"Function not found: {function_arn}") from None
        if not self.access.service_may_invoke(ref, service, source_arn, source_account):
            raise _denied(service, function_arn)
        request_id = str(uuid.uuid4())
        await self.invocations.enqueue(ref, request_id, payload)
        return request_id

    # lamina.deliveries.FunctionInvoker: outcomes instead of errors -------------------------
    async def invoke_async(
        self,
        function_arn: str,
        payload: bytes,
        *,
        service: str,
        source_arn: str,
        source_account: str,
    ) -> Delivery:
        """`submit`, answering what became of the event (SNS and EventBridge decide on
        retries and dead-letter queues from it)."""
        try:
            ref = self._ref(function_arn)
        except AwsError:
            return Delivery.MISSING
        if not self.access.service_may_invoke(ref, service, source_arn, source_account):
            return Delivery.DENIED
        if len(payload) > ASYNC_PAYLOAD_LIMIT:
            return Delivery.TOO_LARGE
        await self.invocations.enqueue(ref, str(uuid.uuid4()), payload)
        return Delivery.ACCEPTED

    def may_deliver(
        self, function_arn: str, *, service: str, source_arn: str, source_account: str
    ) -> Delivery:
        """What a delivery would meet, without delivering: ACCEPTED, MISSING or DENIED."""
        try:
            ref = self._ref(function_arn)
        except AwsError:
            return Delivery.MISSING
        if not self.access.service_may_invoke(ref, service, source_arn, source_account):
            return Delivery.DENIED
        return Delivery.ACCEPTED

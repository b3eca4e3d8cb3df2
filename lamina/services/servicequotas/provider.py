"""Service Quotas: GetServiceQuota, GetAWSDefaultServiceQuota, RequestServiceQuotaIncrease,
ListRequestedServiceQuotaChangeHistory(ByQuota), for Lambda's concurrent executions.

The quota is regional, as Lambda's is: the value is the counting service's limit of the
caller's account in the request's region, and an increase applies to that region only.
A request up to the server's `--max-account-concurrency` is approved and applied at once;
a larger one stays PENDING until `lamina accounts approve` (which writes the same
accounts database). Requests are kept in that database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lamina.context import RequestContext
from lamina.engine.concurrency import Counters
from lamina.errors import AwsError
from lamina.store.accounts import AccountStore, QuotaRequest

SERVICE = "lambda"
QUOTA = "L-B99A9384"
SERVICE_NAME = "AWS Lambda"
QUOTA_NAME = "Concurrent executions"


def _no_such_quota(service: str, quota: str | None) -> AwsError:
    return AwsError(
        "NoSuchResourceException",
        f"The request failed because the specified service quota does not exist: "
        f"{service}/{quota or ''}",
        400,
    )


class ServiceQuotas:
    def __init__(
        self,
        store: AccountStore,
        counters: Counters,
        apply: Callable[[str, str, int], None],
        maximum: int,
    ) -> None:
        self.store = store
        self.counters = counters
        self.apply = apply  # sets an account's concurrency limit in a region, live
        self.maximum = maximum

    def _check(self, params: dict[str, Any], need_quota: bool = True) -> None:
        service, quota = params.get("ServiceCode"), params.get("QuotaCode")
        if service != SERVICE or (need_quota and quota != QUOTA) or (quota not in (None, QUOTA)):
            raise _no_such_quota(str(service), quota)

    def _quota(self, ctx: RequestContext, value: float, account: str | None) -> dict[str, Any]:
        owner = f"{account}:" if account else ":"
        return {
            "ServiceCode": SERVICE,
            "ServiceName": SERVICE_NAME,
            "QuotaArn": f"arn:aws:servicequotas:{ctx.region}:{owner}{SERVICE}/{QUOTA}",
            "QuotaCode": QUOTA,
            "QuotaName": QUOTA_NAME,
            "Value": float(value),
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
            "QuotaAppliedAtLevel": "ACCOUNT",
        }

    def _request(self, ctx: RequestContext, request: QuotaRequest) -> dict[str, Any]:
        return {
            "Id": request.id,
            "RequestType": "AutomaticManagement",
            "CaseId": request.id[:10],
            "ServiceCode": request.service,
            "ServiceName": SERVICE_NAME,
            "QuotaCode": request.quota,
            "QuotaName": QUOTA_NAME,
            "DesiredValue": float(request.desired),
            "Status": request.status,
            "Created": request.created,
            "LastUpdated": request.updated,
            "Requester": ctx.principal or f"arn:aws:iam::{request.account}:root",
            "QuotaArn": f"arn:aws:servicequotas:{request.region}:{request.account}:"
            f"{SERVICE}/{QUOTA}",
            "GlobalQuota": False,
            "Unit": "None",
            "QuotaRequestedAtLevel": "ACCOUNT",
        }

    async def GetServiceQuota(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self._check(params)
        limit = self.counters.limits_of(ctx.account, ctx.region).account
        return {"Quota": self._quota(ctx, limit, ctx.account)}

    async def GetAWSDefaultServiceQuota(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        self._check(params)
        return {"Quota": self._quota(ctx, self.counters.limits.account, None)}

    async def RequestServiceQuotaIncrease(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        self._check(params)
        desired = float(params["DesiredValue"])
        current = self.counters.limits_of(ctx.account, ctx.region).account
        if desired != int(desired) or desired <= current:
            raise AwsError(
                "IllegalArgumentException",
                f"The DesiredValue must be a whole number greater than the current value "
                f"of the quota ({current}).",
                400,
            )
        if self.store.requests(ctx.account, "PENDING", ctx.region):
            raise AwsError(
                "ResourceAlreadyExistsException",
                "A request for this quota is already pending.",
                400,
            )
        status = "APPROVED" if desired <= self.maximum else "PENDING"
        request = self.store.add_request(ctx.account, ctx.region, SERVICE, QUOTA, desired, status)
        if status == "APPROVED":
            self.apply(ctx.account, ctx.region, int(desired))
        return {"RequestedQuota": self._request(ctx, request)}

    async def ListRequestedServiceQuotaChangeHistory(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        if params.get("ServiceCode") not in (None, SERVICE):
            raise _no_such_quota(str(params.get("ServiceCode")), None)
        found = self.store.requests(ctx.account, params.get("Status"), ctx.region)
        return {"RequestedQuotas": [self._request(ctx, r) for r in found]}

    async def ListRequestedServiceQuotaChangeHistoryByQuota(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        self._check(params)
        found = self.store.requests(ctx.account, params.get("Status"), ctx.region)
        return {"RequestedQuotas": [self._request(ctx, r) for r in found if r.quota == QUOTA]}

"""Resource-based policies of functions: AddPermission, RemovePermission, GetPolicy, and
the check that lets another account (or a service) call a function.

A policy belongs to the function (unqualified), to one of its versions or to an alias; it
is kept in the function's record as AWS's policy document, with a RevisionId of its own.
A caller of another account may perform `lambda:<Action>` on a function only when that
policy allows it, as IAM evaluates it (lamina/iam.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

from lamina import iam
from lamina.context import RequestContext
from lamina.control.functions import ARN_PATTERN, LATEST, FunctionRef, Functions, resolve
from lamina.errors import AwsError, conflict, invalid_parameter, not_found
from lamina.keys import FunctionKey

SERVICE_SUFFIX = ".amazonaws.com"


def access_denied(ctx: RequestContext, action: str, resource: str) -> AwsError:
    return iam.access_denied(ctx.principal, action, resource)


def _principal(value: str) -> Any:
    if value == "*":
        return "*"
    if value.endswith(SERVICE_SUFFIX):
        return {"Service": value}
    if value.isdigit() and len(value) == 12:
        return {"AWS": f"arn:aws:iam::{value}:root"}
    if value.startswith("arn:"):
        return {"AWS": value}
    raise invalid_parameter(
        "The provided principal was invalid. Please check the principal and try again."
    )


def _statement(params: dict[str, Any], resource: str) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": params["StatementId"],
        "Effect": "Allow",
        "Principal": _principal(params["Principal"]),
        "Action": params["Action"],
        "Resource": resource,
    }
    condition: dict[str, dict[str, str]] = {}
    if params.get("SourceAccount"):
        condition.setdefault("StringEquals", {})["AWS:SourceAccount"] = params["SourceAccount"]
    if params.get("PrincipalOrgID"):
        condition.setdefault("StringEquals", {})["aws:PrincipalOrgID"] = params["PrincipalOrgID"]
    if params.get("FunctionUrlAuthType"):
        condition.setdefault("StringEquals", {})["lambda:FunctionUrlAuthType"] = params[
            "FunctionUrlAuthType"
        ]
    if params.get("EventSourceToken"):
        condition.setdefault("StringEquals", {})["lambda:EventSourceToken"] = params[
            "EventSourceToken"
        ]
    if params.get("SourceArn"):
        condition["ArnLike"] = {"AWS:SourceArn": params["SourceArn"]}
    if params.get("InvokedViaFunctionUrl"):
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": "true"}
    if condition:
        statement["Condition"] = condition
    return statement


class Policies:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions

    # The check -------------------------------------------------------------------------
    def allows(
        self,
        ctx: RequestContext,
        key: FunctionKey,
        qualifier: str | None,
        action: str,
        context: dict[str, str] | None = None,
    ) -> bool:
        record = self.functions.store.function_view(key)
        if record is None:
            return False
        policy = record.get("policies", {}).get(qualifier or "")
        resource = f"{key.arn}:{qualifier}" if qualifier else key.arn
        caller = iam.Caller(ctx.account, ctx.principal or f"arn:aws:iam::{ctx.account}:root")
        return iam.allows(policy, caller, action, resource, context)

    def service_may_invoke(
        self, ref: FunctionRef, service: str, source_arn: str, source_account: str
    ) -> bool:
        """Whether the function's policy lets an AWS service (API Gateway's integrations)
        invoke it for `source_arn` of `source_account` (http_invoke.ServiceAccess)."""
        record = self.functions.store.function_view(ref.key)
        if record is None:
            return False
        policy = record.get("policies", {}).get(ref.qualifier or "")
        resource = f"{ref.key.arn}:{ref.qualifier}" if ref.qualifier else ref.key.arn
        caller = iam.Caller(source_account, "", service)
        context = {"aws:sourcearn": source_arn, "aws:sourceaccount": source_account}
        return iam.allows(policy, caller, "lambda:InvokeFunction", resource, context)

    def authorize(
        self, ctx: RequestContext, name_or_arn: str, qualifier: str | None, action: str
    ) -> RequestContext:
        """The context an operation on `name_or_arn` runs in: the caller's own, or, for a
        function of another account that a policy opens to the caller, the owner's (its
        limits count the invocation); else AWS's AccessDeniedException."""
        if ":" not in name_or_arn:
            return ctx  # a plain name is the caller's own function
        found = ARN_PATTERN.fullmatch(name_or_arn)
        if found is None or not found["account"] or found["account"] == ctx.account:
            return ctx
        owner = FunctionKey(found["account"], found["region"] or ctx.region, found["name"])
        qualifier = qualifier or found["qualifier"]
        resource = f"{owner.arn}:{qualifier}" if qualifier else owner.arn
        if owner.region != ctx.region or not self.allows(ctx, owner, qualifier, action):
            raise access_denied(ctx, action, resource)
        return replace(ctx, account=owner.account)

    # Operations ------------------------------------------------------------------------
    def _scope(self, ctx: RequestContext, params: dict[str, Any]) -> tuple[FunctionRef, str]:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        target = self.functions.target(ref)  # the function, version or alias must exist
        qualifier = ref.qualifier if ref.qualifier not in (None, LATEST) else None
        resource = f"{ref.key.arn}:{qualifier}" if qualifier else ref.key.arn
        del target
        return FunctionRef(ref.key, qualifier), resource

    def _revision(self, record: dict[str, Any], qualifier: str | None) -> str:
        policy = record.get("policies", {}).get(qualifier or "")
        if policy:
            return str(policy["RevisionId"])
        if qualifier is None:
            return str(record["config"]["RevisionId"])
        if qualifier.isdigit():
            return str(record["versions"][qualifier]["config"]["RevisionId"])
        return str(record["aliases"][qualifier]["RevisionId"])

    def _check_revision(self, record: dict[str, Any], qualifier: str | None, given: Any) -> None:
        if given and given != self._revision(record, qualifier):
            raise AwsError(
                "PreconditionFailedException",
                "The Revision Id provided does not match the latest Revision Id. Call the "
                "GetPolicy API to retrieve the latest Revision Id",
                412,
                user=True,
            )

    async def AddPermission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref, resource = self._scope(ctx, params)
        record = self.functions.record(ref)
        self._check_revision(record, ref.qualifier, params.get("RevisionId"))
        statement = _statement(params, resource)
        policies = record.setdefault("policies", {})
        policy = policies.get(ref.qualifier or "") or {
            "Version": "2012-10-17",
            "Id": "default",
            "Statement": [],
        }
        if any(s["Sid"] == statement["Sid"] for s in policy["Statement"]):
            raise conflict(
                f"The statement id ({statement['Sid']}) provided already exists. Please "
                "provide a new statement id, or remove the existing statement."
            )
        policy["Statement"].append(statement)
        policy["RevisionId"] = str(uuid.uuid4())
        policies[ref.qualifier or ""] = policy
        self.functions.store.update_function(ref.key, record)
        return {"Statement": json.dumps(statement, separators=(",", ":"))}

    async def RemovePermission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref, _ = self._scope(ctx, params)
        record = self.functions.record(ref)
        self._check_revision(record, ref.qualifier, params.get("RevisionId"))
        policy = record.get("policies", {}).get(ref.qualifier or "")
        sid = params["StatementId"]
        statements = policy["Statement"] if policy else []
        kept = [s for s in statements if s["Sid"] != sid]
        if len(kept) == len(statements):
            raise not_found(f"Statement {sid} is not found in resource policy.")
        assert policy is not None
        if kept:
            policy["Statement"] = kept
            policy["RevisionId"] = str(uuid.uuid4())
        else:
            del record["policies"][ref.qualifier or ""]
        self.functions.store.update_function(ref.key, record)
        return {}

    async def GetPolicy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref, _ = self._scope(ctx, params)
        record = self.functions.record(ref)
        policy = record.get("policies", {}).get(ref.qualifier or "")
        if not policy:
            raise not_found("The resource you requested does not exist.")
        document = {k: policy[k] for k in ("Version", "Id", "Statement")}
        return {
            "Policy": json.dumps(document, separators=(",", ":")),
            "RevisionId": policy["RevisionId"],
        }

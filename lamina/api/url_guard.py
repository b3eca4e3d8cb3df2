"""Who may call a function URL, with the server's own check of callers (api/auth.py).

A NONE URL is open. An AWS_IAM URL takes a request signed with Signature Version 4 for
the lambda service, checked as every request to Lamina is (verified with `--auth on`; with
auth off the access key id names the account), from the function's own account, or from
another account that the function's resource policy allows `lambda:InvokeFunctionUrl`
(the condition `lambda:FunctionUrlAuthType` is AWS_IAM for these requests).
"""

from __future__ import annotations

from typing import Any

from lamina.api.auth import Authenticator, AuthFailure
from lamina.context import RequestContext
from lamina.control.policies import Policies
from lamina.control.url_access import iam_authorizer
from lamina.control.url_requests import Denied
from lamina.store.urls import UrlConfig
from lamina.web.request import WebRequest


class Verified:
    def __init__(self, authenticator: Authenticator, policies: Policies) -> None:
        self.authenticator = authenticator
        self.policies = policies

    def admit(self, config: UrlConfig, request: WebRequest) -> dict[str, Any] | None:
        if config.auth_type == "NONE":
            return None
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers.setdefault(name, value)
        try:
            caller = self.authenticator.check(
                request.method, request.path, request.query, headers, request.body, "lambda"
            )
        except AuthFailure as failure:
            raise Denied(f"{failure.kind}: {failure.message}") from None
        if caller.account != config.key.account:
            ctx = RequestContext(caller.account, caller.region, "", "", caller.principal)
            allowed = self.policies.allows(
                ctx,
                config.key,
                config.qualifier or None,
                "lambda:InvokeFunctionUrl",
                {"lambda:functionurlauthtype": "AWS_IAM"},
            )
            if not allowed:
                raise Denied(
                    f"{caller.principal} may not invoke a function URL of account "
                    f"{config.key.account}: no resource-based policy allows it"
                )
        return iam_authorizer(caller.access_key, caller.account, caller.principal)

"""Who may call a function URL (control/url_requests.UrlGuard), with the server's own check
of callers (api/auth.py).

A URL's AuthType decides who the caller is: nobody in particular for NONE; for AWS_IAM,
the signer of a Signature Version 4 request for `lambda` (a header or a presigned query),
checked as every request to Lamina is: verified against the account's keys with `--auth
on`; with `--auth off`, which has no secrets to check it with, the signature must be
there and its access key id names the caller. Then the function's resource policy (the
alias's, for a URL on an alias) decides, as AWS does for URLs made since October 2025:
the caller needs `lambda:InvokeFunctionUrl` (condition key `lambda:FunctionUrlAuthType`)
and `lambda:InvokeFunction` (condition key `lambda:InvokedViaFunctionUrl`). An AWS_IAM
caller of the function's own account needs neither (Lamina has no identity policies: an
account's keys may do anything in it). A refusal is AWS's 403; the server's log says what
the policy lacks and the command that adds it.
"""

from __future__ import annotations

import re
from typing import Any

from lamina import iam
from lamina.api.auth import Authenticator, AuthFailure
from lamina.control.url_access import grant_command, iam_authorizer
from lamina.control.url_requests import Denied
from lamina.store.urls import UrlConfig
from lamina.web.request import WebRequest

SCOPE = re.compile(r"Credential=[^/,\s]*/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
ANONYMOUS = iam.Caller("", "")
ACTIONS = ("lambda:InvokeFunctionUrl", "lambda:InvokeFunction")


class Verified:
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        # Decisions by (URL, auth type, caller, policy revision): a policy's RevisionId
        # changes with every statement added or removed.
        self._decided: dict[tuple[str, str, str, str], list[str]] = {}

    def admit(
        self, config: UrlConfig, request: WebRequest, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        authorizer = None
        caller, principal = ANONYMOUS, "*"
        if config.auth_type == "AWS_IAM":
            signer = self._signer(request)
            authorizer = iam_authorizer(signer.access_key, signer.account, signer.principal)
            if signer.account == config.key.account:
                return authorizer
            caller, principal = iam.Caller(signer.account, signer.principal), signer.account
        context = {
            "lambda:functionurlauthtype": config.auth_type,
            "lambda:invokedviafunctionurl": "true",
        }
        qualifier = config.qualifier or None
        policy = record.get("policies", {}).get(qualifier or "")
        resource = f"{config.key.arn}:{qualifier}" if qualifier else config.key.arn
        key = (config.url_id, config.auth_type, caller.arn, (policy or {}).get("RevisionId", ""))
        missing = self._decided.get(key)
        if missing is None:
            missing = [a for a in ACTIONS if not iam.allows(policy, caller, a, resource, context)]
            if len(self._decided) > 4096:
                self._decided.clear()
            self._decided[key] = missing
        if missing:
            raise Denied(
                f"the resource policy of {resource} lets "
                f"{'anyone' if principal == '*' else principal} do no "
                f"{' and no '.join(missing)} through its {config.auth_type} URL; add "
                + " and ".join(grant_command(config, action, principal) for action in missing)
            )
        return authorizer

    def _signer(self, request: WebRequest) -> Any:
        """Who signed the request (api/auth.Caller), or Denied."""
        authorization = request.header("authorization")
        scope = SCOPE.search(authorization or request.query.replace("%2F", "/"))
        if scope is None:
            raise Denied("an AWS_IAM URL takes only requests signed with Signature Version 4")
        if scope.group(1) != "lambda":
            raise Denied(f"the request is signed for {scope.group(1)}, not for lambda")
        headers: dict[str, str] = {}
        for name, value in request.headers:  # repeated headers are signed joined
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        try:
            return self.authenticator.check(
                request.method, request.path, request.query, headers, request.body, "lambda"
            )
        except AuthFailure as failure:
            raise Denied(f"its signature was refused ({failure.kind}): {failure.message}") from None

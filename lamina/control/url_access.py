"""What a function URL's event and its refusals say of access: the IAM caller in the
event's `requestContext.authorizer.iam`, and the command that adds a statement a URL's
caller lacks (api/url_guard.py decides who may call)."""

from __future__ import annotations

from typing import Any

from lamina.store.urls import UrlConfig


def iam_authorizer(access_key: str, account: str, principal: str) -> dict[str, Any]:
    """requestContext.authorizer.iam of an AWS_IAM URL's event."""
    user_id = principal.rsplit("/", 1)[-1] if "/" in principal else account
    return {
        "accessKey": access_key,
        "accountId": account,
        "callerId": user_id,
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": principal,
        "userId": user_id,
    }


def grant_command(config: UrlConfig, action: str, principal: str) -> str:
    """The AWS CLI command that adds a statement letting `principal` do `action` through
    the URL."""
    qualifier = f" --qualifier {config.qualifier}" if config.qualifier else ""
    if action == "lambda:InvokeFunctionUrl":
        sid, extra = "FunctionURLAllowInvokeAction", f"--function-url-auth-type {config.auth_type}"
    else:
        sid, extra = "FunctionURLAllowInvokeFunction", "--invoked-via-function-url"
    return (
        f"aws lambda add-permission --function-name {config.key.name}{qualifier} "
        f"--statement-id {sid} --action {action} --principal '{principal}' {extra}"
    )

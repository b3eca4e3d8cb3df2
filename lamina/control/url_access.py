"""Who may call a function URL (url_requests.UrlGuard).

`Unverified` is the rule where requests carry no verified identity: a NONE URL is open; an
AWS_IAM URL takes only a request signed with Signature Version 4 for Lambda (its
signature is not checked: there are no secrets to check it against), and the signing key
names the caller.
"""

from __future__ import annotations

import re
from typing import Any

from lamina.config import DEFAULT_ACCOUNT
from lamina.control.url_requests import Denied
from lamina.store.urls import UrlConfig
from lamina.web.request import WebRequest

ALGORITHM = "AWS4-HMAC-SHA256 "
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")


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


class Unverified:
    def admit(self, config: UrlConfig, request: WebRequest) -> dict[str, Any] | None:
        if config.auth_type == "NONE":
            return None
        authorization = request.header("authorization")
        found = CREDENTIAL.search(authorization)
        if not authorization.startswith(ALGORITHM) or found is None:
            raise Denied("an AWS_IAM URL takes only requests signed with Signature Version 4")
        if found.group(3) != "lambda" or "Signature=" not in authorization:
            raise Denied("the request is not signed for the lambda service")
        key = found.group(1)
        account = key if key.isdigit() and len(key) == 12 else DEFAULT_ACCOUNT
        return iam_authorizer(key, account, f"arn:aws:iam::{account}:root")

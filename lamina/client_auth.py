"""How Lamina's own command-line clients (`lamina invoke | logs | top`) sign their
requests: with the caller's AWS credentials found the way boto3 finds them (environment,
`AWS_PROFILE`, the shared credentials file), by botocore's SigV4 signer, so they work
against a server with `--auth on`. Without credentials they name only the region (as a
credential scope), which a server with `--auth off` reads.
"""

from __future__ import annotations

from typing import Any


def headers(method: str, url: str, region: str, body: bytes = b"") -> dict[str, str]:
    """Headers that authenticate a request to `url` as the caller's account."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials: Any = botocore.session.Session().get_credentials()
    if credentials is None:
        # Lamina reads the region from the credential scope, as AWS does.
        return {
            "Authorization": f"AWS4-HMAC-SHA256 Credential=lamina/20260101/{region}/lambda/"
            "aws4_request"
        }
    request = AWSRequest(method, url, data=body)
    SigV4Auth(credentials.get_frozen_credentials(), "lambda", region).add_auth(request)
    return {
        name: value.decode() if isinstance(value, bytes) else str(value)
        for name, value in request.headers.items()
    }

"""The SigV4 check against requests botocore signed: headers and presigned query strings,
payload hashes (UNSIGNED-PAYLOAD, a hash that does not match), whitespace in header
values, query strings, temporary credentials, and the cached signing keys and callers
never mixing two credentials up."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.api.auth import Authenticator, AuthFailure, known_regions
from lamina.store.identity import Credential

KEY, SECRET, ACCOUNT = "AKIAUNITTEST00000000", "s" * 40, "111122223333"
OTHER_KEY, OTHER_SECRET, OTHER_ACCOUNT = "AKIAUNITTEST11111111", "t" * 40, "444455556666"
HOST = "127.0.0.1:9000"
PATH = "/2015-03-31/functions/f/invocations"
KNOWN = {
    KEY: Credential(KEY, SECRET, ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"),
    OTHER_KEY: Credential(
        OTHER_KEY, OTHER_SECRET, OTHER_ACCOUNT, f"arn:aws:iam::{OTHER_ACCOUNT}:root"
    ),
}


def checker() -> Authenticator:
    return Authenticator("on", KNOWN.get, known_regions())


def signed(
    url: str,
    body: bytes = b"{}",
    headers: dict[str, str] | None = None,
    key: str = KEY,
    secret: str = SECRET,
    token: str | None = None,
    region: str = "us-east-1",
) -> tuple[str, str, dict[str, str], bytes]:
    """(path, raw query, headers by lower-cased name, body) as the server reads them."""
    request = AWSRequest("POST", url, data=body, headers=headers or {})
    SigV4Auth(Credentials(key, secret, token), "lambda", region).add_auth(request)
    parts = urlsplit(url)
    arrived = {k.lower(): v for k, v in request.headers.items()}
    arrived["host"] = parts.netloc
    return parts.path, parts.query, arrived, body


def check(found: tuple[str, str, dict[str, str], bytes], auth: Authenticator | None = None) -> str:
    path, query, headers, body = found
    return (auth or checker()).check("POST", path, query, headers, body, "lambda").account


def failure(found: tuple[str, str, dict[str, str], bytes]) -> AuthFailure:
    with pytest.raises(AuthFailure) as caught:
        check(found)
    return caught.value


def test_a_request_botocore_signed_passes_and_a_changed_one_does_not() -> None:
    good = signed(f"http://{HOST}{PATH}", headers={"X-Custom": "  two   spaces  "})
    assert check(good) == ACCOUNT
    path, query, headers, body = good
    assert failure((path, query, headers, b'{"x": 1}')).kind == "mismatch"  # body changed
    assert failure((path, query, {**headers, "x-custom": "other"}, body)).kind == "mismatch"
    assert failure((path + "x", query, headers, body)).kind == "mismatch"
    # A header the client did not sign may change.
    assert check((path, query, {**headers, "user-agent": "anything"}, body)) == ACCOUNT


def test_query_strings_are_canonical() -> None:
    url = f"http://{HOST}/2015-03-31/functions/?MaxItems=5&Marker=a%2Fb&FunctionVersion=ALL"
    assert check(signed(url)) == ACCOUNT
    path, query, headers, body = signed(url)
    assert failure((path, query.replace("5", "6"), headers, body)).kind == "mismatch"


def test_payload_hashes() -> None:
    unsigned = signed(f"http://{HOST}{PATH}", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert check(unsigned) == ACCOUNT
    path, query, headers, _ = unsigned
    assert check((path, query, headers, b"any body at all")) == ACCOUNT  # not hashed
    # The claimed hash is signed and must be the body's.
    claimed = signed(
        f"http://{HOST}{PATH}",
        headers={"X-Amz-Content-SHA256": "0" * 64},
    )
    found = failure(claimed)
    assert (found.kind, found.message) == (
        "mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )


def test_presigned_urls_expire() -> None:
    request = AWSRequest("GET", f"http://{HOST}/2016-08-19/account-settings/")
    SigV4QueryAuth(Credentials(KEY, SECRET), "lambda", "us-east-1", expires=60).add_auth(request)
    parts = urlsplit(request.url)
    headers = {"host": HOST}
    assert checker().check("GET", parts.path, parts.query, headers, b"", "lambda").account == (
        ACCOUNT
    )
    later = Authenticator("on", KNOWN.get, known_regions(), wall=lambda: time.time() + 61)
    with pytest.raises(AuthFailure) as caught:
        later.check("GET", parts.path, parts.query, headers, b"", "lambda")
    assert (caught.value.kind, caught.value.message) == ("expired", "Request has expired.")


def test_temporary_credentials_need_their_token_and_expire() -> None:
    now = time.time()
    session = Credential("ASIAUNITTEST0000000", SECRET, ACCOUNT, "role", "token", now + 10)
    known = {session.access_key: session}.get
    found = signed(f"http://{HOST}{PATH}", key=session.access_key, token="token")
    path, query, headers, body = found
    assert (
        Authenticator("on", known, known_regions())
        .check("POST", path, query, headers, body, "lambda")
        .principal
        == "role"
    )
    forged = signed(f"http://{HOST}{PATH}", key=session.access_key, token="forged")
    with pytest.raises(AuthFailure) as caught:
        Authenticator("on", known, known_regions()).check("POST", *forged[:3], forged[3], "lambda")
    assert caught.value.kind == "unknown"
    late = Authenticator("on", known, known_regions(), wall=lambda: now + 11)
    with pytest.raises(AuthFailure) as caught:
        late.check("POST", path, query, headers, body, "lambda")
    assert caught.value.kind == "token_expired"


def test_cached_keys_and_callers_belong_to_their_credential() -> None:
    """Two keys, two regions, alternately: each verified with its own secret, each caller
    its own account and region (the caches are keyed by all of it)."""
    auth = checker()
    for _ in range(3):
        for key, secret, account in ((KEY, SECRET, ACCOUNT), (OTHER_KEY, OTHER_SECRET,
                                                               OTHER_ACCOUNT)):  # fmt: skip
            for region in ("us-east-1", "eu-west-1"):
                found = signed(f"http://{HOST}{PATH}", key=key, secret=secret, region=region)
                caller = auth.check("POST", *found[:3], found[3], "lambda")
                assert (caller.account, caller.region, caller.access_key) == (
                    account, region, key)  # fmt: skip
                crossed = signed(f"http://{HOST}{PATH}", key=key, secret=SECRET + OTHER_SECRET,
                                 region=region)  # fmt: skip
                with pytest.raises(AuthFailure):
                    auth.check("POST", *crossed[:3], crossed[3], "lambda")

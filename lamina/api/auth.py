"""Who is calling: Signature Version 4 verified (`--auth on`), or read from the key id
(`--auth off`), for every service the gateway serves.

`Authenticator.check(method, path, query, headers, body, service)` is a plain function
of the request (no ASGI, no I/O but a key lookup): it returns the Caller or raises
AuthFailure, which `auth_error` turns into the service's own error (each protocol family
has its codes: see AUTH_CODES).

In `on` mode the expected signature is computed by botocore's own SigV4 signer over the
request as it arrived (raw path and query, the headers the client listed as signed, the
payload hash: the `X-Amz-Content-SHA256` header, which must match the body unless it is
`UNSIGNED-PAYLOAD`, or the body's SHA-256) and compared in constant time. The signing key
of (secret, date, region, service) is cached. A presigned URL (`X-Amz-Signature` in the
query) is verified the same way and expires after `X-Amz-Expires`. Requests dated more
than 5 minutes away from now are refused, as is a scope naming another date, a region
AWS does not have or the operator did not allow, or another service.

In `off` mode nothing is verified: a 12-digit access key id is that account's id, a key
Lamina issued is its account's, anything else is 000000000000. Regions are checked in
both modes.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from botocore.auth import EMPTY_SHA256_HASH, UNSIGNED_PAYLOAD, SigV4Auth

from lamina.api import aws_chunked
from lamina.api.rest_xml import s3_auth_error
from lamina.api.spec import Service
from lamina.config import DEFAULT_ACCOUNT, DEFAULT_REGION
from lamina.errors import AwsError
from lamina.store.identity import Credential, root_principal

SKEW_S = 300  # 5 minutes either way
MAX_PRESIGN_S = 604_800  # 7 days
ALGORITHM = "AWS4-HMAC-SHA256"
CREDENTIAL = re.compile(r"Credential=([^/,\s]*)/[^/,\s]*/([^/,\s]+)/")
DIGITS12 = re.compile(r"\d{12}")
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)
INVALID_TOKEN = "The security token included in the request is invalid."


class AuthFailure(Exception):
    """Why a request is not let in. kind: missing, unknown, mismatch, expired,
    token_expired, incomplete."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Caller:
    account: str
    principal: str  # arn:aws:iam::<account>:root, or an assumed role's session
    region: str
    access_key: str = ""


# (json family code, query family code, query status); json status: 403 rest-json, else 400
AUTH_CODES: dict[str, tuple[str, str, int]] = {
    "missing": ("MissingAuthenticationTokenException", "MissingAuthenticationToken", 403),
    "unknown": ("UnrecognizedClientException", "InvalidClientTokenId", 403),
    "mismatch": ("InvalidSignatureException", "SignatureDoesNotMatch", 403),
    "expired": ("InvalidSignatureException", "SignatureDoesNotMatch", 403),
    "token_expired": ("ExpiredTokenException", "ExpiredToken", 403),
    "incomplete": ("IncompleteSignatureException", "IncompleteSignature", 400),
}
# No signature at all: Lambda's (and the other rest-json APIs') front door answers as API
# Gateway does; the json and query services (Kinesis, Logs, SQS, CloudWatch) say it with
# "Request is ..." (the AWS common-errors page only describes the code: "The request must
# contain either a valid (registered) AWS access key ID or X.509 certificate").
MISSING_MESSAGES = {
    "rest-json": "Missing Authentication Token",
    "other": "Request is missing Authentication Token",
}


def family(service: Service) -> str:
    """`query` for services that answer with the query protocol's error codes (CloudWatch,
    SQS's json with awsQueryCompatible), else `json` (Lambda, Kinesis, Logs, X-Ray, ...)."""
    metadata = service.model.metadata
    if service.protocol == "query" or "awsQueryCompatible" in metadata:
        return "query"
    return "json"


def auth_error(service: Service, failure: AuthFailure) -> AwsError:
    if service.protocol == "rest-xml":  # S3 has codes of its own
        return s3_auth_error(failure.kind, failure.message)
    json_code, query_code, query_status = AUTH_CODES[failure.kind]
    kind = family(service)
    message = failure.message
    if failure.kind == "missing":
        message = MISSING_MESSAGES["rest-json" if service.protocol == "rest-json" else "other"]
    if kind == "query":
        return AwsError(query_code, message, query_status)
    return AwsError(json_code, message, 403 if service.protocol == "rest-json" else 400)


def signing_name(service: Service) -> str:
    metadata = service.model.metadata
    return str(metadata.get("signingName") or metadata.get("endpointPrefix") or service.name)


@lru_cache(maxsize=256)  # requests of the same second share their stamp
def _epoch(stamp: str) -> int | None:
    """`20260101T120000Z` → seconds since the epoch, or None if it is not that."""
    if len(stamp) != 16 or stamp[8] != "T" or stamp[15] != "Z":
        return None
    try:
        fields = (
            int(stamp[0:4]),
            int(stamp[4:6]),
            int(stamp[6:8]),
            int(stamp[9:11]),
            int(stamp[11:13]),
            int(stamp[13:15]),
        )
    except ValueError:
        return None
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24):
        return None
    return calendar.timegm(fields)


def _stamp(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


class _Headers(dict[str, str]):
    """The signed headers, by lower-cased name, as botocore's signer reads them."""

    def get_all(self, name: str) -> list[str]:
        return [dict.__getitem__(self, name)]


class _Arrived:
    """The request's headers (lower-cased names, not copied), asked with any case."""

    __slots__ = ("headers",)

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.headers

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]


class _Request:
    """The request as botocore's signer reads it (url, method, headers, body, context), and
    its raw path and query as they arrived."""

    __slots__ = ("body", "context", "headers", "method", "params", "path", "query", "url")

    def __init__(
        self, method: str, path: str, query: str, headers: _Arrived, body: bytes, stamp: str
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.url = "http://"  # botocore hashes the payload of a request that is not https
        self.headers = headers
        self.body = body
        self.params: dict[str, str] = {}
        self.context = {"timestamp": stamp}


# (secret, date, region, service) → an HMAC keyed with the derived signing key, copied for
# each request: neither the four derivation steps nor the key setup of HMAC are repeated.
_signing_keys: dict[tuple[str, str, str, str], hmac.HMAC] = {}


def keyed_hmac(secret: str, date: str, region: str, service: str) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with SigV4's derived key of (secret, date, region, service),
    made once: `.copy()` it, `.update()` the copy with what is signed."""
    cache_key = (secret, date, region, service)
    keyed = _signing_keys.get(cache_key)
    if keyed is None:
        key = f"AWS4{secret}".encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        if len(_signing_keys) > 4096:
            _signing_keys.clear()
        keyed = _signing_keys[cache_key] = hmac.new(key, digestmod=hashlib.sha256)
    return keyed


class _Signer(SigV4Auth):
    """botocore's SigV4 signer, computing over exactly the headers the client signed."""

    def __init__(self, secret: str, service: str, region: str, signed: list[str]) -> None:
        self._secret = secret
        self._service_name = service
        self._region_name = region
        self._signed = signed

    def headers_to_sign(self, request: _Request) -> _Headers:
        headers = request.headers.headers
        return _Headers({name: _as_sent(headers.get(name, "")) for name in self._signed})

    def canonical_request(self, request: _Request) -> str:
        """botocore's SigV4Auth.canonical_request, each part from its own methods, over the
        raw path and query (no URL put together to be split again)."""
        headers = self.headers_to_sign(request)
        arrived = request.headers.headers
        if "x-amz-content-sha256" in arrived:
            checksum = arrived["x-amz-content-sha256"]
        else:
            checksum = self.payload(request)
        return "\n".join(
            (
                request.method.upper(),
                _canonical_path(request.path),
                _canonical_query(request.query),
                self.canonical_headers(headers) + "\n",
                self.signed_headers(headers),
                checksum,
            )
        )

    def signature(self, string_to_sign: str, request: _Request) -> str:
        # What botocore's _sign(key, msg, hex=True) computes with the derived key.
        date = request.context["timestamp"][0:8]
        mac = keyed_hmac(self._secret, date, self._region_name, self._service_name).copy()
        mac.update(string_to_sign.encode("utf-8"))
        return mac.hexdigest()


def _as_sent(value: str) -> str:
    """A header value as the client signed it: HTTP hands it over as latin-1, clients hash
    its UTF-8 text."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


@lru_cache(maxsize=4096)
def _canonical_path(path: str) -> str:
    return str(SigV4Auth._normalize_url_path(None, path))


class _Query:
    __slots__ = ("query",)

    def __init__(self, query: str) -> None:
        self.query = query


@lru_cache(maxsize=4096)
def _canonical_query(query: str) -> str:
    """botocore's canonical query string of a raw query string."""
    return str(SigV4Auth._canonical_query_string_url(None, _Query(query))) if query else ""


def _authorization_parts(header: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in header[len(ALGORITHM) :].split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name] = value
    return parts


def _incomplete(header: str, parts: dict[str, str], dated: bool) -> AuthFailure:
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not parts.get(name)
    ]
    if not dated:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    return AuthFailure("incomplete", " ".join(problems) + f" Authorization={header}")


class _Signed(NamedTuple):
    """A request as its signature covers it, and the signing name of its service."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    service: str


class Authenticator:
    """The gateway's one auth check. `lookup` finds a Credential by access key id."""

    def __init__(
        self,
        mode: str,
        lookup: Callable[[str], Credential | None],
        regions: frozenset[str],
        wall: Callable[[], float] = time.time,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        if mode not in ("on", "off"):
            raise ValueError(f"auth mode is on or off, not {mode!r}")
        self.mode = mode
        self.lookup = lookup
        self.regions = regions
        self.wall = wall
        self.refresh = refresh  # called on every check: picks up accounts changed elsewhere

    def check(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        service: str,
    ) -> Caller:
        """The caller of this request (headers by lower-cased name; `query` raw, as sent;
        `service` the signing name of the service it was routed to), or AuthFailure."""
        if self.refresh is not None:
            self.refresh()
        if self.mode == "off":
            return self.identify(headers, query)
        request = _Signed(method, path, query, headers, body, service)
        authorization = headers.get("authorization")
        if authorization is not None:
            return self._header_auth(request, authorization)
        if "X-Amz-Signature=" in query or "X-Amz-Algorithm=" in query:
            return self._query_auth(request)
        raise AuthFailure("missing", "Missing Authentication Token")

    # off ----------------------------------------------------------------------------------
    def identify(self, headers: dict[str, str], query: str) -> Caller:
        found = _scope(headers, query)
        if found is None:
            return Caller(DEFAULT_ACCOUNT, root_principal(DEFAULT_ACCOUNT), DEFAULT_REGION)
        key, region = found.group(1), found.group(2)
        self._check_region(region)
        if DIGITS12.fullmatch(key):
            account = key
            principal = root_principal(key)
        else:
            known = self.lookup(key) if key[:4] in ("AKIA", "ASIA") else None
            account = known.account if known else DEFAULT_ACCOUNT
            principal = known.principal if known else root_principal(account)
        return Caller(account, principal, region, key)

    def region_of(self, headers: dict[str, str], query: str) -> str:
        found = _scope(headers, query)
        return found.group(2) if found else DEFAULT_REGION

    def _check_region(self, region: str) -> None:
        if region not in self.regions:
            raise AuthFailure(
                "mismatch", f"Credential should be scoped to a valid region, not '{region}'. "
            )

    # on -----------------------------------------------------------------------------------
    def _header_auth(self, request: _Signed, authorization: str) -> Caller:
        headers, body, service = request.headers, request.body, request.service
        stamp = headers.get("x-amz-date", "")
        if not authorization.startswith(ALGORITHM + " "):
            raise _incomplete(authorization, {}, bool(stamp or headers.get("date")))
        parts = _authorization_parts(authorization)
        if not (parts.get("Credential") and parts.get("Signature") and parts.get("SignedHeaders")):
            raise _incomplete(authorization, parts, bool(stamp or headers.get("date")))
        if not stamp:
            raise _incomplete(authorization, parts, bool(headers.get("date")))
        credential, region = self._credential(parts["Credential"], stamp, service)
        signed = parts["SignedHeaders"].split(";")
        token = headers.get("x-amz-security-token")
        self._check_token(credential, token)
        epoch = self._date(stamp)
        now = self.wall()
        if epoch < now - SKEW_S:
            raise AuthFailure(
                "expired",
                f"Signature expired: {stamp} is now earlier than {_stamp(now - SKEW_S)} "
                f"({_stamp(now)} - 5 min.)",
            )
        _check_not_ahead(stamp, epoch, now)
        self._check_payload(headers, body)
        caller = self._verify(request, credential, signed, parts["Signature"], stamp, region)
        claimed = headers.get("x-amz-content-sha256", "")
        if claimed in (aws_chunked.SIGNED, aws_chunked.SIGNED_TRAILER):
            keyed = keyed_hmac(credential.secret, stamp[:8], region, service)
            scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
            trailer = claimed == aws_chunked.SIGNED_TRAILER
            if not aws_chunked.verify(body, keyed, stamp, scope, parts["Signature"], trailer):
                raise AuthFailure(
                    "mismatch",
                    "The request signature we calculated does not match the signature you "
                    "provided for a chunk of the payload.",
                )
        return caller

    def _query_auth(self, request: _Signed) -> Caller:
        headers, service = request.headers, request.service
        pairs = [pair.partition("=") for pair in request.query.split("&") if pair]
        values = {name: value for name, _, value in pairs}
        missing = [
            name
            for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Signature",
                         "X-Amz-SignedHeaders")
            if not values.get(name)
        ]  # fmt: skip
        if missing:
            raise AuthFailure(
                "incomplete",
                "AWS query-string parameters must include "
                + ", ".join(f"'{name}'" for name in missing)
                + ". Re-examine the query-string parameters.",
            )
        if values["X-Amz-Algorithm"] != ALGORITHM:
            raise AuthFailure("incomplete", f"Unsupported AWS 'algorithm': '{ALGORITHM}'")
        stamp = values["X-Amz-Date"]
        credential, region = self._credential(_unquote(values["X-Amz-Credential"]), stamp, service)
        self._check_token(credential, _unquote(values.get("X-Amz-Security-Token", "")) or None)
        epoch = self._date(stamp)
        expires_text = values.get("X-Amz-Expires", str(MAX_PRESIGN_S))
        if not expires_text.isdigit() or not 1 <= int(expires_text) <= MAX_PRESIGN_S:
            raise AuthFailure(
                "incomplete",
                f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_S}.",
            )
        now = self.wall()
        if now > epoch + int(expires_text):
            raise AuthFailure("expired", "Request has expired.")
        _check_not_ahead(stamp, epoch, now)
        self._check_payload(headers, request.body)
        unsigned = "&".join(
            f"{name}={value}" if sep else name
            for name, sep, value in pairs
            if name != "X-Amz-Signature"
        )
        signed = _unquote(values["X-Amz-SignedHeaders"]).split(";")
        if service == "s3" and "x-amz-content-sha256" not in headers:
            # S3's presigned URLs sign no payload (AWS's S3 SigV4 query rules)
            headers = {**headers, "x-amz-content-sha256": UNSIGNED_PAYLOAD}
        return self._verify(
            request._replace(query=unsigned, headers=headers), credential, signed,
            values["X-Amz-Signature"], stamp, region,
        )  # fmt: skip

    def _credential(self, scope: str, stamp: str, service: str) -> tuple[Credential, str]:
        fields = scope.split("/")
        if len(fields) != 5 or not fields[0]:
            raise AuthFailure(
                "incomplete",
                f"Credential should be scoped to a valid region, not '{scope}'. "
                if len(fields) < 3
                else f"Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{fields[-1]}'. ",
            )
        key, date, region, scoped_service, terminator = fields
        if terminator != "aws4_request":
            raise AuthFailure(
                "incomplete",
                "Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{terminator}'. ",
            )
        self._check_region(region)
        if scoped_service != service:
            raise AuthFailure(
                "mismatch", f"Credential should be scoped to correct service: '{service}'. "
            )
        if date != stamp[:8]:
            raise AuthFailure(
                "mismatch",
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                f"date from HTTP: '{date}' != '{stamp[:8]}', from '{stamp}'.",
            )
        found = self.lookup(key)
        if found is None:
            raise AuthFailure("unknown", INVALID_TOKEN)
        return found, region

    def _check_token(self, credential: Credential, token: str | None) -> None:
        if credential.token is None:
            if token:
                raise AuthFailure("unknown", INVALID_TOKEN)
            return
        if token is None or not hmac.compare_digest(token.encode(), credential.token.encode()):
            raise AuthFailure("unknown", INVALID_TOKEN)
        if credential.expires is not None and self.wall() >= credential.expires:
            raise AuthFailure(
                "token_expired", "The security token included in the request is expired"
            )

    @staticmethod
    def _date(stamp: str) -> int:
        epoch = _epoch(stamp)
        if epoch is None:
            raise AuthFailure(
                "incomplete",
                f"Date must be in ISO-8601 'basic format'. Got '{stamp}'. See "
                "http://en.wikipedia.org/wiki/ISO_8601",
            )
        return epoch

    @staticmethod
    def _check_payload(headers: dict[str, str], body: bytes) -> None:
        claimed = headers.get("x-amz-content-sha256")
        if claimed is None or claimed == UNSIGNED_PAYLOAD:
            return
        if claimed in (
            aws_chunked.SIGNED,
            aws_chunked.SIGNED_TRAILER,
            aws_chunked.UNSIGNED_TRAILER,
        ):
            return  # aws-chunked: the chunks carry their own signatures (checked after)
        actual = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256_HASH
        if not hmac.compare_digest(claimed.encode(), actual.encode()):
            raise AuthFailure(
                "mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )

    @staticmethod
    def _verify(
        request: _Signed,
        credential: Credential,
        signed: list[str],
        given: str,
        stamp: str,
        region: str,
    ) -> Caller:
        if "host" not in signed:
            raise AuthFailure(
                "mismatch",
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            )
        signer = _Signer(credential.secret, request.service, region, signed)
        arrived = _Request(
            request.method, request.path, request.query, _Arrived(request.headers), request.body,
            stamp,
        )  # fmt: skip
        canonical = signer.canonical_request(arrived)
        string_to_sign = signer.string_to_sign(arrived, canonical)
        expected = signer.signature(string_to_sign, arrived)
        if not hmac.compare_digest(expected.encode(), given.encode("latin-1")):
            raise AuthFailure(
                "mismatch",
                f"{MISMATCH}\n\nThe Canonical String for this request should have been\n"
                f"'{canonical}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n",
            )
        return _caller(credential, region)


_callers: dict[tuple[str, str], tuple[Credential, Caller]] = {}


def _caller(credential: Credential, region: str) -> Caller:
    """The Caller of a verified credential in a region, made once."""
    key = (credential.access_key, region)
    found = _callers.get(key)
    if found is not None and found[0] is credential:
        return found[1]
    caller = Caller(credential.account, credential.principal, region, credential.access_key)
    if len(_callers) > 4096:
        _callers.clear()
    _callers[key] = (credential, caller)
    return caller


def _check_not_ahead(stamp: str, epoch: int, now: float) -> None:
    if epoch > now + SKEW_S:
        raise AuthFailure(
            "expired",
            f"Signature not yet current: {stamp} is still later than "
            f"{_stamp(now + SKEW_S)} ({_stamp(now)} + 5 min.)",
        )


def _scope(headers: dict[str, str], query: str) -> re.Match[str] | None:
    """The credential scope a request names, in its Authorization or its query."""
    found = CREDENTIAL.search(headers.get("authorization", ""))
    if found is None and "X-Amz-Credential=" in query:
        found = CREDENTIAL.search("Credential=" + _query_value(query, "X-Amz-Credential"))
    return found


def _query_value(query: str, name: str) -> str:
    prefix = name + "="
    for pair in query.split("&"):
        if pair.startswith(prefix):
            return _unquote(pair[len(prefix) :])
    return ""


def _unquote(value: str) -> str:
    if "%" not in value and "+" not in value:
        return value
    from urllib.parse import unquote_plus

    return unquote_plus(value)


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """Every region of AWS's commercial partition, from botocore's partition data (its
    small partitions.json: the endpoint rules' region list, not the 1 MB endpoints.json)."""
    import botocore.loaders

    data = botocore.loaders.Loader().load_data("partitions")
    for partition in data["partitions"]:
        if partition["id"] == "aws":
            return frozenset(r for r in partition["regions"] if not r.endswith("-global"))
    return frozenset({DEFAULT_REGION})

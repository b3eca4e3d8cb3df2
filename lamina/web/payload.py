"""The events a function receives for an HTTP request, and the answers built from what it
returns: API Gateway's payload format 2.0 (HTTP APIs and function URLs) and 1.0 (HTTP
APIs), field by field as AWS documents them.

Format 2.0: repeated headers are joined with commas, the Cookie header becomes the
`cookies` list, repeated query keys are joined with commas; the body is base64-encoded
(`isBase64Encoded`) unless its content type is text (text/*, JSON, XML, JavaScript) and it
is valid UTF-8. Format 1.0 keeps the last value of each header and query key and gives
every value in `multiValueHeaders` / `multiValueQueryStringParameters`.

A 2.0 answer that is JSON with a `statusCode` is read as `{statusCode, headers,
multiValueHeaders, cookies, body, isBase64Encoded}`; any other JSON value is the body of a
200 `application/json` answer. A 1.0 answer must be such an object.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from lamina.web.request import WebRequest, WebResponse

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TEXT_SUBTYPES = frozenset({"json", "xml", "javascript", "ecmascript", "x-javascript"})
# Hop-by-hop headers end at AWS's front end: the function never sees them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class BadResponse(Exception):
    """What the function returned cannot be made into an HTTP answer."""


@dataclass(slots=True)
class EventContext:
    """What the front door knows of a request beyond the request itself."""

    account: str
    api_id: str
    domain_name: str
    domain_prefix: str
    request_id: str
    epoch: float  # when the request arrived, seconds since the epoch
    route_key: str = "$default"
    stage: str = "$default"
    resource: str = ""  # 1.0: the route's path ("/items/{id}")
    authorizer: dict[str, Any] | None = None
    path_parameters: dict[str, str] | None = None
    stage_variables: dict[str, str] | None = None


_last_clf: tuple[int, str] = (-1, "")


def clf_time(epoch: float) -> str:
    """`12/Mar/2020:19:03:58 +0000`, as requestContext.time has it (never localised);
    made once a second."""
    global _last_clf
    second = int(epoch)
    if _last_clf[0] == second:
        return _last_clf[1]
    t = time.gmtime(second)
    text = (
        f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )
    _last_clf = (second, text)
    return text


def is_text(content_type: str) -> bool:
    mime = content_type.partition(";")[0].strip().lower()
    major, _, minor = mime.partition("/")
    if major == "text":
        return True
    if major != "application":
        return False
    return minor in TEXT_SUBTYPES or minor.endswith("+json") or minor.endswith("+xml")


def body_fields(request: WebRequest) -> tuple[str | None, bool]:
    """(body as the event carries it, isBase64Encoded); None when there is no body."""
    if not request.body:
        return None, False
    if is_text(request.header("content-type")):
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode("ascii"), True


def _query_pairs(raw: str) -> list[tuple[str, str]]:
    return parse_qsl(raw, keep_blank_values=True)


def _joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def _multi(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def event_v2(request: WebRequest, raw_path: str, ctx: EventContext, *, url: bool) -> dict[str, Any]:
    """Payload format 2.0. `url`: a function URL's event, which carries the fields API
    Gateway features fill (authentication, pathParameters, stageVariables) as null."""
    cookies: list[str] = []
    header_pairs: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            header_pairs.append((name, value))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": ctx.route_key,
        "rawPath": raw_path,
        "rawQueryString": request.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = _joined(header_pairs)
    if request.query:
        event["queryStringParameters"] = _joined(_query_pairs(request.query))
    context: dict[str, Any] = {"accountId": ctx.account, "apiId": ctx.api_id}
    if url:
        context["authentication"] = None
    if ctx.authorizer is not None:
        context["authorizer"] = ctx.authorizer
    context.update(
        {
            "domainName": ctx.domain_name,
            "domainPrefix": ctx.domain_prefix,
            "http": {
                "method": request.method,
                "path": unquote(raw_path),
                "protocol": f"HTTP/{request.http_version}",
                "sourceIp": request.client,
                "userAgent": request.header("user-agent"),
            },
            "requestId": ctx.request_id,
            "routeKey": ctx.route_key,
            "stage": ctx.stage,
            "time": clf_time(ctx.epoch),
            "timeEpoch": round(ctx.epoch * 1000),
        }
    )
    event["requestContext"] = context
    body, encoded = body_fields(request)
    if body is not None:
        event["body"] = body
    if url or ctx.path_parameters:
        event["pathParameters"] = ctx.path_parameters or None
    event["isBase64Encoded"] = encoded
    if url or ctx.stage_variables:
        event["stageVariables"] = ctx.stage_variables or None
    return event


def event_v1(request: WebRequest, raw_path: str, ctx: EventContext) -> dict[str, Any]:
    """Payload format 1.0 (API Gateway's REST proxy format, as HTTP APIs send it)."""
    query = _query_pairs(request.query)
    body, encoded = body_fields(request)
    user_agent = request.header("user-agent")
    identity = dict.fromkeys(
        (
            "accessKey",
            "accountId",
            "caller",
            "cognitoAuthenticationProvider",
            "cognitoAuthenticationType",
            "cognitoIdentityId",
            "cognitoIdentityPoolId",
            "principalOrgId",
        )
    )
    identity.update({"sourceIp": request.client, "user": None, "userAgent": user_agent})
    identity["userArn"] = None
    return {
        "version": "1.0",
        "resource": ctx.resource,
        "path": unquote(raw_path),
        "httpMethod": request.method,
        "headers": dict(request.headers),  # the last value of each
        "multiValueHeaders": _multi(request.headers),
        "queryStringParameters": dict(query) or None,
        "multiValueQueryStringParameters": _multi(query) or None,
        "requestContext": {
            "accountId": ctx.account,
            "apiId": ctx.api_id,
            "authorizer": ctx.authorizer or {"claims": None, "scopes": None},
            "domainName": ctx.domain_name,
            "domainPrefix": ctx.domain_prefix,
            "extendedRequestId": ctx.request_id,
            "httpMethod": request.method,
            "identity": identity,
            "path": unquote(raw_path),
            "protocol": f"HTTP/{request.http_version}",
            "requestId": ctx.request_id,
            "requestTime": clf_time(ctx.epoch),
            "requestTimeEpoch": round(ctx.epoch * 1000),
            "resourceId": None,
            "resourcePath": ctx.resource,
            "stage": ctx.stage,
        },
        "pathParameters": ctx.path_parameters or None,
        "stageVariables": ctx.stage_variables or None,
        "body": body,
        "isBase64Encoded": encoded,
    }


FRAMING = frozenset({"content-length", *HOP_BY_HOP})


def forwarded(request: WebRequest, trace_header: str) -> WebRequest:
    """The request as the function sees it: with the X-Forwarded-* headers AWS's front
    end adds (the client's address, scheme and port) and the trace header it carries on."""
    added = [
        ("x-forwarded-for", request.client),
        ("x-forwarded-proto", request.scheme),
        ("x-forwarded-port", str(request.port)),
    ]
    if not request.header("x-amzn-trace-id"):
        added.append(("x-amzn-trace-id", trace_header))
    kept = [
        h for h in request.headers if h[0] not in HOP_BY_HOP and not h[0].startswith("x-forwarded-")
    ]
    return WebRequest(
        request.method,
        request.path,
        request.query,
        kept + added,
        request.body,
        request.client,
        request.scheme,
        request.http_version,
        request.port,
    )


def new_request_id() -> str:
    """A random version-4 UUID, as text (uuid.uuid4() costs more on the hot path)."""
    h = f"{random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def new_trace_header(epoch: float) -> str:
    """A new X-Ray trace root, for a request that did not bring one."""
    return f"Root=1-{int(epoch):08x}-{random.getrandbits(96):024x}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise BadResponse(f"a header value must be a string, not {json.dumps(value)}")


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadResponse(f"statusCode {json.dumps(value)} is not a number")
    try:
        status = int(value)
    except ValueError as exc:
        raise BadResponse(f"statusCode {value!r} is not a number") from exc
    if not 100 <= status <= 599:
        raise BadResponse(f"statusCode {status} is not an HTTP status")
    return status


def structured(
    document: dict[str, Any], *, cookies: bool, default_type: str = "application/json"
) -> WebResponse:
    """`{statusCode, headers, multiValueHeaders, [cookies], body, isBase64Encoded}`."""
    status = _status(document.get("statusCode"))
    headers: list[tuple[str, str]] = []
    single = document.get("headers") or {}
    multi = document.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        raise BadResponse("headers and multiValueHeaders must be objects")
    for name, value in single.items():
        headers.append((str(name), _text(value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise BadResponse(f"multiValueHeaders[{name}] must be a list")
        headers.extend((str(name), _text(value)) for value in values)
    # The front end frames the answer itself: the function's framing headers go.
    headers = [h for h in headers if h[0].lower() not in FRAMING]
    if cookies:
        listed = document.get("cookies") or []
        if not isinstance(listed, list):
            raise BadResponse("cookies must be a list")
        headers.extend(("Set-Cookie", _text(cookie)) for cookie in listed)
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", default_type))
    body = document.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = json.dumps(body).encode()
    if document.get("isBase64Encoded") is True and data:
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadResponse("isBase64Encoded is true but the body is not base64") from exc
    return WebResponse(status, headers, data)


def response_v2(payload: bytes, *, unquote_strings: bool) -> WebResponse:
    """A 2.0 answer from the function's payload. `unquote_strings`: a bare JSON string is
    sent as its text (HTTP APIs) rather than as JSON (function URLs)."""
    try:
        document = json.loads(payload) if payload.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadResponse("the response is not JSON") from exc
    if isinstance(document, dict) and "statusCode" in document:
        return structured(document, cookies=True)
    body = payload
    if unquote_strings and isinstance(document, str):
        body = document.encode("utf-8")
    return WebResponse(200, [("Content-Type", "application/json")], body)


def response_v1(payload: bytes) -> WebResponse:
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadResponse("the response is not JSON") from exc
    if not isinstance(document, dict) or "statusCode" not in document:
        raise BadResponse("a 1.0 response needs a statusCode")
    return structured(document, cookies=False)

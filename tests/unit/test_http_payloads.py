"""Payload formats 2.0 and 1.0, the answers built from a function's response, CORS, the
prelude of a streamed answer and HTTP API route selection, without a server."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from lamina.errors import AwsError
from lamina.services.apigatewayv2.apis import parse_route_key, select_route, select_stage
from lamina.web import cors
from lamina.web.payload import (
    BadResponse,
    EventContext,
    clf_time,
    event_v1,
    event_v2,
    new_request_id,
    response_v1,
    response_v2,
)
from lamina.web.prelude import DELIMITER, HTTP_INTEGRATION, streamed_answer
from lamina.web.request import WebRequest

# AWS's documented function URL request (urls-invocation, "Request payload format").
DOCUMENTED = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "<urlid>",
        "authentication": None,
        "authorizer": {
            "iam": {
                "accessKey": "AKIA...",
                "accountId": "111122223333",
                "callerId": "AIDA...",
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": "arn:aws:iam::111122223333:user/example-user",
                "userId": "AIDA...",
            }
        },
        "domainName": "<url-id>.lambda-url.us-west-2.on.aws",
        "domainPrefix": "<url-id>",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "123.123.123.123",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": "Hello from client!",
    "pathParameters": None,
    "isBase64Encoded": False,
    "stageVariables": None,
}


def documented_request() -> WebRequest:
    return WebRequest(
        "POST",
        "/my/path",
        "parameter1=value1&parameter1=value2&parameter2=value",
        [
            ("cookie", "cookie1; cookie2"),
            ("header1", "value1"),
            ("header2", "value1"),
            ("header2", "value2"),
            ("content-type", "text/plain"),
            ("user-agent", "agent"),
        ],
        b"Hello from client!",
        "123.123.123.123",
    )


def test_the_documented_function_url_event_field_by_field() -> None:
    iam = DOCUMENTED["requestContext"]["authorizer"]  # type: ignore[index]
    ctx = EventContext(
        account="123456789012",
        api_id="<urlid>",
        domain_name="<url-id>.lambda-url.us-west-2.on.aws",
        domain_prefix="<url-id>",
        request_id="id",
        epoch=1583348638.390,
        authorizer=iam,
    )
    event = event_v2(documented_request(), "/my/path", ctx, url=True)
    event["headers"] = {k: v for k, v in event["headers"].items() if k.startswith("header")}
    assert list(event) == list(DOCUMENTED)
    assert list(event["requestContext"]) == list(DOCUMENTED["requestContext"])  # type: ignore[arg-type]
    # The documented example's `time` (12 March) is not its `timeEpoch` (4 March): time is
    # written from the epoch, in the same format.
    assert event["requestContext"].pop("time") == "04/Mar/2020:19:03:58 +0000"
    expected = json.loads(json.dumps(DOCUMENTED))
    del expected["requestContext"]["time"]
    assert event == expected


def test_request_time_text_follows_each_second_and_ids_are_uuid4() -> None:
    assert clf_time(1583348638.2) == "04/Mar/2020:19:03:58 +0000"
    assert clf_time(1583348638.9) == "04/Mar/2020:19:03:58 +0000"  # made once a second
    assert clf_time(1583348639.0) == "04/Mar/2020:19:03:59 +0000"
    assert clf_time(1583348638.5) == "04/Mar/2020:19:03:58 +0000"  # and never stale
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in ids)


def test_http_api_2_0_leaves_out_what_it_does_not_fill() -> None:
    request = WebRequest("GET", "/items/7", "", [("host", "h")], b"")
    ctx = EventContext("1", "api", "d", "api", "rid", 0.0, route_key="GET /items/{id}",
                       path_parameters={"id": "7"})  # fmt: skip
    event = event_v2(request, "/items/7", ctx, url=False)
    assert "cookies" not in event and "queryStringParameters" not in event
    assert "body" not in event and "stageVariables" not in event
    assert "authentication" not in event["requestContext"]
    assert event["pathParameters"] == {"id": "7"}
    assert event["requestContext"]["time"] == "01/Jan/1970:00:00:00 +0000"


@pytest.mark.parametrize(
    ("content_type", "encoded"),
    [
        ("text/html; charset=utf-8", False),
        ("application/json", False),
        ("application/vnd.api+json", False),
        ("application/xml", False),
        ("application/javascript", False),
        ("application/x-www-form-urlencoded", True),
        ("multipart/form-data; boundary=x", True),
        ("image/png", True),
        ("", True),
    ],
)
def test_binary_bodies_are_base64(content_type: str, encoded: bool) -> None:
    headers = [("content-type", content_type)] if content_type else []
    request = WebRequest("POST", "/", "", headers, b"a=1&b=2")
    event = event_v2(request, "/", EventContext("1", "a", "d", "a", "r", 0.0), url=True)
    assert event["isBase64Encoded"] is encoded
    assert event["body"] == (base64.b64encode(b"a=1&b=2").decode() if encoded else "a=1&b=2")


def test_text_that_is_not_utf8_is_base64_too() -> None:
    request = WebRequest("POST", "/", "", [("content-type", "text/plain")], b"\xff\xfe")
    event = event_v2(request, "/", EventContext("1", "a", "d", "a", "r", 0.0), url=True)
    assert event["isBase64Encoded"] is True and event["body"] == "//4="


def test_payload_1_0_keeps_every_value() -> None:
    request = documented_request()
    ctx = EventContext("123456789012", "id", "d", "id", "rid", 1583349317.135,
                       route_key="POST /my/{p}", resource="/my/{p}", path_parameters={"p": "path"},
                       stage_variables={"v": "1"})  # fmt: skip
    event = event_v1(request, "/my/path", ctx)
    assert event["headers"]["header2"] == "value2"
    assert event["multiValueHeaders"]["header2"] == ["value1", "value2"]
    assert event["headers"]["cookie"] == "cookie1; cookie2"
    assert event["queryStringParameters"] == {"parameter1": "value2", "parameter2": "value"}
    assert event["multiValueQueryStringParameters"] == {
        "parameter1": ["value1", "value2"],
        "parameter2": ["value"],
    }
    assert event["pathParameters"] == {"p": "path"} and event["stageVariables"] == {"v": "1"}
    context = event["requestContext"]
    assert context["resourcePath"] == "/my/{p}" and event["resource"] == "/my/{p}"
    assert context["requestTime"] == "04/Mar/2020:19:15:17 +0000"
    assert context["requestTimeEpoch"] == 1583349317135
    assert context["identity"]["sourceIp"] == "123.123.123.123"
    assert event["body"] == "Hello from client!" and event["isBase64Encoded"] is False


def test_bare_values_are_json_bodies() -> None:
    answer = response_v2(b'"Hello, world!"', unquote_strings=False)
    assert answer.status == 200 and answer.body == b'"Hello, world!"'
    assert answer.header("content-type") == "application/json"
    assert response_v2(b'"Hello"', unquote_strings=True).body == b"Hello"
    as_dict = response_v2(b'{"message": "hi"}', unquote_strings=False)
    assert as_dict.status == 200 and json.loads(as_dict.body) == {"message": "hi"}
    assert response_v2(b"null", unquote_strings=False).body == b"null"


def test_a_structured_response() -> None:
    document = {
        "statusCode": 201,
        "headers": {"Content-Type": "text/html", "X-Count": 3, "Content-Length": "999"},
        "multiValueHeaders": {"X-Many": ["a", "b"]},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x89PNG").decode(),
        "isBase64Encoded": True,
    }
    answer = response_v2(json.dumps(document).encode(), unquote_strings=False)
    assert answer.status == 201 and answer.body == b"\x89PNG"
    assert ("X-Count", "3") in answer.headers
    assert [v for k, v in answer.headers if k == "X-Many"] == ["a", "b"]
    assert [v for k, v in answer.headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2"]
    assert answer.header("content-type") == "text/html"
    assert answer.header("content-length") is None  # the front end frames the answer


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"statusCode": "abc"}',
        b'{"statusCode": 99}',
        b'{"statusCode": 200, "headers": {"a": {"b": 1}}}',
        b'{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}',
    ],
)
def test_malformed_responses(payload: bytes) -> None:
    with pytest.raises(BadResponse):
        response_v2(payload, unquote_strings=False)


def test_a_1_0_response_needs_a_status() -> None:
    with pytest.raises(BadResponse):
        response_v1(b'"just a string"')
    answer = response_v1(b'{"statusCode": 404, "body": "no", "cookies": ["ignored=1"]}')
    assert answer.status == 404 and answer.body == b"no"
    assert answer.header("set-cookie") is None


RULES = cors.CorsRules.of(
    {
        "AllowOrigins": ["http://app.localhost:8000"],
        "AllowMethods": ["GET", "PUT"],
        "AllowHeaders": ["x-custom"],
        "ExposeHeaders": ["x-answer"],
        "MaxAge": 60,
    }
)


def preflight_request(origin: str, method: str = "PUT", headers: str = "X-Custom") -> WebRequest:
    return WebRequest(
        "OPTIONS",
        "/",
        "",
        [
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", headers),
        ],
    )


def test_a_preflight_from_an_allowed_origin() -> None:
    assert RULES is not None
    request = preflight_request("http://app.localhost:8000")
    assert cors.is_preflight(request)
    answer = cors.preflight(RULES, request)
    assert answer.status == 200
    assert answer.header("access-control-allow-origin") == "http://app.localhost:8000"
    assert answer.header("access-control-allow-methods") == "GET,PUT"
    assert answer.header("access-control-allow-headers") == "x-custom"
    assert answer.header("access-control-max-age") == "60"


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("http://evil.localhost:8000", "PUT", "x-custom"),
        ("http://app.localhost:8000", "DELETE", "x-custom"),
        ("http://app.localhost:8000", "PUT", "x-other"),
    ],
)
def test_a_preflight_that_is_not_allowed(origin: str, method: str, headers: str) -> None:
    assert RULES is not None
    answer = cors.preflight(RULES, preflight_request(origin, method, headers))
    assert answer.header("access-control-allow-origin") is None


def test_answers_carry_the_configured_headers() -> None:
    assert RULES is not None
    from lamina.web.request import WebResponse

    request = WebRequest("GET", "/", "", [("origin", "http://app.localhost:8000")])
    answer = WebResponse(200, [("Access-Control-Allow-Origin", "*"), ("X-Answer", "1")])
    cors.decorate(RULES, request, answer)
    assert answer.header("access-control-allow-origin") == "http://app.localhost:8000"
    assert answer.header("access-control-expose-headers") == "x-answer"
    other = WebResponse(200, [("Access-Control-Allow-Origin", "*")])
    cors.decorate(RULES, WebRequest("GET", "/", "", [("origin", "http://x")]), other)
    assert other.header("access-control-allow-origin") is None
    wildcard = cors.CorsRules.of({"AllowOrigins": ["*"]})
    assert wildcard is not None and wildcard.allow_origin("http://x") == "*"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _collect(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


def test_a_streamed_answer_with_a_prelude_split_anywhere() -> None:
    prelude = json.dumps({"statusCode": 201, "headers": {"X-A": "1"}, "cookies": ["c=1"]})
    data = prelude.encode() + DELIMITER + b"first, then more"

    async def run(cut: int) -> None:
        answer = await streamed_answer(HTTP_INTEGRATION, _chunks(data[:cut], data[cut:]))
        assert answer.status == 201 and answer.header("x-a") == "1"
        assert answer.header("set-cookie") == "c=1"
        assert answer.header("content-type") == "application/octet-stream"
        assert not isinstance(answer.body, bytes)
        assert await _collect(answer.body) == b"first, then more"

    for cut in (1, len(prelude), len(prelude) + 3, len(data) - 1):
        asyncio.run(run(cut))


def test_a_streamed_answer_without_a_prelude() -> None:
    async def run() -> None:
        answer = await streamed_answer("text/plain", _chunks(b"a", b"b"))
        assert answer.status == 200 and answer.header("content-type") == "text/plain"
        assert not isinstance(answer.body, bytes)
        assert await _collect(answer.body) == b"ab"
        with pytest.raises(BadResponse):
            await streamed_answer(HTTP_INTEGRATION, _chunks(b'{"statusCode": 200}'))

    asyncio.run(run())


ROUTES = {
    str(i): {"RouteId": str(i), "RouteKey": key}
    for i, key in enumerate(
        [
            "GET /items/{id}",
            "ANY /items/{id}",
            "GET /items/special",
            "GET /files/{proxy+}",
            "ANY /{proxy+}",
            "$default",
        ]
    )
}


@pytest.mark.parametrize(
    ("method", "path", "key", "params"),
    [
        ("GET", "/items/7", "GET /items/{id}", {"id": "7"}),
        ("POST", "/items/7", "ANY /items/{id}", {"id": "7"}),
        ("GET", "/items/special", "GET /items/special", {}),
        ("GET", "/items/a%20b", "GET /items/{id}", {"id": "a b"}),
        ("GET", "/files/a/b/c.txt", "GET /files/{proxy+}", {"proxy": "a/b/c.txt"}),
        ("DELETE", "/files/a", "ANY /{proxy+}", {"proxy": "files/a"}),
        ("GET", "/", "$default", {}),
        ("GET", "/items/7/more", "ANY /{proxy+}", {"proxy": "items/7/more"}),
    ],
)
def test_route_selection(method: str, path: str, key: str, params: dict[str, str]) -> None:
    found = select_route(ROUTES, method, path)
    assert found is not None
    assert (found[0]["RouteKey"], found[1]) == (key, params)


def test_route_keys_are_checked() -> None:
    assert parse_route_key("GET /items/{id}").segments == ("items", "{id}")
    for bad in ("FETCH /x", "GET items", "GET /{proxy+}/x", "GET /a{b}"):
        with pytest.raises(AwsError) as raised:
            parse_route_key(bad)
        assert raised.value.code == "BadRequestException"
    assert select_route({"1": {"RouteKey": "GET /a"}}, "GET", "/b") is None


def test_stage_selection() -> None:
    api = {"stages": {"$default": {"StageName": "$default"}, "prod": {"StageName": "prod"}}}
    assert select_stage(api, "/prod/items/1") == ({"StageName": "prod"}, "/items/1")
    assert select_stage(api, "/items/1") == ({"StageName": "$default"}, "/items/1")
    assert select_stage({"stages": {"prod": {}}}, "/dev/x") is None

"""Function URLs against a real server, with requests, http.client and curl: the config
operations and AWS's errors, the payload format 2.0 event compared field by field with
AWS's documented example, repeated headers and query keys, cookies and a form post, binary
bodies both ways, bare-value answers, function errors (502), throttles (429), timeouts
(504), the path form, and every request through the same leases, logs, metrics and
traces as an Invoke."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function
from tests.web import host_of, localhost_resolves, public_url, url_id, wait_for

ECHO = """
import json
def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(event)}
"""

GUEST_BOOK = """
import base64
from urllib.parse import parse_qs

PAGE = '''<!doctype html>
<html><head><title>Guest book</title></head><body>
<h1 id="greeting">Hello, {name}! (visit {visits})</h1>
<form method="post" action="/sign">
  <input name="name" id="name"><button id="sign" type="submit">Sign</button>
</form></body></html>'''

def handler(event, context):
    cookies = dict(c.split("=", 1) for c in event.get("cookies", []))
    http = event["requestContext"]["http"]
    if http["method"] == "POST" and http["path"] == "/sign":
        body = event.get("body", "")
        if event["isBase64Encoded"]:
            body = base64.b64decode(body).decode()
        name = parse_qs(body)["name"][0]
        return {"statusCode": 303, "headers": {"Location": "/"},
                "cookies": [f"name={name}; Path=/; HttpOnly"]}
    if http["path"] != "/":  # a browser also asks for /favicon.ico
        return {"statusCode": 404, "headers": {"Content-Type": "text/plain"}, "body": "no"}
    visits = int(cookies.get("visits", "0")) + 1
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "text/html; charset=utf-8"},
        "cookies": [f"visits={visits}; Path=/"],
        "body": PAGE.format(name=cookies.get("name", "stranger"), visits=visits),
    }
"""

BINARY = """
import base64
def handler(event, context):
    data = base64.b64decode(event["body"]) if event["isBase64Encoded"] else b""
    return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
            "body": base64.b64encode(data[::-1]).decode(), "isBase64Encoded": True}
"""

ANSWERS = """
import json, time
def handler(event, context):
    kind = event["rawPath"].strip("/")
    if kind == "string":
        return "Hello, world!"
    if kind == "object":
        return {"message": "Hello, world!"}
    if kind == "fail":
        raise ValueError("broken")
    if kind == "malformed":
        return {"statusCode": "not a status"}
    if kind == "sleep":
        time.sleep(float(event["queryStringParameters"]["s"]))
        return {"statusCode": 200, "body": "slept"}
    return {"statusCode": 404, "body": "no such answer"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("urls") / "data").start()
    lam = running.client()
    python_function(lam, "echo", ECHO)
    python_function(lam, "guests", GUEST_BOOK)
    python_function(lam, "binary", BINARY)
    python_function(lam, "answers", ANSWERS, Timeout=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def urls(server: Server) -> dict[str, str]:
    lam = server.client()
    return {name: public_url(lam, name) for name in ("echo", "guests", "binary", "answers")}


@pytest.fixture
def resolved() -> Iterator[None]:
    with localhost_resolves():
        yield


# The config operations ---------------------------------------------------------------------
def test_url_configs_on_latest_and_an_alias(server: Server) -> None:
    lam = server.client()
    python_function(lam, "configs", ECHO)
    lam.publish_version(FunctionName="configs")
    lam.create_alias(FunctionName="configs", Name="live", FunctionVersion="1")
    cors = {"AllowOrigins": ["http://app.localhost"], "AllowMethods": ["GET"], "MaxAge": 30}
    created = lam.create_function_url_config(FunctionName="configs", AuthType="NONE", Cors=cors)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert re.fullmatch(
        rf"http://[a-z0-9]{{32}}\.lambda-url\.us-east-1\.localhost:{server.port}/",
        created["FunctionUrl"],
    )
    assert created["FunctionArn"].endswith(":function:configs")
    assert created["Cors"] == cors and created["InvokeMode"] == "BUFFERED"
    alias = lam.create_function_url_config(
        FunctionName="configs", Qualifier="live", AuthType="AWS_IAM", InvokeMode="RESPONSE_STREAM"
    )
    assert alias["FunctionArn"].endswith(":function:configs:live")
    assert alias["FunctionUrl"] != created["FunctionUrl"]

    with pytest.raises(ClientError) as again:
        lam.create_function_url_config(FunctionName="configs", AuthType="NONE")
    assert again.value.response["Error"]["Code"] == "ResourceConflictException"
    assert "FunctionUrlConfig exists for this Lambda function" in str(again.value)

    got = lam.get_function_url_config(FunctionName="configs", Qualifier="live")
    assert got["AuthType"] == "AWS_IAM" and got["InvokeMode"] == "RESPONSE_STREAM"
    updated = lam.update_function_url_config(FunctionName="configs", AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM" and updated["Cors"] == cors
    assert updated["LastModifiedTime"] >= updated["CreationTime"]
    listed = lam.list_function_url_configs(FunctionName="configs")["FunctionUrlConfigs"]
    assert sorted(c["FunctionArn"].rsplit(":", 1)[-1] for c in listed) == ["configs", "live"]

    lam.delete_alias(FunctionName="configs", Name="live")  # its URL goes with it
    assert len(lam.list_function_url_configs(FunctionName="configs")["FunctionUrlConfigs"]) == 1
    lam.delete_function_url_config(FunctionName="configs")
    with pytest.raises(ClientError) as gone:
        lam.get_function_url_config(FunctionName="configs")
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert gone.value.response["Error"]["Message"] == "The resource you requested does not exist."
    with pytest.raises(ClientError) as version:
        lam.create_function_url_config(FunctionName="configs:1", AuthType="NONE")
    assert version.value.response["Error"]["Code"] == "ValidationException"  # the model's rule
    with pytest.raises(ClientError) as missing:
        lam.create_function_url_config(FunctionName="nothing-here", AuthType="NONE")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_deleted_function_takes_its_url(server: Server) -> None:
    lam = server.client()
    python_function(lam, "short-lived", ECHO)
    url = public_url(lam, "short-lived")
    lam.delete_function(FunctionName="short-lived")
    answer = requests.get(f"{server.endpoint}/", headers={"Host": host_of(url)}, timeout=30)
    assert answer.status_code == 403
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert answer.json()["Message"].startswith("Forbidden. For troubleshooting Function URL")


# The event -----------------------------------------------------------------------------------
def documented_request(url: str) -> tuple[dict[str, Any], http.client.HTTPResponse, bytes]:
    """AWS's documented example request, sent with two `header2` lines and two cookies."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection("127.0.0.1", parts.port, timeout=30)
    connection.putrequest(
        "POST", "/my/path?parameter1=value1&parameter1=value2&parameter2=value", skip_host=True
    )
    connection.putheader("Host", parts.netloc)
    connection.putheader("Cookie", "cookie1; cookie2")
    connection.putheader("header1", "value1")
    connection.putheader("header2", "value1")
    connection.putheader("header2", "value2")
    connection.putheader("User-Agent", "agent")
    connection.putheader("Content-Type", "text/plain")
    body = b"Hello from client!"
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return json.loads(data), response, data


def test_the_event_matches_aws_documented_example_field_by_field(
    server: Server, urls: dict[str, str]
) -> None:
    before = time.time()
    event, response, _ = documented_request(urls["echo"])
    after = time.time()
    assert response.status == 200
    # AWS's documented example (urls-invocation), field by field and in its order; an
    # AWS_IAM URL adds requestContext.authorizer (test_function_url_auth.py).
    assert list(event) == [
        "version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers",
        "queryStringParameters", "requestContext", "body", "pathParameters",
        "isBase64Encoded", "stageVariables",
    ]  # fmt: skip
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/my/path"
    assert event["rawQueryString"] == "parameter1=value1&parameter1=value2&parameter2=value"
    assert event["cookies"] == ["cookie1", "cookie2"]
    headers = event["headers"]
    assert headers["header1"] == "value1" and headers["header2"] == "value1,value2"
    assert headers["host"] == host_of(urls["echo"]) and "cookie" not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(server.port)
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", headers["x-amzn-trace-id"])
    assert event["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "value"}
    context = event["requestContext"]
    assert list(context) == [
        "accountId", "apiId", "authentication", "domainName", "domainPrefix", "http",
        "requestId", "routeKey", "stage", "time", "timeEpoch",
    ]  # fmt: skip
    uid = url_id(urls["echo"])
    assert context["accountId"] == "000000000000" and context["apiId"] == uid
    assert context["authentication"] is None
    assert context["domainName"] == f"{uid}.lambda-url.us-east-1.localhost"
    assert context["domainPrefix"] == uid
    assert context["http"] == {
        "method": "POST",
        "path": "/my/path",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "agent",
    }
    assert context["requestId"] == response.getheader("x-amzn-RequestId")
    assert context["routeKey"] == "$default" and context["stage"] == "$default"
    assert before * 1000 - 1 <= context["timeEpoch"] <= after * 1000 + 1
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(context["timeEpoch"] / 1000))
    assert context["time"] == stamp
    assert event["body"] == "Hello from client!" and event["isBase64Encoded"] is False
    assert event["pathParameters"] is None and event["stageVariables"] is None
    assert response.getheader("X-Amzn-Trace-Id") == headers["x-amzn-trace-id"]


def test_repeated_query_keys_and_encoded_values(server: Server, urls: dict[str, str]) -> None:
    answer = requests.get(
        f"{server.endpoint}/search",
        params=[("tag", "a b"), ("tag", "c&d"), ("tag", ""), ("q", "é")],
        headers={"Host": host_of(urls["echo"])},
        timeout=30,
    )
    event = answer.json()
    assert event["rawQueryString"] == "tag=a+b&tag=c%26d&tag=&q=%C3%A9"
    assert event["queryStringParameters"] == {"tag": "a b,c&d,", "q": "é"}
    assert "cookies" not in event and "body" not in event


def test_the_path_form_serves_the_same_url(server: Server, urls: dict[str, str]) -> None:
    uid = url_id(urls["echo"])
    answer = requests.get(f"{server.endpoint}/_lamina/url/{uid}/deep/path?x=1", timeout=30)
    event = answer.json()
    assert event["rawPath"] == "/deep/path" and event["requestContext"]["apiId"] == uid
    root = requests.get(f"{server.endpoint}/_lamina/url/{uid}", timeout=30).json()
    assert root["rawPath"] == "/"
    unknown = requests.get(f"{server.endpoint}/_lamina/url/{'x' * 32}/", timeout=30)
    assert unknown.status_code == 403


# Pages, cookies and forms ---------------------------------------------------------------------
def test_an_html_page_with_cookies_and_a_form_post(urls: dict[str, str], resolved: None) -> None:
    browser = requests.Session()
    page = browser.get(urls["guests"], timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Hello, stranger! (visit 1)" in page.text
    assert browser.cookies.get("visits") == "1"
    signed = browser.post(urls["guests"] + "sign", data={"name": "Ada Lovelace"}, timeout=30)
    # 303 to / (with the name cookie), followed by a GET that sees both cookies
    assert [r.status_code for r in signed.history] == [303]
    assert signed.history[0].headers["Location"] == "/"
    assert "Hello, Ada Lovelace! (visit 2)" in signed.text


def test_curl_gets_the_page_and_every_set_cookie(urls: dict[str, str], tmp_path: Any) -> None:
    jar = tmp_path / "cookies.txt"
    first = subprocess.run(
        ["curl", "-si", "-c", str(jar), urls["guests"]],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert first.stdout.startswith("HTTP/1.1 200")
    assert "set-cookie: visits=1; Path=/" in first.stdout
    form = subprocess.run(
        ["curl", "-si", "-b", str(jar), "-c", str(jar), "-d", "name=Grace",
         urls["guests"] + "sign"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert form.stdout.startswith("HTTP/1.1 303")
    assert "set-cookie: name=Grace; Path=/; HttpOnly" in form.stdout
    again = subprocess.run(
        ["curl", "-s", "-b", str(jar), urls["guests"]],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "Hello, Grace! (visit 2)" in again.stdout


# Bodies and answers ----------------------------------------------------------------------------
def test_binary_bodies_both_ways(urls: dict[str, str], resolved: None) -> None:
    data = bytes(range(256)) * 64
    answer = requests.post(
        urls["binary"], data=data, headers={"Content-Type": "image/png"}, timeout=30
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.content == data[::-1]
    curl = subprocess.run(
        ["curl", "-s", "--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
         urls["binary"]],
        input=data, capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert curl.stdout == data[::-1]


def test_bare_values_and_structured_answers(urls: dict[str, str], resolved: None) -> None:
    string = requests.get(urls["answers"] + "string", timeout=30)
    assert string.status_code == 200 and string.content == b'"Hello, world!"'
    assert string.headers["Content-Type"] == "application/json"
    assert requests.get(urls["answers"] + "object", timeout=30).json() == {
        "message": "Hello, world!"
    }
    other = requests.get(urls["answers"] + "other", timeout=30)
    assert other.status_code == 404 and other.text == "no such answer"


def test_function_errors_throttles_and_timeouts(server: Server, urls: dict[str, str]) -> None:
    lam = server.client()
    host = {"Host": host_of(urls["answers"])}

    failed = requests.get(f"{server.endpoint}/fail", headers=host, timeout=30)
    assert failed.status_code == 502 and failed.text == "Internal Server Error"
    malformed = requests.get(f"{server.endpoint}/malformed", headers=host, timeout=30)
    assert malformed.status_code == 502 and malformed.text == "Internal Server Error"

    started = time.monotonic()
    timed_out = requests.get(f"{server.endpoint}/sleep?s=3", headers=host, timeout=30)
    assert timed_out.status_code == 504
    assert timed_out.json() == {"Message": "Endpoint request timed out"}
    assert 1.0 <= time.monotonic() - started < 3.0  # the function's 1-second timeout

    lam.put_function_concurrency(FunctionName="answers", ReservedConcurrentExecutions=0)
    try:
        throttled = requests.get(f"{server.endpoint}/string", headers=host, timeout=30)
    finally:
        lam.delete_function_concurrency(FunctionName="answers")
    assert throttled.status_code == 429
    assert throttled.json() == {"Message": "Rate Exceeded."}
    assert throttled.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert int(throttled.headers["Retry-After"]) >= 1


def test_url_requests_share_the_function_s_leases(server: Server, urls: dict[str, str]) -> None:
    lam = server.client()
    host = {"Host": host_of(urls["answers"])}
    lam.put_function_concurrency(FunctionName="answers", ReservedConcurrentExecutions=1)
    statuses: list[int] = []

    def call() -> None:
        answer = requests.get(f"{server.endpoint}/sleep?s=0.6", headers=host, timeout=30)
        statuses.append(answer.status_code)

    try:
        first = threading.Thread(target=call)
        first.start()
        time.sleep(0.25)  # the first holds the one slot while it sleeps
        direct = lam.invoke(FunctionName="answers", Payload=b'{"rawPath": "/string"}')
        first.join()
    except ClientError as throttled:
        first.join()
        direct = {"error": throttled.response["Error"]["Code"]}
    finally:
        lam.delete_function_concurrency(FunctionName="answers")
    assert statuses == [200]
    assert direct == {"error": "TooManyRequestsException"}


def test_logs_metrics_and_a_continued_trace(server: Server) -> None:
    lam = server.client()
    python_function(lam, "observed", ECHO, TracingConfig={"Mode": "PassThrough"})
    url = public_url(lam, "observed")
    root = f"1-{int(time.time()):08x}-{'ab' * 12}"
    answer = requests.get(
        f"{server.endpoint}/traced",
        headers={
            "Host": host_of(url),
            "X-Amzn-Trace-Id": f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1",
        },
        timeout=30,
    )
    request_id = answer.headers["x-amzn-RequestId"]
    assert answer.json()["headers"]["x-amzn-trace-id"].startswith(f"Root={root}")
    assert answer.headers["X-Amzn-Trace-Id"].startswith(f"Root={root}")

    logs = server.client("logs")

    def report() -> bool:
        events = logs.filter_log_events(logGroupName="/aws/lambda/observed")["events"]
        return any(e["message"].startswith(f"REPORT RequestId: {request_id}") for e in events)

    wait_for(report, what="the REPORT line of the URL's invocation")
    xray = server.client("xray")
    traces = wait_for(
        lambda: xray.batch_get_traces(TraceIds=[root])["Traces"], what="the continued trace"
    )
    origins = {json.loads(s["Document"])["origin"] for s in traces[0]["Segments"]}
    assert {"AWS::Lambda", "AWS::Lambda::Function"} <= origins

    cloudwatch = server.client("cloudwatch")

    def invocations() -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Invocations",
            Dimensions=[{"Name": "FunctionName", "Value": "observed"}],
            StartTime=time.time() - 600,
            EndTime=time.time() + 60,
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return sum(p["Sum"] for p in points)

    assert wait_for(lambda: invocations() >= 1, what="the Invocations metric")

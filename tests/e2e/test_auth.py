"""`--auth on`: every service's requests verified with SigV4 (real boto3, the real AWS CLI
with a profile holding keys from `lamina accounts create`), each failure answered with the
service's own code and message, presigned URLs, scope, skew; `lamina accounts` while the
server runs; regions checked in both modes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)
INVALID = "The security token included in the request is invalid."
# One cheap operation per service: (client name, method, arguments).
OPERATIONS = {
    "lambda": ("list_functions", {}),
    "sqs": ("list_queues", {}),
    "kinesis": ("list_streams", {}),
    "logs": ("describe_log_groups", {}),
    "cloudwatch": ("list_metrics", {}),
    "xray": ("get_trace_summaries", {"StartTime": 0, "EndTime": 1}),
    "dynamodb": ("list_tables", {}),
    "dynamodbstreams": ("list_streams", {}),
    "service-quotas": ("list_requested_service_quota_change_history", {}),
    "apigatewayv2": ("get_apis", {}),
    "sns": ("list_topics", {}),
}
# The protocol families: (missing, unknown key, mismatch code, status) per service.
JSON_CODES = ("MissingAuthenticationTokenException", "UnrecognizedClientException",
              "InvalidSignatureException")  # fmt: skip
QUERY_CODES = ("MissingAuthenticationToken", "InvalidClientTokenId", "SignatureDoesNotMatch")
FAMILIES = {
    "lambda": (JSON_CODES, 403),
    "xray": (JSON_CODES, 403),
    "apigatewayv2": (JSON_CODES, 403),
    "kinesis": (JSON_CODES, 400),
    "logs": (JSON_CODES, 400),
    "dynamodb": (JSON_CODES, 400),
    "dynamodbstreams": (JSON_CODES, 400),
    "service-quotas": (JSON_CODES, 400),
    "sqs": (QUERY_CODES, 403),
    "cloudwatch": (QUERY_CODES, 403),
    "sns": (QUERY_CODES, 403),
}
MISSING_MESSAGE = {
    "lambda": "Missing Authentication Token",
    "xray": "Missing Authentication Token",
    "apigatewayv2": "Missing Authentication Token",
    "kinesis": "Request is missing Authentication Token",
    "logs": "Request is missing Authentication Token",
    "dynamodb": "Request is missing Authentication Token",
    "dynamodbstreams": "Request is missing Authentication Token",
    "service-quotas": "Request is missing Authentication Token",
    "sqs": "Request is missing Authentication Token",
    "cloudwatch": "Request is missing Authentication Token",
    "sns": "Request is missing Authentication Token",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("auth") / "data", args=["--auth", "on", "--isolation", "none"]
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> tuple[str, dict[str, str]]:
    return server.new_account("alice")


def call(client: Any, service: str) -> Any:
    method, arguments = OPERATIONS[service]
    return getattr(client, method)(**arguments)


def refused(client: Any, service: str) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call(client, service)
    error = caught.value.response
    return (
        error["Error"]["Code"],
        error["Error"]["Message"],
        error["ResponseMetadata"]["HTTPStatusCode"],
    )


@pytest.mark.parametrize("service", sorted(OPERATIONS))
def test_valid_requests_pass_and_each_failure_has_the_services_own_answer(
    server: Server, alice: tuple[str, dict[str, str]], service: str
) -> None:
    _, keys = alice
    call(server.client(service, credentials=keys), service)  # no error
    (missing, unknown, mismatch), status = FAMILIES[service]
    wrong = {**keys, "aws_secret_access_key": "not-the-secret"}
    code, message, got = refused(server.client(service, credentials=wrong), service)
    assert (code, got) == (mismatch, status)
    assert message.startswith(MISMATCH + "\n\nThe Canonical String for this request should")
    nobody = {"aws_access_key_id": "AKIAUNKNOWNKEY000000", "aws_secret_access_key": "x"}
    assert refused(server.client(service, credentials=nobody), service) == (
        unknown,
        INVALID,
        status,
    )
    # An expired signature: the same client with its clock 10 minutes behind.
    late = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=10)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=late):
        code, message, got = refused(server.client(service, credentials=keys), service)
    stamp = late.strftime("%Y%m%dT%H%M%SZ")
    assert (code, got) == (mismatch, status)
    assert message.startswith(f"Signature expired: {stamp} is now earlier than ")
    assert message.endswith(" - 5 min.)")
    # Four minutes off is within the skew.
    near = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=4)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=near):
        call(server.client(service, credentials=keys), service)
    # No authentication at all: an unsigned botocore client.
    anonymous = server.client(service, credentials=keys, signature_version=UNSIGNED)
    assert refused(anonymous, service) == (missing, MISSING_MESSAGE[service], status)


def test_query_protocol_of_cloudwatch_is_verified_too(
    server: Server, alice: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """CloudWatch's older query protocol (form body, XML answer) through the real AWS CLI
    v1, which speaks query, with a profile holding the keys."""
    _, keys = alice
    env = cli_env(tmp_path, keys)
    ok = aws_cli(server, env, "cloudwatch", "list-metrics")
    assert ok.returncode == 0, ok.stderr
    bad = aws_cli(server, cli_env(tmp_path, {**keys, "aws_secret_access_key": "nope"}),
                  "cloudwatch", "list-metrics")  # fmt: skip
    assert bad.returncode == 255
    assert "(SignatureDoesNotMatch)" in bad.stderr


def cli_env(tmp_path: Path, keys: dict[str, str], profile: str = "alice") -> dict[str, str]:
    """A profile in a credentials file of its own, nothing from the developer's shell."""
    credentials = tmp_path / f"credentials-{profile}"
    credentials.write_text(
        f"[{profile}]\naws_access_key_id = {keys['aws_access_key_id']}\n"
        f"aws_secret_access_key = {keys['aws_secret_access_key']}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_PROFILE=profile,
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_DEFAULT_REGION="us-east-1",
        AWS_PAGER="",
    )
    return env


def aws_cli(server: Server, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:

    aws = Path(sys.executable).parent / "aws"
    return subprocess.run(
        [str(aws), "--endpoint-url", server.endpoint, *args, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_aws_cli_with_a_profile_from_lamina_accounts(
    server: Server, alice: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    account, keys = alice
    env = cli_env(tmp_path, keys)
    made = aws_cli(server, env, "sqs", "create-queue", "--queue-name", "cli-auth")
    assert made.returncode == 0, made.stderr
    assert f"/{account}/cli-auth" in json.loads(made.stdout)["QueueUrl"]
    listed = aws_cli(server, env, "lambda", "get-account-settings")
    assert listed.returncode == 0, listed.stderr
    wrong = aws_cli(server, cli_env(tmp_path, {**keys, "aws_secret_access_key": "x"}, "eve"),
                    "lambda", "list-functions")  # fmt: skip
    assert wrong.returncode == 255
    assert (
        "An error occurred (InvalidSignatureException) when calling the ListFunctions "
        "operation: " + MISMATCH in wrong.stderr
    )


def test_presigned_url_works_and_expires(server: Server, alice: tuple[str, dict[str, str]]) -> None:
    _, keys = alice
    lam = server.client(credentials=keys)
    url = lam.generate_presigned_url("get_account_settings", ExpiresIn=2)
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert json.load(answer)["AccountLimit"]["ConcurrentExecutions"] == 1000
    tampered = url.replace("X-Amz-Expires=2", "X-Amz-Expires=3")
    status, headers, body = fetch(tampered)
    assert (status, headers.get("x-amzn-errortype")) == (403, "InvalidSignatureException")
    time.sleep(3)
    status, headers, body = fetch(url)
    assert (status, headers.get("x-amzn-errortype")) == (403, "InvalidSignatureException")
    assert json.loads(body) == {"message": "Request has expired."}


def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


LIST = "/2015-03-31/functions/"


@pytest.mark.parametrize(
    ("authorization", "code", "message"),
    [
        (
            "AWS4-HMAC-SHA256 Credential=AKIAX/20260101/us-east-1/lambda/aws4_request",
            "IncompleteSignatureException",
            "Authorization header requires 'Signature' parameter. Authorization header requires "
            "'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 "
            "Credential=AKIAX/20260101/us-east-1/lambda/aws4_request",
        ),
        (
            "AWS AKIAX:c2lnbmF0dXJl",
            "IncompleteSignatureException",
            "Authorization header requires 'Credential' parameter. Authorization header requires "
            "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. "
            "Authorization=AWS AKIAX:c2lnbmF0dXJl",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAX/{date}/xx-nowhere-9/lambda/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=abc",
            "InvalidSignatureException",
            "Credential should be scoped to a valid region, not 'xx-nowhere-9'. ",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAX/{date}/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=abc",
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'lambda'. ",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAX/{date}/us-east-1/lambda/aws4_nope, "
            "SignedHeaders=host;x-amz-date, Signature=abc",
            "IncompleteSignatureException",
            "Credential should be scoped with a valid terminator: 'aws4_request', not "
            "'aws4_nope'. ",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIAX/19990101/us-east-1/lambda/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=abc",
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            "from HTTP: '19990101' != '{date}', from '{stamp}'.",
        ),
    ],
)
def test_malformed_authorization_gets_a_clear_4xx(
    server: Server, authorization: str, code: str, message: str
) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    date = stamp[:8]
    status, headers, body = fetch(
        server.endpoint + LIST,
        Authorization=authorization.format(date=date),
        **{"X-Amz-Date": stamp},
    )
    assert status in (400, 403)
    assert headers["x-amzn-errortype"] == code
    assert json.loads(body) == {"message": message.format(date=date, stamp=stamp)}


def test_huge_and_non_ascii_headers_get_a_4xx_never_a_500(
    server: Server, alice: tuple[str, dict[str, str]]
) -> None:
    _, keys = alice
    lam = server.client(credentials=keys)
    # A huge signed header: verified like any other.
    lam.meta.events.register(
        "before-sign.lambda.ListFunctions",
        lambda request, **_: request.headers.__setitem__("X-Custom", "v" * 60_000),
    )
    try:
        lam.list_functions()
    except ClientError as error:  # a server may refuse its size, in AWS's shape
        assert 400 <= error.response["ResponseMetadata"]["HTTPStatusCode"] < 500
    # Non-ASCII in a signed header, and in the Authorization header itself.
    request = urllib.request.Request(
        server.endpoint + LIST,
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=ÄKIA/x/y/z/aws4_request",
            "X-Amz-Date": "é",
        },
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as error:
        assert 400 <= error.code < 500, error.read()
        assert error.headers["x-amzn-errortype"]
    lam = server.client(credentials=keys)
    lam.meta.events.register(
        "before-sign.lambda.ListFunctions",
        lambda request, **_: request.headers.__setitem__("X-Custom", "caf\u00e9"),
    )
    lam.list_functions()  # latin-1 bytes in a signed header verify as sent


def test_accounts_cli_while_the_server_runs(server: Server) -> None:
    account, keys = server.new_account("carol", "--concurrency", "7")
    lam = server.client(credentials=keys)
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 7
    second = server.accounts("keys", "create", "carol")["AccessKey"]
    other = {
        "aws_access_key_id": second["AccessKeyId"],
        "aws_secret_access_key": second["SecretAccessKey"],
    }
    assert server.client(credentials=other).get_account_settings()
    server.accounts("set-limits", "carol", "--concurrency", "9")
    deadline = time.monotonic() + 5
    while lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] != 9:
        assert time.monotonic() < deadline, "the new limit was not applied"
        time.sleep(0.1)
    server.accounts("keys", "delete", second["AccessKeyId"])
    deadline = time.monotonic() + 5
    while True:
        try:
            server.client(credentials=other).get_account_settings()
        except ClientError as error:
            assert error.response["Error"]["Code"] == "UnrecognizedClientException"
            break
        assert time.monotonic() < deadline, "a deleted key still worked"
        time.sleep(0.1)
    listed = {a["Name"]: a for a in server.accounts("list")["Accounts"]}
    assert listed["carol"]["Id"] == account
    assert listed["carol"]["AccessKeyIds"] == [keys["aws_access_key_id"]]
    server.accounts("delete", "carol")
    time.sleep(0.3)
    with pytest.raises(ClientError) as gone:
        lam.get_account_settings()
    assert gone.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_secrets_are_not_stored_in_the_clear(server: Server) -> None:
    _, keys = server.new_account("dave")
    secret = keys["aws_secret_access_key"].encode()
    for path in server.data_dir.iterdir():
        if path.name.startswith("accounts.db"):
            assert secret not in path.read_bytes(), path
            assert path.stat().st_mode & 0o077 == 0, path
    assert (server.data_dir / "accounts.key").stat().st_mode & 0o077 == 0


def test_a_function_created_by_one_account_is_its_own(
    server: Server, alice: tuple[str, dict[str, str]]
) -> None:
    account, keys = alice
    made = python_function(
        server.client(credentials=keys), "auth-owned", "def handler(e, c): return 1"
    )
    assert made["FunctionArn"] == f"arn:aws:lambda:us-east-1:{account}:function:auth-owned"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_regions_are_real_in_off_mode_and_made_up_ones_cost_nothing(tmp_path: Path) -> None:
    """With auth off the key id names the account and the region still comes from the
    signature's scope: a region AWS does not have, or one left out of --regions, is
    refused before anything is made for it."""
    import http.client
    import random
    import string

    server = Server(tmp_path / "data", args=["--auth", "off", "--regions", "us-east-1,eu-west-1"])
    server.start()
    try:
        assert server.client(region="eu-west-1").list_functions()["Functions"] == []
        # Nothing is verified; a 12-digit key id names its account, any other key is
        # 000000000000's.
        named = server.client(credentials={"aws_access_key_id": "111111111111",
                                           "aws_secret_access_key": "anything"})  # fmt: skip
        made = python_function(named, "off-owned", "def handler(e, c): return 1")
        assert made["FunctionArn"].split(":")[4] == "111111111111"
        anyone = server.client(credentials={"aws_access_key_id": "AKIAANYTHING",
                                            "aws_secret_access_key": "wrong"})  # fmt: skip
        assert anyone.list_functions()["Functions"] == []
        python_function(anyone, "default-owned", "def handler(e, c): return 1")
        assert [f["FunctionArn"].split(":")[4] for f in server.client().list_functions()[
            "Functions"]] == ["000000000000"]  # fmt: skip
        with pytest.raises(ClientError) as outside:
            server.client(region="us-west-2").list_functions()
        assert outside.value.response["Error"] == {
            "Code": "InvalidSignatureException",
            "Message": "Credential should be scoped to a valid region, not 'us-west-2'. ",
        }
        assert server.process is not None
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

        def burst(count: int) -> None:
            for _ in range(count):
                region = "xx-" + "".join(random.choices(string.ascii_lowercase, k=12)) + "-1"
                for path, target in (("/2016-08-19/account-settings/", None),
                                     ("/", "Kinesis_20131202.ListStreams")):  # fmt: skip
                    headers = {
                        "Authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/{region}/"
                        "lambda/aws4_request, SignedHeaders=host, Signature=00",
                    }
                    method = "GET" if target is None else "POST"
                    if target:
                        headers["X-Amz-Target"] = target
                        headers["Content-Type"] = "application/x-amz-json-1.1"
                    connection.request(
                        method, path, body=b"{}" if target else None, headers=headers
                    )
                    answer = connection.getresponse()
                    answer.read()
                    assert answer.status in (400, 403), answer.status

        burst(500)  # warm up whatever the first requests load
        before = rss_kb(server.process.pid)
        burst(5000)
        grown = rss_kb(server.process.pid) - before
        assert grown < 8 * 1024, f"the server grew {grown} KB for made-up regions"
        # ... and nothing keeps working for them afterwards: idle, the server sleeps.
        spent = cpu_seconds(server.process.pid)
        time.sleep(2)
        idle = (cpu_seconds(server.process.pid) - spent) / 2
        assert idle < 0.05, f"idle after made-up regions, the server used {idle:.0%} of a core"
        stats = json.load(urllib.request.urlopen(server.endpoint + "/_lamina/stats", timeout=10))
        assert all(entry["Region"] in ("us-east-1", "eu-west-1") for entry in stats["concurrency"])
    finally:
        server.stop()


# One raw request per protocol family: (headers, body) of a cheap operation.
RAW = {
    "kinesis": (
        {"X-Amz-Target": "Kinesis_20131202.ListStreams",
         "Content-Type": "application/x-amz-json-1.1"},
        b"{}",
    ),
    "sqs": (
        {"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"},
        b"{}",
    ),
    "cloudwatch": (
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"Action=ListMetrics&Version=2010-08-01",
    ),
}  # fmt: skip


@pytest.mark.parametrize("service", sorted(RAW))
def test_an_incomplete_signature_in_each_family(server: Server, service: str) -> None:
    """The Authorization header lacks its Signature and SignedHeaders: the json family's
    IncompleteSignatureException (Kinesis, 400), the query family's IncompleteSignature
    (SQS's json carries it in x-amzn-query-error; CloudWatch's query protocol in XML)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scope = f"AKIAX/{stamp[:8]}/us-east-1/{'monitoring' if service == 'cloudwatch' else service}"
    authorization = f"AWS4-HMAC-SHA256 Credential={scope}/aws4_request"
    message = (
        "Authorization header requires 'Signature' parameter. Authorization header requires "
        f"'SignedHeaders' parameter. Authorization={authorization}"
    )
    headers, body = RAW[service]
    request = urllib.request.Request(
        server.endpoint + "/",
        data=body,
        method="POST",
        headers={**headers, "Authorization": authorization, "X-Amz-Date": stamp},
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("accepted")
    except urllib.error.HTTPError as error:
        status, answer, got = error.code, error.read(), error.headers
    if service == "kinesis":
        assert status == 400
        assert json.loads(answer) == {"__type": "IncompleteSignatureException", "message": message}
    elif service == "sqs":
        assert status == 400
        assert got["x-amzn-query-error"] == "IncompleteSignature;Sender"
        assert json.loads(answer)["message"] == message
    else:
        text = answer.decode()
        assert status == 400
        assert "<Code>IncompleteSignature</Code>" in text
        assert f"<Message>{message}</Message>" in text


SCENARIO = """
set -eu
ip link set lo up
ip link add lamina0 type veth peer name lamina1
ip addr add 10.213.0.1/24 dev lamina0
ip link set lamina0 up
ip link set lamina1 up
serve() {{
  "$PYTHON" -m lamina.cli serve --host 10.213.0.1 --port 9711 --data-dir "$1" \\
    --isolation none --xray-port 0 $2 > "$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    curl -s -o /dev/null http://10.213.0.1:9711/_lamina/health && break
    sleep 0.1
  done
  curl -s -o /dev/null -w "%{{http_code}}\\n" http://10.213.0.1:9711/2015-03-31/functions/
  kill $pid
  wait $pid || true
}}
serve {data}/auto ""
serve {data}/off "--auth off"
"""


def test_auth_is_on_by_default_off_loopback_and_off_there_warns(tmp_path: Path) -> None:
    """Bound to an address other than loopback (a veth pair in a network namespace of the
    test's own, gone with it), `lamina serve` verifies signatures unless told `--auth off`, which
    it then says is dangerous."""
    script = SCENARIO.format(data=tmp_path)
    done = subprocess.run(
        ["unshare", "--net", "bash", "-c", script],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["403", "200"]  # unsigned: refused, then let in
    auto = (tmp_path / "auto.log").read_text()
    off = (tmp_path / "off.log").read_text()
    assert "auth: on (SigV4 verified)" in auto
    assert "auth is off on 10.213.0.1, a non-loopback address" in off
    assert "auth is off" not in auto


def test_payload_hashes_unsigned_and_claimed(
    server: Server, alice: tuple[str, dict[str, str]]
) -> None:
    """`X-Amz-Content-SHA256: UNSIGNED-PAYLOAD` leaves the body out of the signature; a
    claimed hash must be the body's (Kinesis, the json family)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    _, keys = alice
    headers, body = RAW["kinesis"]

    def send(content_sha256: str, sent: bytes) -> tuple[int, bytes]:
        signed = {**headers, "X-Amz-Content-SHA256": content_sha256}
        request = AWSRequest("POST", server.endpoint + "/", data=body, headers=signed)
        credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
        SigV4Auth(credentials, "kinesis", "us-east-1").add_auth(request)
        raw = urllib.request.Request(
            server.endpoint + "/", data=sent, method="POST", headers=dict(request.headers)
        )
        try:
            with urllib.request.urlopen(raw, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, answer = send("UNSIGNED-PAYLOAD", body)
    assert (status, json.loads(answer)["StreamNames"]) == (200, [])
    status, answer = send("UNSIGNED-PAYLOAD", b'{"Limit": 5}')  # another body: not signed
    assert status == 200
    status, answer = send("0" * 64, body)
    assert (status, json.loads(answer)) == (400, {
        "__type": "InvalidSignatureException",
        "message": "The provided 'x-amz-content-sha256' header does not match what was computed.",
    })  # fmt: skip

"""Who may call a function URL, against servers with `--auth on` and `--auth off`: a NONE
URL needs both statements AWS requires (lambda:InvokeFunctionUrl and
lambda:InvokeFunction through a URL) for principal `*` and the server's log says which one
is missing; an AWS_IAM URL takes a request signed by botocore (SigV4, header or presigned)
and refuses unsigned or wrongly signed ones with AWS's 403; another account's caller needs
the function's policy; the IAM caller is in the event's requestContext.authorizer.iam."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.test_function_urls import ECHO
from tests.helpers import Server, python_function
from tests.web import localhost_resolves, public_url, wait_for

FORBIDDEN = {
    "Message": "Forbidden. For troubleshooting Function URL authorization issues, see: "
    "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("url-auth") / "data", args=["--auth", "on", "--isolation", "none"]
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def alice(server: Server) -> tuple[str, dict[str, str]]:
    return server.new_account("alice")


@pytest.fixture(scope="module")
def bob(server: Server) -> tuple[str, dict[str, str]]:
    return server.new_account("bob")


def signed(
    method: str,
    url: str,
    keys: dict[str, str],
    body: bytes = b"",
    service: str = "lambda",
    presigned: bool = False,
) -> requests.Response:
    """A request signed by botocore's own signers, sent with requests."""
    credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "text/plain"})
    signer = SigV4QueryAuth if presigned else SigV4Auth
    signer(credentials, service, "us-east-1").add_auth(request)  # type: ignore[operator]
    prepared = request.prepare()
    with localhost_resolves():
        return requests.request(
            method, prepared.url, headers=dict(prepared.headers), data=body, timeout=30
        )


def refused(answer: requests.Response) -> bool:
    return (
        answer.status_code == 403
        and answer.json() == FORBIDDEN
        and answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    )


def test_a_none_url_needs_both_statements_for_everyone(
    server: Server, alice: tuple[str, dict[str, str]]
) -> None:
    lam = server.client(credentials=alice[1])
    python_function(lam, "open", ECHO)
    url = lam.create_function_url_config(FunctionName="open", AuthType="NONE")["FunctionUrl"]

    def get() -> requests.Response:
        with localhost_resolves():
            return requests.get(url + "hello", timeout=30)

    assert refused(get())
    wait_for(
        lambda: "lambda:InvokeFunctionUrl and no lambda:InvokeFunction" in server.output(),
        what="the log line naming what the policy lacks",
    )
    assert "aws lambda add-permission --function-name open " in server.output()
    assert "--action lambda:InvokeFunctionUrl --principal '*' --function-url-auth-type NONE" in (
        server.output()
    )
    lam.add_permission(
        FunctionName="open",
        StatementId="url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    assert refused(get())  # lambda:InvokeFunction through a URL is still missing
    wait_for(lambda: "no lambda:InvokeFunction through its NONE URL" in server.output())
    lam.add_permission(
        FunctionName="open",
        StatementId="url-invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
    )
    statement = json.loads(lam.get_policy(FunctionName="open")["Policy"])["Statement"][1]
    assert statement["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
    answer = get()
    assert answer.status_code == 200 and answer.json()["rawPath"] == "/hello"
    assert "authorizer" not in answer.json()["requestContext"]
    lam.remove_permission(FunctionName="open", StatementId="url")
    assert refused(get())


def test_an_aws_iam_url_takes_only_botocore_signed_requests(
    server: Server, alice: tuple[str, dict[str, str]]
) -> None:
    account, keys = alice
    lam = server.client(credentials=keys)
    python_function(lam, "private", ECHO)
    url = lam.create_function_url_config(FunctionName="private", AuthType="AWS_IAM")["FunctionUrl"]
    answer = signed("POST", url + "signed?x=1", keys, b"hello")
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["rawPath"] == "/signed" and event["body"] == "hello"
    iam = event["requestContext"]["authorizer"]["iam"]
    assert iam["accountId"] == account and iam["accessKey"] == keys["aws_access_key_id"]
    assert iam["userArn"] == f"arn:aws:iam::{account}:root"
    assert list(event["requestContext"])[:4] == [
        "accountId", "apiId", "authentication", "authorizer",
    ]  # fmt: skip
    assert signed("GET", url + "presigned", keys, presigned=True).status_code == 200

    with localhost_resolves():
        assert refused(requests.get(url, timeout=30))  # unsigned
    wrong = {**keys, "aws_secret_access_key": "not-the-secret"}
    assert refused(signed("GET", url, wrong))
    assert refused(signed("GET", url, keys, service="s3"))
    unknown = {"aws_access_key_id": "AKIAUNKNOWNKEY000000", "aws_secret_access_key": "x"}
    assert refused(signed("GET", url, unknown))
    # The path form is signed as sent (the whole path)
    path_form = f"{server.endpoint}/_lamina/url/{url.split('//')[1].split('.')[0]}/p"
    assert signed("GET", path_form, keys).json()["rawPath"] == "/p"


def test_another_account_needs_the_function_s_policy(
    server: Server, alice: tuple[str, dict[str, str]], bob: tuple[str, dict[str, str]]
) -> None:
    lam = server.client(credentials=alice[1])
    python_function(lam, "shared", ECHO)
    url = lam.create_function_url_config(FunctionName="shared", AuthType="AWS_IAM")["FunctionUrl"]
    bob_id, bob_keys = bob
    assert refused(signed("GET", url, bob_keys))
    for sid, action, extra in (
        ("bob-url", "lambda:InvokeFunctionUrl", {"FunctionUrlAuthType": "AWS_IAM"}),
        ("bob-invoke", "lambda:InvokeFunction", {"InvokedViaFunctionUrl": True}),
    ):
        lam.add_permission(
            FunctionName="shared", StatementId=sid, Action=action, Principal=bob_id, **extra
        )
    answer = signed("GET", url, bob_keys)
    assert answer.status_code == 200
    assert answer.json()["requestContext"]["authorizer"]["iam"]["accountId"] == bob_id
    assert answer.json()["requestContext"]["accountId"] == alice[0]  # the owner's


def test_with_auth_off_an_aws_iam_url_wants_a_signature(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = Server(tmp_path_factory.mktemp("url-auth-off") / "data").start()
    try:
        lam = server.client()
        python_function(lam, "dev", ECHO)
        iam_url = lam.create_function_url_config(FunctionName="dev", AuthType="AWS_IAM")[
            "FunctionUrl"
        ]
        keys = {"aws_access_key_id": "test", "aws_secret_access_key": "anything"}
        answer = signed("GET", iam_url, keys)
        assert answer.status_code == 200  # the owner's account (test = 000000000000)
        assert answer.json()["requestContext"]["authorizer"]["iam"]["accountId"] == ("000000000000")
        other = {"aws_access_key_id": "123456789012", "aws_secret_access_key": "anything"}
        assert refused(signed("GET", iam_url, other))  # another account, no statement
        with localhost_resolves():
            assert refused(requests.get(iam_url, timeout=30))
        python_function(lam, "dev-open", ECHO)
        with localhost_resolves():
            assert requests.get(public_url(lam, "dev-open"), timeout=30).status_code == 200
    finally:
        server.stop()


def test_api_gateway_needs_a_statement_for_its_source(
    server: Server, alice: tuple[str, dict[str, str]]
) -> None:
    account, keys = alice
    lam = server.client(credentials=keys)
    function = python_function(lam, "behind-api", ECHO)
    apis = server.client("apigatewayv2", credentials=keys)
    api = apis.create_api(
        Name="guarded", ProtocolType="HTTP", Target=function["FunctionArn"], RouteKey="GET /a"
    )
    url = f"{server.endpoint}/_lamina/api/{api['ApiId']}/a"

    def status() -> int:
        return requests.get(url, timeout=30).status_code

    assert status() == 500  # no statement for apigateway.amazonaws.com
    prefix = f"arn:aws:execute-api:us-east-1:{account}:{api['ApiId']}"
    lam.add_permission(
        FunctionName="behind-api",
        StatementId="other-route",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=f"{prefix}/*/GET/b",
    )
    assert status() == 500  # a statement for another route
    lam.add_permission(
        FunctionName="behind-api",
        StatementId="this-route",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=f"{prefix}/*/GET/a",
    )
    assert status() == 200
    # The statement does not let anyone else invoke: a direct call of another account
    other = server.client(credentials=server.new_account("carol")[1])
    with pytest.raises(Exception, match="AccessDeniedException"):
        other.invoke(FunctionName=function["FunctionArn"], Payload=b"{}")

"""API Gateway HTTP APIs against a real server: made with the AWS CLI (quick create with
--target, and piece by piece: integration, route, stage, deployment), called with curl
and requests at `http://<api-id>.execute-api.localhost:<port>/[<stage>/]...` and the path
form; `GET /items/{id}` with its path parameter in payload formats 1.0 and 2.0, stage
variables, greedy and default routes, AWS's answers for what fails, CORS, the resource
policy API Gateway needs, and the operations' errors through boto3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.helpers import CREDENTIALS, Server, python_function
from tests.web import grant_api, localhost_resolves

ECHO = """
import json
def handler(event, context):
    if event.get("rawPath", event.get("path", "")).endswith("/fail"):
        raise RuntimeError("broken")
    if "sleep" in (event.get("queryStringParameters") or {}):
        import time
        time.sleep(float(event["queryStringParameters"]["sleep"]))
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(event)}
"""

BARE = """
def handler(event, context):
    return "Hello from Lambda!"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("http-apis") / "data").start()
    lam = running.client()
    python_function(lam, "items", ECHO)
    python_function(lam, "bare", BARE)
    yield running
    running.stop()


def aws(server: Server, *args: str) -> Any:
    """The AWS CLI (the venv's, or PATH's), pointed at the server."""
    cli = str(Path(sys.executable).with_name("aws"))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.endpoint,
    }
    done = subprocess.run(
        [cli if Path(cli).exists() else "aws", *args, "--output", "json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def arn(server: Server, name: str) -> str:
    return str(server.client().get_function(FunctionName=name)["Configuration"]["FunctionArn"])


def source(api_id: str, rest: str = "*") -> str:
    return f"arn:aws:execute-api:us-east-1:000000000000:{api_id}/{rest}"


def curl(url: str, *extra: str) -> tuple[int, str]:
    done = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", *extra, url],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def test_quick_create_with_the_cli_routes_items_by_id(server: Server) -> None:
    api = aws(
        server, "apigatewayv2", "create-api", "--name", "items-quick", "--protocol-type", "HTTP",
        "--target", arn(server, "items"), "--route-key", "GET /items/{id}",
    )  # fmt: skip
    api_id = api["ApiId"]
    assert api["ApiEndpoint"] == f"http://{api_id}.execute-api.localhost:{server.port}"
    assert api["ProtocolType"] == "HTTP"
    grant_api(server.client(), "items", source(api_id, "*/*/items/{id}"), "quick")

    status, body = curl(f"{api['ApiEndpoint']}/items/42?color=red&color=blue")
    assert status == 200, body
    event = json.loads(body)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/42"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"color": "red,blue"}
    context = event["requestContext"]
    assert context["apiId"] == api_id and context["stage"] == "$default"
    assert context["domainName"] == f"{api_id}.execute-api.localhost"
    assert context["http"]["method"] == "GET" and context["http"]["path"] == "/items/42"

    assert curl(f"{api['ApiEndpoint']}/items") == (404, '{"message":"Not Found"}')
    assert curl(f"{api['ApiEndpoint']}/items/42", "-X", "POST")[0] == 404
    # The path form, for clients that cannot use the host
    form = requests.get(f"{server.endpoint}/_lamina/api/{api_id}/items/7", timeout=30)
    assert form.status_code == 200 and form.json()["pathParameters"] == {"id": "7"}

    routes = aws(server, "apigatewayv2", "get-routes", "--api-id", api_id)["Items"]
    assert [r["RouteKey"] for r in routes] == ["GET /items/{id}"]
    stages = aws(server, "apigatewayv2", "get-stages", "--api-id", api_id)["Items"]
    assert [(s["StageName"], s["AutoDeploy"]) for s in stages] == [("$default", True)]
    integrations = aws(server, "apigatewayv2", "get-integrations", "--api-id", api_id)["Items"]
    assert integrations[0]["PayloadFormatVersion"] == "2.0"
    assert integrations[0]["IntegrationType"] == "AWS_PROXY"


def build_api(server: Server, version: str) -> dict[str, Any]:
    """An API made piece by piece: a `prod` stage that serves its last deployment."""
    api = aws(server, "apigatewayv2", "create-api", "--name", f"items-{version}",
              "--protocol-type", "HTTP")  # fmt: skip
    api_id = api["ApiId"]
    integration = aws(
        server, "apigatewayv2", "create-integration", "--api-id", api_id,
        "--integration-type", "AWS_PROXY", "--integration-uri", arn(server, "items"),
        "--payload-format-version", version,
    )  # fmt: skip
    target = f"integrations/{integration['IntegrationId']}"
    for key in ("GET /items/{id}", "ANY /files/{proxy+}", "$default"):
        aws(server, "apigatewayv2", "create-route", "--api-id", api_id, "--route-key", key,
            "--target", target)  # fmt: skip
    aws(server, "apigatewayv2", "create-stage", "--api-id", api_id, "--stage-name", "prod",
        "--stage-variables", "env=production,tier=gold")  # fmt: skip
    grant_api(server.client(), "items", source(api_id), f"api-{version}")
    return dict(api)


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_routes_stages_and_payload_formats(server: Server, version: str) -> None:
    api = build_api(server, version)
    base = f"{server.endpoint}/_lamina/api/{api['ApiId']}"
    assert requests.get(f"{base}/prod/items/1", timeout=30).status_code == 404  # not deployed
    deployment = aws(server, "apigatewayv2", "create-deployment", "--api-id", api["ApiId"],
                     "--stage-name", "prod")  # fmt: skip
    assert deployment["DeploymentStatus"] == "DEPLOYED"

    with localhost_resolves():
        answer = requests.get(
            f"{api['ApiEndpoint']}/prod/items/7", params=[("a", "1"), ("a", "2")], timeout=30
        )
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["pathParameters"] == {"id": "7"}
    assert event["stageVariables"] == {"env": "production", "tier": "gold"}
    if version == "1.0":
        assert event["version"] == "1.0"
        assert event["resource"] == "/items/{id}"
        assert event["path"] == "/prod/items/7" and event["httpMethod"] == "GET"
        assert event["queryStringParameters"] == {"a": "2"}
        assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"]}
        assert event["requestContext"]["stage"] == "prod"
        assert event["requestContext"]["resourcePath"] == "/items/{id}"
        assert event["body"] is None and event["isBase64Encoded"] is False
    else:
        assert event["version"] == "2.0" and event["routeKey"] == "GET /items/{id}"
        assert event["rawPath"] == "/prod/items/7"
        assert event["queryStringParameters"] == {"a": "1,2"}
        assert event["requestContext"]["stage"] == "prod"

    greedy = requests.delete(f"{base}/prod/files/a/b.txt", timeout=30).json()
    assert greedy["pathParameters"] == {"proxy": "a/b.txt"}
    fallback = requests.post(f"{base}/prod/anything/else", data=b"x", timeout=30).json()
    route = fallback["resource"] if version == "1.0" else fallback["routeKey"]
    assert route == "$default" and fallback.get("pathParameters") is None

    failed = requests.get(f"{base}/prod/items/fail", timeout=30)
    assert failed.status_code == 500 and failed.json() == {"message": "Internal Server Error"}
    assert failed.headers["apigw-requestid"]
    assert requests.get(f"{base}/staging/items/1", timeout=30).status_code == 404


def test_a_bare_answer_and_an_integration_timeout(server: Server) -> None:
    lam = server.client()
    bare = aws(server, "apigatewayv2", "create-api", "--name", "bare", "--protocol-type",
               "HTTP", "--target", arn(server, "bare"))  # fmt: skip
    grant_api(lam, "bare", source(bare["ApiId"]), "bare")
    answer = requests.get(f"{server.endpoint}/_lamina/api/{bare['ApiId']}/", timeout=30)
    assert answer.status_code == 200 and answer.text == "Hello from Lambda!"
    assert answer.headers["Content-Type"] == "application/json"

    api = aws(server, "apigatewayv2", "create-api", "--name", "slow", "--protocol-type",
              "HTTP", "--target", arn(server, "items"))  # fmt: skip
    integration = aws(server, "apigatewayv2", "get-integrations", "--api-id", api["ApiId"])
    aws(server, "apigatewayv2", "update-integration", "--api-id", api["ApiId"],
        "--integration-id", integration["Items"][0]["IntegrationId"],
        "--timeout-in-millis", "500")  # fmt: skip
    grant_api(lam, "items", source(api["ApiId"]), "slow")
    slow = requests.get(f"{server.endpoint}/_lamina/api/{api['ApiId']}/?sleep=2", timeout=30)
    assert slow.status_code == 503 and slow.json() == {"message": "Service Unavailable"}


def test_cors_preflight_of_an_api(server: Server) -> None:
    lam = server.client()
    api = server.client("apigatewayv2").create_api(
        Name="cors",
        ProtocolType="HTTP",
        Target=arn(server, "items"),
        CorsConfiguration={"AllowOrigins": ["http://app.localhost"], "AllowMethods": ["PUT"]},
    )
    grant_api(lam, "items", source(api["ApiId"]), "cors")
    url = f"{server.endpoint}/_lamina/api/{api['ApiId']}/x"
    preflight = requests.options(
        url,
        headers={"Origin": "http://app.localhost", "Access-Control-Request-Method": "PUT"},
        timeout=30,
    )
    assert preflight.status_code == 200 and preflight.content == b""
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://app.localhost"
    assert preflight.headers["Access-Control-Allow-Methods"] == "PUT"
    put = requests.put(url, headers={"Origin": "http://app.localhost"}, timeout=30)
    assert put.headers["Access-Control-Allow-Origin"] == "http://app.localhost"
    other = requests.put(url, headers={"Origin": "http://other.localhost"}, timeout=30)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_the_operations_and_their_errors(server: Server) -> None:
    client = server.client("apigatewayv2")
    api = client.create_api(Name="ops", ProtocolType="HTTP", Description="first")
    api_id = api["ApiId"]
    assert client.get_api(ApiId=api_id)["Description"] == "first"
    assert client.update_api(ApiId=api_id, Name="ops2")["Name"] == "ops2"
    assert api_id in [a["ApiId"] for a in client.get_apis()["Items"]]
    with pytest.raises(ClientError) as bad_key:
        client.create_route(ApiId=api_id, RouteKey="FETCH /x")
    assert bad_key.value.response["Error"]["Code"] == "BadRequestException"
    route = client.create_route(ApiId=api_id, RouteKey="GET /x")
    with pytest.raises(ClientError) as twice:
        client.create_route(ApiId=api_id, RouteKey="GET /x")
    assert twice.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as bad_target:
        client.create_route(ApiId=api_id, RouteKey="GET /y", Target="integrations/nope")
    assert bad_target.value.response["Error"]["Code"] == "BadRequestException"
    with pytest.raises(ClientError) as http_integration:
        client.create_integration(
            ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationUri="http://example.com"
        )
    assert http_integration.value.response["Error"]["Code"] == "BadRequestException"
    with pytest.raises(ClientError) as websocket:
        client.create_api(Name="ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$x")
    assert websocket.value.response["Error"]["Code"] == "BadRequestException"
    client.delete_route(ApiId=api_id, RouteId=route["RouteId"])
    assert client.get_routes(ApiId=api_id)["Items"] == []
    client.delete_api(ApiId=api_id)
    with pytest.raises(ClientError) as gone:
        client.get_api(ApiId=api_id)
    assert gone.value.response["Error"]["Code"] == "NotFoundException"
    assert gone.value.response["Error"]["Message"] == (
        f"Invalid API identifier specified 000000000000:{api_id}"
    )

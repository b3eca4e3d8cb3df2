"""`provided` runtimes: the real awslambdaric from PyPI, and a curl script, as `bootstrap`."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from tests.helpers import ROLE, make_zip

EXECUTABLE = 0o755


def provided(
    client: Any, name: str, files: dict[str, str], modes: dict[str, int] | None = None, **extra: Any
) -> dict[str, Any]:
    response: dict[str, Any] = client.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip(files, modes)},
        **extra,
    )
    return response


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["Payload"].read())


def request_id(response: dict[str, Any]) -> str:
    value: str = response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    return value


def tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


# awslambdaric ----------------------------------------------------------------------------
RIC_BOOTSTRAP = f"#!/bin/sh\nexec {sys.executable} -m awslambdaric app.handler\n"

RIC_APP = """
import os

count = 0

def handler(event, context):
    global count
    count += 1
    if event.get("fail"):
        raise ValueError("asked to fail")
    print("awslambdaric says hi")
    custom = context.client_context.custom if context.client_context else None
    return {
        "event": event,
        "count": count,
        "pid": os.getpid(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "custom": custom,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }
"""


def ric_function(client: Any, name: str, app: str, **extra: Any) -> dict[str, Any]:
    return provided(
        client,
        name,
        {"bootstrap": RIC_BOOTSTRAP, "app.py": app},
        {"bootstrap": EXECUTABLE},
        **extra,
    )


def test_awslambdaric_answers(lam: Any) -> None:
    created = ric_function(lam, "ric", RIC_APP, Timeout=5)
    first = lam.invoke(FunctionName="ric", Payload=b'{"hello": "ric"}', LogType="Tail")
    assert "FunctionError" not in first
    assert first["ExecutedVersion"] == "$LATEST"
    result = body(first)
    assert result["event"] == {"hello": "ric"}
    assert result["count"] == 1
    assert result["request_id"] == request_id(first)
    assert result["function_name"] == "ric"
    assert result["arn"] == created["FunctionArn"]
    assert result["memory"] == "128"
    assert 3000 < result["remaining"] <= 5000
    assert result["trace"].startswith("Root=1-")
    log = tail(first)
    assert "awslambdaric says hi" in log
    assert "\tInit Duration: " in log.splitlines()[-1]
    context = {"custom": {"who": "tests"}, "client": {}, "env": {}}
    second = lam.invoke(
        FunctionName="ric",
        LogType="Tail",
        ClientContext=base64.b64encode(json.dumps(context).encode()).decode(),
    )
    warm = body(second)
    assert warm["count"] == 2 and warm["pid"] == result["pid"]
    assert warm["custom"] == {"who": "tests"}
    assert warm["trace"] != result["trace"]
    assert "Init Duration" not in tail(second)


def test_awslambdaric_raised_exception(lam: Any) -> None:
    ric_function(lam, "ric-raises", RIC_APP)
    response = lam.invoke(FunctionName="ric-raises", Payload=b'{"fail": true}')
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "asked to fail"
    assert error["requestId"] == request_id(response)
    assert isinstance(error["stackTrace"], list) and error["stackTrace"]
    # The environment lives on: awslambdaric keeps serving after a handled error.
    after = body(lam.invoke(FunctionName="ric-raises", Payload=b"{}"))
    assert after["count"] == 2


def test_awslambdaric_import_error_is_an_init_error(lam: Any) -> None:
    ric_function(lam, "ric-broken", "import not_a_module_anywhere\n")
    response = lam.invoke(FunctionName="ric-broken", LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == (
        "Unable to import module 'app': No module named 'not_a_module_anywhere'"
    )
    assert f"END RequestId: {request_id(response)}" in tail(response)
    again = lam.invoke(FunctionName="ric-broken")
    assert body(again)["errorType"] == "Runtime.ImportModuleError"


def test_awslambdaric_missing_handler(lam: Any) -> None:
    ric_function(lam, "ric-nohandler", "def other(event, context):\n    return 1\n")
    error = body(lam.invoke(FunctionName="ric-nohandler"))
    assert error["errorType"] == "Runtime.HandlerNotFound"
    assert error["errorMessage"] == "Handler 'handler' missing on module 'app'"


# A shell bootstrap speaking the Runtime API with curl ---------------------------------
CURL_BOOTSTRAP = r"""#!/bin/sh
set -eu
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
COUNT=0
echo "shell runtime starting"
while true; do
  curl -sS -D "$TMPDIR/headers" -o "$TMPDIR/event" "$API/invocation/next"
  ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$TMPDIR/headers" | cut -d' ' -f2 | tr -d '\r')
  COUNT=$((COUNT + 1))
  echo "handling $ID"
  printf '{"count": %s, "pid": %s, "id": "%s", "event": %s}' \
    "$COUNT" "$$" "$ID" "$(cat "$TMPDIR/event")" > "$TMPDIR/response"
  curl -sS -o /dev/null -X POST --data-binary "@$TMPDIR/response" \
    "$API/invocation/$ID/response"
done
"""


def test_shell_bootstrap_with_curl(lam: Any) -> None:
    provided(lam, "shell", {"bootstrap": CURL_BOOTSTRAP}, {"bootstrap": EXECUTABLE})
    first = lam.invoke(FunctionName="shell", Payload=b'{"n": 1}', LogType="Tail")
    second = lam.invoke(FunctionName="shell", Payload=b'{"n": 2}', LogType="Tail")
    one, two = body(first), body(second)
    assert one == {"count": 1, "pid": one["pid"], "id": request_id(first), "event": {"n": 1}}
    assert two == {"count": 2, "pid": one["pid"], "id": request_id(second), "event": {"n": 2}}
    cold, warm = tail(first), tail(second)
    assert "shell runtime starting" in cold
    assert f"handling {request_id(first)}" in cold
    assert "\tInit Duration: " in cold.splitlines()[-1]
    assert f"handling {request_id(second)}" in warm
    assert "Init Duration" not in warm


CURL_ERROR_BOOTSTRAP = r"""#!/bin/sh
set -eu
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
while true; do
  curl -sS -D "$TMPDIR/headers" -o /dev/null "$API/invocation/next"
  ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$TMPDIR/headers" | cut -d' ' -f2 | tr -d '\r')
  curl -sS -o /dev/null -X POST -H "Lambda-Runtime-Function-Error-Type: Custom.Broken" \
    --data-binary '{"errorMessage": "shell says no", "errorType": "Custom.Broken"}' \
    "$API/invocation/$ID/error"
done
"""


def test_shell_bootstrap_reports_an_error(lam: Any) -> None:
    provided(lam, "shell-error", {"bootstrap": CURL_ERROR_BOOTSTRAP}, {"bootstrap": EXECUTABLE})
    response = lam.invoke(FunctionName="shell-error")
    assert response["FunctionError"] == "Unhandled"
    assert body(response) == {"errorMessage": "shell says no", "errorType": "Custom.Broken"}


def test_missing_bootstrap_is_an_invalid_entrypoint(lam: Any) -> None:
    provided(lam, "no-bootstrap", {"app.py": "def handler(e, c):\n    return 1\n"})
    response = lam.invoke(FunctionName="no-bootstrap")
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    assert error["errorType"] == "Runtime.InvalidEntrypoint"
    assert error["errorMessage"] == (
        "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
    )


def test_bootstrap_that_is_not_executable_is_an_invalid_entrypoint(lam: Any) -> None:
    provided(lam, "flat-bootstrap", {"bootstrap": CURL_BOOTSTRAP}, {"bootstrap": 0o644})
    error = body(lam.invoke(FunctionName="flat-bootstrap"))
    assert error["errorType"] == "Runtime.InvalidEntrypoint"


def test_bootstrap_that_exits_during_init(lam: Any) -> None:
    provided(
        lam,
        "quitter",
        {"bootstrap": "#!/bin/sh\necho 'giving up'\nexit 3\n"},
        {"bootstrap": EXECUTABLE},
    )
    response = lam.invoke(FunctionName="quitter", LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    error = body(response)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == (
        f"RequestId: {request_id(response)} Error: Runtime exited with error: exit status 3"
    )
    assert "giving up" in tail(response)

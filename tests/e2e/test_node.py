"""Node.js functions through boto3: every nodejsNN.x on a node of that major (the test
lists them), handlers in each module system and style, the context, errors, init errors,
timeouts, log lines; AWS's own runtime client (aws-lambda-ric from the npm registry) as
a `provided` bootstrap, running a handler unmodified. Under the default isolation."""

# ruff: noqa: E501 - tables of JavaScript sources read best one case a line

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import runtimes
from tests.helpers import ROLE, Server, make_zip

NODES = runtimes.nodes()
print(f"node majors on this machine: {NODES}")
DEFAULT = "nodejs20.x" if 20 in NODES else f"nodejs{min(NODES)}.x"
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\t([0-9a-f-]{36}|undefined)\t(INFO|WARN|ERROR|DEBUG|TRACE)\t"
)


@pytest.fixture(scope="module", params=["fork-server", "no-fork-server"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    args = runtimes.runtime_args()
    if request.param == "no-fork-server":
        args.append("--no-fork-server")
    running = Server(tmp_path_factory.mktemp("node") / "data", args=args).start()
    yield running
    running.stop()


def node_function(
    client: Any, name: str, files: dict[str, str], handler: str = "index.handler", **extra: Any
) -> dict[str, Any]:
    extra.setdefault("Runtime", DEFAULT)
    response: dict[str, Any] = client.create_function(
        FunctionName=name, Role=ROLE, Handler=handler, Code={"ZipFile": make_zip(files)}, **extra
    )
    return response


def call(client: Any, name: str, event: Any = None, **extra: Any) -> tuple[Any, dict[str, Any]]:
    response = client.invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail", **extra
    )
    return json.loads(response["Payload"].read()), response


def tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def test_the_machine_has_several_node_majors() -> None:
    assert len(NODES) >= 2, f"{NODES}: {runtimes.MISSING}"


@pytest.mark.parametrize("major", sorted(NODES))
def test_each_runtime_runs_on_its_own_major(lam: Any, major: int) -> None:
    name = f"major-{major}"
    node_function(
        lam,
        name,
        {"index.js": "exports.handler = async () => ({version: process.versions.node, "
         "exec: process.execPath, env: process.env.AWS_EXECUTION_ENV});"},
        Runtime=f"nodejs{major}.x",
    )  # fmt: skip
    answer, response = call(lam, name)
    assert "FunctionError" not in response, answer
    assert int(answer["version"].split(".")[0]) == major
    assert answer["exec"] == NODES[major]
    assert answer["env"] == f"AWS_Lambda_nodejs{major}.x"


HANDLER_STYLES = {
    "commonjs-async": ({"index.js": "exports.handler = async (event) => ({style: 'cjs', event});"},
                       "index.handler"),
    "esm-mjs": ({"index.mjs": "export const handler = async (event) => ({style: 'mjs', event});"},
                "index.handler"),
    "cjs-extension": ({"lib/app.cjs": "module.exports.go = async (event) => ({style: 'cjs', event});"},
                      "lib/app.go"),
    "esm-js-by-package-type": ({"package.json": '{"type": "module"}',
                                "index.js": "export async function handler(event) "
                                            "{ return {style: 'esm-js', event}; }"},
                               "index.handler"),
    "callback": ({"index.js": "exports.handler = (event, context, callback) => "
                              "setTimeout(() => callback(null, {style: 'callback', event}), 10);"},
                 "index.handler"),
    "nested-export": ({"index.js": "exports.api = {v1: {run: async (event) => ({style: 'nested', event})}};"},
                      "index.api.v1.run"),
    "promise-returning": ({"index.js": "exports.handler = (event) => "
                                       "new Promise((ok) => setTimeout(() => ok({style: 'promise', event}), 5));"},
                          "index.handler"),
}  # fmt: skip


@pytest.mark.parametrize("style", list(HANDLER_STYLES))
def test_handler_styles(lam: Any, style: str) -> None:
    files, handler = HANDLER_STYLES[style]
    node_function(lam, f"style-{style}", files, handler=handler)
    answer, response = call(lam, f"style-{style}", {"n": 1})
    assert "FunctionError" not in response, answer
    assert answer["event"] == {"n": 1}


CONTEXT_APP = """
let count = 0;
const started = Date.now();
exports.handler = async (event, context) => {
  count += 1;
  return {
    count, pid: process.pid, started,
    requestId: context.awsRequestId, name: context.functionName,
    version: context.functionVersion, arn: context.invokedFunctionArn,
    memory: context.memoryLimitInMB, group: context.logGroupName, stream: context.logStreamName,
    remaining: context.getRemainingTimeInMillis(), waits: context.callbackWaitsForEmptyEventLoop,
    custom: context.clientContext ? context.clientContext.custom : null,
    trace: process.env._X_AMZN_TRACE_ID, task: process.env.LAMBDA_TASK_ROOT, cwd: process.cwd(),
  };
};
"""


def test_context_object_and_warm_reuse(lam: Any) -> None:
    created = node_function(lam, "ctx", {"index.js": CONTEXT_APP}, Timeout=5, MemorySize=256)
    first, response = call(lam, "ctx")
    assert first["count"] == 1
    assert first["requestId"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert first["name"] == "ctx" and first["version"] == "$LATEST"
    assert first["arn"] == created["FunctionArn"]
    assert first["memory"] == "256"
    assert first["group"] == "/aws/lambda/ctx" and "[$LATEST]" in first["stream"]
    assert 3000 < first["remaining"] <= 5000
    assert first["waits"] is True
    assert first["trace"].startswith("Root=1-")
    assert first["cwd"] == first["task"]
    assert "\tInit Duration: " in tail(response)
    context = {"custom": {"who": "tests"}, "client": {}, "env": {}}
    second, response = call(
        lam, "ctx", ClientContext=base64.b64encode(json.dumps(context).encode()).decode()
    )
    assert second["count"] == 2 and second["pid"] == first["pid"]
    assert second["started"] == first["started"]
    assert second["custom"] == {"who": "tests"}
    assert "Init Duration" not in tail(response)


def test_callback_waits_for_the_event_loop_unless_told_not_to(lam: Any) -> None:
    app = """
let fired = 0;
exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = event.waits;
  setTimeout(() => { fired += 1; }, 300);
  callback(null, {firedBefore: fired});
};
exports.status = async () => ({fired});
"""
    node_function(lam, "waits", {"index.js": app})
    started = time.monotonic()
    answer, _ = call(lam, "waits", {"waits": True})
    assert time.monotonic() - started >= 0.3  # the answer left once the timer had run
    started = time.monotonic()
    answer, _ = call(lam, "waits", {"waits": False})
    assert time.monotonic() - started < 0.3
    assert answer == {"firedBefore": 1}


ERROR_CASES = {
    "thrown": ("exports.handler = async () => { throw new TypeError('bad input'); };",
               "TypeError", "bad input"),
    "rejected": ("exports.handler = () => Promise.reject(new RangeError('too far'));",
                 "RangeError", "too far"),
    "callback-error": ("exports.handler = (e, c, callback) => callback(new Error('via callback'));",
                       "Error", "via callback"),
    "custom-name": ("class NotFound extends Error { constructor(m) { super(m); this.name = 'NotFound'; } }\n"
                    "exports.handler = async () => { throw new NotFound('no such item'); };",
                    "NotFound", "no such item"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_function_errors_in_aws_shape(lam: Any, case: str) -> None:
    source, error_type, message = ERROR_CASES[case]
    node_function(lam, f"err-{case}", {"index.js": source})
    answer, response = call(lam, f"err-{case}")
    assert response["FunctionError"] == "Unhandled"
    assert answer["errorType"] == error_type
    assert answer["errorMessage"] == message
    assert answer["trace"][0] == f"{error_type}: {message}"
    assert any("/var/task/index.js" in line for line in answer["trace"][1:])
    log = tail(response)
    assert "\tERROR\tInvoke Error \t" in log
    # The environment survives a handled error.
    _, response = call(lam, f"err-{case}")
    assert "Init Duration" not in tail(response)


INIT_CASES = {
    "missing-module": ({"other.js": "exports.handler = async () => 1;"}, "index.handler",
                       "Runtime.ImportModuleError", "Error: Cannot find module 'index'"),
    "missing-handler": ({"index.js": "exports.other = async () => 1;"}, "index.handler",
                        "Runtime.HandlerNotFound", "index.handler is undefined or not exported"),
    "not-a-function": ({"index.js": "exports.handler = 42;"}, "index.handler",
                       "Runtime.HandlerNotFound", "index.handler is not a function"),
    "syntax-error": ({"index.js": "exports.handler = async () => {;"}, "index.handler",
                     "Runtime.UserCodeSyntaxError", "SyntaxError: Unexpected end of input"),
    "malformed-handler": ({"index.js": "exports.handler = async () => 1;"}, "index",
                          "Runtime.MalformedHandlerName", "Bad handler"),
    "throws-at-init": ({"index.mjs": "throw new Error('config missing');\nexport const handler = 1;"},
                       "index.handler", "Error", "config missing"),
    "missing-dependency": ({"index.js": "require('left-pad');\nexports.handler = async () => 1;"},
                           "index.handler", "Runtime.ImportModuleError",
                           "Error: Cannot find module 'left-pad'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(INIT_CASES))
def test_init_errors_in_aws_shape(lam: Any, case: str) -> None:
    files, handler, error_type, message = INIT_CASES[case]
    node_function(lam, f"init-{case}", files, handler=handler)
    answer, response = call(lam, f"init-{case}")
    assert response["FunctionError"] == "Unhandled"
    assert answer["errorType"] == error_type, answer
    assert answer["errorMessage"].startswith(message), answer
    log = tail(response)
    assert "\tundefined\tERROR\tUncaught Exception \t" in log
    assert f'"errorType":"{error_type}"' in log


def test_uncaught_exception_during_an_invocation_ends_the_environment(lam: Any) -> None:
    app = "exports.handler = async () => { setTimeout(() => { throw new Error('late'); }, 1); " \
          "await new Promise((r) => setTimeout(r, 200)); return 'never'; };"  # fmt: skip
    node_function(lam, "uncaught", {"index.js": app})
    answer, response = call(lam, "uncaught")
    assert response["FunctionError"] == "Unhandled"
    assert answer["errorType"] == "Error" and answer["errorMessage"] == "late"
    time.sleep(0.5)  # the runtime exits (129) right after it posted the error, as AWS's does
    _, response = call(lam, "uncaught")
    assert "Init Duration" in tail(response)  # a new environment


def test_unhandled_rejection_is_reported(lam: Any) -> None:
    app = "exports.handler = async () => { Promise.reject(new Error('nobody caught me')); " \
          "await new Promise((r) => setTimeout(r, 200)); return 'never'; };"  # fmt: skip
    node_function(lam, "rejection", {"index.js": app})
    answer, response = call(lam, "rejection")
    assert response["FunctionError"] == "Unhandled"
    assert answer["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert "nobody caught me" in answer["errorMessage"]


def test_timeout(lam: Any) -> None:
    app = "exports.handler = async () => { await new Promise(() => setInterval(() => {}, 1000)); };"
    node_function(lam, "slow", {"index.js": app}, Timeout=1)
    started = time.monotonic()
    answer, response = call(lam, "slow")
    assert time.monotonic() - started < 3
    assert response["FunctionError"] == "Unhandled"
    assert answer["errorType"] == "Sandbox.Timedout"
    assert answer["errorMessage"].endswith("Task timed out after 1.00 seconds")


def test_console_lines_in_aws_format(lam: Any) -> None:
    app = """
console.log('at init');
exports.handler = async (event, context) => {
  console.log('hello %s', 'world', {a: 1});
  console.info('an info');
  console.warn('a warning');
  console.error('an error', new Error('shown'));
  console.debug('some debug');
  console.trace('a trace');
  process.stdout.write('raw line\\n');
  return context.awsRequestId;
};
"""
    node_function(lam, "logs", {"index.js": app})
    request_id, response = call(lam, "logs")
    lines = tail(response).splitlines()
    stamped = [line for line in lines if LOG_LINE.match(line)]
    init = next(line for line in stamped if line.endswith("at init"))
    assert init.split("\t")[1:] == ["undefined", "INFO", "at init"]
    mine = {line.split("\t")[2]: line.split("\t", 3)[3] for line in stamped if request_id in line}
    assert mine["INFO"] in ("an info", "hello world { a: 1 }")
    assert any(line.endswith(f"{request_id}\tINFO\thello world {{ a: 1 }}") for line in stamped)
    assert mine["WARN"] == "a warning"
    assert mine["ERROR"].startswith("an error Error: shown")
    assert mine["DEBUG"] == "some debug"
    assert mine["TRACE"].startswith("Trace: a trace")
    assert "raw line" in lines
    assert any(line.startswith(f"START RequestId: {request_id}") for line in lines)
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}")


def test_unmodified_aws_lambda_ric_as_a_provided_bootstrap(lam: Any) -> None:
    """AWS's own Node runtime interface client (npm's aws-lambda-ric, its native part built
    at install) running a handler written for AWS, in a `provided.al2023` function."""
    assert (runtimes.RIC_PACKAGES / "aws-lambda-ric" / "rapid-client.node").is_file(), (
        runtimes.MISSING
    )
    files: dict[str, bytes | str] = {}
    for package in ("aws-lambda-ric", "@aws/lambda-invoke-store"):
        root = runtimes.RIC_PACKAGES / package
        for path in root.rglob("*"):
            if path.is_file() and "deps" not in path.relative_to(root).parts[:1] and \
                    "src" not in path.relative_to(root).parts[:1]:  # fmt: skip
                files[f"node_modules/{package}/{path.relative_to(root)}"] = path.read_bytes()
    files["bootstrap"] = (
        '#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\n'
        'exec /usr/bin/node node_modules/aws-lambda-ric/index.mjs "$_HANDLER"\n'
    )
    files["app.mjs"] = (
        "export const handler = async (event, context) => {\n"
        "  console.log('ric handler ran');\n"
        "  if (event.fail) throw new Error('ric failure');\n"
        "  return {event, requestId: context.awsRequestId, left: context.getRemainingTimeInMillis()};\n"
        "};\n"
    )
    lam.create_function(
        FunctionName="ric-node",
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="app.handler",
        Timeout=10,
        Code={"ZipFile": make_zip(files, {"bootstrap": 0o755})},
    )
    answer, response = call(lam, "ric-node", {"hello": "ric"})
    assert "FunctionError" not in response, (answer, tail(response))
    assert answer["event"] == {"hello": "ric"}
    assert answer["requestId"] == response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert 5000 < answer["left"] <= 10000
    assert "ric handler ran" in tail(response)
    answer, response = call(lam, "ric-node", {"fail": True})
    assert response["FunctionError"] == "Unhandled"
    assert answer["errorType"] == "Error" and answer["errorMessage"] == "ric failure"


def test_layer_paths_in_node_environment(lam: Any) -> None:
    app = "exports.handler = async () => ({nodePath: process.env.NODE_PATH, " \
          "path: process.env.PATH, ld: process.env.LD_LIBRARY_PATH});"  # fmt: skip
    node_function(lam, "paths", {"index.js": app})
    answer, _ = call(lam, "paths")
    major = DEFAULT[len("nodejs") : -2]
    assert answer["nodePath"].startswith(
        f"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:"
    )
    assert answer["path"].endswith("/opt/bin") and answer["ld"].endswith("/opt/lib")

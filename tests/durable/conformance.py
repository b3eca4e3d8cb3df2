"""Runs AWS's durable execution conformance requirements against a real Lamina.

The requirements (YAML, from the `aws-durable-execution-conformance-tests` package) say
what a handler does, how to invoke it, which callbacks an outside system answers, and
the history and result to expect. For each one this creates a function from the
handler written for it here (`handlers/<suite>.py`, `h<suite>_<n>`), invokes it as the
requirement says, and judges the outcome with the suite's own code: its history matcher
(placeholders, wildcards, regexes), its polling validator (which answers callbacks as
they appear) and its result check, all calling Lamina's API through boto3.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aws_durable_execution_conformance_tests import validate
from aws_durable_execution_conformance_tests.callback import CallbackAction
from aws_durable_execution_conformance_tests.cloudwatch import CloudWatchLogValidator
from aws_durable_execution_conformance_tests.config import TESTS_DIR
from aws_durable_execution_conformance_tests.history import EventHistoryMatcher
from aws_durable_execution_conformance_tests.variables import PlaceholderContext

from tests.durable.sdk import sdk_files
from tests.helpers import PYTHON_RUNTIME, ROLE, make_zip

HANDLERS = Path(__file__).parent / "handlers"
SUITES = (
    "step",
    "wait",
    "child",
    "callback",
    "invoke",
    "wait_for_condition",
    "wait_for_callback",
    "parallel",
    "map",
)
ECHO, FAIL = "conformance-echo", "conformance-fail"
TARGETS = {ECHO: "targets.echo", FAIL: "targets.fail"}  # durable functions too


@dataclass
class Outcome:
    requirement: str
    passed: bool
    errors: list[str] = field(default_factory=list)
    arn: str | None = None


def requirements(suite: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted(
        (Path(TESTS_DIR) / suite).glob("*.yaml"),
        key=lambda p: int(re.findall(r"\d+", p.stem)[-1]),
    )
    return [(p.stem, yaml.safe_load(p.read_text())) for p in files]


def code_zip() -> bytes:
    handlers: dict[str, str | bytes] = {p.name: p.read_text() for p in HANDLERS.glob("*.py")}
    return make_zip({**sdk_files(), **handlers})


def function_name(requirement: str) -> str:
    return f"conformance-{requirement}"


def deploy(lam: Any, suite: str, requirement: str, blob: bytes, env: dict[str, str]) -> None:
    lam.create_function(
        FunctionName=function_name(requirement),
        Runtime=PYTHON_RUNTIME,
        Role=ROLE,
        Handler=f"{suite}.h{requirement.replace('-', '_')}",
        Code={"ZipFile": blob},
        Timeout=60,
        MemorySize=256,
        Environment={"Variables": env},
        DurableConfig={"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1},
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"},
    )


def deploy_targets(lam: Any, blob: bytes, env: dict[str, str]) -> None:
    for name, handler in TARGETS.items():
        lam.create_function(
            FunctionName=name,
            Runtime=PYTHON_RUNTIME,
            Role=ROLE,
            Handler=handler,
            Code={"ZipFile": blob},
            Timeout=60,
            Environment={"Variables": env},
            DurableConfig={"ExecutionTimeout": 3600, "RetentionPeriodInDays": 1},
        )


def _arn(response: dict[str, Any]) -> str | None:
    return response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-durable-execution-arn")


def run(lam: Any, logs: Any, requirement: str, spec: dict[str, Any]) -> Outcome:
    """Invoke the requirement's function as it says and judge the outcome by its rules."""
    context = PlaceholderContext()
    context.resolve_variables(spec.get("Variables"))
    payload = json.dumps({"Input": context.substitute(spec.get("Input"))})
    expected_events = spec.get("ExpectedExecutionHistory") or []
    expected_result = spec.get("ExpectedResult")
    name = function_name(requirement)
    if spec.get("AsyncInvoke"):
        response = lam.invoke(FunctionName=name, InvocationType="Event", Payload=payload)
        arn = _arn(response)
        if not arn:
            return Outcome(requirement, False, ["no DurableExecutionArn in the Event response"])
        actions = [CallbackAction.from_dict(raw) for raw in spec.get("CallbackActions") or []]
        config = validate.AsyncValidationConfig.from_dict(
            {"PollIntervalSeconds": 0.25, **(spec.get("AsyncConfig") or {})}
        )
        checked = validate.PollingValidator(lam, config, context).validate(
            arn, expected_events, expected_result, actions
        )
        errors = list(checked.errors)
    else:
        response = lam.invoke(FunctionName=name, Payload=payload)
        arn = _arn(response)
        if not arn:
            return Outcome(requirement, False, ["no DurableExecutionArn in the response"])
        history = lam.get_durable_execution_history(
            DurableExecutionArn=arn, IncludeExecutionData=True
        )
        matched = EventHistoryMatcher(context=context).match(expected_events, history["Events"])
        errors = list(matched.errors)
        if not errors and expected_result:
            errors += validate._validate_execution_result(arn, expected_result, lam, context)
    if not errors and spec.get("ExpectedLogs"):
        try:
            errors += check_logs(logs, name, arn, spec["ExpectedLogs"], context)
        except Exception as error:  # an API the logs need answered with an error
            errors.append(f"reading the logs failed: {error}")
    current = lam.get_durable_execution(DurableExecutionArn=arn)
    if current["Status"] == "RUNNING":  # a requirement judged on its history alone
        lam.stop_durable_execution(DurableExecutionArn=arn)
    return Outcome(requirement, not errors, errors, arn)


def check_logs(
    logs: Any, function: str, arn: str, expected: list[dict[str, Any]], context: PlaceholderContext
) -> list[str]:
    """The suite's log expectations, over the events FilterLogEvents finds for `arn`."""
    escaped = arn.replace('"', '\\"')
    pattern = f'{{ ($.durableExecutionArn = "{escaped}") || ($.executionArn = "{escaped}") }}'
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"logGroupName": f"/aws/lambda/{function}", "filterPattern": pattern}
    while True:
        page = logs.filter_log_events(**kwargs)
        events += page.get("events", [])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    result = CloudWatchLogValidator().validate(expected, events, context=context)
    return list(result.errors)

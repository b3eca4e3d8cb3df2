"""CloudWatch Logs' JSON filter patterns over log messages."""

from __future__ import annotations

import json

import pytest

from lamina.services.logs.filters import FilterError, json_matcher

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/a/b"
LINE = json.dumps(
    {
        "timestamp": "2026-12-01T00:00:00.000Z",
        "level": "INFO",
        "message": "step done",
        "executionArn": ARN,
        "attempt": 3,
        "ok": True,
        "nothing": None,
        "tags": ["a", "b"],
        "nested": {"depth": {"value": "deep"}},
    }
)


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        (f'{{ $.executionArn = "{ARN}" }}', True),
        (f'{{ ($.durableExecutionArn = "{ARN}") || ($.executionArn = "{ARN}") }}', True),
        ('{ $.durableExecutionArn = "x" }', False),
        ("{ $.level = INFO }", True),
        ('{ $.level != "INFO" }', False),
        ('{ $.message = "step*" }', True),
        ("{ $.attempt > 2 && $.attempt <= 3 }", True),
        ("{ $.attempt = 3 }", True),
        ("{ $.attempt < 3 }", False),
        ("{ $.ok IS TRUE }", True),
        ("{ $.ok IS FALSE }", False),
        ("{ $.nothing IS NULL }", True),
        ("{ $.missing NOT EXISTS }", True),
        ("{ $.level NOT EXISTS }", False),
        ('{ $.tags[1] = "b" }', True),
        ('{ $.nested.depth.value = "deep" }', True),
        ('{ $.level = "INFO" && ($.attempt = 1 || $.attempt = 3) }', True),
    ],
)
def test_json_patterns(pattern: str, matches: bool) -> None:
    assert json_matcher(pattern)(LINE) is matches


def test_lines_that_are_not_json_objects_never_match() -> None:
    match = json_matcher('{ $.level = "INFO" }')
    assert not match("START RequestId: 1 Version: $LATEST")
    assert not match('["INFO"]')


@pytest.mark.parametrize(
    "pattern", ["{ level = 1 }", "{ $.a = }", "{ $.a > x }", "{ ($.a = 1 }", "$.a = 1"]
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(FilterError):
        json_matcher(pattern)

"""What a target receives: the event itself, a constant (`Input`), a part of the event
(`InputPath`) or a template filled from it (`InputTransformer`).

Paths are the JSONPath subset EventBridge takes: `$`, `$.detail.name`, `$.a[0]`,
`$['a b']`. A template's `<name>` placeholders take the values of InputPathsMap's paths
(and the predefined `aws.events.*` ones): inside quotes a string goes in as its text
(escaped for JSON), anything else as JSON; a path that finds nothing gives null (inside
quotes, nothing).
"""

from __future__ import annotations

import json
import re
from typing import Any

PATH_STEP = re.compile(r"\.([A-Za-z0-9_@$-]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
MISSING: Any = object()
MAX_VARIABLES = 100


class TransformError(ValueError):
    """A path or template EventBridge would refuse; the message says why."""


def check_path(path: str) -> list[str | int]:
    if not path.startswith("$"):
        raise TransformError(f"{path} is not a valid JSON path")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        found = PATH_STEP.match(path, position)
        if found is None:
            raise TransformError(f"{path} is not a valid JSON path")
        if found.group(2) is not None:
            steps.append(int(found.group(2)))
        else:
            steps.append(next(g for g in (found.group(1), found.group(3), found.group(4))
                              if g is not None))  # fmt: skip
        position = found.end()
    return steps


def extract(document: Any, path: str) -> Any:
    """The value at `path`, or MISSING."""
    value = document
    for step in check_path(path):
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return MISSING
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                return MISSING
            value = value[step]
    return value


def check_transformer(transformer: dict[str, Any]) -> None:
    paths = transformer.get("InputPathsMap") or {}
    if len(paths) > MAX_VARIABLES:
        raise TransformError(f"InputPathsMap has more than {MAX_VARIABLES} variables")
    for name, path in paths.items():
        if name.startswith("aws."):
            raise TransformError(f"{name} is a reserved variable name")
        check_path(path)
    if "InputTemplate" not in transformer:
        raise TransformError("InputTemplate is required")


def render(
    transformer: dict[str, Any], event: dict[str, Any], rule_arn: str, rule_name: str
) -> str:
    values: dict[str, Any] = {
        name: extract(event, path)
        for name, path in (transformer.get("InputPathsMap") or {}).items()
    }
    values["aws.events.rule-arn"] = rule_arn
    values["aws.events.rule-name"] = rule_name
    values["aws.events.event.ingestion-time"] = event.get("time", "")
    values["aws.events.event"] = event
    values["aws.events.event.json"] = event
    template = str(transformer["InputTemplate"])

    def fill(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in values:
            return found.group(0)  # not a variable: left as written
        value = values[name]
        start, end = found.start(), found.end()
        quoted = start > 0 and template[start - 1] == '"' and template[end : end + 1] == '"'
        if value is MISSING:
            return "" if quoted else "null"
        if isinstance(value, str):
            return json.dumps(value)[1:-1] if quoted else value
        return json.dumps(value, separators=(",", ":"))

    return PLACEHOLDER.sub(fill, template)


def payload(target: dict[str, Any], event: dict[str, Any], rule_arn: str, rule_name: str) -> str:
    """The text the target receives for `event`."""
    if target.get("Input") is not None:
        return str(target["Input"])
    if target.get("InputPath"):
        value = extract(event, target["InputPath"])
        return "null" if value is MISSING else json.dumps(value)
    if target.get("InputTransformer"):
        return render(target["InputTransformer"], event, rule_arn, rule_name)
    return json.dumps(event)

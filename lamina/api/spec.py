"""Service specifications, loaded from botocore's service models at run time.

The model is the contract: it gives each operation's HTTP binding, its input and output
shapes with their locations and constraints, and the error shapes with their statuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import botocore.loaders
from botocore.model import OperationModel, ServiceModel, Shape

# Limits AWS enforces beyond what the published model says (shared/AWS_REFERENCE.md):
# validated with the same messages as the model's own constraints.
EXTRA_CONSTRAINTS: dict[str, dict[str, dict[str, Any]]] = {
    "lambda": {
        "MemorySize": {"min": 128, "max": 10240},
        "Timeout": {"min": 1, "max": 900},
        "EphemeralStorageSize": {"min": 512, "max": 10240},
    },
    # SQS answers unknown attribute names itself (InvalidAttributeName), and ReceiveMessage's
    # deprecated AttributeNames takes message attribute names (ApproximateReceiveCount, ...)
    # although the model types it as queue attribute names.
    "sqs": {"QueueAttributeName": {"enum": []}},
}


@cache
def _loader() -> botocore.loaders.Loader:
    """One for every service: a Loader lists botocore's ~400 model directories once, and
    a new one for each of the dozen services took 60 ms of a server's start."""
    return botocore.loaders.Loader()


@cache
def load_service(name: str) -> ServiceModel:
    return ServiceModel(_loader().load_service_model(name, "service-2"), service_name=name)


@dataclass(frozen=True)
class RestRoute:
    """One rest-json operation's HTTP binding, compiled to a regex."""

    operation: OperationModel
    method: str
    regex: re.Pattern[str]
    static_query: tuple[tuple[str, str], ...]
    specificity: tuple[int, int]
    # Labels that are not Python identifiers (API Gateway's {resource-arn}) get a group
    # name of their own: group name -> label.
    renamed: tuple[tuple[str, str], ...] = ()

    def match(self, method: str, path: str, query: dict[str, list[str]]) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        for key, value in self.static_query:
            if value not in query.get(key, []) and not (value == "" and key in query):
                return None
        labels = found.groupdict()
        for group, label in self.renamed:
            labels[label] = labels.pop(group)
        return labels


def compile_route(operation: OperationModel) -> RestRoute:
    uri = operation.http["requestUri"]
    path, _, static = uri.partition("?")
    pattern = ""
    static_chars = 0
    renamed: list[tuple[str, str]] = []
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{"):
            label = part[1:-1]
            greedy = label.endswith("+")
            label = label.rstrip("+")
            group = label
            if not label.isidentifier():
                group = f"label{len(renamed)}"
                renamed.append((group, label))
            pattern += f"(?P<{group}>.+)" if greedy else f"(?P<{group}>[^/]+)"
        else:
            pattern += re.escape(part)
            static_chars += len(part)
    static_query = tuple(parse_qsl(static, keep_blank_values=True))
    # More literal text and more required query keys make a route more specific.
    specificity = (len(static_query), static_chars)
    return RestRoute(
        operation,
        operation.http["method"],
        re.compile(pattern.rstrip("/") + "/?"),
        static_query,
        specificity,
        tuple(renamed),
    )


@dataclass
class Service:
    """A service model ready to route requests: by path (rest-json) or target (json)."""

    name: str
    model: ServiceModel
    routes: list[RestRoute] = field(default_factory=list)
    extra_constraints: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def protocol(self) -> str:
        return str(self.model.metadata["protocol"])

    @property
    def target_prefix(self) -> str:
        return str(self.model.metadata.get("targetPrefix", ""))

    def error_shape(self, code: str) -> Shape | None:
        for shape in self.model.error_shapes:
            if shape.error_code == code or shape.name == code:
                return shape
        return None


@cache
def service(name: str) -> Service:
    model = load_service(name)
    routes = []
    if model.metadata["protocol"] in ("rest-json", "rest-xml"):
        routes = [compile_route(model.operation_model(op)) for op in model.operation_names]
        routes.sort(key=lambda route: route.specificity, reverse=True)
    return Service(name, model, routes, EXTRA_CONSTRAINTS.get(name, {}))

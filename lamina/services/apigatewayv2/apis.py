"""The rules of an HTTP API, over its record: route keys and how a request finds its route,
which stage a path names, what a stage serves (the API as it is, for an auto-deploy stage;
its deployment's snapshot, for the others).

Route selection follows API Gateway: among the routes whose path matches, a path without
a greedy variable beats one with `{proxy+}`, more literal segments beat fewer, a route of
the request's method beats `ANY`; `$default` catches what nothing else matched. `{name}`
matches one segment, `{name+}` (last only) the rest of the path.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from lamina.errors import AwsError

ALPHABET = string.ascii_lowercase + string.digits
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})
DEFAULT = "$default"
VARIABLE = re.compile(r"\{([A-Za-z0-9._-]+)(\+?)\}")


def new_id(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bad_request(message: str) -> AwsError:
    return AwsError("BadRequestException", message, 400)


def not_found(message: str, resource: str) -> AwsError:
    return AwsError("NotFoundException", message, 404, fields={"resourceType": resource})


def conflict(message: str) -> AwsError:
    return AwsError("ConflictException", message, 409)


@dataclass(frozen=True, slots=True)
class RouteKey:
    method: str  # "" for $default
    path: str
    segments: tuple[str, ...]  # "/items/{id}" -> ("items", "{id}")

    @property
    def greedy(self) -> bool:
        return bool(self.segments) and self.segments[-1].endswith("+}")

    @property
    def literal(self) -> int:
        return sum(1 for s in self.segments if not s.startswith("{"))


def parse_route_key(key: str) -> RouteKey:
    if key == DEFAULT:
        return RouteKey("", "", ())
    method, _, path = key.partition(" ")
    problem = ""
    if method not in METHODS:
        problem = f"the method {method!r} is not one of {', '.join(sorted(METHODS))}"
    elif not path.startswith("/") or " " in path:
        problem = "the path must start with '/'"
    segments = tuple(s for s in path.split("/") if s)
    for index, segment in enumerate(segments):
        found = VARIABLE.fullmatch(segment)
        if "{" in segment and found is None:
            problem = f"{segment!r} is not a path variable ({{name}} or {{name+}})"
        elif found is not None and found.group(2) and index != len(segments) - 1:
            problem = "a greedy path variable ({name+}) must be the last segment"
    if problem:
        raise bad_request(f"Invalid route key: {key!r}: {problem}.")
    return RouteKey(method, path if path == "/" else "/" + "/".join(segments), segments)


def _match_path(route: RouteKey, parts: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for index, segment in enumerate(route.segments):
        variable = VARIABLE.fullmatch(segment)
        if variable is not None and variable.group(2):
            rest = parts[index:]
            if not rest:
                return None
            params[variable.group(1)] = unquote("/".join(rest))
            return params
        if index >= len(parts):
            return None
        if variable is not None:
            params[variable.group(1)] = unquote(parts[index])
        elif segment != parts[index]:
            return None
    return params if len(parts) == len(route.segments) else None


def select_route(
    routes: dict[str, dict[str, Any]], method: str, path: str
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The route a request takes and its path parameters, or None (404)."""
    parts = [p for p in path.split("/") if p]
    best: tuple[tuple[int, int, int], dict[str, Any], dict[str, str]] | None = None
    fallback = None
    for route in routes.values():
        key = parse_route_key(route["RouteKey"])
        if not key.method:
            fallback = route
            continue
        if key.method not in (method, "ANY"):
            continue
        params = _match_path(key, parts)
        if params is None:
            continue
        rank = (0 if key.greedy else 1, key.literal, 1 if key.method == method else 0)
        if best is None or rank > best[0]:
            best = (rank, route, params)
    if best is not None:
        return best[1], best[2]
    return (fallback, {}) if fallback is not None else None


def select_stage(api: dict[str, Any], path: str) -> tuple[dict[str, Any], str] | None:
    """The stage a request path names (its first segment) and the path below it; else the
    $default stage with the whole path; else None."""
    stages = api.get("stages", {})
    first, _, rest = path.lstrip("/").partition("/")
    if first and first != DEFAULT and first in stages:
        return stages[first], "/" + rest
    if DEFAULT in stages:
        return stages[DEFAULT], path or "/"
    return None


def snapshot(api: dict[str, Any]) -> dict[str, Any]:
    """What a deployment freezes: the routes and integrations as they are now."""
    copied: dict[str, Any] = json.loads(
        json.dumps({"routes": api.get("routes", {}), "integrations": api.get("integrations", {})})
    )
    return copied


def served(api: dict[str, Any], stage: dict[str, Any]) -> dict[str, Any] | None:
    """The routes and integrations a stage serves, or None (nothing deployed to it)."""
    if stage.get("AutoDeploy"):
        return {"routes": api.get("routes", {}), "integrations": api.get("integrations", {})}
    deployment = api.get("deployments", {}).get(stage.get("DeploymentId") or "")
    return deployment.get("snapshot") if deployment else None

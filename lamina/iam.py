"""Resource-based policies, evaluated as IAM evaluates them for a caller of another account:
a function's policy (AddPermission), a queue's `Policy` attribute.

`allows(policy, caller, action, resource, context)` is True when some statement allows
the action and none denies it (an explicit Deny wins). A statement applies when its
Action (or NotAction) matches `service:Operation` (case-insensitive, `*` and `?`
wildcards), its Resource (or NotResource) matches, its Principal names the caller (`*`,
the caller's account id or root ARN, its exact ARN, or the role of an assumed-role
session), and every condition holds. The condition keys that AWS sets only for a service
acting on a resource's behalf (`aws:SourceArn`, `aws:SourceAccount`) are absent from a
direct call, so a statement that requires them never lets one in. Condition operators
Lamina does not evaluate never allow (and never deny).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from typing import Any

from lamina.errors import AwsError


@dataclass(frozen=True, slots=True)
class Caller:
    account: str
    arn: str  # arn:aws:iam::<account>:root, or arn:aws:sts::<account>:assumed-role/<r>/<s>
    service: str = ""  # a service acting for a resource (apigateway.amazonaws.com), if one

    def names(self) -> set[str]:
        """Every way a policy's Principal may name this caller."""
        found = {self.account, f"arn:aws:iam::{self.account}:root", self.arn}
        if ":assumed-role/" in self.arn:
            role = self.arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
            found.add(f"arn:aws:iam::{self.account}:role/{role}")
        return found


def access_denied(principal: str, action: str, resource: str) -> AwsError:
    """IAM's answer when no resource policy lets a caller of another account in."""
    return AwsError(
        "AccessDeniedException",
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
        f"because no resource-based policy allows the {action} action",
        403,
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(value: str, patterns: Any, case: bool = True) -> bool:
    if not case:
        value = value.lower()
    return any(
        fnmatch.fnmatchcase(value, str(p) if case else str(p).lower()) for p in _list(patterns)
    )


def _principal(statement: dict[str, Any], caller: Caller) -> bool:
    if "NotPrincipal" in statement:
        return False  # not evaluated: never lets anyone in
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    if caller.service:
        return caller.service in _list(principal.get("Service", []))
    names = caller.names()
    return any(name == "*" or name in names for name in _list(principal.get("AWS", [])))


def _conditions(condition: Any, context: dict[str, str]) -> bool:
    if not condition:
        return True
    if not isinstance(condition, dict):
        return False
    for operator, entries in condition.items():
        if not isinstance(entries, dict):
            return False
        for key, wanted in entries.items():
            have = context.get(str(key).lower())
            if have is None:
                return False
            values = [str(v) for v in _list(wanted)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = have in values
            elif operator == "StringEqualsIgnoreCase":
                ok = have.lower() in (v.lower() for v in values)
            elif operator in ("StringLike", "ArnLike"):
                ok = _like(have, values)
            elif operator == "Bool":
                ok = have.lower() in (v.lower() for v in values)
            else:
                ok = False
            if not ok:
                return False
    return True


def _applies(
    statement: dict[str, Any],
    caller: Caller,
    action: str,
    resource: str,
    context: dict[str, str],
) -> bool:
    if "Action" in statement:
        if not _like(action, statement["Action"], case=False):
            return False
    elif "NotAction" in statement:
        if _like(action, statement["NotAction"], case=False):
            return False
    else:
        return False
    if "Resource" in statement and not _like(resource, statement["Resource"]):
        return False
    if "NotResource" in statement and _like(resource, statement["NotResource"]):
        return False
    return _principal(statement, caller) and _conditions(statement.get("Condition"), context)


def allows(
    policy: dict[str, Any] | None,
    caller: Caller,
    action: str,
    resource: str,
    context: dict[str, str] | None = None,
) -> bool:
    """Whether `policy` lets `caller` (of another account) perform `action` on `resource`.
    `context`: condition keys, lower-cased (none for a direct call)."""
    if not policy:
        return False
    allowed = False
    for statement in _list(policy.get("Statement", [])):
        if not isinstance(statement, dict):
            continue
        if not _applies(statement, caller, action, resource, context or {}):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def parse(text: str) -> dict[str, Any] | None:
    """A policy document from its JSON text: None unless it is an object with a list (or
    one) of statement objects, each with an Effect of Allow or Deny."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict) or "Statement" not in document:
        return None
    for statement in _list(document["Statement"]):
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            return None
    return document

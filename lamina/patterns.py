"""Event patterns, AWS's content filtering syntax (Lambda's FilterCriteria, EventBridge's
event patterns): does an event match a pattern?

A pattern is a JSON object shaped like the events it matches. A key with an object
value matches the event's object at that key; a key with an array value matches when
the event's value there matches any rule in the array; every key must match, and
`"$or": [pattern, ...]` matches when any of its patterns does. An event value that is an
array matches when any of its elements does. Rules:

    "text", 5, true, null         that exact value (a string never equals a number)
    {"prefix": "ab"}               a string starting with it ({"equals-ignore-case": ..}
    {"suffix": "yz"}               inside either ignores case)
    {"equals-ignore-case": "Ab"}
    {"wildcard": "a*z"}            `*` stands for any run of characters
    {"anything-but": x}            present and not x; x a value, a list of values, or a
                                   prefix / suffix / equals-ignore-case / wildcard rule
    {"cidr": "10.0.0.0/24"}        an IPv4 or IPv6 address within the network
    {"numeric": [">", 0, "<=", 5]} a number in the range (operators <, <=, =, >, >=)
    {"exists": true|false}         the key is present (with a value that is not an
                                   object) or absent

Some operators belong to some services only: `cidr` to EventBridge and SNS filter
policies, `anything-but` with `wildcard` to EventBridge's event buses; Lambda's
FilterCriteria refuse them. A caller names what it takes beyond the common set
(`EVENTBRIDGE`, `SNS`).

`compile_pattern` checks a pattern once and raises PatternError with the reason;
`Pattern.matches` is then a walk over the pattern, with no parsing per event.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

MISSING: Any = object()
NUMERIC_OPERATORS = ("<", "<=", "=", ">", ">=")
STRING_RULES = ("prefix", "suffix", "equals-ignore-case", "wildcard")
CIDR = "cidr"
ANYTHING_BUT_WILDCARD = "anything-but-wildcard"
EVENTBRIDGE = frozenset({CIDR, ANYTHING_BUT_WILDCARD})  # what an event bus's rules take
SNS = frozenset({CIDR})  # what a subscription's filter policy takes


class PatternError(ValueError):
    """A pattern that is not valid; the message says why."""


@dataclass(frozen=True)
class Pattern:
    source: dict[str, Any]

    def matches(self, event: Any) -> bool:
        return _match_object(self.source, event)


def compile_pattern(text: str, extra: frozenset[str] = frozenset()) -> Pattern:
    """Parse and check a pattern (a JSON object, as text); `extra`: the operators beyond
    the common set the caller's service takes (EVENTBRIDGE, SNS)."""
    try:
        source = json.loads(text)
    except ValueError as exc:
        raise PatternError(f"the pattern is not valid JSON: {exc}") from None
    _check_object(source, "", extra)
    return Pattern(source)


def matches_any(patterns: list[Pattern], event: Any) -> bool:
    """Filters are ORed: an event passes when one pattern matches (or there are none)."""
    return not patterns or any(p.matches(event) for p in patterns)


# Checking ---------------------------------------------------------------------------------
def _check_object(pattern: Any, path: str, extra: frozenset[str]) -> None:
    if not isinstance(pattern, dict) or not pattern:
        raise PatternError(f"{path or 'the pattern'} must be a non-empty JSON object")
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else key
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise PatternError(f"{where} must be an array of at least two patterns")
            for index, branch in enumerate(value):
                _check_object(branch, f"{where}[{index}]", extra)
        elif isinstance(value, dict):
            _check_object(value, where, extra)
        elif isinstance(value, list):
            if not value:
                raise PatternError(f"{where} must not be an empty array")
            for rule in value:
                _check_rule(rule, where, extra)
        else:
            raise PatternError(f"{where} must be an object or an array")


def _check_rule(rule: Any, where: str, extra: frozenset[str]) -> None:
    if rule is None or isinstance(rule, str | bool | int | float):
        return
    if not isinstance(rule, dict) or len(rule) != 1:
        raise PatternError(f"{where}: a rule is a value or an object with one operator")
    ((name, operand),) = rule.items()
    if name in ("prefix", "suffix"):
        if isinstance(operand, dict):
            if set(operand) != {"equals-ignore-case"} or not isinstance(
                operand["equals-ignore-case"], str
            ):
                raise PatternError(f"{where}: {name} takes a string")
        elif not isinstance(operand, str):
            raise PatternError(f"{where}: {name} takes a string")
    elif name in ("equals-ignore-case", "wildcard"):
        if not isinstance(operand, str):
            raise PatternError(f"{where}: {name} takes a string")
    elif name == "cidr" and CIDR in extra:
        if not isinstance(operand, str):
            raise PatternError(f"{where}: cidr takes a network as text")
        try:
            ipaddress.ip_network(operand, strict=False)
        except ValueError:
            raise PatternError(f"{where}: {operand!r} is not a CIDR network") from None
    elif name == "exists":
        if not isinstance(operand, bool):
            raise PatternError(f"{where}: exists takes true or false")
    elif name == "anything-but":
        _check_anything_but(operand, where, extra)
    elif name == "numeric":
        _check_numeric(operand, where)
    else:
        raise PatternError(f"{where}: unknown operator {name}")


def _check_anything_but(operand: Any, where: str, extra: frozenset[str]) -> None:
    values = operand if isinstance(operand, list) else [operand]
    if isinstance(operand, list) and not operand:
        raise PatternError(f"{where}: anything-but takes a value or a non-empty array")
    for value in values:
        if isinstance(value, dict):
            if isinstance(operand, list) or len(value) != 1:
                raise PatternError(f"{where}: anything-but takes values or one string rule")
            ((name, inner),) = value.items()
            names: tuple[str, ...] = ("prefix", "suffix", "equals-ignore-case")
            if ANYTHING_BUT_WILDCARD in extra:
                names += ("wildcard",)
            if name not in names or not isinstance(inner, str | list):
                raise PatternError(f"{where}: anything-but takes values or one string rule")
        elif value is not None and not isinstance(value, str | int | float):
            raise PatternError(f"{where}: anything-but takes strings or numbers")


def _check_numeric(operand: Any, where: str) -> None:
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        raise PatternError(f"{where}: numeric takes [op, n] or [op, n, op, n]")
    for index in range(0, len(operand), 2):
        op, number = operand[index], operand[index + 1]
        if op not in NUMERIC_OPERATORS or not _is_number(number):
            raise PatternError(f"{where}: numeric takes operators {NUMERIC_OPERATORS} and numbers")
    if len(operand) == 4:
        low_op, low, high_op, high = operand
        if low_op not in (">", ">=") or high_op not in ("<", "<=") or low >= high:
            raise PatternError(f"{where}: a numeric range is a lower bound then a higher one")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Matching ---------------------------------------------------------------------------------
def _match_object(pattern: dict[str, Any], event: Any) -> bool:
    for key, rule in pattern.items():
        if key == "$or":
            if not any(_match_object(branch, event) for branch in rule):
                return False
            continue
        value = event.get(key, MISSING) if isinstance(event, dict) else MISSING
        if isinstance(rule, dict):
            if isinstance(value, list):
                if not any(_match_object(rule, item) for item in value if isinstance(item, dict)):
                    return False
            elif value is MISSING:  # absent: only `exists: false` rules can hold inside
                if not _match_object(rule, {}):
                    return False
            elif not isinstance(value, dict) or not _match_object(rule, value):
                return False  # a value that is not an object has no fields
        elif not _match_rules(rule, value):
            return False
    return True


def _match_rules(rules: list[Any], value: Any) -> bool:
    values = value if isinstance(value, list) else ([] if value is MISSING else [value])
    for rule in rules:
        if isinstance(rule, dict) and "exists" in rule:
            present = bool(values) and not isinstance(value, dict)
            if rule["exists"] == present:
                return True
            continue
        if any(_match_one(rule, v) for v in values):
            return True
    return False


def _match_one(rule: Any, value: Any) -> bool:
    if rule is None:
        return value is None
    if isinstance(rule, bool):
        return isinstance(value, bool) and value == rule
    if isinstance(rule, str):
        return isinstance(value, str) and value == rule
    if _is_number(rule):
        return _is_number(value) and float(value) == float(rule)
    ((name, operand),) = rule.items()
    if name == "numeric":
        return _is_number(value) and _in_range(operand, float(value))
    if name == "anything-but":
        return _anything_but(operand, value)
    if name == "cidr":
        return isinstance(value, str) and _in_network(operand, value)
    return isinstance(value, str) and _string_rule(name, operand, value)


def _string_rule(name: str, operand: Any, value: str) -> bool:
    if isinstance(operand, dict):  # {"prefix": {"equals-ignore-case": "ab"}}
        operand, value = operand["equals-ignore-case"].lower(), value.lower()
    if name == "prefix":
        return value.startswith(operand)
    if name == "suffix":
        return value.endswith(operand)
    if name == "equals-ignore-case":
        return value.lower() == operand.lower()
    return _wildcard(operand).fullmatch(value) is not None


def _anything_but(operand: Any, value: Any) -> bool:
    if isinstance(operand, dict):
        ((name, inner),) = operand.items()
        if not isinstance(value, str):
            return False
        inner_values = inner if isinstance(inner, list) else [inner]
        return not any(_string_rule(name, v, value) for v in inner_values)
    excluded = operand if isinstance(operand, list) else [operand]
    return not any(_match_one(v, value) for v in excluded)


_NETWORKS: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}


def _in_network(network: str, value: str) -> bool:
    found = _NETWORKS.get(network)
    if found is None:
        found = _NETWORKS[network] = ipaddress.ip_network(network, strict=False)
    try:
        return ipaddress.ip_address(value) in found
    except ValueError:
        return False


def _in_range(operand: list[Any], number: float) -> bool:
    for index in range(0, len(operand), 2):
        op, bound = operand[index], float(operand[index + 1])
        if not (
            (op == "<" and number < bound)
            or (op == "<=" and number <= bound)
            or (op == "=" and number == bound)
            or (op == ">" and number > bound)
            or (op == ">=" and number >= bound)
        ):
            return False
    return True


_WILDCARDS: dict[str, re.Pattern[str]] = {}


def _wildcard(text: str) -> re.Pattern[str]:
    found = _WILDCARDS.get(text)
    if found is None:
        found = re.compile(".*".join(re.escape(part) for part in text.split("*")), re.S)
        _WILDCARDS[text] = found
    return found

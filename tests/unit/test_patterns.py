"""Event patterns (lamina/patterns.py): each rule keeps exactly what it should, and bad
patterns are refused with a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lamina.patterns import EVENTBRIDGE, SNS, PatternError, compile_pattern, matches_any

EVENTS: list[dict[str, Any]] = [
    {"id": 0, "kind": "order", "price": 100, "city": "Seattle", "tags": ["a", "b"]},
    {"id": 1, "kind": "order", "price": 150.5, "city": "seattle", "note": None},
    {"id": 2, "kind": "refund", "price": 0, "city": "Portland", "note": ""},
    {"id": 3, "kind": "ORDER", "price": "100", "city": "Boston", "nested": {"x": 1}},
    {"id": 4, "kind": "ordered", "price": -5, "flag": True, "nested": {"x": 2, "y": "z"}},
    {"id": 5, "price": 200, "flag": False, "tags": ["c"], "nested": {"y": "z"}},
]


def kept(pattern: dict[str, Any]) -> list[int]:
    compiled = compile_pattern(json.dumps(pattern))
    return [event["id"] for event in EVENTS if compiled.matches(event)]


@pytest.mark.parametrize(
    ("pattern", "ids"),
    [
        ({"kind": ["order"]}, [0, 1]),  # exact, case-sensitive
        ({"kind": ["order", "refund"]}, [0, 1, 2]),  # any value of the array
        ({"price": [100]}, [0]),  # a number is not the string "100"
        ({"price": ["100"]}, [3]),
        ({"price": [150.5]}, [1]),
        ({"note": [None]}, [1]),  # null: present and null, not absent
        ({"note": [""]}, [2]),  # empty string
        ({"flag": [True]}, [4]),
        ({"flag": [False]}, [5]),
        ({"tags": ["b"]}, [0]),  # an array matches when one element does
        ({"kind": [{"prefix": "ord"}]}, [0, 1, 4]),
        ({"kind": [{"prefix": {"equals-ignore-case": "ORD"}}]}, [0, 1, 3, 4]),
        ({"city": [{"suffix": "land"}]}, [2]),
        ({"city": [{"suffix": {"equals-ignore-case": "TTLE"}}]}, [0, 1]),
        ({"city": [{"equals-ignore-case": "SEATTLE"}]}, [0, 1]),
        ({"city": [{"wildcard": "*o*"}]}, [2, 3]),
        ({"kind": [{"anything-but": "order"}]}, [2, 3, 4]),  # present, and not that
        ({"kind": [{"anything-but": ["order", "refund"]}]}, [3, 4]),
        ({"price": [{"anything-but": [100, 0]}]}, [1, 3, 4, 5]),
        ({"kind": [{"anything-but": {"prefix": "ord"}}]}, [2, 3]),
        ({"city": [{"anything-but": {"suffix": "ttle"}}]}, [2, 3]),
        ({"city": [{"anything-but": {"equals-ignore-case": "SEATTLE"}}]}, [2, 3]),
        ({"price": [{"numeric": [">", 0]}]}, [0, 1, 5]),  # numbers only: not "100"
        ({"price": [{"numeric": [">=", 0, "<", 150.5]}]}, [0, 2]),
        ({"price": [{"numeric": [">", 0, "<=", 150.5]}]}, [0, 1]),
        ({"price": [{"numeric": ["=", 100]}]}, [0]),
        ({"price": [{"numeric": ["<", 0]}]}, [4]),
        ({"note": [{"exists": True}]}, [1, 2]),
        ({"note": [{"exists": False}]}, [0, 3, 4, 5]),
        ({"nested": [{"exists": True}]}, []),  # an object is not a leaf value
        ({"nested": {"x": [1]}}, [3]),
        ({"nested": {"y": ["z"], "x": [{"exists": False}]}}, [5]),
        ({"missing": {"x": [{"exists": False}]}}, [0, 1, 2, 3, 4, 5]),
        ({"kind": {"x": [{"exists": False}]}}, [5]),  # a string has no fields
        ({"kind": ["order"], "price": [{"numeric": [">", 120]}]}, [1]),  # keys are ANDed
        ({"$or": [{"kind": ["refund"]}, {"price": [{"numeric": [">=", 200]}]}]}, [2, 5]),
        (
            {"kind": [{"prefix": "o"}], "$or": [{"price": [100]}, {"note": [None]}]},
            [0, 1],
        ),
    ],
)
def test_each_rule_keeps_exactly_the_matching_events(
    pattern: dict[str, Any], ids: list[int]
) -> None:
    assert kept(pattern) == ids


def test_filters_are_ored_and_none_keeps_everything() -> None:
    patterns = [compile_pattern('{"kind": ["refund"]}'), compile_pattern('{"id": [5]}')]
    assert [e["id"] for e in EVENTS if matches_any(patterns, e)] == [2, 5]
    assert all(matches_any([], e) for e in EVENTS)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        "{}",
        '{"a": "b"}',  # a value must be an array or an object
        '{"a": []}',
        '{"a": [{"prefix": 1}]}',
        '{"a": [{"suffix": ["x"]}]}',
        '{"a": [{"exists": "yes"}]}',
        '{"a": [{"numeric": [">"]}]}',
        '{"a": [{"numeric": ["~", 1]}]}',
        '{"a": [{"numeric": ["<", 5, ">", 1]}]}',
        '{"a": [{"numeric": [">", 5, "<", 1]}]}',
        '{"a": [{"anything-but": []}]}',
        '{"a": [{"anything-but": {"wildcard": "x"}}]}',
        '{"a": [{"unknown": 1}]}',
        '{"a": [{"prefix": "x", "suffix": "y"}]}',
        '{"$or": [{"a": ["x"]}]}',
        '{"$or": {"a": ["x"]}}',
    ],
)
def test_bad_patterns_are_refused(text: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(text)


def test_cidr_and_anything_but_wildcard() -> None:
    events = [
        {"id": 0, "ip": "10.0.0.7", "file": "a.txt"},
        {"id": 1, "ip": "10.0.1.7", "file": "b.png"},
        {"id": 2, "ip": "2001:db8::1", "file": "c.TXT"},
        {"id": 3, "ip": "not an address", "file": 7},
    ]

    def ids(pattern: dict[str, Any]) -> list[int]:
        compiled = compile_pattern(json.dumps(pattern), EVENTBRIDGE)
        return [e["id"] for e in events if compiled.matches(e)]

    assert ids({"ip": [{"cidr": "10.0.0.0/24"}]}) == [0]
    assert ids({"ip": [{"cidr": "10.0.0.0/16"}]}) == [0, 1]
    assert ids({"ip": [{"cidr": "2001:db8::/32"}]}) == [2]
    assert ids({"file": [{"anything-but": {"wildcard": "*.txt"}}]}) == [1, 2]
    assert ids({"file": [{"anything-but": {"wildcard": ["*.txt", "*.png"]}}]}) == [2]
    for bad in ({"ip": [{"cidr": "10.0.0.0/33"}]}, {"ip": [{"cidr": 10}]}):
        with pytest.raises(PatternError):
            compile_pattern(json.dumps(bad), EVENTBRIDGE)
    # Lambda's filters take neither; SNS's filter policies take cidr only.
    for only_eventbridge in ({"ip": [{"cidr": "10.0.0.0/24"}]},
                             {"f": [{"anything-but": {"wildcard": "*.txt"}}]}):  # fmt: skip
        with pytest.raises(PatternError):
            compile_pattern(json.dumps(only_eventbridge))
    compile_pattern(json.dumps({"ip": [{"cidr": "10.0.0.0/24"}]}), SNS)
    with pytest.raises(PatternError):
        compile_pattern(json.dumps({"f": [{"anything-but": {"wildcard": "*.txt"}}]}), SNS)

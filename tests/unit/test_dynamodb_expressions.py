"""DynamoDB expressions (services/dynamodb/grammar.py, expressions.py, updates.py): every
operator and function, and the message of each malformed expression, as AWS words it."""

from __future__ import annotations

from typing import Any

import pytest

from lamina.errors import AwsError
from lamina.services.dynamodb import values
from lamina.services.dynamodb.expressions import Expressions, holds
from lamina.services.dynamodb.updates import apply, project

ITEM: dict[str, Any] = {
    "pk": {"S": "user#1"},
    "title": {"S": "Ada Lovelace"},
    "age": {"N": "36"},
    "score": {"N": "9.5"},
    "bn": {"B": b"\x01\x02\x03"},
    "tags": {"SS": ["math", "poetry"]},
    "nums": {"NS": ["1", "2", "3"]},
    "bins": {"BS": [b"\x01", b"\x02"]},
    "lst": {"L": [{"S": "a"}, {"N": "2"}, {"M": {"deep": {"S": "x"}}}]},
    "mp": {"M": {"city": {"S": "London"}, "zip": {"N": "123"}}},
    "nothing": {"NULL": True},
    "flag": {"BOOL": True},
}

VALUES: dict[str, Any] = {
    ":s": {"S": "Ada"},
    ":n": {"N": "36"},
    ":low": {"N": "30"},
    ":high": {"N": "40"},
    ":b": {"B": b"\x01"},
    ":tag": {"S": "math"},
    ":two": {"N": "2"},
    ":a": {"S": "a"},
    ":type": {"S": "SS"},
    ":london": {"S": "London"},
    ":one": {"N": "1"},
    ":list": {"L": [{"S": "z"}]},
    ":set": {"SS": ["new"]},
    ":nset": {"NS": ["2", "7"]},
    ":x": {"S": "x"},
}


def check(text: str, names: dict[str, str] | None = None) -> bool:
    exprs = Expressions(names, VALUES)
    return holds(exprs.condition(text, "ConditionExpression"), ITEM)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age = :n", True),
        ("age <> :n", False),
        ("age < :high", True),
        ("age <= :n", True),
        ("age > :low", True),
        ("age >= :high", False),
        ("title > :s", True),  # strings compare by their UTF-8 bytes
        ("age = :s", False),  # values of different types are never equal
        ("age <> :s", True),
        ("absent <> :n", True),
        ("absent = :n", False),
        ("age BETWEEN :low AND :high", True),
        ("score BETWEEN :low AND :high", False),
        ("age IN (:one, :two, :n)", True),
        ("age IN (:one, :two)", False),
        ("attribute_exists(mp.city)", True),
        ("attribute_exists(mp.country)", False),
        ("attribute_not_exists(absent)", True),
        ("attribute_not_exists(lst[2].deep)", False),
        ("attribute_type(tags, :type)", True),
        ("attribute_type(nums, :type)", False),
        ("begins_with(title, :s)", True),
        ("begins_with(bn, :b)", True),
        ("begins_with(age, :s)", False),
        ("contains(title, :s)", True),
        ("contains(tags, :tag)", True),
        ("contains(nums, :two)", True),
        ("contains(lst, :a)", True),
        ("contains(lst, :tag)", False),
        ("size(title) = :two", False),
        ("size(tags) = :two", True),
        ("size(lst) > :two", True),
        ("size(mp) = :two", True),
        ("size(bn) > :two", True),
        ("size(:s) = :two", False),  # the size of a value: DynamoDB allows it
        ("(age = :n) AND (size(tags) = :two OR age = :one)", True),
        ("mp.city = :london", True),
        ("lst[2].deep = :x", True),
        ("lst[1] = :two", True),
        ("lst[9] = :two", False),
        ("#n = :n", True),
        ("age = :n AND NOT begins_with(title, :tag)", True),
        ("age = :one OR contains(tags, :tag)", True),
        ("NOT (age = :n OR age = :one)", False),
        ("(age = :n)", True),
        ("age = :n and title > :s", True),  # keywords in any case
    ],
)
def test_conditions(text: str, expected: bool) -> None:
    assert check(text, {"#n": "age"} if "#n" in text else None) is expected


def failure(call: Any) -> str:
    with pytest.raises(AwsError) as info:
        call()
    assert info.value.code == "ValidationException"
    return info.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Invalid ConditionExpression: The expression can not be empty;"),
        ("a = = :n", 'Invalid ConditionExpression: Syntax error; token: "=", near: "= = :n"'),
        ("age = :n AND", 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "AND"'),
        ("age", 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "age"'),
        ("()", 'Invalid ConditionExpression: Syntax error; token: ")", near: "()"'),
        ("age = :n !", 'Invalid ConditionExpression: Syntax error; token: "!", near: ":n !"'),
        ("age = #", 'Invalid ConditionExpression: Syntax error; token: "#", near: "= #"'),
        (
            "age = :missing",
            "Invalid ConditionExpression: An expression attribute value used in expression is "
            "not defined; attribute value: :missing",
        ),
        (
            "#missing = :n",
            "Invalid ConditionExpression: An expression attribute name used in the document "
            "path is not defined; attribute name: #missing",
        ),
        (
            "title = :s AND size = :n",
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved "
            "keyword: size",
        ),
        (
            "Begins_With(title, :s)",
            "Invalid ConditionExpression: Invalid function name; function: Begins_With",
        ),
        (
            "begins_with(title)",
            "Invalid ConditionExpression: Incorrect number of operands for operator or "
            "function; operator or function: begins_with, number of operands: 1",
        ),
        (
            "begins_with(title, :n)",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: begins_with, operand type: N",
        ),
        (
            "((age = :n))",
            "Invalid ConditionExpression: The expression has redundant parentheses;",
        ),
        (
            "contains(tags, tags)",
            "Invalid ConditionExpression: The first operand must be distinct from the remaining "
            "operands for this operator or function; operator: contains, first operand: [tags]",
        ),
        (
            "size(:n) > :one",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: size, operand type: N",
        ),
        (
            "age = :n AND NOT flag",
            'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "flag"',
        ),
        (
            "attribute_exists(:s)",
            "Invalid ConditionExpression: Operator or function requires a document path; "
            "operator or function: attribute_exists",
        ),
        (
            "size(title)",
            "Invalid ConditionExpression: The function is not allowed to be used this way in "
            "an expression; function: size",
        ),
        (
            "if_not_exists(age, :n) = :n",
            "Invalid ConditionExpression: The function is not allowed to be used this way in "
            "an expression; function: if_not_exists",
        ),
        (
            "attribute_type(age, :s)",
            "Invalid ConditionExpression: Invalid attribute type name found in type: Ada, "
            "valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}",
        ),
        (
            "age BETWEEN :high AND :low",
            "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be "
            "greater than or equal to lower bound; lower bound operand: AttributeValue: "
            "{N:40}, upper bound operand: AttributeValue: {N:30}",
        ),
    ],
)
def test_malformed_conditions(text: str, message: str) -> None:
    exprs = Expressions(None, VALUES)
    assert failure(lambda: exprs.condition(text, "ConditionExpression")) == message


def update(text: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    exprs = Expressions(names, VALUES)
    return apply(exprs.update(text), ITEM, ("pk",))


def test_set_remove_add_delete() -> None:
    new = update("SET age = age + :one, score = score - :two, city = mp.city REMOVE flag")
    assert new["age"] == {"N": "37"}
    assert new["score"] == {"N": "7.5"}
    assert new["city"] == {"S": "London"}
    assert "flag" not in new
    assert ITEM["age"] == {"N": "36"}  # the item given is not changed
    new = update("SET fresh = if_not_exists(fresh, :one), age = if_not_exists(age, :one)")
    assert new["fresh"] == {"N": "1"} and new["age"] == {"N": "36"}
    new = update("SET lst = list_append(lst, :list), later = list_append(:list, lst)")
    assert new["lst"]["L"][-1] == {"S": "z"}
    assert new["later"]["L"][0] == {"S": "z"} and len(new["later"]["L"]) == 4
    new = update("SET lst[1] = :x, lst[10] = :a, mp.zip = :one REMOVE lst[0], mp.city")
    assert new["lst"]["L"] == [{"S": "x"}, {"M": {"deep": {"S": "x"}}}, {"S": "a"}]
    assert new["mp"] == {"M": {"zip": {"N": "1"}}}
    new = update("ADD age :two, tags :set, cnt :one DELETE nums :nset")
    assert new["age"] == {"N": "38"}
    assert new["tags"] == {"SS": ["math", "poetry", "new"]}
    assert new["cnt"] == {"N": "1"}
    assert new["nums"] == {"NS": ["1", "3"]}
    new = update("DELETE tags :set ADD nums :nset")
    assert new["tags"] == ITEM["tags"] and new["nums"] == {"NS": ["1", "2", "3", "7"]}
    new = update("set #a = :one remove #b", {"#a": "size", "#b": "title"})
    assert new["size"] == {"N": "1"} and "title" not in new


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Invalid UpdateExpression: The expression can not be empty;"),
        (
            "INVALID SYNTAX HERE",
            'Invalid UpdateExpression: Syntax error; token: "INVALID", near: "INVALID SYNTAX"',
        ),
        (
            "ADD hits : one",
            'Invalid UpdateExpression: Syntax error; token: ":", near: "hits : one"',
        ),
        ("SET a = :one,", 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: ","'),
        ("SET a :one", 'Invalid UpdateExpression: Syntax error; token: ":one", near: "a :one"'),
        (
            "SET a = :one SET b = :two",
            '1 validation error detected: Invalid UpdateExpression: The "SET" section can only '
            "be used once in an update expression;",
        ),
        (
            "SET a = :one REMOVE a",
            "1 validation error detected: Invalid UpdateExpression: Two document paths overlap "
            "with each other; must remove or rewrite one of these paths; path one: [a], path "
            "two: [a]",
        ),
        (
            "SET mp.city = :x REMOVE mp",
            "1 validation error detected: Invalid UpdateExpression: Two document paths overlap "
            "with each other; must remove or rewrite one of these paths; path one: [mp, city], "
            "path two: [mp]",
        ),
        (
            "SET a = size(title)",
            "Invalid UpdateExpression: The function is not allowed in an update expression; "
            "function: size",
        ),
        (
            "SET a = list_append(:one, lst)",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; "
            "operator or function: list_append, operand type: N",
        ),
        (
            "SET a = :s + :one",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; "
            "operator or function: +, operand type: S",
        ),
        (
            "ADD a :s",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; "
            "operator or function: operator: ADD, operand type: STRING",
        ),
        (
            "DELETE a :one",
            "Invalid UpdateExpression: Incorrect operand type for operator or function; "
            "operator or function: operator: DELETE, operand type: NUMBER",
        ),
        (
            "SET a = if_not_exists(:one, :two)",
            "Invalid UpdateExpression: Operator or function requires a document path; "
            "operator or function: if_not_exists",
        ),
        (
            "SET name = :s",
            "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: "
            "name",
        ),
    ],
)
def test_malformed_updates(text: str, message: str) -> None:
    exprs = Expressions(None, VALUES)
    assert failure(lambda: exprs.update(text)) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "SET age = title + :one",
            "An operand in the update expression has an incorrect data type",
        ),
        ("ADD tags :one", "An operand in the update expression has an incorrect data type"),
        (
            "SET x = absent",
            "The provided expression refers to an attribute that does not exist in the item",
        ),
        (
            "SET nope.deeper = :one",
            "The document path provided in the update expression is invalid for update",
        ),
        (
            "SET pk = :s",
            "One or more parameter values were invalid: Cannot update attribute pk. This "
            "attribute is part of the key",
        ),
    ],
)
def test_updates_that_do_not_fit_the_item(text: str, message: str) -> None:
    exprs = Expressions(None, VALUES)
    actions = exprs.update(text)
    assert failure(lambda: apply(actions, ITEM, ("pk",))) == message


def test_unused_and_misplaced_names_and_values() -> None:
    exprs = Expressions({"#a": "age", "#b": "x"}, {":n": {"N": "1"}, ":m": {"N": "2"}})
    exprs.condition("#a = :n", "ConditionExpression")
    assert failure(exprs.finish) == (
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}"
    )
    exprs = Expressions(None, {":n": {"N": "1"}, ":m": {"N": "2"}})
    exprs.condition("age = :n", "ConditionExpression")
    assert failure(exprs.finish) == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:m}"
    )
    assert failure(lambda: Expressions({}, None)) == "ExpressionAttributeNames must not be empty"
    assert failure(lambda: Expressions(None, {})) == "ExpressionAttributeValues must not be empty"


def test_projection() -> None:
    exprs = Expressions({"#n": "title"}, None)
    paths = exprs.projection("#n, mp.city, lst[2].deep, lst[0], absent")
    assert project(ITEM, paths) == {
        "title": {"S": "Ada Lovelace"},
        "mp": {"M": {"city": {"S": "London"}}},
        "lst": {"L": [{"M": {"deep": {"S": "x"}}}, {"S": "a"}]},
    }
    assert failure(lambda: exprs.projection("!!")) == (
        'Invalid ProjectionExpression: Syntax error; token: "!", near: "!!"'
    )
    assert failure(lambda: exprs.projection("a, a")) == (
        "1 validation error detected: Invalid ProjectionExpression: Two document paths overlap "
        "with each other; must remove or rewrite one of these paths; path one: [a], path two: "
        "[a]"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {},
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes",
        ),
        (
            {"S": "a", "N": "1"},
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of "
            "the supported datatypes",
        ),
        ({"N": "abc"}, "A value provided cannot be converted into a number"),
        ({"N": "1" * 39}, "Attempting to store more than 38 significant digits in a Number"),
        (
            {"N": "1e126"},
            "Number overflow. Attempting to store a number with magnitude larger than supported "
            "range",
        ),
        (
            {"N": "1e-131"},
            "Number underflow. Attempting to store a number with magnitude smaller than supported "
            "range",
        ),
        (
            {"NULL": False},
            "One or more parameter values were invalid: Null attribute value types must have the "
            "value of true",
        ),
        ({"SS": []}, "One or more parameter values were invalid: An string set  may not be empty"),
        ({"NS": []}, "One or more parameter values were invalid: An number set  may not be empty"),
        (
            {"SS": ["a", "a"]},
            "One or more parameter values were invalid: Input collection [a, a] contains "
            "duplicates.",
        ),
    ],
)
def test_attribute_values_are_checked(value: Any, message: str) -> None:
    assert failure(lambda: values.check_value(value)) == message


def test_numbers_are_canonical_and_keys_sort_as_dynamodb_sorts() -> None:
    assert values.check_value({"N": "1.50"}) == {"N": "1.5"}
    assert values.check_value({"N": "+1e2"}) == {"N": "100"}
    assert values.check_value({"N": "-0.000"}) == {"N": "0"}
    numbers = ["-100", "-2.5", "-2", "-0.1", "0", "0.001", "1", "1.5", "2", "10", "99", "1e5"]
    encoded = [values.key_bytes({"N": n}) for n in numbers]
    assert encoded == sorted(encoded)
    strings = ["", "A", "B", "a", "aa", "b", "é", "中"]
    assert [values.key_bytes({"S": s}) for s in strings] == sorted(
        values.key_bytes({"S": s}) for s in strings
    )

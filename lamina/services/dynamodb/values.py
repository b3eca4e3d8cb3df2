"""DynamoDB's attribute values, as the wire carries them ({"S": "x"}, {"N": "1.5"}, ...):
their checks with AWS's messages, numbers, sizes, comparisons, and the order-preserving
bytes a key is stored under (so that SQLite sorts range keys as DynamoDB does).
"""

from __future__ import annotations

import decimal
import hashlib
from collections.abc import Iterable
from typing import Any

from lamina.errors import AwsError

Value = dict[str, Any]  # one attribute value: {"S": "text"}, {"N": "12"}, {"M": {...}}, ...
Item = dict[str, Value]

TYPES = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL")
SCALAR_KEY_TYPES = ("S", "N", "B")
MAX_ITEM_BYTES = 400 * 1024
MAX_DIGITS = 38
NUMBERS = decimal.Context(prec=MAX_DIGITS + 2, Emax=200, Emin=-200)


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message, 400)


def invalid(message: str) -> AwsError:
    return validation(f"One or more parameter values were invalid: {message}")


# Numbers ------------------------------------------------------------------------------------
def to_number(text: str) -> decimal.Decimal:
    """A number DynamoDB accepts: at most 38 significant digits, magnitude 1e-130 to
    9.99e125; AWS's messages otherwise."""
    try:
        number = NUMBERS.create_decimal(text.strip())
    except (decimal.InvalidOperation, ValueError):
        raise validation("A value provided cannot be converted into a number") from None
    if not number.is_finite() or text.strip() == "" or "_" in text:
        raise validation("A value provided cannot be converted into a number")
    if number == 0:
        return decimal.Decimal(0)
    digits = number.normalize(NUMBERS).as_tuple().digits
    if len(digits) > MAX_DIGITS:
        raise validation("Attempting to store more than 38 significant digits in a Number")
    if number.copy_abs() >= decimal.Decimal("1E126"):
        raise validation(
            "Number overflow. Attempting to store a number with magnitude larger than "
            "supported range"
        )
    if number.copy_abs() < decimal.Decimal("1E-130"):
        raise validation(
            "Number underflow. Attempting to store a number with magnitude smaller than "
            "supported range"
        )
    return number


def number_text(number: decimal.Decimal) -> str:
    """DynamoDB's canonical form: no exponent, no trailing zeros ("1.50" -> "1.5")."""
    if number == 0:
        return "0"
    text = format(number.normalize(NUMBERS), "f")
    return text


# Checks -------------------------------------------------------------------------------------
def check_value(value: Any, top: bool = True) -> Value:
    """A value as the request gave it, checked and with numbers in canonical form."""
    if not isinstance(value, dict) or not value:
        raise validation(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
        )
    if len(value) > 1:
        raise validation(
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one "
            "of the supported datatypes"
        )
    ((kind, inner),) = value.items()
    if kind == "N":
        return {"N": number_text(to_number(inner))}
    if kind == "NULL":
        if inner is not True:
            raise invalid("Null attribute value types must have the value of true")
        return {"NULL": True}
    if kind in ("SS", "NS", "BS"):
        if not inner:
            raise invalid(
                {
                    "SS": "An string set  may not be empty",
                    "NS": "An number set  may not be empty",
                }.get(kind, "Binary sets should not be empty")
            )
        members = [number_text(to_number(v)) for v in inner] if kind == "NS" else list(inner)
        canonical = [to_number(v) for v in members] if kind == "NS" else members
        if len(set(canonical)) != len(canonical):
            shown = ", ".join(str(v) for v in inner)
            raise invalid(f"Input collection [{shown}] contains duplicates.")
        return {kind: members}
    if kind == "M":
        return {"M": {name: check_value(v, False) for name, v in inner.items()}}
    if kind == "L":
        return {"L": [check_value(v, False) for v in inner]}
    if kind in ("S", "B", "BOOL"):
        return {kind: inner}
    raise validation(
        "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
    )


def check_item(item: dict[str, Any]) -> Item:
    return {name: check_value(value) for name, value in item.items()}


def kind_of(value: Value) -> str:
    return next(iter(value))


# Sizes --------------------------------------------------------------------------------------
def value_size(value: Value) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return _number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "NS":
        return sum(_number_size(v) for v in inner)
    if kind == "BS":
        return sum(len(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    return 3 + sum(len(k.encode()) + 1 + value_size(v) for k, v in inner.items())  # M


def _number_size(text: str) -> int:
    digits = len(text.replace("-", "").replace(".", "").strip("0")) or 1
    return (digits + 1) // 2 + 1


def item_size(item: Item) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


# Comparing ----------------------------------------------------------------------------------
def comparable(value: Value) -> tuple[str, Any]:
    """(type, a Python value that orders as DynamoDB orders that type)."""
    ((kind, inner),) = value.items()
    if kind == "N":
        return "N", decimal.Decimal(inner)
    if kind == "S":
        return "S", inner.encode()
    if kind == "B":
        return "B", bytes(inner)
    if kind == "NS":
        return "NS", frozenset(decimal.Decimal(v) for v in inner)
    if kind in ("SS", "BS"):
        return kind, frozenset(bytes(v) if kind == "BS" else v for v in inner)
    if kind == "M":
        return "M", tuple(sorted((k, comparable(v)) for k, v in inner.items()))
    if kind == "L":
        return "L", tuple(comparable(v) for v in inner)
    return kind, inner


def equal(a: Value, b: Value) -> bool:
    return comparable(a) == comparable(b)


# Keys ---------------------------------------------------------------------------------------
def key_bytes(value: Value) -> bytes:
    """Bytes that sort as DynamoDB sorts a key of this type: strings by UTF-8, binary by
    bytes, numbers by value."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner.encode()
    if kind == "B":
        return bytes(inner)
    return _number_bytes(decimal.Decimal(inner))


def _number_bytes(number: decimal.Decimal) -> bytes:
    if number == 0:
        return b"\x01"
    sign, digits, exponent = number.normalize(NUMBERS).as_tuple()
    assert isinstance(exponent, int)
    magnitude = exponent + len(digits) + 300  # the position of the first digit, biased
    text = "".join(str(d) for d in digits)
    if not sign:
        return b"\x02" + magnitude.to_bytes(2, "big") + text.encode()
    inverted = "".join(str(9 - int(c)) for c in text)
    return b"\x00" + (65535 - magnitude).to_bytes(2, "big") + inverted.encode() + b"~"


def partition_hash(value: Value) -> int:
    """A partition key's place in the 128-bit hash space (which partition holds it)."""
    ((kind, _),) = value.items()
    digest = hashlib.md5(kind.encode() + key_bytes(value), usedforsecurity=False).digest()
    return int.from_bytes(digest)


def key_of(item: Item, names: Iterable[str]) -> Item:
    return {name: item[name] for name in names if name in item}

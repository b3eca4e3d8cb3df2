"""Errors that carry their AWS code, HTTP status and body members.

Every layer raises these; the api layer turns them into AWS-shaped responses.
"""

from __future__ import annotations

from typing import Any


class AwsError(Exception):
    """An error answered to the client in AWS's shape.

    `status` is a fallback: when the service model defines the error shape, its
    httpStatusCode wins. `fields` are extra body members (`Type`, `Reason`, ...);
    `headers` extra response headers (`Retry-After`).
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        user: bool = False,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields: dict[str, Any] = dict(fields or {})
        if user:
            self.fields["Type"] = "User"
        self.headers = dict(headers or {})


def validation_error(problems: list[str]) -> AwsError:
    """AWS's (Coral's) aggregated validation message."""
    count = len(problems)
    noun = "error" if count == 1 else "errors"
    return AwsError(
        "ValidationException", f"{count} validation {noun} detected: " + "; ".join(problems)
    )


def constraint(value: Any, path: str, rule: str) -> str:
    shown = "null" if value is None else f"'{value}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {rule}"


def invalid_parameter(message: str, *, user: bool = True) -> AwsError:
    return AwsError("InvalidParameterValueException", message, 400, user=user)


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 404, user=True)


def conflict(message: str) -> AwsError:
    return AwsError("ResourceConflictException", message, 409, user=True)


def not_implemented(service: str, operation: str) -> AwsError:
    return AwsError(
        "NotImplementedException",
        f"The {operation} operation of {service} is not implemented by Lamina yet.",
        501,
    )


def store_unavailable() -> AwsError:
    """The shared database cannot be reached: the request was not stored (retry later)."""
    return AwsError(
        "ServiceUnavailableException",
        "Lamina's database cannot be reached: the request was not stored. Retry later.",
        503,
        headers={"Retry-After": "1"},
    )

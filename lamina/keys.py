"""Keys shared by every layer: every resource is keyed by account and region."""

from __future__ import annotations

from typing import NamedTuple


class FunctionKey(NamedTuple):
    """A function of an account in a region. A named tuple: immutable, and hashed in C (a
    key is looked up several times on every invocation, in the counting service above all;
    a frozen dataclass's generated hash cost about four times as much)."""

    account: str
    region: str
    name: str

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.name}"

"""What an operation knows about the request that called it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from lamina.keys import FunctionKey

# A result's key for an HTTP status the model gives no member for (S3's 206 and 304).
STATUS = "__status__"


@dataclass(frozen=True)
class RequestContext:
    account: str
    region: str
    request_id: str
    endpoint: str  # scheme://host:port the client used, for addresses we hand back
    principal: str = ""  # the caller's ARN (arn:aws:iam::<account>:root, an assumed role)
    client: str = ""  # the caller's IP address

    def function_key(self, name: str) -> FunctionKey:
        return FunctionKey(self.account, self.region, name)


@dataclass
class StreamEvent:
    """One event of an event stream an operation answers with: its type and members."""

    name: str  # the event's shape name (PayloadChunk, InvokeComplete)
    members: dict[str, Any]


@dataclass
class EventStreamResult:
    """An operation's answer whose payload is an event stream: `fields` are the other
    output members (status, headers), sent first; `events` follow as they come."""

    fields: dict[str, Any]
    events: AsyncIterator[StreamEvent]

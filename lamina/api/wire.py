"""Plain HTTP request and response values passed between the ASGI app and protocols."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

# The id of the request being served (each is served in a task of its own), for protocols
# that also write it into the body (query: <RequestId>).
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_request_id", default=""
)


@dataclass
class HttpRequest:
    method: str
    path: str  # still percent-encoded, as it arrived
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    raw_query: str = ""  # the query string as sent (percent-encoded), for signatures
    # /_lamina/*: the account the request reads ("": no authenticator; the handler's
    # default), and whether a signature proved it (auth on) or it was only named.
    account: str = ""
    verified: bool = False
    local: str = ""  # host:port the connection reached, when the client sent no Host
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # as sent, repeats kept
    client: str = ""  # the peer's address
    http_version: str = "1.1"


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamingResponse:
    """A response whose body is sent as it is produced (chunked)."""

    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]

"""The HTTP request a function URL or an HTTP API receives, and the answer sent back.

The gateway builds a WebRequest from whatever server it runs on: the path and query as
they arrived (still percent-encoded), every header line in order with repeats kept
(names lower-cased), the body, the peer's address. A WebResponse carries header pairs (a
response may set several cookies) and a body of bytes, or an async iterator of bytes that
is sent as it comes (a streamed response).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

# What a function may receive: AWS's synchronous invocation payload limit.
PAYLOAD_LIMIT = 6_291_456


@dataclass(slots=True)
class WebRequest:
    method: str
    path: str  # raw, as sent, without the query string
    query: str  # raw, as sent, without the '?'
    headers: list[tuple[str, str]]  # (lower-cased name, value), in order, repeats kept
    body: bytes = b""
    client: str = ""  # the peer's address
    scheme: str = "http"
    http_version: str = "1.1"
    port: int = 0  # the port the request came in on

    def header(self, name: str, default: str = "") -> str:
        """The first value of header `name` (lower-case)."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def host(self) -> str:
        return self.header("host")


Body = bytes | AsyncIterator[bytes]


@dataclass(slots=True)
class WebResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Body = b""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def json_answer(
    status: int, text: bytes, extra: list[tuple[str, str]] | None = None
) -> WebResponse:
    """An answer of the front door itself (an error, a refusal), in JSON."""
    headers = [("Content-Type", "application/json"), *(extra or [])]
    return WebResponse(status, headers, text)

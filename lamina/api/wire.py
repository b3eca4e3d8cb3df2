"""Plain HTTP request and response values passed between the ASGI app and protocols."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HttpRequest:
    method: str
    path: str  # still percent-encoded, as it arrived
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

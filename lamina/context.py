"""What an operation knows about the request that called it."""

from __future__ import annotations

from dataclasses import dataclass

from lamina.keys import FunctionKey


@dataclass(frozen=True)
class RequestContext:
    account: str
    region: str
    request_id: str
    endpoint: str  # scheme://host:port the client used, for addresses we hand back

    def function_key(self, name: str) -> FunctionKey:
        return FunctionKey(self.account, self.region, name)

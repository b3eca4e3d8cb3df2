"""The HTTP front door: requests to function URLs and HTTP APIs, told apart from API calls
before any service routing, and handed to their handler.

A request is the front door's when its Host is `<url-id>.lambda-url.<region>.<anything>`
(a function URL) or `<api-id>.execute-api.<anything>` (an HTTP API), or when its path is
`/_lamina/url/<url-id>/<path>` or `/_lamina/api/<api-id>/<path>` (the same, for clients
that can neither resolve `*.localhost` nor set a Host header). Everything else goes on to
the services. The handlers see a WebRequest and the path the function is to see (the
part after the id, in the path form), and answer a WebResponse; they never see ASGI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lamina.web.request import WebRequest, WebResponse

URL_PATH = "/_lamina/url/"
API_PATH = "/_lamina/api/"


class Handler(Protocol):
    async def serve(self, resource_id: str, request: WebRequest, path: str) -> WebResponse: ...

    def too_large(self) -> WebResponse:
        """The answer to a body past what a function may receive."""
        ...


@dataclass(frozen=True, slots=True)
class Claim:
    handler: Handler
    resource_id: str
    path: str  # the path the function sees, still percent-encoded


class FrontDoor:
    def __init__(self, urls: Handler, apis: Handler) -> None:
        self.urls = urls
        self.apis = apis

    def claim(self, host: str, path: str) -> Claim | None:
        """The handler of this request, or None: not the front door's."""
        if ".lambda-url." in host or ".execute-api." in host:
            first, _, rest = host.lower().partition(".")
            kind = rest.partition(".")[0]
            if first and kind == "lambda-url":
                return Claim(self.urls, first, path)
            if first and kind == "execute-api":
                return Claim(self.apis, first, path)
        if path.startswith(URL_PATH):
            return self._path_claim(self.urls, path[len(URL_PATH) :])
        if path.startswith(API_PATH):
            return self._path_claim(self.apis, path[len(API_PATH) :])
        return None

    @staticmethod
    def _path_claim(handler: Handler, tail: str) -> Claim | None:
        resource_id, slash, rest = tail.partition("/")
        if not resource_id:
            return None
        return Claim(handler, resource_id.lower(), slash + rest if slash else "/")

    async def serve(self, claim: Claim, request: WebRequest) -> WebResponse:
        return await claim.handler.serve(claim.resource_id, request, claim.path)

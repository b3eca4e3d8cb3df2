"""CORS as function URLs and HTTP APIs apply it, from their `Cors` configuration.

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here,
without invoking: the allow headers when the origin, the method and every requested
header are allowed, none otherwise (the browser then refuses the real request). Every
other answer to an allowed origin carries Access-Control-Allow-Origin (and the exposed
headers, credentials); CORS headers the function set itself are replaced by these.
Origins, methods and headers may be `*`. Header names compare without case, origins
exactly, methods without case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lamina.web.request import WebRequest, WebResponse

CORS_PREFIX = "access-control-"


@dataclass(frozen=True, slots=True)
class CorsRules:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    expose: tuple[str, ...]
    max_age: int | None
    credentials: bool

    @classmethod
    def of(cls, config: dict[str, Any] | None) -> CorsRules | None:
        """From a Cors structure (AllowOrigins, AllowMethods, ...); None when unset."""
        if not config:
            return None
        return cls(
            tuple(config.get("AllowOrigins") or ()),
            tuple(m.upper() for m in config.get("AllowMethods") or ()),
            tuple(h.lower() for h in config.get("AllowHeaders") or ()),
            tuple(config.get("ExposeHeaders") or ()),
            config.get("MaxAge"),
            bool(config.get("AllowCredentials")),
        )

    def origin_allowed(self, origin: str) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def allow_origin(self, origin: str) -> str:
        """What Access-Control-Allow-Origin says: `*`, or the origin itself (always when
        credentials are allowed: browsers refuse `*` with credentials)."""
        return "*" if "*" in self.origins and not self.credentials else origin


def is_preflight(request: WebRequest) -> bool:
    return (
        request.method == "OPTIONS"
        and bool(request.header("origin"))
        and bool(request.header("access-control-request-method"))
    )


def preflight(rules: CorsRules, request: WebRequest) -> WebResponse:
    origin = request.header("origin")
    method = request.header("access-control-request-method").upper()
    asked = [
        h.strip().lower()
        for h in request.header("access-control-request-headers").split(",")
        if h.strip()
    ]
    allowed = (
        rules.origin_allowed(origin)
        and ("*" in rules.methods or method in rules.methods)
        and ("*" in rules.headers or all(h in rules.headers for h in asked))
    )
    headers: list[tuple[str, str]] = []
    if allowed:
        headers.append(("Access-Control-Allow-Origin", rules.allow_origin(origin)))
        methods = [method] if "*" in rules.methods else list(rules.methods)
        headers.append(("Access-Control-Allow-Methods", ",".join(methods)))
        if asked:
            named = asked if "*" in rules.headers else list(rules.headers)
            headers.append(("Access-Control-Allow-Headers", ",".join(named)))
        if rules.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        if rules.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(rules.max_age)))
    headers.append(("Vary", "Origin"))
    return WebResponse(200, headers, b"")


def decorate(rules: CorsRules, request: WebRequest, response: WebResponse) -> None:
    """Put the configuration's CORS headers on an answer (replacing the function's)."""
    origin = request.header("origin")
    kept = [(k, v) for k, v in response.headers if not k.lower().startswith(CORS_PREFIX)]
    if rules.origin_allowed(origin):
        kept.append(("Access-Control-Allow-Origin", rules.allow_origin(origin)))
        if rules.expose:
            kept.append(("Access-Control-Expose-Headers", ",".join(rules.expose)))
        if rules.credentials:
            kept.append(("Access-Control-Allow-Credentials", "true"))
        kept.append(("Vary", "Origin"))
    response.headers = kept

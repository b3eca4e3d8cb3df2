"""Helpers for the tests of function URLs and HTTP APIs: public URLs (with the permissions
AWS requires), and `*.localhost` resolved to the loopback address for Python clients, as
curl and Chromium resolve it themselves (RFC 6761)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit


@contextmanager
def localhost_resolves() -> Iterator[None]:
    """`<anything>.localhost` resolves to 127.0.0.1 in this process (requests, urllib)."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = resolve
    try:
        yield
    finally:
        socket.getaddrinfo = real


def public_url(lam: Any, name: str, **config: Any) -> str:
    """A NONE-auth URL of `name` that anyone may call: its config and the two statements
    AWS requires of a public URL (lambda:InvokeFunctionUrl, and lambda:InvokeFunction
    when invoked through a function URL)."""
    created = lam.create_function_url_config(FunctionName=name, AuthType="NONE", **config)
    qualifier = {"Qualifier": config["Qualifier"]} if "Qualifier" in config else {}
    lam.add_permission(
        FunctionName=name,
        StatementId="public-url",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
        **qualifier,
    )
    lam.add_permission(
        FunctionName=name,
        StatementId="public-url-invoke",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
        **qualifier,
    )
    return str(created["FunctionUrl"])


def grant_api(lam: Any, name: str, source_arn: str, sid: str = "apigateway") -> None:
    """Let API Gateway invoke `name` for requests from `source_arn` (AddPermission)."""
    lam.add_permission(
        FunctionName=name,
        StatementId=sid.replace(".", "-"),  # statement ids are letters, digits, - and _
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=source_arn,
    )


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def url_id(url: str) -> str:
    return urlsplit(url).netloc.split(".", 1)[0]


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")

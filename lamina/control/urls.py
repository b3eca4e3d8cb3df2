"""Function URLs: Create/Get/Update/Delete/ListFunctionUrlConfigs.

A URL belongs to a function (its $LATEST) or to one of its aliases, never to a version.
Its address is `http://<url-id>.lambda-url.<region>.localhost:<port>/` (browsers and curl
send `*.localhost` to the loopback address; any client that connects to Lamina with that
Host header reaches it), and `/_lamina/url/<url-id>/` on the same port serves it too. The
id is 32 lower-case letters and digits, as AWS's are; the port is the one the caller of
the API used, so a URL follows the server to another port.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from typing import Any
from urllib.parse import urlsplit

from lamina.context import RequestContext
from lamina.control.functions import LATEST, FunctionRef, Functions, page, resolve
from lamina.errors import AwsError, conflict, invalid_parameter, not_found
from lamina.keys import FunctionKey
from lamina.store.urls import UrlConfig, UrlStore

ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 32
HTTP_METHODS = frozenset({"GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "*"})
NO_SUCH_URL = "The resource you requested does not exist."


def new_url_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def url_host(config: UrlConfig) -> str:
    return f"{config.url_id}.lambda-url.{config.key.region}.localhost"


def function_url(ctx: RequestContext, config: UrlConfig) -> str:
    port = urlsplit(ctx.endpoint).port
    return f"http://{url_host(config)}{f':{port}' if port else ''}/"


def check_cors(cors: dict[str, Any] | None) -> None:
    for method in (cors or {}).get("AllowMethods") or ():
        if method.upper() not in HTTP_METHODS:
            raise invalid_parameter(
                f"{method} is not a valid HTTP method: use GET, PUT, HEAD, POST, PATCH, "
                "DELETE, OPTIONS or *."
            )


class FunctionUrls:
    def __init__(self, functions: Functions, store: UrlStore) -> None:
        self.functions = functions
        self.store = store

    # Reading, for the front door ---------------------------------------------------------
    def get(self, url_id: str) -> UrlConfig | None:
        return self.store.get(url_id.lower())

    def forget_function(self, key: FunctionKey) -> None:
        for config in self.store.of_function(key):
            self.store.delete(config)

    def forget_alias(self, key: FunctionKey, alias: str) -> None:
        config = self.store.find(key, alias)
        if config is not None:
            self.store.delete(config)

    # Operations --------------------------------------------------------------------------
    def _ref(self, ctx: RequestContext, params: dict[str, Any]) -> FunctionRef:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        qualifier = ref.qualifier
        if qualifier is not None and qualifier != LATEST and qualifier.isdigit():
            raise invalid_parameter(
                "Function URLs can be configured on a function's alias or on the function "
                "itself ($LATEST), not on a version."
            )
        target = self.functions.target(ref)  # the function and the alias must exist
        return FunctionRef(ref.key, target.alias)

    def _found(self, ref: FunctionRef) -> UrlConfig:
        config = self.store.find(ref.key, ref.qualifier or "")
        if config is None:
            raise not_found(NO_SUCH_URL)
        return config

    def _describe(self, ctx: RequestContext, config: UrlConfig) -> dict[str, Any]:
        arn = f"{config.key.arn}:{config.qualifier}" if config.qualifier else config.key.arn
        described: dict[str, Any] = {
            "FunctionUrl": function_url(ctx, config),
            "FunctionArn": arn,
            "AuthType": config.auth_type,
            "CreationTime": config.created,
            "LastModifiedTime": config.modified,
            "InvokeMode": config.invoke_mode,
        }
        if config.cors:
            described["Cors"] = config.cors
        return described

    async def CreateFunctionUrlConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = self._ref(ctx, params)
        config_of = self.functions.record(FunctionRef(ref.key, None))["config"]
        if (config_of.get("TenancyConfig") or {}).get("TenantIsolationMode"):
            # An invocation of a tenant-isolated function names its tenant: a URL cannot.
            raise invalid_parameter(
                "Function URLs are not supported for functions with tenant isolation mode "
                "(TenancyConfig) enabled."
            )
        if self.store.find(ref.key, ref.qualifier or "") is not None:
            arn = f"{ref.key.arn}:{ref.qualifier}" if ref.qualifier else ref.key.arn
            raise conflict(
                f"Failed to create function url config for [functionArn = {arn}]. Error "
                "message:  FunctionUrlConfig exists for this Lambda function"
            )
        check_cors(params.get("Cors"))
        now = timestamp()
        config = UrlConfig(
            url_id=new_url_id(),
            key=ref.key,
            qualifier=ref.qualifier or "",
            auth_type=params["AuthType"],
            invoke_mode=params.get("InvokeMode") or "BUFFERED",
            cors=params.get("Cors") or None,
            created=now,
            modified=now,
        )
        self.store.put(config)
        described = self._describe(ctx, config)
        del described["LastModifiedTime"]
        return described

    async def GetFunctionUrlConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        return self._describe(ctx, self._found(self._ref(ctx, params)))

    async def UpdateFunctionUrlConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        config = self._found(self._ref(ctx, params))
        if "Cors" in params:
            check_cors(params["Cors"])
            config.cors = params["Cors"] or None
        if params.get("AuthType"):
            config.auth_type = params["AuthType"]
        if params.get("InvokeMode"):
            config.invoke_mode = params["InvokeMode"]
        config.modified = timestamp()
        self.store.put(config)
        return self._describe(ctx, config)

    async def DeleteFunctionUrlConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        self.store.delete(self._found(self._ref(ctx, params)))
        return {}

    async def ListFunctionUrlConfigs(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        if ref.qualifier is not None:
            raise AwsError(
                "InvalidParameterValueException",
                "This operation is permitted on Lambda functions only. Aliases and versions "
                "do not support this operation. Please specify either a function name or an "
                "unqualified function ARN.",
                400,
                user=True,
            )
        self.functions.target(ref)
        configs = [self._describe(ctx, c) for c in self.store.of_function(ref.key)]
        items, marker = page(configs, params.get("Marker"), params.get("MaxItems"))
        answer: dict[str, Any] = {"FunctionUrlConfigs": items}
        if marker:
            answer["NextMarker"] = marker
        return answer

"""Versions and aliases: PublishVersion, ListVersionsByFunction and the alias operations.

Versions are immutable snapshots of $LATEST's code and configuration, numbered from 1 and
never reused. An alias names a version, optionally routing a share of its invocations to
one more version. Both live inside the function's record (Functions owns it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from lamina.context import RequestContext
from lamina.control.functions import (
    LATEST,
    FunctionRef,
    Functions,
    alias_not_found,
    page,
    resolve,
)
from lamina.control.provisioned import Provisioned
from lamina.errors import AwsError, conflict, invalid_parameter, not_found
from lamina.keys import FunctionKey


def precondition_failed() -> AwsError:
    return AwsError(
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id. "
        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        412,
        user=True,
    )


class Versions:
    def __init__(self, functions: Functions, provisioned: Provisioned) -> None:
        self.functions = functions
        self.provisioned = provisioned
        # Told of each deleted alias (its function URL goes with it).
        self.on_alias_delete: list[Callable[[FunctionKey, str], None]] = []

    def _unqualified(self, ctx: RequestContext, name: str) -> FunctionRef:
        ref = resolve(ctx, name)
        if ref.qualifier is not None:
            raise invalid_parameter(
                "This operation is permitted on Lambda functions only. Aliases and versions do "
                "not support this operation. Please specify either a function name or an "
                "unqualified function ARN."
            )
        return ref

    # Versions --------------------------------------------------------------------------
    async def PublishVersion(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._unqualified(ctx, params["FunctionName"])
        record = self.functions.record(ref)
        latest = record["config"]
        wanted_sha = params.get("CodeSha256")
        if wanted_sha and wanted_sha != latest["CodeSha256"]:
            raise invalid_parameter(
                f"CodeSHA256 ({wanted_sha}) is different from current CodeSHA256 in $LATEST "
                f"({latest['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST."
            )
        if params.get("RevisionId") and params["RevisionId"] != latest["RevisionId"]:
            raise precondition_failed()
        number = self.functions.publish(ref.key, record, params.get("Description"))
        self.functions.store.update_function(ref.key, record)
        config: dict[str, Any] = record["versions"][number]["config"]
        return config

    async def ListVersionsByFunction(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = self._unqualified(ctx, params["FunctionName"])
        record = self.functions.record(ref)
        versions = record.get("versions", {})
        everything = [record["config"]] + [versions[n]["config"] for n in sorted(versions, key=int)]
        chunk, marker = page(everything, params.get("Marker"), params.get("MaxItems"))
        result: dict[str, Any] = {"Versions": chunk}
        if marker:
            result["NextMarker"] = marker
        return result

    # Aliases ---------------------------------------------------------------------------
    def _check_routing(
        self, key: FunctionKey, record: dict[str, Any], version: str, routing: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The alias's routing config as stored, or an error in AWS's words."""
        weights = (routing or {}).get("AdditionalVersionWeights") or {}
        if not weights:
            return None
        if len(weights) > 1:
            raise invalid_parameter(
                "Number of items in AdditionalVersionWeights cannot be greater than 1"
            )
        if version == LATEST:
            raise invalid_parameter(
                "$LATEST is not supported for an alias pointing to more than 1 version"
            )
        for extra in weights:
            if extra == version:
                raise invalid_parameter(
                    f"Invalid function version {extra}. Function version {extra} is already "
                    "included in routing configuration."
                )
            self._version_exists(key, record, extra)
        return {"AdditionalVersionWeights": {str(k): float(v) for k, v in weights.items()}}

    @staticmethod
    def _version_exists(key: FunctionKey, record: dict[str, Any], version: str) -> None:
        if version != LATEST and version not in record.get("versions", {}):
            raise not_found(f"Function not found: {key.arn}:{version}")

    async def CreateAlias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._unqualified(ctx, params["FunctionName"])
        record = self.functions.record(ref)
        name, version = params["Name"], params["FunctionVersion"]
        if name == LATEST or name.isdigit():
            raise invalid_parameter(f"Alias name {name} is not valid: it names a version.")
        self._version_exists(ref.key, record, version)
        aliases = record.setdefault("aliases", {})
        if name in aliases:
            raise conflict(f"Alias already exists: {ref.key.arn}:{name}")
        alias: dict[str, Any] = {
            "AliasArn": f"{ref.key.arn}:{name}",
            "Name": name,
            "FunctionVersion": version,
            "Description": params.get("Description", ""),
            "RevisionId": str(uuid.uuid4()),
        }
        routing = self._check_routing(ref.key, record, version, params.get("RoutingConfig") or {})
        if routing:
            alias["RoutingConfig"] = routing
        aliases[name] = alias
        self.functions.store.update_function(ref.key, record)
        return alias

    def _alias(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> tuple[FunctionRef, dict[str, Any], dict[str, Any]]:
        ref = self._unqualified(ctx, params["FunctionName"])
        record = self.functions.record(ref)
        alias = record.get("aliases", {}).get(params["Name"])
        if alias is None:
            raise alias_not_found(ref.key, params["Name"])
        return ref, record, alias

    async def GetAlias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._alias(ctx, params)[2]

    async def UpdateAlias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref, record, alias = self._alias(ctx, params)
        if params.get("RevisionId") and params["RevisionId"] != alias["RevisionId"]:
            raise precondition_failed()
        version = params.get("FunctionVersion", alias["FunctionVersion"])
        self._version_exists(ref.key, record, version)
        routing_asked = (
            params["RoutingConfig"] if "RoutingConfig" in params else alias.get("RoutingConfig")
        )
        routing = self._check_routing(ref.key, record, version, routing_asked or {})
        repointed = version != alias["FunctionVersion"]
        if repointed:
            self.provisioned.check_repoint(ref.key, record, alias["Name"], version)
        alias["FunctionVersion"] = version
        if "Description" in params:
            alias["Description"] = params["Description"]
        alias.pop("RoutingConfig", None)
        if routing:
            alias["RoutingConfig"] = routing
        alias["RevisionId"] = str(uuid.uuid4())
        self.functions.store.update_function(ref.key, record)
        if repointed:
            self.provisioned.reprovision(ref.key, record, alias["Name"])
        return alias

    async def DeleteAlias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref, record, alias = self._alias(ctx, params)
        del record["aliases"][alias["Name"]]
        await self.provisioned.drop(ref.key, record, alias["Name"])
        self.functions.store.update_function(ref.key, record)
        for listener in self.on_alias_delete:
            listener(ref.key, alias["Name"])
        return {}

    async def ListAliases(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._unqualified(ctx, params["FunctionName"])
        record = self.functions.record(ref)
        wanted = params.get("FunctionVersion")
        aliases = [
            alias
            for _, alias in sorted(record.get("aliases", {}).items())
            if wanted is None or alias["FunctionVersion"] == wanted
        ]
        chunk, marker = page(aliases, params.get("Marker"), params.get("MaxItems"))
        result: dict[str, Any] = {"Aliases": chunk}
        if marker:
            result["NextMarker"] = marker
        return result

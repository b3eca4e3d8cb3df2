"""Function operations: create, read, list, update and delete functions and their code."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lamina.clock import Clock
from lamina.context import RequestContext
from lamina.control import code as packages
from lamina.control.code_links import CodeLinks, code_location
from lamina.control.durable.model import durable_config
from lamina.control.images import Images
from lamina.control.layers import Layers
from lamina.control.uploads import Uploads
from lamina.engine.concurrency import Counters
from lamina.engine.counting import CountingUnavailable, counts_unreachable
from lamina.engine.provisioned import ProvisionedState
from lamina.errors import (
    AwsError,
    conflict,
    constraint,
    invalid_parameter,
    not_found,
    validation_error,
)
from lamina.keys import FunctionKey
from lamina.sandbox import runtimes
from lamina.sandbox.launch import FunctionImage
from lamina.store.sqlite import SqliteStore

ENVIRONMENT_LIMIT = 4096
LIST_LIMIT = 50
NAME_LIMIT = 64  # the model's 140 is for a full ARN; a bare name is limited to 64
LATEST = "$LATEST"
CUSTOM_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
# Features a user could ask for that Lamina cannot honour: refused, never silently dropped.
UNSUPPORTED = {
    "FileSystemConfigs": "File system configurations are not supported by Lamina.",
    "ImageConfig": "Container images are not supported by Lamina.",
    "CodeSigningConfigArn": "Code signing is not supported by Lamina.",
    "CapacityProviderConfig": "Capacity providers are not supported by Lamina.",
    "RuntimeConfig": "Runtime configuration (RuntimeArn) is not supported by Lamina.",
    "AcceleratorConfig": "Accelerators are not supported by Lamina.",
    "PublishTo": "Publishing to a capacity provider is not supported by Lamina.",
}
ARN_PATTERN = re.compile(
    r"(?:arn:(?:aws[a-zA-Z-]*)?:lambda:)?(?:(?P<region>[a-z]{2}[a-z0-9-]*-\d):)?"
    r"(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>[a-zA-Z0-9$_-]+))?"
)


class Engine(Protocol):
    """What the control plane needs from the invoke engine."""

    counters: Counters
    clock: Clock

    async def retire(self, key: FunctionKey, version: str | None = None) -> None: ...

    def unprovision(self, key: FunctionKey, qualifier: str | None = None) -> None: ...

    def provision(
        self, key: FunctionKey, qualifier: str, image: FunctionImage, count: int
    ) -> None: ...

    def provisioned_state(self, key: FunctionKey, qualifier: str) -> ProvisionedState | None: ...

    def provisioned_qualifiers(self, key: FunctionKey) -> list[str]: ...

    # Settings the counting service holds (raise SettingsError or CountingUnavailable).
    async def set_reserved(self, key: FunctionKey, reserved: int | None) -> None: ...

    async def set_provisioned(self, key: FunctionKey, total: int) -> None: ...

    async def forget(self, key: FunctionKey) -> None: ...


def now_iso() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class FunctionRef:
    key: FunctionKey
    qualifier: str | None


@dataclass
class Target:
    """What a (possibly qualified) reference names: one version of a function."""

    record: dict[str, Any]  # the whole function record, as stored
    config: dict[str, Any]  # that version's configuration
    code: dict[str, Any]  # that version's code: digest and unzipped size
    version: str  # "$LATEST" or a published version number
    alias: str | None = None  # set when the reference named an alias

    @property
    def view(self) -> dict[str, Any]:
        """The version as Invocations.image() reads it."""
        return {"config": self.config, "code": self.code}


def page(items: list[Any], marker: str | None, max_items: int | None) -> tuple[list[Any], str]:
    """One page of `items` from `marker` (an offset, opaque to clients) and the next marker."""
    start = int(marker) if marker and marker.isdigit() else 0
    limit = min(max_items or LIST_LIMIT, LIST_LIMIT)
    more = start + limit < len(items)
    return items[start : start + limit], str(start + limit) if more else ""


def alias_not_found(key: FunctionKey, alias: str) -> AwsError:
    return not_found(f"Cannot find alias arn: {key.arn}:{alias}")


def resolve(ctx: RequestContext, name_or_arn: str, qualifier: str | None = None) -> FunctionRef:
    """A name, partial ARN or ARN (optionally qualified) → the function it names."""
    found = ARN_PATTERN.fullmatch(name_or_arn)
    if found is None:
        raise invalid_parameter(f"Invalid function name or ARN: {name_or_arn}")
    region = found["region"] or ctx.region
    if region != ctx.region:
        raise invalid_parameter(
            f"Functions from '{region}' are not reachable in this region ('{ctx.region}')"
        )
    if len(found["name"]) > NAME_LIMIT:
        rule = f"Member must have length less than or equal to {NAME_LIMIT}"
        raise validation_error([constraint(name_or_arn, "functionName", rule)])
    account = found["account"] or ctx.account
    if account != ctx.account:
        raise invalid_parameter(
            f"Functions of account '{account}' are not reachable from account '{ctx.account}'"
        )
    in_name = found["qualifier"]
    if in_name and qualifier and in_name != qualifier:
        raise invalid_parameter(
            "The derived qualifier from the function name does not match the specified qualifier."
        )
    return FunctionRef(FunctionKey(account, region, found["name"]), qualifier or in_name)


def environment_problem(variables: dict[str, str]) -> AwsError | None:
    reserved = sorted(set(variables) & RESERVED_VARIABLES)
    if reserved:
        return invalid_parameter(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not supported "
            f"for modification. Reserved keys used in this request: {', '.join(reserved)}"
        )
    measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode()) > ENVIRONMENT_LIMIT:
        return invalid_parameter(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided exceeded the 4KB limit. String measured: " + measured
        )
    return None


def check_runtime(runtime: str) -> None:
    """AWS's refusal of a deprecated runtime; Lamina's of one this host cannot run."""
    deprecated = runtimes.deprecation(runtime)
    if deprecated is not None:
        raise invalid_parameter(deprecated)
    if runtimes.family(runtime) is None:
        raise invalid_parameter(
            f"The runtime parameter of {runtime} is not supported by Lamina: use "
            f"{', '.join((*runtimes.PYTHONS, *runtimes.NODES, *runtimes.CUSTOM))}."
        )
    try:
        runtimes.current().find(runtime)
    except runtimes.RuntimeUnavailable as exc:
        raise invalid_parameter(str(exc)) from None


def check_supported(params: dict[str, Any]) -> None:
    for member, message in UNSUPPORTED.items():
        if params.get(member):
            raise invalid_parameter(message)
    if params.get("PackageType", "Zip") != "Zip":
        raise invalid_parameter(
            "Container images are not supported by Lamina: use PackageType Zip."
        )
    snap = params.get("SnapStart") or {}
    if snap.get("ApplyOn", "None") != "None":
        raise invalid_parameter("SnapStart is not supported by Lamina.")


class Functions:
    """The function registry: owns function records in the store."""

    def __init__(
        self,
        store: SqliteStore,
        engine: Engine,
        layers: Layers | None = None,
        links: CodeLinks | None = None,
        code_source: packages.CodeSource | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.layers = layers
        self.links = links  # signs Code.Location links
        self.code_source = code_source  # packages named by S3Bucket / S3Key
        # Told of each deleted function (event source mappings stop polling for it).
        self.on_delete: list[Callable[[FunctionKey], None]] = []
        self.images = Images(store)
        # Writes of one function are ordered (its code is extracted off the loop between the
        # checks and the write); other functions' writes go on meanwhile. Code is extracted,
        # adopted or removed under its digest's lock.
        self.uploads = Uploads(store, layers, engine.clock)

    # Helpers ---------------------------------------------------------------------------
    def record(self, ref: FunctionRef) -> dict[str, Any]:
        """The function's whole record, a copy to change and write back; its qualifier, if
        any, must name something."""
        return self.target(ref, writable=True).record

    def target(self, ref: FunctionRef, writable: bool = False) -> Target:
        """What `ref` names. Unless `writable`, the record is the store's shared view:
        read it, never change it."""
        store = self.store
        record = store.get_function(ref.key) if writable else store.function_view(ref.key)
        if record is None:
            raise not_found(f"Function not found: {ref.key.arn}:{LATEST}")
        qualifier = ref.qualifier
        if qualifier in (None, LATEST):
            return Target(record, record["config"], record["code"], LATEST)
        assert qualifier is not None
        alias = None
        if not qualifier.isdigit():
            found = record.get("aliases", {}).get(qualifier)
            if found is None:
                raise not_found(f"Function not found: {ref.key.arn}:{qualifier}")
            alias, qualifier = qualifier, found["FunctionVersion"]
            if qualifier == LATEST:
                return Target(record, record["config"], record["code"], LATEST, alias)
        version = record.get("versions", {}).get(qualifier)
        if version is None:
            raise not_found(f"Function not found: {ref.key.arn}:{qualifier}")
        return Target(record, version["config"], version["code"], qualifier, alias)

    def publish(self, key: FunctionKey, record: dict[str, Any], description: str | None) -> str:
        """Snapshot $LATEST as the next version (unless it is unchanged since the last one)."""
        latest = record["config"]
        versions = record.setdefault("versions", {})
        last = record.get("published")
        if (
            last is not None
            and last["from"] == latest["RevisionId"]
            and last["version"] in versions
        ):
            return str(last["version"])
        number = str(record.get("next_version", 1))
        record["next_version"] = int(number) + 1
        config = json.loads(json.dumps(latest))
        config.update(
            Version=number,
            FunctionArn=f"{key.arn}:{number}",
            RevisionId=str(uuid.uuid4()),
            LastModified=now_iso(),
        )
        if description is not None:
            config["Description"] = description
        versions[number] = {"config": config, "code": dict(record["code"])}
        record["published"] = {"from": latest["RevisionId"], "version": number}
        return number

    def image(self, key: FunctionKey, record: dict[str, Any]) -> FunctionImage:
        """What the engine needs to start environments of one version (`record` holds its
        "config" and "code", as a Target's view does)."""
        return self.images.image(key, record)

    async def close(self) -> None:
        await self.uploads.close()

    def _check_configuration(self, params: dict[str, Any]) -> None:
        check_supported(params)
        variables = (params.get("Environment") or {}).get("Variables")
        if variables:
            problem = environment_problem(variables)
            if problem:
                raise problem

    def _apply_configuration(self, config: dict[str, Any], params: dict[str, Any]) -> None:
        for member in (
            "Role",
            "Handler",
            "Description",
            "Timeout",
            "MemorySize",
            "Runtime",
            "KMSKeyArn",
            "DeadLetterConfig",
        ):
            if member in params:
                config[member] = params[member]
        if "Environment" in params:
            config["Environment"] = {
                "Variables": dict(params["Environment"].get("Variables") or {})
            }
        if "TracingConfig" in params:
            config["TracingConfig"] = {"Mode": params["TracingConfig"].get("Mode", "PassThrough")}
        if "EphemeralStorage" in params:
            config["EphemeralStorage"] = {"Size": params["EphemeralStorage"]["Size"]}
        if "VpcConfig" in params:
            vpc = params["VpcConfig"]
            config["VpcConfig"] = {
                "SubnetIds": list(vpc.get("SubnetIds") or []),
                "SecurityGroupIds": list(vpc.get("SecurityGroupIds") or []),
                "Ipv6AllowedForDualStack": bool(vpc.get("Ipv6AllowedForDualStack", False)),
                "VpcId": "vpc-lamina" if vpc.get("SubnetIds") else "",
            }
        if tenancy := params.get("TenancyConfig"):
            config["TenancyConfig"] = {"TenantIsolationMode": tenancy["TenantIsolationMode"]}
        config.update(durable_config(params.get("DurableConfig")))
        if "LoggingConfig" in params:
            config["LoggingConfig"] = {**config.get("LoggingConfig", {}), **params["LoggingConfig"]}
        config["LastModified"] = now_iso()
        config["RevisionId"] = str(uuid.uuid4())

    @staticmethod
    def _set_code(record: dict[str, Any], package: packages.Package) -> None:
        layers = {k: v for k, v in record.get("code", {}).items() if k in ("opt", "layers")}
        _check_combined_size(package.unzipped_size, layers.get("layers") or [])
        record["code"] = {"digest": package.digest_hex, "unzipped": package.unzipped_size, **layers}
        record["config"]["CodeSha256"] = package.code_sha256
        record["config"]["CodeSize"] = package.zipped_size

    def _checked_layers(self, ctx: RequestContext, params: dict[str, Any]) -> list[dict[str, Any]]:
        arns = list(params.get("Layers") or [])
        if not arns:
            return []
        if self.layers is None:
            raise invalid_parameter("Layers are not available on this server.")
        return self.layers.for_function(ctx, arns)

    async def _set_layers(self, record: dict[str, Any], layers: list[dict[str, Any]]) -> None:
        """Give the function these layers (checked already), merged into its /opt."""
        _check_combined_size(record["code"]["unzipped"], layers)
        assert self.layers is not None or not layers
        opt = await self.layers.opt_for(layers) if self.layers is not None else None
        record["code"]["layers"] = [
            {"digest": x["digest"], "unzipped": x["unzipped"]} for x in layers
        ]
        record["code"]["opt"] = opt
        if layers:
            record["config"]["Layers"] = [
                {"Arn": x["Arn"], "CodeSize": x["CodeSize"]} for x in layers
            ]
        else:
            record["config"].pop("Layers", None)

    def _check_revision(self, record: dict[str, Any], revision: str | None) -> None:
        if revision and revision != record["config"]["RevisionId"]:
            raise AwsError(
                "PreconditionFailedException",
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
                412,
                user=True,
            )

    def code_location(self, ctx: RequestContext, record: dict[str, Any]) -> dict[str, str]:
        location = code_location(ctx.endpoint, record["code"]["digest"], self.links)
        return {"RepositoryType": "S3", "Location": location}

    # Operations ------------------------------------------------------------------------
    async def CreateFunction(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        if ref.qualifier:
            raise invalid_parameter("Function name cannot be qualified when creating a function.")
        if not params.get("Runtime") or not params.get("Handler"):
            raise invalid_parameter(
                "Runtime and Handler are mandatory parameters for functions created with "
                "deployment packages."
            )
        self._check_configuration(params)
        await asyncio.to_thread(check_runtime, params["Runtime"])  # may probe interpreters
        layers = self._checked_layers(ctx, params)
        blob = await packages.zip_from(ctx, params["Code"], self.code_source)
        key = ref.key
        if self.store.function_view(key) is not None:
            raise _exists(key)
        config: dict[str, Any] = {
            "FunctionName": key.name,
            "FunctionArn": key.arn,
            "Runtime": params["Runtime"],
            "Role": params["Role"],
            "Handler": params["Handler"],
            "Description": "",
            "Timeout": 3,
            "MemorySize": 128,
            "Version": LATEST,
            "TracingConfig": {"Mode": "PassThrough"},
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "PackageType": "Zip",
            "Architectures": list(params.get("Architectures") or ["x86_64"]),
            "EphemeralStorage": {"Size": 512},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{key.name}"},
        }
        self._apply_configuration(config, params)
        async with self.uploads.lock(key):
            package = await self.uploads.package(blob)
            record: dict[str, Any] = {"config": config, "tags": dict(params.get("Tags") or {})}
            self._set_code(record, package)
            await self._set_layers(record, layers)
            published = self.publish(key, record, None) if params.get("Publish") else None
            if not self.store.insert_function(key, record):
                raise _exists(key)
        if published is not None:
            version_config: dict[str, Any] = record["versions"][published]["config"]
            return version_config
        return config

    async def GetFunction(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        target = self.target(ref)
        record = target.record
        result: dict[str, Any] = {
            "Configuration": self.shown_config(ref, target),
            "Code": self.code_location(ctx, target.view),
        }
        if record.get("tags"):
            result["Tags"] = record["tags"]
        if record.get("reserved") is not None:
            result["Concurrency"] = {"ReservedConcurrentExecutions": record["reserved"]}
        return result

    async def GetFunctionConfiguration(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        return self.shown_config(ref, self.target(ref))

    @staticmethod
    def shown_config(ref: FunctionRef, target: Target) -> dict[str, Any]:
        """A version's configuration; named through an alias, it carries the alias's ARN."""
        if target.alias is None:
            return target.config
        return {**target.config, "FunctionArn": f"{ref.key.arn}:{target.alias}"}

    async def ListFunctions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        limit = min(params.get("MaxItems") or LIST_LIMIT, LIST_LIMIT)  # AWS: at most 50 a page
        records = self.store.list_functions(
            ctx.account, ctx.region, after=params.get("Marker") or "", limit=limit + 1
        )
        result: dict[str, Any] = {"Functions": [r["config"] for r in records[:limit]]}
        if len(records) > limit:
            result["NextMarker"] = records[limit - 1]["config"]["FunctionName"]
        return result

    async def UpdateFunctionCode(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        if ref.qualifier is not None:
            raise invalid_parameter("Function name cannot be qualified when updating its code.")
        self.record(ref)
        check_supported({"PublishTo": params.get("PublishTo")})
        blob = await packages.zip_from(ctx, params, self.code_source)
        async with self.uploads.lock(ref.key):
            package = await self.uploads.package(blob)
            record = self.record(ref)
            self._check_revision(record, params.get("RevisionId"))
            if params.get("DryRun"):
                preview = {**record["config"]}
                preview["CodeSha256"], preview["CodeSize"] = (
                    package.code_sha256,
                    package.zipped_size,
                )
                return preview
            self._set_code(record, package)
            if params.get("Architectures"):
                record["config"]["Architectures"] = list(params["Architectures"])
            record["config"]["LastModified"] = now_iso()
            record["config"]["RevisionId"] = str(uuid.uuid4())
            published = self.publish(ref.key, record, None) if params.get("Publish") else None
            self.store.update_function(ref.key, record)
        await self.engine.retire(ref.key, LATEST)
        if published is not None:
            version_config: dict[str, Any] = record["versions"][published]["config"]
            return version_config
        config: dict[str, Any] = record["config"]
        return config

    async def UpdateFunctionConfiguration(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        if ref.qualifier is not None:
            raise invalid_parameter(
                "Function name cannot be qualified when updating its configuration."
            )
        record = self.record(ref)
        self._check_revision(record, params.get("RevisionId"))
        self._check_configuration(params)
        if params.get("Runtime"):
            await asyncio.to_thread(check_runtime, params["Runtime"])
        if "Layers" in params:
            await self._set_layers(record, self._checked_layers(ctx, params))
        self._apply_configuration(record["config"], params)
        self.store.update_function(ref.key, record)
        await self.engine.retire(ref.key, LATEST)
        config: dict[str, Any] = record["config"]
        return config

    async def DeleteFunction(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        if ref.qualifier == LATEST:
            raise invalid_parameter(
                "$LATEST version cannot be deleted without deleting the function."
            )
        if ref.qualifier is not None:
            await self._delete_version(ref)
            return {"StatusCode": 204}
        self.record(ref)
        self.store.delete_function(ref.key)
        try:
            await self.engine.forget(ref.key)
        except CountingUnavailable as error:
            raise counts_unreachable(str(error)) from error
        await self.engine.retire(ref.key)
        for listener in self.on_delete:
            listener(ref.key)
        return {"StatusCode": 204}  # AWS answers 204 No Content

    async def _delete_version(self, ref: FunctionRef) -> None:
        assert ref.qualifier is not None
        if not ref.qualifier.isdigit():
            raise invalid_parameter(
                "Deleting an alias through DeleteFunction is not supported: use DeleteAlias."
            )
        record = self.record(ref)
        version = ref.qualifier
        users = sorted(
            name
            for name, alias in record.get("aliases", {}).items()
            if version == alias["FunctionVersion"]
            or version in (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {})
        )
        if users:
            raise conflict(
                "Unable to delete version because the following aliases reference it: "
                f"[{', '.join(users)}]"
            )
        del record["versions"][version]
        if record.get("provisioned", {}).pop(version, None) is not None:
            total = sum(c["Requested"] for c in record["provisioned"].values())
            try:
                await self.engine.set_provisioned(ref.key, total)
            except CountingUnavailable as error:
                raise counts_unreachable(str(error)) from error
            self.engine.unprovision(ref.key, version)
        self.store.update_function(ref.key, record)
        await self.engine.retire(ref.key, version)

    async def GetAccountSettings(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        count, code_size = self.store.usage(ctx.account, ctx.region)  # running totals
        counters = self.engine.counters
        counter = counters.peek(ctx.account, ctx.region)  # reading makes no state
        limit = counters.limits_of(ctx.account, ctx.region).account
        return {
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800,
                "CodeSizeUnzipped": packages.UNZIPPED_LIMIT,
                "CodeSizeZipped": packages.ZIPPED_LIMIT,
                "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": (
                    counter.unreserved_pool if counter is not None else limit
                ),
            },
            "AccountUsage": {
                "TotalCodeSize": code_size,
                "FunctionCount": count,
            },
        }


def _check_combined_size(unzipped: int, layers: list[dict[str, Any]]) -> None:
    total = unzipped + sum(layer["unzipped"] for layer in layers)
    if layers and total > packages.UNZIPPED_LIMIT:
        raise invalid_parameter(
            "Function code combined with layers exceeds the maximum allowed size of "
            f"{packages.UNZIPPED_LIMIT} bytes. The actual size is {total} bytes."
        )


def _exists(key: FunctionKey) -> AwsError:
    return AwsError(
        "ResourceConflictException", f"Function already exist: {key.name}", 409, user=True
    )

"""Layer operations (PublishLayerVersion … GetLayerVersionPolicy) and what functions need
of layers: their versions checked, their files merged in order into the /opt a function's
environments see.

A function's layers are merged once, when its configuration names them, into a directory
addressed by the ordered digests of their contents (`<data>/opt/<sha256>`): files are hard
links to the layers' extracted trees, a later layer's file replacing an earlier one's.
Environments get it read-only at /opt (namespaces) or by its host path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from lamina import iam
from lamina.context import RequestContext
from lamina.control import code as packages
from lamina.control.code_links import CodeLinks, code_location
from lamina.errors import AwsError, invalid_parameter, not_found, validation_error
from lamina.store.layers import LayerStore
from lamina.store.sqlite import SqliteStore

LAYER_LIMIT = 5  # layers a function may reference
LIST_LIMIT = 50
LAYER_ARN = re.compile(
    r"arn:[a-zA-Z0-9-]+:lambda:(?P<region>[a-zA-Z0-9-]+):(?P<account>\d{12}):layer:"
    r"(?P<name>[a-zA-Z0-9-_]+)(?::(?P<version>[0-9]+))?"
)
VERSION_PATTERN = (
    r"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|"
    r"(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)"
)
NOT_FOUND = "The resource you requested does not exist."


def created_date() -> str:
    from lamina.control.functions import now_iso

    return now_iso()


def _unzipped_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def merge(store: SqliteStore, digests: list[str]) -> str:
    """The merged /opt of layers with these contents, in order (built if missing)."""
    key = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    target = store.opt_dir(key)
    if target.is_dir():
        return key
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        staging.chmod(0o755)
        for digest in digests:
            source = store.code_dir(digest)
            for directory, dirs, files in os.walk(source):
                relative = os.path.relpath(directory, source)
                into = staging / relative
                for name in dirs:
                    path = into / name
                    if os.path.islink(os.path.join(directory, name)):
                        _replace(path)
                        os.symlink(os.readlink(os.path.join(directory, name)), path)
                    elif path.is_symlink() or path.is_file():
                        path.unlink()
                        path.mkdir(mode=0o755)
                    else:
                        path.mkdir(mode=0o755, exist_ok=True)
                dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(directory, d))]
                for name in files:
                    origin = os.path.join(directory, name)
                    path = into / name
                    _replace(path)
                    if os.path.islink(origin):
                        os.symlink(os.readlink(origin), path)
                    else:
                        os.link(origin, path)
        try:
            os.replace(staging, target)
        except OSError:  # built meanwhile by another request
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return key


def _replace(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


class Layers:
    """Owns layer versions (LayerStore) and their contents (in the code store)."""

    def __init__(
        self,
        layers: LayerStore,
        code: SqliteStore,
        links: CodeLinks | None = None,
        code_source: packages.CodeSource | None = None,
    ) -> None:
        self.layers = layers
        self.code = code
        self.links = links  # signs Content.Location links (auth on)
        self.code_source = code_source  # content named by S3Bucket / S3Key
        self._write_lock = asyncio.Lock()

    def uses_code(self, digest: str) -> bool:
        """Whether a layer version is the zip `digest` (its code then stays)."""
        return self.layers.uses(digest)

    # Naming -------------------------------------------------------------------------------
    def _name(
        self,
        ctx: RequestContext,
        name_or_arn: str,
        shared: bool = False,
        action: str = "lambda:GetLayerVersion",
    ) -> tuple[str, str, str]:
        """(account, region, name) of a layer given by name or ARN. Walls: another
        account's layer is only read (`shared`: its versions' policies decide), never
        changed."""
        found = LAYER_ARN.fullmatch(name_or_arn)
        if found is None:
            return ctx.account, ctx.region, name_or_arn
        if found["account"] != ctx.account and not shared:
            arn = self.arn(found["account"], found["region"], found["name"])
            raise iam.access_denied(ctx.principal, action, arn)
        return found["account"], found["region"], found["name"]

    def _readable(
        self, ctx: RequestContext, account: str, record: dict[str, Any], action: str
    ) -> bool:
        """Whether the caller may read this layer version: its own account's, or one whose
        policy (AddLayerVersionPermission) allows the action to it."""
        if account == ctx.account:
            return True
        statements = []
        for statement in (record.get("policy") or {}).get("statements", {}).values():
            principal = statement.get("Principal")
            if isinstance(principal, str) and principal != "*":
                named = (
                    principal if principal.startswith("arn:") else f"arn:aws:iam::{principal}:root"
                )
                statement = {**statement, "Principal": {"AWS": named}}
            statements.append(statement)
        caller = iam.Caller(ctx.account, ctx.principal or f"arn:aws:iam::{ctx.account}:root")
        resource = self.arn(account, ctx.region, record["LayerName"], record["Version"])
        return iam.allows({"Statement": statements}, caller, action, resource)

    @staticmethod
    def arn(account: str, region: str, name: str, version: int | None = None) -> str:
        base = f"arn:aws:lambda:{region}:{account}:layer:{name}"
        return base if version is None else f"{base}:{version}"

    def shown(
        self, ctx: RequestContext, account: str, region: str, record: dict[str, Any]
    ) -> dict[str, Any]:
        name, version = record["LayerName"], record["Version"]
        result: dict[str, Any] = {
            "Content": {
                "Location": code_location(ctx.endpoint, record["digest"], self.links),
                "CodeSha256": record["CodeSha256"],
                "CodeSize": record["CodeSize"],
            },
            "LayerArn": self.arn(account, region, name),
            "LayerVersionArn": self.arn(account, region, name, version),
            "Description": record.get("Description", ""),
            "CreatedDate": record["CreatedDate"],
            "Version": version,
        }
        for member in ("CompatibleRuntimes", "LicenseInfo", "CompatibleArchitectures"):
            if record.get(member):
                result[member] = record[member]
        return result

    def _version(
        self, ctx: RequestContext, name_or_arn: str, number: int | str, missing: str | None = None
    ) -> tuple[str, str, str, dict[str, Any]]:
        version = int(number)  # a path parameter
        if version < 1:
            raise invalid_parameter("Layer Version Cannot be less than 1")
        account, region, name = self._name(ctx, name_or_arn, shared=missing is None)
        record = self.layers.get(account, region, name, version)
        if account != ctx.account and (
            record is None or not self._readable(ctx, account, record, "lambda:GetLayerVersion")
        ):  # another account's: the same answer whether or not it exists
            arn = self.arn(account, region, name, version)
            raise iam.access_denied(ctx.principal, "lambda:GetLayerVersion", arn)
        if record is None:
            raise not_found(missing or NOT_FOUND)
        return account, region, name, record

    # Operations ---------------------------------------------------------------------------
    async def PublishLayerVersion(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        content = params["Content"]
        if not (content.get("ZipFile") or content.get("S3Bucket") or content.get("S3Key")):
            raise invalid_parameter("Please provide a source for the layer content.")
        blob = await packages.zip_from(ctx, content, self.code_source)
        packages.check_zipped_size(blob)
        digest_hex, code_sha = packages.digest(blob)
        async with self._write_lock:
            if self.code.has_code(digest_hex):
                if self.code.shared and not await asyncio.to_thread(
                    self.code.keep_blob, digest_hex
                ):
                    await asyncio.to_thread(self.code.put_blob, digest_hex, blob)
                unzipped = await asyncio.to_thread(_unzipped_size, self.code.code_dir(digest_hex))
            else:
                staging = self.code.staging_dir()
                try:
                    unzipped = await asyncio.to_thread(packages.extract, blob, staging)
                    staging.chmod(0o755)
                    await asyncio.to_thread(self.code.put_code, digest_hex, blob, staging)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
            account, region, name = self._name(
                ctx, params["LayerName"], action="lambda:PublishLayerVersion"
            )
            record: dict[str, Any] = {
                "LayerName": name,
                "Description": params.get("Description") or "",
                "CreatedDate": created_date(),
                "CompatibleRuntimes": list(params.get("CompatibleRuntimes") or []),
                "CompatibleArchitectures": list(params.get("CompatibleArchitectures") or []),
                "LicenseInfo": params.get("LicenseInfo"),
                "digest": digest_hex,
                "CodeSha256": code_sha,
                "CodeSize": len(blob),
                "unzipped": unzipped,
            }
            self.layers.add(account, region, name, record)
        return self.shown(ctx, account, region, record)

    async def GetLayerVersion(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        account, region, _, record = self._version(
            ctx, params["LayerName"], params["VersionNumber"]
        )
        return self.shown(ctx, account, region, record)

    async def GetLayerVersionByArn(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        arn = params["Arn"]
        found = LAYER_ARN.fullmatch(arn)
        if found is None or found["version"] is None:
            raise validation_error(
                [
                    f"Value '{arn}' at 'arn' failed to satisfy constraint: Member must satisfy "
                    "regular expression pattern: arn:(aws[a-zA-Z-]*)?:lambda:[a-z]{2}((-gov)|"
                    "(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+"
                ]
            )
        account, region, _, record = self._version(ctx, arn, int(found["version"]))
        return self.shown(ctx, account, region, record)

    async def ListLayerVersions(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        account, region, name = self._name(ctx, params["LayerName"], shared=True)
        versions = [
            self.shown(ctx, account, region, record)
            for record in self.layers.versions(account, region, name)
            if _matches(record, params)
            and self._readable(ctx, account, record, "lambda:ListLayerVersions")
        ]
        for version in versions:
            version.pop("Content")
            version.pop("LayerArn")
        page, marker = _page(versions, params)
        result: dict[str, Any] = {"LayerVersions": page}
        if marker:
            result["NextMarker"] = marker
        return result

    async def ListLayers(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        layers = []
        for name in self.layers.names(ctx.account, ctx.region):
            matching = [
                r
                for r in self.layers.versions(ctx.account, ctx.region, name)
                if _matches(r, params)
            ]
            if not matching:
                continue
            latest = self.shown(ctx, ctx.account, ctx.region, matching[0])
            latest.pop("Content")
            layer_arn = latest.pop("LayerArn")
            layers.append(
                {"LayerName": name, "LayerArn": layer_arn, "LatestMatchingVersion": latest}
            )
        page, marker = _page(layers, params)
        result: dict[str, Any] = {"Layers": page}
        if marker:
            result["NextMarker"] = marker
        return result

    async def DeleteLayerVersion(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        version = int(params["VersionNumber"])
        if version < 1:
            raise invalid_parameter("Layer Version Cannot be less than 1")
        account, region, name = self._name(
            ctx, params["LayerName"], action="lambda:DeleteLayerVersion"
        )
        self.layers.delete(account, region, name, version)  # no error if gone
        return {}

    async def AddLayerVersionPermission(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        account, region, name, record = self._permission_target(
            ctx, params, "lambda:AddLayerVersionPermission"
        )
        policy = record.setdefault("policy", {"statements": {}, "revision": str(uuid.uuid4())})
        if params.get("RevisionId") and params["RevisionId"] != policy["revision"]:
            raise _revision_mismatch()
        sid = params["StatementId"]
        if sid in policy["statements"]:
            raise AwsError(
                "ResourceConflictException",
                f"The statement id ({sid}) provided already exists. Please provide a new "
                "statement id, or remove the existing statement.",
                409,
                user=True,
            )
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Principal": params["Principal"],
            "Action": params["Action"],
            "Resource": self.arn(account, region, name, record["Version"]),
        }
        if params.get("OrganizationId"):
            statement["Condition"] = {
                "StringEquals": {"aws:PrincipalOrgID": params["OrganizationId"]}
            }
        policy["statements"][sid] = statement
        policy["revision"] = str(uuid.uuid4())
        self.layers.put(account, region, name, record)
        return {"Statement": json.dumps(statement), "RevisionId": policy["revision"]}

    async def RemoveLayerVersionPermission(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        account, region, name, record = self._permission_target(
            ctx, params, "lambda:RemoveLayerVersionPermission"
        )
        policy = record.get("policy") or {"statements": {}, "revision": ""}
        if params.get("RevisionId") and params["RevisionId"] != policy["revision"]:
            raise _revision_mismatch()
        sid = params["StatementId"]
        if sid not in policy["statements"]:
            raise not_found(f"Statement {sid} is not found in resource policy.")
        del policy["statements"][sid]
        policy["revision"] = str(uuid.uuid4())
        self.layers.put(account, region, name, record)
        return {}

    async def GetLayerVersionPolicy(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        _, _, _, record = self._permission_target(ctx, params, "lambda:GetLayerVersionPolicy")
        policy = record.get("policy")
        if not policy or not policy["statements"]:
            raise not_found("No policy is associated with the given resource.")
        document = {
            "Version": "2012-10-17",
            "Id": "default",
            "Statement": list(policy["statements"].values()),
        }
        return {"Policy": json.dumps(document), "RevisionId": policy["revision"]}

    def _permission_target(
        self, ctx: RequestContext, params: dict[str, Any], action: str
    ) -> tuple[str, str, str, dict[str, Any]]:
        account, region, name = self._name(ctx, params["LayerName"], action=action)
        arn = self.arn(account, region, name, int(params["VersionNumber"]))
        return self._version(
            ctx,
            params["LayerName"],
            params["VersionNumber"],
            f"Layer version {arn} does not exist.",
        )

    # What functions need ------------------------------------------------------------------
    def for_function(self, ctx: RequestContext, arns: list[str]) -> list[dict[str, Any]]:
        """The layer versions a function's `Layers` names, in order, checked as AWS checks
        them; each with its "Arn", "CodeSize", "digest" and "unzipped"."""
        if len(arns) > LAYER_LIMIT:
            raise invalid_parameter(f"Cannot reference more than {LAYER_LIMIT} layers.")
        found: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        for arn in arns:
            match = LAYER_ARN.fullmatch(arn)
            if match is None or match["version"] is None or len(arn) > 140:
                raise validation_error(
                    [
                        f"Value '[{', '.join(arns)}]' at 'layers' failed to satisfy constraint: "
                        "Member must satisfy constraint: [Member must have length less than or "
                        "equal to 140, Member must have length greater than or equal to 1, "
                        f"Member must satisfy regular expression pattern: {VERSION_PATTERN}, "
                        "Member must not be null]"
                    ]
                )
            if match["region"] != ctx.region:
                raise invalid_parameter(
                    "Layers are not in the same region as the function. Layers are expected to "
                    f"be in region {ctx.region}."
                )
            layer = arn.rsplit(":", 1)[0]
            if layer in seen:
                raise invalid_parameter(
                    "Two different versions of the same layer are not allowed to be referenced "
                    f"in the same function. {seen[layer]} and {arn} are versions of the same layer."
                )
            seen[layer] = arn
            record = self.layers.get(
                match["account"], match["region"], match["name"], int(match["version"])
            )
            if match["account"] != ctx.account and (
                record is None
                or not self._readable(ctx, match["account"], record, "lambda:GetLayerVersion")
            ):  # walls: another account's layer needs its version's permission
                raise iam.access_denied(ctx.principal, "lambda:GetLayerVersion", arn)
            if record is None:
                raise invalid_parameter(f"Layer version {arn} does not exist.")
            found.append(
                {
                    "Arn": arn,
                    "CodeSize": record["CodeSize"],
                    "digest": record["digest"],
                    "unzipped": record["unzipped"],
                }
            )
        return found

    async def opt_for(self, layers: list[dict[str, Any]]) -> str | None:
        """The merged /opt of these layers (None without layers)."""
        if not layers:
            return None
        return await asyncio.to_thread(merge, self.code, [layer["digest"] for layer in layers])


def root_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def _matches(record: dict[str, Any], params: dict[str, Any]) -> bool:
    runtime = params.get("CompatibleRuntime")
    if runtime and runtime not in (record.get("CompatibleRuntimes") or []):
        return False
    architecture = params.get("CompatibleArchitecture")
    return not architecture or architecture in (record.get("CompatibleArchitectures") or [])


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str]:
    marker = params.get("Marker")
    start = int(marker) if marker and marker.isdigit() else 0
    limit = min(params.get("MaxItems") or LIST_LIMIT, LIST_LIMIT)
    more = start + limit < len(items)
    return items[start : start + limit], str(start + limit) if more else ""


def _revision_mismatch() -> AwsError:
    return AwsError(
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id. Call the "
        "GetLayerPolicy API to retrieve the latest Revision Id",
        412,
        user=True,
    )

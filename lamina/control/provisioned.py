"""Provisioned concurrency configs: Put / Get / Delete / ListProvisionedConcurrencyConfigs.

A config lives on a published version or an alias and is stored in the function's record
as {"Requested", "LastModified"}. The counting service carves the function's total out of
its reservation or the unreserved pool; the engine's Provisioner keeps the environments.
Allocated / Available / Status come live from the engine: after a restart the
environments are started again and the status goes IN_PROGRESS → READY once more.
"""

from __future__ import annotations

import logging
from typing import Any

from lamina.context import RequestContext
from lamina.control.functions import (
    LATEST,
    FunctionRef,
    Functions,
    alias_not_found,
    now_iso,
    page,
    resolve,
)
from lamina.engine.concurrency import SettingsError
from lamina.engine.counting import CountingUnavailable, counts_unreachable
from lamina.errors import AwsError, conflict, invalid_parameter, not_found
from lamina.keys import FunctionKey

log = logging.getLogger("lamina.provisioned")

UNPUBLISHED = "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
NOT_A_VERSION = "The function resource provided must be an alias or a published version."
ALIAS_ON_PROVISIONED_VERSION = (
    "Alias can't be used for Provisioned Concurrency configuration on an already "
    "Provisioned version"
)
VERSION_UNDER_PROVISIONED_ALIAS = "Version is pointed by a Provisioned Concurrency alias"
TENANT_ISOLATED = (
    "Provisioned Concurrency is not supported for functions with tenant isolation mode "
    "(TenancyConfig) enabled."
)


def configs(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = record.setdefault("provisioned", {})
    return found


class Provisioned:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions
        self.engine = functions.engine
        # Counts come back at once (reservations were loaded before); environments start
        # with the event loop, in start().
        for key, record in list(functions.store.all_functions()):
            total = sum(c["Requested"] for c in record.get("provisioned", {}).values())
            if total:
                try:
                    self.engine.counters.of(key).set_provisioned(key, total)
                except SettingsError:
                    log.warning("provisioned concurrency of %s no longer fits", key.name)
                    record["provisioned"] = {}
                    functions.store.update_function(key, record)

    async def start(self) -> None:
        for key, record in list(self.functions.store.all_functions()):
            for qualifier in record.get("provisioned", {}):
                self._provision(key, record, qualifier)

    def written_elsewhere(self, key: FunctionKey | None) -> None:
        """Another node wrote a function's record (None: any function's): its provisioned
        configs are kept here too (the engine keeps this node's share of each)."""
        if key is None:
            for found, _ in list(self.functions.store.all_functions()):
                self.written_elsewhere(found)
            return
        record = self.functions.store.get_function(key)
        wanted = configs(record) if record is not None else {}
        held = set(self.engine.provisioned_qualifiers(key))
        for qualifier in held - set(wanted):
            self.engine.unprovision(key, qualifier)
        for qualifier in wanted:
            assert record is not None
            try:
                self._provision(key, record, qualifier)
            except Exception:  # a version this node cannot build: the others keep theirs
                log.exception("provisioning %s:%s written elsewhere", key.name, qualifier)

    # Helpers shared with the alias operations -------------------------------------------
    def _version_of(self, record: dict[str, Any], qualifier: str) -> str:
        if qualifier.isdigit():
            return qualifier
        return str(record["aliases"][qualifier]["FunctionVersion"])

    def _provision(self, key: FunctionKey, record: dict[str, Any], qualifier: str) -> None:
        version = self._version_of(record, qualifier)
        if version == LATEST:  # an alias repointed to $LATEST keeps no environments
            self.engine.unprovision(key, qualifier)
            return
        view = record["versions"][version]
        image = self.functions.image(key, view)
        self.engine.provision(key, qualifier, image, configs(record)[qualifier]["Requested"])

    async def _set_total(self, key: FunctionKey, record: dict[str, Any]) -> None:
        total = sum(c["Requested"] for c in configs(record).values())
        try:
            await self.engine.set_provisioned(key, total)
        except SettingsError as error:
            raise invalid_parameter(error.message, user=error.user) from error
        except CountingUnavailable as error:
            raise counts_unreachable(str(error)) from error

    def check_repoint(self, key: FunctionKey, record: dict[str, Any], alias: str, to: str) -> None:
        if alias in configs(record) and to in configs(record):
            raise conflict(ALIAS_ON_PROVISIONED_VERSION)

    def reprovision(self, key: FunctionKey, record: dict[str, Any], alias: str) -> None:
        """The alias now names another version: provision that one instead."""
        if alias in configs(record):
            self._provision(key, record, alias)

    async def drop(self, key: FunctionKey, record: dict[str, Any], qualifier: str) -> None:
        if configs(record).pop(qualifier, None) is not None:
            await self._set_total(key, record)
            self.engine.unprovision(key, qualifier)

    def _qualified(self, ctx: RequestContext, params: dict[str, Any], put: bool) -> FunctionRef:
        ref = resolve(ctx, params["FunctionName"], params.get("Qualifier"))
        if ref.qualifier in (None, LATEST):
            raise invalid_parameter(UNPUBLISHED if put else NOT_A_VERSION)
        record = self.functions.record(FunctionRef(ref.key, None))
        qualifier = ref.qualifier
        assert qualifier is not None
        if qualifier.isdigit():
            if qualifier not in record.get("versions", {}):
                raise not_found(f"Function not found: {ref.key.arn}:{qualifier}")
        elif qualifier not in record.get("aliases", {}):
            raise alias_not_found(ref.key, qualifier)
        return ref

    def _shown(self, key: FunctionKey, qualifier: str, config: dict[str, Any]) -> dict[str, Any]:
        state = self.engine.provisioned_state(key, qualifier)
        ready = state.ready if state is not None and not state.failed else 0
        shown: dict[str, Any] = {
            "RequestedProvisionedConcurrentExecutions": config["Requested"],
            "AvailableProvisionedConcurrentExecutions": ready,
            "AllocatedProvisionedConcurrentExecutions": ready,
            "Status": state.status if state is not None else "IN_PROGRESS",
            "LastModified": config["LastModified"],
        }
        if state is not None and state.failed:
            shown["StatusReason"] = "FUNCTION_ERROR_INIT_FAILURE"
        return shown

    # Operations --------------------------------------------------------------------------
    async def PutProvisionedConcurrencyConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = self._qualified(ctx, params, put=True)
        record = self.functions.record(FunctionRef(ref.key, None))
        if (record["config"].get("TenancyConfig") or {}).get("TenantIsolationMode"):
            # An environment serves one tenant: none can be made ready before its tenant
            # calls, so Lambda refuses provisioned concurrency for these functions.
            raise invalid_parameter(TENANT_ISOLATED)
        qualifier = ref.qualifier
        assert qualifier is not None
        provisioned = configs(record)
        if qualifier.isdigit():
            pointing = [
                name
                for name, alias in record.get("aliases", {}).items()
                if alias["FunctionVersion"] == qualifier and name in provisioned
            ]
            if pointing:
                raise conflict(VERSION_UNDER_PROVISIONED_ALIAS)
        elif self._version_of(record, qualifier) in provisioned:
            raise conflict(ALIAS_ON_PROVISIONED_VERSION)
        previous = provisioned.get(qualifier)
        provisioned[qualifier] = {
            "Requested": params["ProvisionedConcurrentExecutions"],
            "LastModified": now_iso(),
        }
        try:
            await self._set_total(ref.key, record)
        except AwsError:
            if previous is None:
                del provisioned[qualifier]
            else:
                provisioned[qualifier] = previous
            raise
        self.functions.store.update_function(ref.key, record)
        self._provision(ref.key, record, qualifier)
        return {
            "RequestedProvisionedConcurrentExecutions": provisioned[qualifier]["Requested"],
            "AvailableProvisionedConcurrentExecutions": 0,
            "AllocatedProvisionedConcurrentExecutions": 0,
            "Status": "IN_PROGRESS",
            "LastModified": provisioned[qualifier]["LastModified"],
        }

    async def GetProvisionedConcurrencyConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = self._qualified(ctx, params, put=False)
        record = self.functions.record(FunctionRef(ref.key, None))
        assert ref.qualifier is not None
        config = configs(record).get(ref.qualifier)
        if config is None:
            raise AwsError(
                "ProvisionedConcurrencyConfigNotFoundException",
                "No Provisioned Concurrency Config found for this function",
                404,
                user=True,
            )
        return self._shown(ref.key, ref.qualifier, config)

    async def DeleteProvisionedConcurrencyConfig(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = self._qualified(ctx, params, put=False)
        record = self.functions.record(FunctionRef(ref.key, None))
        assert ref.qualifier is not None
        await self.drop(ref.key, record, ref.qualifier)
        self.functions.store.update_function(ref.key, record)
        return {}

    async def ListProvisionedConcurrencyConfigs(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        record = self.functions.record(ref)
        shown = [
            {"FunctionArn": f"{ref.key.arn}:{q}", **self._shown(ref.key, q, c)}
            for q, c in sorted(configs(record).items())
        ]
        chunk, marker = page(shown, params.get("Marker"), params.get("MaxItems"))
        result: dict[str, Any] = {"ProvisionedConcurrencyConfigs": chunk}
        if marker:
            result["NextMarker"] = marker
        return result

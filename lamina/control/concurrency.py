"""Reserved concurrency: Put / Get / DeleteFunctionConcurrency.

The counting service (engine/concurrency.py) owns the numbers and the rules; this module
checks the request, persists the setting in the function's record and maps refusals to
AWS's errors. Reservations are loaded back into the counter when the server starts.
"""

from __future__ import annotations

import logging
from typing import Any

from lamina.context import RequestContext
from lamina.control.functions import Functions, resolve
from lamina.engine.concurrency import SettingsError
from lamina.engine.counting import CountingUnavailable, counts_unreachable
from lamina.errors import AwsError, invalid_parameter

log = logging.getLogger("lamina.concurrency")

QUALIFIED_REFUSED = (
    "This operation is permitted on Lambda functions only. Aliases and versions do not support "
    "this operation. Please specify either a function name or an unqualified function ARN."
)


def settings_error(error: SettingsError) -> AwsError:
    return invalid_parameter(error.message, user=error.user)


class Concurrency:
    def __init__(self, functions: Functions) -> None:
        self.functions = functions
        self.counters = counters = functions.engine.counters
        for key, record in list(functions.store.all_functions()):
            reserved = record.get("reserved")
            if reserved is not None:
                try:
                    counters.of(key).set_reserved(key, reserved)
                except SettingsError:
                    # The account limit was lowered since this was set: drop what no longer fits.
                    log.warning("reserved concurrency of %s no longer fits the account", key.name)
                    record["reserved"] = None
                    functions.store.update_function(key, record)

    async def PutFunctionConcurrency(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        if ref.qualifier is not None:
            raise invalid_parameter(QUALIFIED_REFUSED)
        record = self.functions.record(ref)
        reserved = params["ReservedConcurrentExecutions"]
        try:
            await self.functions.engine.set_reserved(ref.key, reserved)
        except SettingsError as error:
            raise settings_error(error) from error
        except CountingUnavailable as error:
            raise counts_unreachable(str(error)) from error
        record["reserved"] = reserved
        self.functions.store.update_function(ref.key, record)
        return {"ReservedConcurrentExecutions": reserved}

    async def GetFunctionConcurrency(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        if ref.qualifier is not None:
            raise invalid_parameter(QUALIFIED_REFUSED)
        record = self.functions.record(ref)
        reserved = record.get("reserved")
        return {} if reserved is None else {"ReservedConcurrentExecutions": reserved}

    async def DeleteFunctionConcurrency(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        ref = resolve(ctx, params["FunctionName"])
        if ref.qualifier is not None:
            raise invalid_parameter(QUALIFIED_REFUSED)
        record = self.functions.record(ref)
        try:
            await self.functions.engine.set_reserved(ref.key, None)
        except CountingUnavailable as error:
            raise counts_unreachable(str(error)) from error
        record["reserved"] = None
        self.functions.store.update_function(ref.key, record)
        return {}

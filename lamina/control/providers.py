"""The Lambda service's operations, gathered into the one object the gateway dispatches to.

An operation the model defines but no component implements has no attribute here, and
the gateway answers 501 naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from lamina.context import RequestContext
from lamina.control.concurrency import Concurrency
from lamina.control.durable.api import DurableApi
from lamina.control.event_configs import EventInvokeConfigs
from lamina.control.functions import Functions
from lamina.control.invocations import Invocations
from lamina.control.layers import Layers
from lamina.control.mappings import Mappings
from lamina.control.policies import Policies
from lamina.control.provisioned import Provisioned
from lamina.control.urls import FunctionUrls
from lamina.control.versions import Versions

Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[Any]]
# The IAM action an operation needs, where it is not `lambda:<operation>`.
ACTIONS = {
    "Invoke": "lambda:InvokeFunction",
    "InvokeAsync": "lambda:InvokeFunction",
    "InvokeWithResponseStream": "lambda:InvokeFunction",
}


class LambdaProvider:
    def __init__(
        self,
        functions: Functions,
        invocations: Invocations,
        concurrency: Concurrency,
        versions: Versions,
        provisioned: Provisioned,
        event_configs: EventInvokeConfigs,
        mappings: Mappings | None = None,
        layers: Layers | None = None,
        urls: FunctionUrls | None = None,
        policies: Policies | None = None,
        durable: DurableApi | None = None,
    ) -> None:
        self.CreateFunction = functions.CreateFunction
        self.GetFunction = functions.GetFunction
        self.GetFunctionConfiguration = functions.GetFunctionConfiguration
        self.ListFunctions = functions.ListFunctions
        self.UpdateFunctionCode = functions.UpdateFunctionCode
        self.UpdateFunctionConfiguration = functions.UpdateFunctionConfiguration
        self.DeleteFunction = functions.DeleteFunction
        self.GetAccountSettings = functions.GetAccountSettings
        self.Invoke = invocations.Invoke
        self.InvokeAsync = invocations.InvokeAsync
        self.InvokeWithResponseStream = invocations.InvokeWithResponseStream
        self.PutFunctionConcurrency = concurrency.PutFunctionConcurrency
        self.GetFunctionConcurrency = concurrency.GetFunctionConcurrency
        self.DeleteFunctionConcurrency = concurrency.DeleteFunctionConcurrency
        for name in (
            "PublishVersion",
            "ListVersionsByFunction",
            "CreateAlias",
            "GetAlias",
            "UpdateAlias",
            "DeleteAlias",
            "ListAliases",
        ):
            setattr(self, name, getattr(versions, name))
        for name in (
            "PutProvisionedConcurrencyConfig",
            "GetProvisionedConcurrencyConfig",
            "DeleteProvisionedConcurrencyConfig",
            "ListProvisionedConcurrencyConfigs",
        ):
            setattr(self, name, getattr(provisioned, name))
        for name in (
            "PutFunctionEventInvokeConfig",
            "GetFunctionEventInvokeConfig",
            "UpdateFunctionEventInvokeConfig",
            "DeleteFunctionEventInvokeConfig",
            "ListFunctionEventInvokeConfigs",
        ):
            setattr(self, name, getattr(event_configs, name))
        if mappings is not None:
            self.CreateEventSourceMapping = mappings.CreateEventSourceMapping
            self.GetEventSourceMapping = mappings.GetEventSourceMapping
            self.ListEventSourceMappings = mappings.ListEventSourceMappings
            self.UpdateEventSourceMapping = mappings.UpdateEventSourceMapping
            self.DeleteEventSourceMapping = mappings.DeleteEventSourceMapping
        if layers is not None:
            for name in (
                "PublishLayerVersion",
                "GetLayerVersion",
                "GetLayerVersionByArn",
                "ListLayers",
                "ListLayerVersions",
                "DeleteLayerVersion",
                "AddLayerVersionPermission",
                "RemoveLayerVersionPermission",
                "GetLayerVersionPolicy",
            ):
                setattr(self, name, getattr(layers, name))
        if urls is not None:
            for name in (
                "CreateFunctionUrlConfig",
                "GetFunctionUrlConfig",
                "UpdateFunctionUrlConfig",
                "DeleteFunctionUrlConfig",
                "ListFunctionUrlConfigs",
            ):
                setattr(self, name, getattr(urls, name))
        if durable is not None:
            for name in (
                "CheckpointDurableExecution",
                "GetDurableExecutionState",
                "GetDurableExecution",
                "GetDurableExecutionHistory",
                "ListDurableExecutionsByFunction",
                "SendDurableExecutionCallbackSuccess",
                "SendDurableExecutionCallbackFailure",
                "SendDurableExecutionCallbackHeartbeat",
                "StopDurableExecution",
                "PauseDurableExecution",
                "ResumeDurableExecution",
                "DeleteDurableExecution",
            ):
                setattr(self, name, getattr(durable, name))
        if policies is not None:
            self.AddPermission = policies.AddPermission
            self.RemovePermission = policies.RemovePermission
            self.GetPolicy = policies.GetPolicy
            # Walls between accounts: an operation naming another account's function runs
            # only where that function's policy lets the caller in, as its owner.
            for name, handler in list(vars(self).items()):
                if name[:1].isupper() and callable(handler):
                    setattr(
                        self, name, _guarded(policies, ACTIONS.get(name, f"lambda:{name}"), handler)
                    )


def _guarded(policies: Policies, action: str, handler: Handler) -> Handler:
    # Not a coroutine of its own: the check runs when called, and the handler's awaitable
    # is handed back (one frame fewer on every invocation's way in and out).
    def guarded(ctx: RequestContext, params: dict[str, Any]) -> Awaitable[Any]:
        target = params.get("FunctionName")
        if target and ":" in target:
            ctx = policies.authorize(ctx, target, params.get("Qualifier"), action)
        return handler(ctx, params)

    return guarded

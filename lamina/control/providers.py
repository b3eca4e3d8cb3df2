"""The Lambda service's operations, gathered into the one object the gateway dispatches to.

An operation the model defines but no component implements has no attribute here, and
the gateway answers 501 naming it.
"""

from __future__ import annotations

from lamina.control.concurrency import Concurrency
from lamina.control.event_configs import EventInvokeConfigs
from lamina.control.functions import Functions
from lamina.control.invocations import Invocations
from lamina.control.layers import Layers
from lamina.control.mappings import Mappings
from lamina.control.provisioned import Provisioned
from lamina.control.urls import FunctionUrls
from lamina.control.versions import Versions


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

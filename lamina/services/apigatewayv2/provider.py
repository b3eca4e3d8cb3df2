"""API Gateway's HTTP APIs (botocore's `apigatewayv2` model): APIs, routes, Lambda proxy
integrations, stages and deployments.

CreateApi with `Target` is quick create: an AWS_PROXY integration (payload format 2.0),
a route (`RouteKey`, `$default` unless given) and a `$default` stage that deploys every
change, all marked ApiGatewayManaged. A stage with AutoDeploy serves the API as it is; any
other serves the deployment it points to (CreateDeployment snapshots routes and
integrations). What Lamina does not serve is refused with BadRequestException naming it:
WebSocket APIs, integrations other than AWS_PROXY, authorizers on routes.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from lamina.context import RequestContext
from lamina.services.apigatewayv2.apis import (
    DEFAULT,
    bad_request,
    conflict,
    new_id,
    not_found,
    now_iso,
    parse_route_key,
    snapshot,
)
from lamina.services.apigatewayv2.store import ApiStore

API_FIELDS = (
    "ApiGatewayManaged",
    "ApiId",
    "ApiKeySelectionExpression",
    "CorsConfiguration",
    "CreatedDate",
    "Description",
    "DisableExecuteApiEndpoint",
    "DisableSchemaValidation",
    "IpAddressType",
    "Name",
    "ProtocolType",
    "RouteSelectionExpression",
    "Tags",
    "Version",
)
STAGE_NAME = re.compile(r"\$default|[A-Za-z0-9_-]{1,128}")
PAYLOAD_VERSIONS = ("1.0", "2.0")
LAMBDA_ARN = re.compile(r"arn:aws[a-z-]*:(lambda|apigateway):[a-z0-9-]+:.+")


def api_host(api_id: str) -> str:
    return f"{api_id}.execute-api.localhost"


def page(items: list[Any], params: dict[str, Any]) -> dict[str, Any]:
    token = params.get("NextToken") or "0"
    start = int(token) if token.isdigit() else 0
    size = params.get("MaxResults") or "100"
    limit = int(size) if str(size).isdigit() and int(size) > 0 else 100
    answer: dict[str, Any] = {"Items": items[start : start + limit]}
    if start + limit < len(items):
        answer["NextToken"] = str(start + limit)
    return answer


class ApiGatewayV2:
    def __init__(self, store: ApiStore) -> None:
        self.store = store

    # Helpers ---------------------------------------------------------------------------
    def _api(self, ctx: RequestContext, api_id: str) -> dict[str, Any]:
        api = self.store.apis.get(api_id)
        if api is None or api["account"] != ctx.account or api["region"] != ctx.region:
            raise not_found(f"Invalid API identifier specified {ctx.account}:{api_id}", "Api")
        return api

    def _describe(self, ctx: RequestContext, api: dict[str, Any]) -> dict[str, Any]:
        port = urlsplit(ctx.endpoint).port
        described = {name: api[name] for name in API_FIELDS if name in api}
        described["ApiEndpoint"] = f"http://{api_host(api['ApiId'])}{f':{port}' if port else ''}"
        return described

    def _child(
        self, ctx: RequestContext, api: dict[str, Any], kind: str, child_id: str
    ) -> dict[str, Any]:
        found = api[kind].get(child_id)
        if found is None:
            label = {"routes": "Route", "integrations": "Integration", "deployments": "Deployment"}
            name = label.get(kind, "Stage")
            raise not_found(
                f"Invalid {name} identifier specified {ctx.account}:{api['ApiId']}:{child_id}",
                name,
            )
        return dict(found)

    @staticmethod
    def _check_integration(params: dict[str, Any], creating: bool) -> None:
        kind = params.get("IntegrationType")
        if (creating and kind != "AWS_PROXY") or kind not in (None, "AWS_PROXY"):
            raise bad_request(
                f"Integration type {kind} is not supported by Lamina: use AWS_PROXY with a "
                "Lambda function."
            )
        uri = params.get("IntegrationUri")
        if creating and not uri:
            raise bad_request("IntegrationUri is required for an AWS_PROXY integration.")
        if uri and not LAMBDA_ARN.fullmatch(uri) and "${stageVariables." not in uri:
            raise bad_request(f"Invalid integration URI specified: {uri}")
        version = params.get("PayloadFormatVersion")
        if version is not None and version not in PAYLOAD_VERSIONS:
            raise bad_request(f"Payload format version {version} is not supported: use 1.0 or 2.0.")

    @staticmethod
    def _check_target(api: dict[str, Any], target: str | None) -> None:
        if target is None:
            return
        prefix, _, integration = target.partition("/")
        if prefix != "integrations" or integration not in api["integrations"]:
            raise bad_request(f"Invalid target specified: {target}")

    # APIs ------------------------------------------------------------------------------
    async def CreateApi(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params["ProtocolType"] != "HTTP":
            raise bad_request("WebSocket APIs are not supported by Lamina: use ProtocolType HTTP.")
        if params.get("RouteKey") and not params.get("Target"):
            raise bad_request("RouteKey can only be specified together with Target (quick create).")
        api: dict[str, Any] = {
            "ApiId": new_id(10),
            "Name": params["Name"],
            "ProtocolType": "HTTP",
            "RouteSelectionExpression": params.get("RouteSelectionExpression")
            or "$request.method $request.path",
            "ApiKeySelectionExpression": params.get("ApiKeySelectionExpression")
            or "$request.header.x-api-key",
            "CreatedDate": now_iso(),
            "DisableExecuteApiEndpoint": bool(params.get("DisableExecuteApiEndpoint")),
            "IpAddressType": params.get("IpAddressType") or "ipv4",
            "Tags": params.get("Tags") or {},
            "account": ctx.account,
            "region": ctx.region,
            "routes": {},
            "integrations": {},
            "stages": {},
            "deployments": {},
        }
        for name in ("Description", "Version", "CorsConfiguration", "DisableSchemaValidation"):
            if params.get(name) is not None:
                api[name] = params[name]
        if params.get("Target"):
            self._quick_create(api, params["Target"], params.get("RouteKey") or DEFAULT)
        self.store.put(api)
        return self._describe(ctx, api)

    def _quick_create(self, api: dict[str, Any], target: str, route_key: str) -> None:
        self._check_integration({"IntegrationType": "AWS_PROXY", "IntegrationUri": target}, True)
        parse_route_key(route_key)
        integration = self._integration(
            {"IntegrationType": "AWS_PROXY", "IntegrationUri": target,
             "PayloadFormatVersion": "2.0"}, managed=True,
        )  # fmt: skip
        api["integrations"][integration["IntegrationId"]] = integration
        route = self._route(
            {"RouteKey": route_key, "Target": f"integrations/{integration['IntegrationId']}"},
            managed=True,
        )
        api["routes"][route["RouteId"]] = route
        api["stages"][DEFAULT] = self._stage({"StageName": DEFAULT, "AutoDeploy": True}, True)
        api["ApiGatewayManaged"] = True

    async def GetApi(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._describe(ctx, self._api(ctx, params["ApiId"]))

    async def GetApis(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        apis = [
            self._describe(ctx, api)
            for api in sorted(
                self.store.apis.values(), key=lambda a: (a["CreatedDate"], a["ApiId"])
            )
            if api["account"] == ctx.account and api["region"] == ctx.region
        ]
        return page(apis, params)

    async def UpdateApi(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        for name in (
            "Name", "Description", "Version", "CorsConfiguration", "DisableExecuteApiEndpoint",
            "DisableSchemaValidation", "RouteSelectionExpression", "ApiKeySelectionExpression",
            "IpAddressType",
        ):  # fmt: skip
            if name in params:
                api[name] = params[name]
        if params.get("Target") or params.get("RouteKey"):
            managed = [i for i in api["integrations"].values() if i.get("ApiGatewayManaged")]
            routes = [r for r in api["routes"].values() if r.get("ApiGatewayManaged")]
            if not managed or not routes:
                raise bad_request("Target and RouteKey update only a quick-created API.")
            if params.get("Target"):
                self._check_integration(
                    {"IntegrationType": "AWS_PROXY", "IntegrationUri": params["Target"]}, True
                )
                managed[0]["IntegrationUri"] = params["Target"]
            if params.get("RouteKey"):
                parse_route_key(params["RouteKey"])
                routes[0]["RouteKey"] = params["RouteKey"]
        self.store.put(api)
        return self._describe(ctx, api)

    async def DeleteApi(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self.store.delete(self._api(ctx, params["ApiId"])["ApiId"])
        return {}

    # Routes ----------------------------------------------------------------------------
    @staticmethod
    def _route(params: dict[str, Any], managed: bool = False) -> dict[str, Any]:
        route: dict[str, Any] = {
            "RouteId": new_id(7),
            "RouteKey": params["RouteKey"],
            "ApiKeyRequired": bool(params.get("ApiKeyRequired")),
            "AuthorizationType": params.get("AuthorizationType") or "NONE",
        }
        if managed:
            route["ApiGatewayManaged"] = True
        for name in ("Target", "OperationName", "RequestParameters"):
            if params.get(name) is not None:
                route[name] = params[name]
        return route

    def _check_route(self, api: dict[str, Any], params: dict[str, Any], route_id: str) -> None:
        if params.get("AuthorizationType") not in (None, "NONE") or params.get("AuthorizerId"):
            raise bad_request("Route authorizers are not supported by Lamina: use NONE.")
        if params.get("ApiKeyRequired"):
            raise bad_request("API keys are not supported for HTTP APIs.")
        self._check_target(api, params.get("Target"))
        key = params.get("RouteKey")
        if key is None:
            return
        parse_route_key(key)
        if any(r["RouteKey"] == key and r["RouteId"] != route_id for r in api["routes"].values()):
            raise conflict(f"Route with key {key} already exists for this API")

    async def CreateRoute(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        self._check_route(api, params, "")
        route = self._route(params)
        api["routes"][route["RouteId"]] = route
        self.store.put(api)
        return route

    async def GetRoute(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._child(ctx, self._api(ctx, params["ApiId"]), "routes", params["RouteId"])

    async def GetRoutes(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        return page(list(api["routes"].values()), params)

    async def UpdateRoute(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        route = self._child(ctx, api, "routes", params["RouteId"])
        self._check_route(api, params, route["RouteId"])
        for name in ("RouteKey", "Target", "OperationName", "RequestParameters"):
            if name in params:
                route[name] = params[name]
        api["routes"][route["RouteId"]] = route
        self.store.put(api)
        return route

    async def DeleteRoute(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        route = self._child(ctx, api, "routes", params["RouteId"])
        del api["routes"][route["RouteId"]]
        self.store.put(api)
        return {}

    # Integrations ----------------------------------------------------------------------
    @staticmethod
    def _integration(params: dict[str, Any], managed: bool = False) -> dict[str, Any]:
        integration: dict[str, Any] = {
            "IntegrationId": new_id(7),
            "ConnectionType": "INTERNET",
            "IntegrationMethod": "POST",
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": params["IntegrationUri"],
            "PayloadFormatVersion": params.get("PayloadFormatVersion") or "1.0",
            "TimeoutInMillis": params.get("TimeoutInMillis") or 30000,
        }
        if managed:
            integration["ApiGatewayManaged"] = True
        for name in ("Description", "RequestParameters", "ResponseParameters"):
            if params.get(name) is not None:
                integration[name] = params[name]
        return integration

    async def CreateIntegration(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        self._check_integration(params, True)
        integration = self._integration(params)
        api["integrations"][integration["IntegrationId"]] = integration
        self.store.put(api)
        return integration

    async def GetIntegration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        return self._child(ctx, api, "integrations", params["IntegrationId"])

    async def GetIntegrations(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        return page(list(api["integrations"].values()), params)

    async def UpdateIntegration(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        integration = self._child(ctx, api, "integrations", params["IntegrationId"])
        self._check_integration(params, False)
        for name in ("IntegrationUri", "PayloadFormatVersion", "TimeoutInMillis", "Description"):
            if name in params:
                integration[name] = params[name]
        api["integrations"][integration["IntegrationId"]] = integration
        self.store.put(api)
        return integration

    async def DeleteIntegration(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        integration = self._child(ctx, api, "integrations", params["IntegrationId"])
        target = f"integrations/{integration['IntegrationId']}"
        if any(r.get("Target") == target for r in api["routes"].values()):
            raise conflict("Cannot delete an integration that routes target: update them first.")
        del api["integrations"][integration["IntegrationId"]]
        self.store.put(api)
        return {}

    # Stages and deployments ------------------------------------------------------------
    @staticmethod
    def _stage(params: dict[str, Any], managed: bool = False) -> dict[str, Any]:
        now = now_iso()
        stage: dict[str, Any] = {
            "StageName": params["StageName"],
            "AutoDeploy": bool(params.get("AutoDeploy")),
            "CreatedDate": now,
            "LastUpdatedDate": now,
            "DefaultRouteSettings": params.get("DefaultRouteSettings")
            or {"DetailedMetricsEnabled": False},
            "RouteSettings": params.get("RouteSettings") or {},
            "StageVariables": params.get("StageVariables") or {},
            "Tags": params.get("Tags") or {},
        }
        if managed:
            stage["ApiGatewayManaged"] = True
        for name in ("Description", "DeploymentId"):
            if params.get(name) is not None:
                stage[name] = params[name]
        return stage

    async def CreateStage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        name = params["StageName"]
        if not STAGE_NAME.fullmatch(name):
            raise bad_request(
                f"Stage name {name!r} is invalid: use $default or letters, digits, - and _."
            )
        if name in api["stages"]:
            raise conflict(f"Stage {name} already exists")
        if params.get("DeploymentId"):
            self._child(ctx, api, "deployments", params["DeploymentId"])
        stage = self._stage(params)
        api["stages"][name] = stage
        self.store.put(api)
        return stage

    async def GetStage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._child(ctx, self._api(ctx, params["ApiId"]), "stages", params["StageName"])

    async def GetStages(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return page(list(self._api(ctx, params["ApiId"])["stages"].values()), params)

    async def UpdateStage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        stage = self._child(ctx, api, "stages", params["StageName"])
        if params.get("DeploymentId"):
            self._child(ctx, api, "deployments", params["DeploymentId"])
        for name in ("AutoDeploy", "DeploymentId", "Description", "StageVariables",
                     "DefaultRouteSettings", "RouteSettings"):  # fmt: skip
            if name in params:
                stage[name] = params[name]
        stage["LastUpdatedDate"] = now_iso()
        api["stages"][stage["StageName"]] = stage
        self.store.put(api)
        return stage

    async def DeleteStage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        stage = self._child(ctx, api, "stages", params["StageName"])
        del api["stages"][stage["StageName"]]
        self.store.put(api)
        return {}

    async def CreateDeployment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        stage_name = params.get("StageName")
        if stage_name is not None:
            self._child(ctx, api, "stages", stage_name)
        deployment: dict[str, Any] = {
            "DeploymentId": new_id(6),
            "AutoDeployed": False,
            "CreatedDate": now_iso(),
            "DeploymentStatus": "DEPLOYED",
        }
        if params.get("Description") is not None:
            deployment["Description"] = params["Description"]
        api["deployments"][deployment["DeploymentId"]] = {**deployment, "snapshot": snapshot(api)}
        if stage_name is not None:
            api["stages"][stage_name]["DeploymentId"] = deployment["DeploymentId"]
            api["stages"][stage_name]["LastUpdatedDate"] = now_iso()
        self.store.put(api)
        return deployment

    async def GetDeployment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        found = self._child(ctx, api, "deployments", params["DeploymentId"])
        found.pop("snapshot", None)
        return found

    async def GetDeployments(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        items = [
            {k: v for k, v in d.items() if k != "snapshot"} for d in api["deployments"].values()
        ]
        return page(items, params)

    async def DeleteDeployment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = self._api(ctx, params["ApiId"])
        deployment = self._child(ctx, api, "deployments", params["DeploymentId"])
        if any(s.get("DeploymentId") == deployment["DeploymentId"] for s in api["stages"].values()):
            raise bad_request("Active stages pointing to this deployment must be moved or deleted")
        del api["deployments"][deployment["DeploymentId"]]
        self.store.put(api)
        return {}

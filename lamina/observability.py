"""Observability, assembled: metrics (CloudWatch API and Prometheus), CloudWatch Logs,
X-Ray (daemon endpoint and API), the live view and the web console, mounted on the gateway.

    /metrics                 Prometheus text
    /console/                the web console
    /_lamina/live[/logs|/traces]   the live view's JSON (console, `lamina top`)
    cloudwatch, logs, xray   the AWS APIs, on the same endpoint as Lambda
    UDP 127.0.0.1:<xray-port>      the X-Ray daemon endpoint functions send segments to
"""

from __future__ import annotations

from typing import Any

from lamina.api.app import Gateway
from lamina.api.spec import service
from lamina.api.wire import HttpRequest, HttpResponse
from lamina.config import Settings
from lamina.console import ConsolePages
from lamina.console.live import LiveView
from lamina.engine.service import Engine
from lamina.engine.telemetry import Telemetry
from lamina.observe.logs import LogStore
from lamina.observe.metrics import Metrics, Sampler
from lamina.observe.prometheus import CONTENT_TYPE, PrometheusView
from lamina.observe.traces import TraceStore, XRayDaemon
from lamina.sandbox import launch
from lamina.services.cloudwatch.provider import CloudWatch
from lamina.services.logs.provider import LogGroups
from lamina.services.xray.provider import XRay
from lamina.store.sqlite import SqliteStore


class Observability:
    def __init__(
        self,
        settings: Settings,
        store: SqliteStore,
        logs: LogStore,
        engine: Engine,
        gateway: Gateway,
    ) -> None:
        self.metrics = Metrics()
        self.traces = TraceStore()
        engine.observer = Telemetry(self.metrics, self.traces)
        self.sampler = Sampler(self.metrics, engine.counters.sample)
        self.daemon = XRayDaemon(self.traces, "127.0.0.1", settings.xray_port)
        self.prometheus = PrometheusView(self.metrics)

        def list_functions(account: str, region: str) -> list[dict[str, Any]]:
            return store.list_functions(account, region)

        self.live = LiveView(list_functions, self.metrics, logs, self.traces)
        gateway.mount(service("cloudwatch"), CloudWatch(self.metrics))
        gateway.mount(service("logs"), LogGroups(logs))
        gateway.mount(service("xray"), XRay(self.traces))
        gateway.mount_page("metrics", self._prometheus)
        gateway.mount_page("console", ConsolePages().handle)
        gateway.mount_internal("live", self.live.handle)
        # Before anything starts an environment: environments are told the daemon's address.
        gateway.on_startup.insert(0, self.start)
        gateway.on_shutdown.append(self.close)

    async def start(self) -> None:
        await self.daemon.start()
        launch.set_xray_daemon_address(self.daemon.address)
        await self.sampler.start()

    async def close(self) -> None:
        await self.sampler.close()
        await self.daemon.close()

    async def _prometheus(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, self.prometheus.render(), {"Content-Type": CONTENT_TYPE})

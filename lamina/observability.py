"""Observability, assembled: metrics and traces recorded where things happen (the
engine's telemetry, the counting service's sampler), the X-Ray daemon endpoint, and the
pages over them: Prometheus text, the live view and the web console.

    /metrics                 Prometheus text
    /console/                the web console
    /_lamina/live[/logs|/traces]   the live view's JSON (console, `lamina top`)
    UDP 127.0.0.1:<xray-port>      the X-Ray daemon endpoint functions send segments to

The AWS APIs over them (cloudwatch, logs, xray) are services (lamina/services/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lamina.api.app import Gateway
from lamina.api.wire import HttpRequest, HttpResponse
from lamina.config import Settings
from lamina.console import ConsolePages
from lamina.console.live import LiveView
from lamina.engine.concurrency import Counters
from lamina.engine.telemetry import Telemetry
from lamina.observe.logs import LogStore
from lamina.observe.metrics import Metrics, Sampler
from lamina.observe.prometheus import CONTENT_TYPE, PrometheusView
from lamina.observe.traces import TraceStore, XRayDaemon
from lamina.sandbox import launch


class Observability:
    def __init__(
        self,
        settings: Settings,
        logs: LogStore,
        counters: Counters,
        list_functions: Callable[[str, str], list[dict[str, Any]]],
    ) -> None:
        self.metrics = Metrics()
        self.traces = TraceStore()
        self.telemetry = Telemetry(self.metrics, self.traces)  # the engine's observer
        self.sampler = Sampler(self.metrics, counters.sample)
        self.daemon = XRayDaemon(self.traces, "127.0.0.1", settings.xray_port)
        self.prometheus = PrometheusView(self.metrics)
        self.live = LiveView(list_functions, self.metrics, logs, self.traces)

    def mount(self, gateway: Gateway) -> None:
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

"""Observability, assembled: metrics and traces recorded where things happen (the
engine's telemetry, the counting service's sampler), the X-Ray daemon endpoint, and the
pages over them: Prometheus text, the live view and the web console.

    /metrics                 Prometheus text
    /console/                the web console
    /_lamina/live[/logs|/traces]   the live view's JSON (console, `lamina top`)
    /_lamina/trace           the invocation log as CSV (`lamina trace export`)
    /_lamina/plans           POST: plan this server's recent traffic (console/plans.py)
    /console/plans/          plans kept under <data dir>/plans, served
    UDP 127.0.0.1:<xray-port>      the X-Ray daemon endpoint functions send segments to

The AWS APIs over them (cloudwatch, logs, xray) are services (lamina/services/).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from lamina.api.app import Gateway
from lamina.api.wire import HttpRequest, HttpResponse
from lamina.clock import Clock
from lamina.config import Settings, auth_mode
from lamina.console import ConsolePages
from lamina.console.live import Catalogue, LiveView
from lamina.console.plans import PlanPages
from lamina.engine.concurrency import Counters
from lamina.engine.telemetry import Telemetry
from lamina.observe.gauges import Figures, Sampler
from lamina.observe.invocation_log import InvocationLog
from lamina.observe.log_keeper import LogKeeper
from lamina.observe.logs import LogStore
from lamina.observe.metric_keeper import MetricKeeper
from lamina.observe.metrics import Metrics
from lamina.observe.prometheus import CONTENT_TYPE, PrometheusView
from lamina.observe.trace_keeper import TraceKeeper
from lamina.observe.traces import TraceStore, XRayDaemon
from lamina.sandbox import launch
from lamina.store.database import Database
from lamina.store.metric_archive import MetricArchive
from lamina.store.telemetry import LogArchive
from lamina.store.trace_archive import TraceArchive


class Observability:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        logs: LogStore,
        counters: Counters,
        catalogue: Catalogue,
        db: Database | None = None,
        shared_gauges: Callable[[], Awaitable[Figures | None]] | None = None,
    ) -> None:
        self.metrics = Metrics(wall=clock.wall)
        self.traces = TraceStore()
        data_dir = Path(settings.data_dir).resolve()
        # Function logs kept in the store too (the cluster's database, in cluster mode).
        log_archive = LogArchive(data_dir, db)
        self.log_keeper = LogKeeper(logs, log_archive, clock)
        # Metrics and traces too: recorded in memory, written every half second.
        node = log_archive.node
        self.metric_keeper = MetricKeeper(self.metrics, MetricArchive(data_dir, node, db), clock)
        self.trace_keeper = TraceKeeper(self.traces, TraceArchive(data_dir, node, db), clock)
        # What `lamina trace export` reads:
        self.invocations = InvocationLog(data_dir / "invocations", clock=clock)
        # The engine's observer:
        self.telemetry = Telemetry(self.metrics, self.traces, self.invocations)
        self.plans = PlanPages(data_dir / "plans", self.invocations, settings)
        self.console = ConsolePages()
        # A cluster's concurrency gauges are sampled from the shared counts (cluster/gauges.py).
        self.sampler = Sampler(self.metrics, counters.sample, shared=shared_gauges)
        self.daemon = XRayDaemon(self.traces, "127.0.0.1", settings.xray_port)
        self.prometheus = PrometheusView(self.metrics)
        self.live = LiveView(catalogue, self.metrics, logs, self.traces, wall=clock.wall)
        # With auth on, plans of the server's traffic (every account's) are not served: a
        # plan is made from an account's own trace export (`lamina trace export`).
        self.plans_served = auth_mode(settings) == "off"

    def mount(self, gateway: Gateway) -> None:
        gateway.mount_page("metrics", self._prometheus)
        gateway.mount_page("console", self._console, public=True)  # static (plans: see below)
        gateway.mount_internal("live", self.live.handle)
        gateway.mount_internal("trace", self._trace)
        gateway.mount_internal("plans", self._plan_traffic)
        # Before anything starts an environment: environments are told the daemon's address.
        gateway.on_startup.insert(0, self.start)
        gateway.on_shutdown.append(self.close)

    async def start(self) -> None:
        await self.daemon.start()
        launch.set_xray_daemon_address(self.daemon.address)
        await self.sampler.start()
        await self.invocations.start()
        await self.log_keeper.start()
        await self.metric_keeper.start()
        await self.trace_keeper.start()

    async def close(self) -> None:
        await self.trace_keeper.close()
        await self.metric_keeper.close()
        await self.log_keeper.close()
        await self.plans.close()
        await self.invocations.close()
        await self.sampler.close()
        await self.daemon.close()

    async def _console(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/console/plans") and not self.plans_served:
            return _no_plans()
        if request.path.startswith("/console/plans"):
            if request.path == "/console/plans":
                return HttpResponse(302, b"", {"Location": "/console/plans/"})
            return await self.plans.page(request)
        return await self.console.handle(request)

    async def _trace(self, request: HttpRequest) -> HttpResponse:
        """GET /_lamina/trace?since=EPOCH[&until=EPOCH&account=&region=]: CSV."""
        query = {name: values[0] for name, values in request.query.items() if values}
        try:
            since = float(query.get("since", "0"))
            until = float(query["until"]) if query.get("until") else None
        except ValueError:
            message = b'{"message":"since and until are epoch seconds"}'
            return HttpResponse(400, message, {"Content-Type": "application/json"})
        account, region = query.get("account"), query.get("region")
        if request.verified:  # auth on: the signing account's invocations only
            account = request.account
        text = await asyncio.to_thread(
            lambda: "".join(self.invocations.read(since, until, account, region))
        )
        return HttpResponse(200, text.encode(), {"Content-Type": "text/csv; charset=utf-8"})

    async def _plan_traffic(self, request: HttpRequest) -> HttpResponse:
        if not self.plans_served:
            return _no_plans()
        return await self.plans.plan_traffic(request)

    async def _prometheus(self, request: HttpRequest) -> HttpResponse:
        # Auth on: the signing account's series only.
        text = self.prometheus.render(request.account if request.verified else None)
        return HttpResponse(200, text, {"Content-Type": CONTENT_TYPE})


def _no_plans() -> HttpResponse:
    message = (
        b'{"message":"Plans of the server\'s traffic (every account\'s) are not served with '
        b'--auth on: export your own trace (lamina trace export) and run lamina plan on it."}'
    )
    return HttpResponse(403, message, {"Content-Type": "application/json"})

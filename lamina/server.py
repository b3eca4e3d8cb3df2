"""Assembles Lamina: store, engine, control plane and the HTTP gateway, and serves it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import uvloop

from lamina.api import http
from lamina.api.app import Gateway
from lamina.api.auth import Authenticator, known_regions
from lamina.api.cluster_hop import HopEndpoint
from lamina.api.front import FrontDoor
from lamina.api.rest_xml import claims_s3
from lamina.api.spec import service
from lamina.api.url_guard import Verified
from lamina.api.wire import HttpRequest, HttpResponse
from lamina.clock import Clock
from lamina.cluster import wiring as cluster_wiring
from lamina.config import DEFAULT_ACCOUNT, DEFAULT_REGION, Settings, auth_mode, is_loopback
from lamina.control.accounts import AccountLimits
from lamina.control.code_links import CodeLinks
from lamina.control.concurrency import Concurrency
from lamina.control.durable.api import DurableApi
from lamina.control.durable.service import DurableExecutions
from lamina.control.event_configs import EventInvokeConfigs
from lamina.control.functions import Functions
from lamina.control.http_invoke import HttpInvoker
from lamina.control.invocations import Invocations
from lamina.control.layers import Layers
from lamina.control.mappings import MappingInvoker, Mappings
from lamina.control.policies import Policies
from lamina.control.providers import LambdaProvider
from lamina.control.provisioned import Provisioned
from lamina.control.service_invoke import ServiceInvoker
from lamina.control.url_requests import UrlRequests
from lamina.control.urls import FunctionUrls
from lamina.control.versions import Versions
from lamina.engine.async_queue import AsyncQueue
from lamina.engine.concurrency import Counters, Limits
from lamina.engine.pollers.manager import Pollers
from lamina.engine.service import Engine
from lamina.keys import FunctionKey
from lamina.observability import Observability
from lamina.observe.logs import LogStore
from lamina.sandbox import isolation, launch, runtimes
from lamina.sandbox.forkserver import ForkLauncher, ForkServer
from lamina.sandbox.launch import FunctionImage
from lamina.sandbox.sdk import minimum_python, python_sdk_dir
from lamina.services.apigatewayv2.provider import ApiGatewayV2
from lamina.services.apigatewayv2.serve import ApiRequests
from lamina.services.apigatewayv2.store import ApiStore
from lamina.services.cloudwatch.provider import CloudWatch
from lamina.services.dynamodb import poll as dynamodb_poll
from lamina.services.dynamodb.provider import DynamoDBProvider
from lamina.services.dynamodb.store import TableStore
from lamina.services.dynamodb.streams_api import StreamsProvider
from lamina.services.dynamodb.tables import Tables
from lamina.services.events.dispatch import Dispatcher
from lamina.services.events.provider import EventsProvider
from lamina.services.events.rules import Rules
from lamina.services.events.store import RuleStore
from lamina.services.kinesis import poll as kinesis_poll
from lamina.services.kinesis.provider import KinesisProvider
from lamina.services.kinesis.store import StreamStore
from lamina.services.kinesis.streams import Streams
from lamina.services.logs.provider import LogGroups
from lamina.services.s3.service import S3
from lamina.services.servicequotas.provider import ServiceQuotas
from lamina.services.sns.delivery import Deliveries
from lamina.services.sns.provider import SnsProvider
from lamina.services.sns.publish import Publisher
from lamina.services.sns.store import TopicStore
from lamina.services.sns.topics import Topics
from lamina.services.sqs import poll as sqs_poll
from lamina.services.sqs.provider import SqsProvider
from lamina.services.sqs.queues import Queues
from lamina.services.sqs.store import QueueStore
from lamina.services.xray.provider import XRay
from lamina.store.accounts import AccountStore
from lamina.store.database import open_shared
from lamina.store.durable import DurableStore
from lamina.store.events import EventStore
from lamina.store.identity import Identities, Sessions
from lamina.store.layers import LayerStore
from lamina.store.mappings import MappingStore
from lamina.store.sqlite import SqliteStore
from lamina.store.urls import UrlStore

log = logging.getLogger("lamina")

CODE_PATH = re.compile(r"/_lamina/code/([0-9a-f]{64})\.zip")


class Lamina:
    """One server's components, built in the order of the map (../shared/DESIGN.md) and
    started and stopped together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Absolute: environments resolve code and scratch paths from other working
        # directories and inside their own mount namespace.
        data_dir = Path(settings.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        clock = self.clock = Clock(settings.time_scale)

        # sandbox/: how environments start. Isolation is chosen first: it fails the start
        # when `namespaces` was asked for and cannot be had.
        runtimes.install(runtimes.configured(settings.python, settings.runtimes))
        walls = isolation.Options(
            api=(settings.host, settings.port),
            host_access=settings.host_access,
            nat_subnets=frozenset(settings.nat_subnets),
            freeze=settings.freeze,
            max_pids=settings.max_pids,
            max_memory_mb=settings.max_memory_mb,
            scratch=data_dir,
            dns=settings.dns,
        )
        self.isolation = isolation.choose(
            settings.isolation, settings.python or sys.executable, walls
        )
        isolation.install(self.isolation)
        self.launcher: launch.Launcher = (
            ForkLauncher(ForkServer(settings.python or sys.executable))
            if settings.fork_server
            else launch.SpawnLauncher()
        )
        launch.install(self.launcher)  # environments start through it
        # What python3.x environments get to call Lamina back with: the boto3 Lamina installs
        # with itself (AWS_ENDPOINT_URL is the sandbox's: isolation.Sandbox.api_endpoint).
        sdk = python_sdk_dir(data_dir)
        if sdk is not None:
            launch.set_python_sdk(str(sdk), minimum_python())
            self.isolation.binds = (*self.isolation.binds, str(sdk))

        # store/ and observe/: what everything above writes to. Cluster mode: every store
        # in the one PostgreSQL database all nodes share; otherwise SQLite files.
        self.database = open_shared(settings.database)
        db = self.database
        self.store = SqliteStore(data_dir, db)
        self.logs = LogStore()
        counters = Counters(
            Limits(
                account=settings.account_concurrency,
                floor=settings.unreserved_floor,
                burst=settings.burst,
                burst_window=settings.burst_window,
                rate_per_unit=settings.request_rate,
            )
        )
        # A cluster: counts shared with the other nodes in Redis, kept by this node's heartbeat.
        self.cluster = cluster_wiring.build(
            settings, clock, counters, self.store.all_functions, lambda: self.engine
        )
        self.observability = Observability(
            settings,
            clock,
            self.logs,
            counters,
            self.store,
            db,
            cluster_wiring.gauges(self.cluster),
        )
        self.metrics = self.observability.metrics

        # Accounts: their keys and limits (lamina accounts writes the same database), the
        # execution roles' temporary credentials, and the check every request passes.
        self.accounts = AccountStore(data_dir, db)
        self.account_limits = AccountLimits(self.accounts, counters)
        self.sessions = Sessions(settings.credential_lifetime, clock.wall)
        self.identities = Identities(self.accounts, self.sessions)
        self.identities.on_change.append(self.account_limits.sync)
        if self.cluster is not None:  # after the sync: Redis gets the limits it applied
            self.identities.on_change.append(self.cluster.counting.refresh_limits_soon)
        self.auth_mode = auth_mode(settings)
        self.authenticator = Authenticator(
            self.auth_mode,
            self.identities.lookup,
            frozenset(settings.regions) if settings.regions else known_regions(),
            clock.wall,
            refresh=self.identities.refresh,
        )
        self.code_links = CodeLinks(self.accounts.link_key, clock.wall)
        # A cluster: invocations go to idle environments on other nodes, over signed hops.
        self.placement = cluster_wiring.placement(
            self.cluster, settings, self.accounts.link_key, lambda: self.engine
        )
        # A cluster: provisioned environments shared among the live nodes.
        self.spread = cluster_wiring.spread(self.cluster, lambda: self.engine)

        # engine/: the invoke path, the async queue.
        self.engine = Engine(
            data_dir / "environments",
            clock,
            settings.keep_alive,
            self.logs,
            counters,
            settings.python,
            observer=self.observability.telemetry,
            identity=self._identity,
            shared=self.cluster.counting if self.cluster is not None else None,
            placement=self.placement,
            spread=self.spread,
        )
        self.events = EventStore(data_dir, db)
        self.async_queue = AsyncQueue(self.engine, self.events, clock, recorder=self.metrics)

        # services/: every AWS service other than Lambda.
        self.queues = Queues(QueueStore(data_dir, db), clock)
        self.streams = Streams(StreamStore(data_dir, db), clock)
        self.tables = Tables(TableStore(data_dir, db), clock)
        objects = Path(settings.s3_objects).resolve() if settings.s3_objects else None
        self.s3 = S3(data_dir, db, clock, objects)  # objects on disk; code from a bucket

        # control/: Lambda's own resources.
        # With auth on, Code.Location links are signed and expire, as AWS's presigned ones.
        signed = self.code_links if self.auth_mode == "on" else None
        self.layers = Layers(LayerStore(data_dir, db), self.store, signed, self.s3.code)
        self.functions = Functions(
            self.store, self.engine, self.layers, signed, code_source=self.s3.code
        )
        self.durable = DurableExecutions(
            DurableStore(data_dir, db), self.functions, self.engine, clock
        )
        self.durable_api = DurableApi(self.durable, self.functions)
        self.invocations = Invocations(
            self.functions, self.engine, self.async_queue, durable=self.durable_api
        )
        self.concurrency = Concurrency(self.functions)  # reservations before provisioning
        self.provisioned = Provisioned(self.functions)
        if self.cluster is not None:  # configs put through other nodes are kept here too
            self.store.on_remote_write.append(self.provisioned.written_elsewhere)
        self.versions = Versions(self.functions, self.provisioned)

        # Event source mappings: the records are control's, the pollers the engine's; the
        # pollers see sources and functions only through engine/pollers/sources.py.
        queue_source = sqs_poll.QueueSource(self.queues)
        self.mapping_store = MappingStore(data_dir, db)
        self.pollers = Pollers(
            queue_source,
            {
                "kinesis": kinesis_poll.StreamSource(self.streams),
                "dynamodb": dynamodb_poll.StreamSource(self.tables),
            },
            MappingInvoker(self.functions, self.invocations, self.engine),
            self.mapping_store,
            clock,
            recorder=self.metrics,
        )
        self.mappings = Mappings(self.mapping_store, self.functions, self.pollers, queue_source)
        self.functions.on_delete.append(self.mappings.forget_function)

        # HTTP in front of functions: function URLs (Lambda's own) and HTTP APIs (a
        # service reaching Lambda through the HTTP invoker, as AWS's services do).
        self.urls = FunctionUrls(self.functions, UrlStore(data_dir, db))
        self.functions.on_delete.append(self.urls.forget_function)
        self.versions.on_alias_delete.append(self.urls.forget_alias)
        self.policies = Policies(self.functions)  # who else may call a function
        # How other services (S3, SNS, EventBridge) hand functions their events.
        self.service_invoker = ServiceInvoker(self.functions, self.invocations, self.policies)
        self.http_invoker = HttpInvoker(
            self.functions, self.engine, self.invocations.streamed, access=self.policies
        )
        self.api_store = ApiStore(data_dir, db)
        self.api_requests = ApiRequests(self.api_store, self.http_invoker, clock)

        # SNS and EventBridge deliver through the interfaces of lamina/deliveries.py.
        targets = (self.service_invoker, self.queues)  # functions, queues
        self.topic_store = TopicStore(data_dir, db)
        self.topics = Topics(self.topic_store, clock)
        self.sns_deliveries = Deliveries(
            self.topics, self.topic_store, clock, *targets, metrics=self.metrics
        )
        self.publisher = Publisher(self.topics, self.sns_deliveries, clock)
        self.rule_store = RuleStore(data_dir, db)
        self.rules = Rules(self.rule_store)
        self.event_dispatch = Dispatcher(
            self.rules, clock, *targets, self.publisher, metrics=self.metrics
        )
        # S3's notifications, delivered the same way (and to EventBridge's default bus).
        self.s3_notifier = self.s3.notifier(*targets, self.publisher, self.event_dispatch)
        # Async invocations' outcomes: to destinations (queues, functions, topics, buses)
        # and dead-letter queues or topics.
        self.event_configs = EventInvokeConfigs(
            self.functions, self.async_queue, sqs=self.queues, recorder=self.metrics,
            sns=self.publisher, buses=self.event_dispatch,
        )  # fmt: skip

        # api/: one endpoint for every service.
        self.gateway = Gateway(self.authenticator)
        self.gateway.mount(
            service("lambda"),
            LambdaProvider(
                self.functions,
                self.invocations,
                self.concurrency,
                self.versions,
                self.provisioned,
                self.event_configs,
                mappings=self.mappings,
                layers=self.layers,
                urls=self.urls,
                durable=self.durable_api,
                policies=self.policies,
            ),
        )
        self.gateway.mount(
            service("service-quotas"),
            ServiceQuotas(
                self.accounts,
                counters,
                self.account_limits.set_concurrency,
                settings.max_account_concurrency,
            ),
        )
        self.gateway.mount(service("sqs"), SqsProvider(self.queues, clock))
        self.gateway.mount(service("sns"), SnsProvider(self.topics, self.publisher, clock))
        self.gateway.mount(
            service("events"), EventsProvider(self.rules, self.event_dispatch, clock)
        )
        self.gateway.mount(service("kinesis"), KinesisProvider(self.streams, clock))
        self.gateway.mount(service("dynamodb"), DynamoDBProvider(self.tables, clock))
        self.gateway.mount(service("dynamodbstreams"), StreamsProvider(self.tables, clock))
        self.gateway.mount(service("cloudwatch"), CloudWatch(self.metrics))
        self.gateway.mount(service("logs"), LogGroups(self.logs))
        self.gateway.mount(service("xray"), XRay(self.observability.traces))
        self.gateway.mount(service("apigatewayv2"), ApiGatewayV2(self.api_store))
        s3 = self.s3.provider(self.service_invoker, self.queues, self.publisher)
        self.gateway.mount(service("s3"), s3, claims=claims_s3)
        self.gateway.front = FrontDoor(
            UrlRequests(self.urls, self.http_invoker, Verified(self.authenticator), clock),
            self.api_requests,
        )
        self.gateway.mount_internal("health", self._health, public=True)
        self.gateway.mount_internal("code", self._code, public=True)  # links carry an HMAC
        self.gateway.mount_internal("logs", self._logs)
        self.gateway.mount_internal("stats", self._stats)
        self.gateway.mount_internal("cluster", self._cluster)
        self.gateway.mount_internal("dynamodb", self._dynamodb)
        if self.placement is not None:  # signed by the cluster's key, checked there
            hops = HopEndpoint(self.placement.owner)
            self.gateway.mount_internal("forward", hops.serve, public=True)
        self.observability.mount(self.gateway)  # /metrics, the console, the live view

        # Started in this order (the observability block first: environments are told
        # the X-Ray daemon's address; the cluster's heartbeat before anything invokes),
        # stopped by close().
        if self.cluster is not None:
            self.gateway.on_startup.insert(0, self.cluster.start)
        self.gateway.on_startup.append(self._listen)  # cluster: other nodes' writes
        self.gateway.on_startup.append(self.event_configs.start)
        self.gateway.on_startup.append(self.provisioned.start)
        self.gateway.on_startup.append(self.launcher.start)
        self.gateway.on_startup.append(self.durable.start)  # resumes running executions
        self.gateway.on_startup.append(self.sns_deliveries.start)  # HTTP/S deliveries go on
        self.gateway.on_startup.append(self.s3.store.start)  # files a crash left go
        self.gateway.on_startup.append(self.s3_notifier.start)
        self.gateway.on_startup.append(self.event_dispatch.start)  # schedules (missed: once)
        self.gateway.on_startup.append(self.mappings.start)  # pollers last: all else is up
        self.gateway.on_shutdown.insert(0, self.close)

    def _identity(self, key: FunctionKey, image: FunctionImage) -> tuple[dict[str, str], float]:
        """Temporary credentials of the function's execution role for a new environment."""
        credential = self.sessions.issue(key.account, image.role, key.name)
        assert credential.token is not None and credential.expires is not None
        variables = {
            "AWS_ACCESS_KEY_ID": credential.access_key,
            "AWS_SECRET_ACCESS_KEY": credential.secret,
            "AWS_SESSION_TOKEN": credential.token,
        }
        return variables, credential.expires

    async def load_backlog(self) -> None:
        """Asynchronous events a previous run left are read once everything else started."""
        self.async_queue.load_backlog()

    async def _listen(self) -> None:
        """Cluster mode: a record another node wrote leaves this node's caches."""
        loop = asyncio.get_running_loop()

        def deliver(fn: Callable[[], None]) -> None:
            loop.call_soon_threadsafe(fn)

        self.store.listen(deliver)
        self.queues.listen(deliver)
        self.streams.listen(deliver)
        self.tables.listen(deliver)
        self.mappings.announcer.listen(deliver)
        self.urls.store.listen(deliver)
        self.api_store.listen(deliver)
        self.topics.listen(deliver)
        self.rules.listen(deliver)

    async def close(self) -> None:
        await self.pollers.close()  # pollers first: they invoke through the engine
        await self.durable.close()  # executions stay on disk, resumed at the next start
        await self.event_dispatch.close()  # schedules stop; rules stay on disk
        await self.sns_deliveries.close()  # undelivered HTTP/S messages stay on disk
        await self.s3_notifier.close()  # undelivered notifications stay in the outbox
        await self.async_queue.close()  # unfinished events stay on disk for the next start
        self.events.close()
        await self.api_requests.close()
        await self.invocations.streamed.close()
        await self.functions.close()
        await self.engine.close()
        await self.launcher.close()  # after the environments it started are gone
        self.isolation.close()  # their cgroups went with them; now the server's own
        self.mapping_store.close()
        self.queues.store.close()
        self.topic_store.close()
        self.rule_store.close()
        self.streams.store.close()
        self.tables.store.close()
        self.durable.store.close()
        self.store.close()
        self.layers.layers.close()
        self.urls.store.close()
        self.api_store.close()
        self.s3.store.close()
        self.accounts.close()
        if self.database is not None:
            self.database.shutdown()
        if self.placement is not None:
            await self.placement.close()  # its registry entries go; before Redis's client
        if self.cluster is not None:
            await self.cluster.close()  # last: its leases are all released by now

    async def _health(self, request: HttpRequest) -> HttpResponse:
        body = {"status": "ok"}
        return HttpResponse(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    async def _cluster(self, request: HttpRequest) -> HttpResponse:
        """GET /_lamina/cluster: the cluster's nodes, their environments and leases."""
        account = request.account if request.verified else None  # auth on: its own only
        body = await cluster_wiring.answer(self.cluster, account)
        return HttpResponse(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    async def _stats(self, request: HttpRequest) -> HttpResponse:
        concurrency = self.engine.counters.stats()
        if self.cluster is not None:
            from lamina.engine.counting import CountingUnavailable

            with contextlib.suppress(CountingUnavailable):  # else this node's own view
                concurrency = await self.cluster.counting.stats()
        mappings = self.pollers.stats_view()
        if request.verified:  # auth on: the caller's own account only
            concurrency = [c for c in concurrency if c["Account"] == request.account]
            mappings = {
                uuid_: figures
                for uuid_, figures in mappings.items()
                if self.mappings.account_of(uuid_) == request.account
            }
        body = {"concurrency": concurrency, "mappings": mappings, "durable": self.durable.stats()}
        return HttpResponse(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    async def _dynamodb(self, request: HttpRequest) -> HttpResponse:
        """POST /_lamina/dynamodb/handover?table=NAME[&region=R]: the table's stream shards
        close and children take over (the shard handover AWS does as partitions split)."""
        region = request.query.get("region", [DEFAULT_REGION])[0]
        name = request.query.get("table", [""])[0]
        table = self.tables.table(request.account or DEFAULT_ACCOUNT, region, name)
        if request.method != "POST" or not request.path.endswith("/handover"):
            return HttpResponse(404, b"Not found")
        if table is None or table.stream is None:
            return HttpResponse(404, f"No table {name} with a stream in {region}".encode())
        stream = self.tables.handover(table)
        assert stream is not None
        body = {"StreamArn": stream.arn, "OpenShards": [s.id for s in stream.open_shards()]}
        return HttpResponse(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    async def _code(self, request: HttpRequest) -> HttpResponse:
        found = CODE_PATH.fullmatch(request.path)
        if found and self.auth_mode == "on":
            expires = request.query.get("X-Lamina-Expires", [""])[0]
            signature = request.query.get("X-Lamina-Signature", [""])[0]
            if not self.code_links.valid(found.group(1), expires, signature):
                body = b'{"message":"The code link is not valid, or it has expired."}'
                return HttpResponse(403, body, {"Content-Type": "application/json"})
        path = self.store.code_zip(found.group(1)) if found else None
        if path is None or not path.is_file():
            return HttpResponse(404, b"Not found")
        blob = await asyncio.to_thread(path.read_bytes)
        return HttpResponse(200, blob, {"Content-Type": "application/zip"})

    async def _logs(self, request: HttpRequest) -> HttpResponse | AsyncIterator[bytes]:
        # /_lamina/logs/<name>[?follow=1&region=...&after=N]
        name = request.path.rsplit("/", 1)[-1]
        region = request.query.get("region", [DEFAULT_REGION])[0]
        key = FunctionKey(request.account or DEFAULT_ACCOUNT, region, name)
        text = request.query.get("after", ["0"])[0] or "0"
        if not text.isdigit():
            message = {"message": f"after must be a line number, not {text[:64]!r}"}
            return HttpResponse(
                400, json.dumps(message).encode(), {"Content-Type": "application/json"}
            )
        after = int(text)
        if request.query.get("follow", ["0"])[0] in ("1", "true"):
            return self._follow(key, after)
        lines = self.logs.read(key, after)
        text = "".join(_format(line.timestamp, line.text) for line in lines)
        return HttpResponse(200, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})

    async def _follow(self, key: FunctionKey, after: int) -> AsyncIterator[bytes]:
        async for line in self.logs.follow(key, after):
            yield _format(line.timestamp, line.text).encode()


def _format(timestamp: float, text: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{stamp}.{int(timestamp * 1000) % 1000:03d}Z {text}\n"


async def _settle_heap() -> None:
    """What startup loaded (service models, modules) lives as long as the server: keep the
    cyclic collector off it, so that a full collection does not stall every request in
    flight for tens of milliseconds (it did, at the overload benchmark's p99)."""
    gc.collect()
    gc.freeze()


def run(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; then stop every environment and exit."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    descriptors = http.raise_descriptor_limit()  # each connection and environment takes some
    try:
        lamina = Lamina(settings)
    except isolation.IsolationUnavailable as exc:
        log.error("%s (lamina doctor explains)", exc)
        raise SystemExit(2) from exc
    lamina.gateway.on_startup.append(_settle_heap)  # everything is loaded by then
    lamina.gateway.on_startup.append(lamina.load_backlog)  # last: what a previous run left
    ceiling = http.connection_ceiling(descriptors)
    limits = http.Limits(
        max_connections=min(settings.max_connections or ceiling, ceiling),
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
    )
    uvloop.run(_serve(lamina, settings, limits))


async def _serve(lamina: Lamina, settings: Settings, limits: http.Limits) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    spool = Path(settings.data_dir).resolve() / "spool"  # large request bodies as they arrive
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(parents=True, exist_ok=True)
    server = http.HttpServer(lamina.gateway.handle, limits, str(spool))
    try:
        await lamina.gateway.startup()
    except Exception:
        log.exception("startup failed")
        await lamina.gateway.shutdown()
        raise SystemExit(3) from None
    try:
        await server.start(settings.host, settings.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        await lamina.gateway.shutdown()
        raise SystemExit(1) from exc
    log.info(
        "Lamina listening on http://%s:%d (data in %s; environments: %s; at most %d connections)",
        settings.host,
        settings.port,
        settings.data_dir,
        "forked from a fork server" if settings.fork_server else "plain processes",
        limits.max_connections,
    )
    log.info("%s", lamina.isolation.describe())
    log.info("auth: %s (%s)", lamina.auth_mode, "SigV4 verified" if lamina.auth_mode == "on"
             else "nothing verified; the access key id names the account")  # fmt: skip
    if lamina.auth_mode == "off" and not is_loopback(settings.host):
        log.warning(
            "auth is off on %s, a non-loopback address: anyone who reaches it can do anything",
            settings.host,
        )
    await stop.wait()
    log.info("stopping")
    await server.stop()  # requests in flight get a few seconds
    await lamina.gateway.shutdown()  # environments stop: invocations still running end
    await server.drain(2.0)  # and are answered
    await server.close()

"""Tenant isolation mode: TenancyConfig PER_TENANT, Invoke's TenantId; an environment
serves one tenant, ever; the tenant id reaches the context object."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.helpers import Server, python_function

TENANT = """
import time, uuid
DRAWN = uuid.uuid4().hex  # at init: one per environment
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"init": DRAWN, "tenant": context.tenant_id}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("tenancy") / "data", args=["--request-rate", "0"]
    ).start()
    yield running
    running.stop()


def test_three_tenants_never_share_an_environment(server: Server) -> None:
    lam = server.client(max_pool_connections=30)
    made = python_function(
        lam, "per-tenant", TENANT, TenancyConfig={"TenantIsolationMode": "PER_TENANT"}
    )
    assert made["TenancyConfig"] == {"TenantIsolationMode": "PER_TENANT"}
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def call(tenant: str, sleep: float) -> None:
        answer = lam.invoke(
            FunctionName="per-tenant", TenantId=tenant, Payload=json.dumps({"sleep": sleep})
        )
        with lock:
            seen.append(json.load(answer["Payload"]))

    for round_ in range(2):  # concurrently, then again on warm environments
        threads = [
            threading.Thread(target=call, args=(tenant, 0.5 if round_ == 0 else 0))
            for tenant in ("blue", "green", "red")
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(seen) == 18
    owners: dict[str, set[str]] = {}
    for answer in seen:
        owners.setdefault(answer["init"], set()).add(answer["tenant"])
    assert all(len(tenants) == 1 for tenants in owners.values()), owners
    assert {t for tenants in owners.values() for t in tenants} == {"blue", "green", "red"}


MISSING_TENANT = (
    "The invoked function is enabled with tenancy configuration. Add a valid tenant ID in your "
    "request and try again."
)


def test_a_missing_or_unexpected_tenant_id_is_refused(server: Server) -> None:
    lam = server.client()
    python_function(
        lam, "needs-tenant", TENANT, TenancyConfig={"TenantIsolationMode": "PER_TENANT"}
    )
    python_function(lam, "no-tenants", TENANT)
    with pytest.raises(ClientError) as missing:
        lam.invoke(FunctionName="needs-tenant", Payload=b"{}")
    assert missing.value.response["Error"] == {
        "Code": "InvalidParameterValueException",
        "Message": MISSING_TENANT,  # AWS's, as its documentation shows it
    }
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as unexpected:
        lam.invoke(FunctionName="no-tenants", TenantId="blue", Payload=b"{}")
    assert unexpected.value.response["Error"]["Code"] == "InvalidParameterValueException"
    answer = json.load(lam.invoke(FunctionName="no-tenants", Payload=b"{}")["Payload"])
    assert answer["tenant"] is None


JSON_LOGGER = """
import logging, time, uuid
DRAWN = uuid.uuid4().hex
log = logging.getLogger("app")
def handler(event, context):
    log.info("working for %s", context.tenant_id)
    log.debug("not shown at INFO")
    return {"init": DRAWN, "tenant": context.tenant_id}
"""


def log_records(server: Server, name: str, wanted: int, timeout: float = 30) -> list[Any]:
    """The JSON records of the function's log (its platform events and log records)."""
    logs = server.client("logs")
    deadline = time.monotonic() + timeout
    while True:
        events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}").get("events", [])
        records = [json.loads(e["message"]) for e in events if e["message"].startswith("{")]
        if len([r for r in records if r.get("type") == "platform.report"]) >= wanted:
            return records
        assert time.monotonic() < deadline, records
        time.sleep(0.1)


def test_the_tenant_reaches_async_invokes_and_the_json_logs(server: Server) -> None:
    lam = server.client()
    python_function(
        lam,
        "tenant-logs",
        JSON_LOGGER,
        TenancyConfig={"TenantIsolationMode": "PER_TENANT"},
        LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "INFO"},
    )
    answer = json.load(lam.invoke(FunctionName="tenant-logs", TenantId="blue")["Payload"])
    assert answer["tenant"] == "blue"
    # An asynchronous invoke carries its tenant to the environment that runs it.
    accepted = lam.invoke(FunctionName="tenant-logs", TenantId="green", InvocationType="Event")
    assert accepted["StatusCode"] == 202
    records = log_records(server, "tenant-logs", 2)
    starts = [r for r in records if r.get("type") == "platform.start"]
    reports = [r for r in records if r.get("type") == "platform.report"]
    lines = [r for r in records if r.get("logger") == "app"]
    assert sorted(r["record"]["tenantId"] for r in starts) == ["blue", "green"]
    assert sorted(r["record"]["tenantId"] for r in reports) == ["blue", "green"]
    assert all(r["record"]["status"] == "success" for r in reports)
    assert all(
        {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"}
        <= set(r["record"]["metrics"])
        for r in reports
    )  # two tenants, two environments: both cold
    by_tenant = {r["tenantId"]: r for r in lines}
    assert set(by_tenant) == {"blue", "green"}
    for tenant, line in by_tenant.items():
        assert line["message"] == f"working for {tenant}"
        assert line["level"] == "INFO"
        assert line["requestId"] in {r["record"]["requestId"] for r in starts}
    assert not any("not shown" in str(r) for r in records)  # DEBUG is below INFO
    # The legacy InvokeAsync cannot name a tenant: refused as a missing one.
    with pytest.raises(ClientError) as legacy:
        lam.invoke_async(FunctionName="tenant-logs", InvokeArgs=b"{}")
    assert legacy.value.response["Error"]["Message"] == MISSING_TENANT


def test_provisioned_concurrency_and_mappings_are_refused_for_tenant_functions(
    server: Server,
) -> None:
    lam = server.client()
    python_function(
        lam,
        "tenant-limits",
        TENANT,
        Publish=True,
        TenancyConfig={"TenantIsolationMode": "PER_TENANT"},
    )
    with pytest.raises(ClientError) as provisioned:
        lam.put_provisioned_concurrency_config(
            FunctionName="tenant-limits", Qualifier="1", ProvisionedConcurrentExecutions=1
        )
    assert provisioned.value.response["Error"] == {
        "Code": "InvalidParameterValueException",
        "Message": "Provisioned Concurrency is not supported for functions with tenant "
        "isolation mode (TenancyConfig) enabled.",
    }
    queue = server.client("sqs").create_queue(QueueName="tenant-source")["QueueUrl"]
    arn = f"arn:aws:sqs:us-east-1:000000000000:{queue.rsplit('/', 1)[1]}"
    with pytest.raises(ClientError) as mapping:
        lam.create_event_source_mapping(FunctionName="tenant-limits", EventSourceArn=arn)
    assert mapping.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "tenant isolation mode" in mapping.value.response["Error"]["Message"]


def test_a_function_url_is_refused_for_a_tenant_function(server: Server) -> None:
    lam = server.client()
    python_function(lam, "tenant-url", TENANT, TenancyConfig={"TenantIsolationMode": "PER_TENANT"})
    with pytest.raises(ClientError) as refused:
        lam.create_function_url_config(FunctionName="tenant-url", AuthType="NONE")
    assert refused.value.response["Error"] == {
        "Code": "InvalidParameterValueException",
        "Message": "Function URLs are not supported for functions with tenant isolation mode "
        "(TenancyConfig) enabled.",
    }

"""Lambda's concurrent executions quota through boto3's `service-quotas` client: an increase
within --max-account-concurrency is applied live; a larger one waits for `lamina accounts
approve`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_accounts import HOLD, overload
from tests.helpers import Server, python_function

QUOTA = {"ServiceCode": "lambda", "QuotaCode": "L-B99A9384"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("quotas") / "data",
        args=["--auth", "on", "--isolation", "none", "--request-rate", "0",
              "--max-account-concurrency", "50"],
    ).start()  # fmt: skip
    yield running
    running.stop()


def test_an_increase_within_the_maximum_applies_live_and_a_larger_one_waits(
    server: Server,
) -> None:
    account, keys = server.new_account("growing", "--concurrency", "5")
    quotas = server.client("service-quotas", credentials=keys)
    lam = server.client(credentials=keys, max_pool_connections=30)
    quota = quotas.get_service_quota(**QUOTA)["Quota"]
    assert (quota["Value"], quota["QuotaName"], quota["Adjustable"]) == (
        5.0, "Concurrent executions", True)  # fmt: skip
    assert quota["QuotaArn"] == f"arn:aws:servicequotas:us-east-1:{account}:lambda/L-B99A9384"
    assert quotas.get_aws_default_service_quota(**QUOTA)["Quota"]["Value"] == 1000.0
    python_function(lam, "grows", HOLD)
    assert overload(lam, "grows", 12, 2) == {"ok": 5, "ConcurrentInvocationLimitExceeded": 7}
    approved = quotas.request_service_quota_increase(**QUOTA, DesiredValue=12)["RequestedQuota"]
    assert approved["Status"] == "APPROVED"
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 12
    assert overload(lam, "grows", 12, 2) == {"ok": 12}  # above the old limit, now runs
    pending = quotas.request_service_quota_increase(**QUOTA, DesiredValue=80)["RequestedQuota"]
    assert pending["Status"] == "PENDING"
    assert quotas.get_service_quota(**QUOTA)["Quota"]["Value"] == 12.0
    with pytest.raises(ClientError) as lower:
        quotas.request_service_quota_increase(**QUOTA, DesiredValue=3)
    assert lower.value.response["Error"]["Code"] == "IllegalArgumentException"
    history = quotas.list_requested_service_quota_change_history_by_quota(**QUOTA)
    assert [(r["DesiredValue"], r["Status"]) for r in history["RequestedQuotas"]] == [
        (12.0, "APPROVED"), (80.0, "PENDING")]  # fmt: skip
    assert server.accounts("approve", pending["Id"])["Request"]["Status"] == "APPROVED"
    deadline = time.monotonic() + 5
    while quotas.get_service_quota(**QUOTA)["Quota"]["Value"] != 80.0:
        assert time.monotonic() < deadline, "the approval was not applied"
        time.sleep(0.1)
    assert lam.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 80
    statuses = quotas.list_requested_service_quota_change_history(ServiceCode="lambda")
    assert [r["Status"] for r in statuses["RequestedQuotas"]] == ["APPROVED", "APPROVED"]
    with pytest.raises(ClientError) as unknown:
        quotas.get_service_quota(ServiceCode="lambda", QuotaCode="L-NOPE")
    assert unknown.value.response["Error"]["Code"] == "NoSuchResourceException"


def test_the_quota_is_regional(server: Server) -> None:
    """An increase applies to the region it was asked in; set-limits --region sets one
    region's limit; every other region keeps the account's own."""
    account, keys = server.new_account("regional", "--concurrency", "6")
    east = server.client("service-quotas", credentials=keys)
    west = server.client("service-quotas", region="eu-west-1", credentials=keys)
    lam_east = server.client(credentials=keys)
    lam_west = server.client(region="eu-west-1", credentials=keys, max_pool_connections=30)
    approved = east.request_service_quota_increase(**QUOTA, DesiredValue=9)["RequestedQuota"]
    assert approved["Status"] == "APPROVED"
    assert approved["QuotaArn"] == f"arn:aws:servicequotas:us-east-1:{account}:lambda/L-B99A9384"
    assert east.get_service_quota(**QUOTA)["Quota"]["Value"] == 9.0
    assert west.get_service_quota(**QUOTA)["Quota"]["Value"] == 6.0
    assert lam_east.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 9
    assert lam_west.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 6
    assert (
        west.list_requested_service_quota_change_history(ServiceCode="lambda")["RequestedQuotas"]
        == []
    )
    python_function(lam_west, "west", HOLD)
    assert overload(lam_west, "west", 8, 2) == {"ok": 6, "ConcurrentInvocationLimitExceeded": 2}
    limits = server.accounts(
        "set-limits", "regional", "--concurrency", "8", "--region", "eu-west-1"
    )
    assert limits["Region"] == "eu-west-1" and limits["ConcurrentExecutions"] == 8
    deadline = time.monotonic() + 5
    while lam_west.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] != 8:
        assert time.monotonic() < deadline, "the region's limit was not applied"
        time.sleep(0.1)
    assert overload(lam_west, "west", 8, 2) == {"ok": 8}
    assert lam_east.get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 9
    listed = {a["Name"]: a for a in server.accounts("list")["Accounts"]}["regional"]
    assert listed["ConcurrentExecutions"] == 6
    assert listed["Regions"] == {
        "us-east-1": {"ConcurrentExecutions": 9, "UnreservedFloor": None},
        "eu-west-1": {"ConcurrentExecutions": 8, "UnreservedFloor": None},
    }

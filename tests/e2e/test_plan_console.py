"""What a server records for the planner (`lamina trace export`), plans of its own traffic
served by the console (the HTML page rendered in headless Chromium), and the console's
live chart scaled to the data with its limits labelled."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_console import browser, pixels_like, wait_refresh  # noqa: F401 - fixture
from tests.helpers import Server, python_function

SLEEPER = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return event
"""
BLUE = (37, 99, 235)
ORANGE = (234, 88, 12)
RED = (220, 38, 38)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [
        "--account-concurrency",
        "1000",
        "--unreserved-floor",
        "100",
        "--request-rate",
        "0",
        "--isolation",
        "none",
    ]
    running = Server(tmp_path_factory.mktemp("plan-console") / "data", args=args).start()
    lam = running.client()
    python_function(lam, "rec", SLEEPER)
    python_function(lam, "free", SLEEPER)
    lam.put_function_concurrency(FunctionName="rec", ReservedConcurrentExecutions=12)
    yield running
    running.stop()


def invoke_together(server: Server, name: str, count: int, sleep: float) -> list[str]:
    clients = [server.client() for _ in range(count)]

    def one(index: int) -> str:
        try:
            clients[index].invoke(FunctionName=name, Payload=json.dumps({"sleep": sleep}).encode())
            return "ok"
        except ClientError as error:
            return str(error.response["Error"]["Code"])

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_trace_export_has_every_invocation_throttles_included(
    server: Server, tmp_path: Path
) -> None:
    started = time.time()
    outcomes = invoke_together(server, "rec", 16, 1.0)  # 16 at once, 12 reserved
    assert outcomes.count("ok") == 12 and outcomes.count("TooManyRequestsException") == 4
    server.client().invoke(FunctionName="free", InvocationType="Event", Payload=b'{"sleep": 0}')
    deadline = time.monotonic() + 20
    rows: list[dict[str, str]] = []
    out = tmp_path / "export.csv"
    while time.monotonic() < deadline:
        shown = subprocess.run(
            [
                sys.executable,
                "-m",
                "lamina.cli",
                "trace",
                "export",
                "--since",
                "5m",
                "--endpoint",
                server.endpoint,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        if any(row["type"] == "Event" and row["outcome"] == "Success" for row in rows):
            break
        time.sleep(0.3)
    mine = [row for row in rows if row["function"] == "rec"]
    assert len(mine) == 16
    throttled = [row for row in mine if row["outcome"] == "Throttled"]
    assert len(throttled) == 4
    assert {row["reason"] for row in throttled} == {
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    }
    ran = [row for row in mine if row["outcome"] == "Success"]
    assert all(float(row["duration_ms"]) >= 1000 for row in ran)
    assert sum(1 for row in ran if row["init_ms"]) == 12  # each started its environment
    assert all(row["memory_mb"] == "128" and row["account"] == "000000000000" for row in mine)
    assert all(started - 1 <= float(row["timestamp"]) <= time.time() for row in mine)
    assert any(row["function"] == "free" and row["type"] == "Event" for row in rows)
    # The export replays: the planner sees the 16 offered and throttles the same 4.
    settings = tmp_path / "settings.yaml"
    settings.write_text("functions: {rec: {reserved: 12}}\ndefaults: {init_ms: 5}\n")
    planned = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamina.cli",
            "plan",
            str(out),
            "--settings",
            str(settings),
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert planned.returncode == 0, planned.stderr
    report = json.loads(planned.stdout)
    rec = next(f for f in report["functions"] if f["function"] == "rec")
    assert rec["invocations"] == 16 and rec["throttled"] == 4
    assert rec["throttles"] == {"ReservedFunctionConcurrentInvocationLimitExceeded": 4}
    # Bad requests get a clear answer.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.endpoint}/_lamina/trace?since=yesterday", timeout=10)
    assert refused.value.code == 400
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "lamina.cli",
            "trace",
            "export",
            "--since",
            "soon",
            "--endpoint",
            server.endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 2 and "is not a time" in shown.stderr


def test_the_console_plans_the_server_traffic_and_shows_the_page(
    server: Server,
    browser: Any,  # noqa: F811 - the fixture
) -> None:
    invoke_together(server, "rec", 16, 0.5)
    request = urllib.request.Request(
        f"{server.endpoint}/_lamina/plans",
        method="POST",
        data=json.dumps({"since": 300, "settings": "functions: {rec: {reserved: 12}}\n"}).encode(),
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        planned = json.loads(answer.read())
    assert planned["url"].startswith("/console/plans/traffic-")
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.endpoint + planned["url"])
    page.wait_for_selector("body[data-plan=ready]")
    assert page.locator("svg.chart").count() >= 2  # the account and each function
    reserved = page.locator('svg.chart line.limit[data-limit="Reserved"]')
    assert reserved.count() == 1 and reserved.get_attribute("data-value") == "12"
    assert page.locator('svg.chart [data-limit="Account limit"].limit-above').count() >= 1
    assert page.locator("svg.chart polyline.series").count() >= 2
    shot = page.screenshot(full_page=True)
    assert pixels_like(shot, BLUE), "the concurrency curves are drawn"
    assert pixels_like(shot, ORANGE), "the reservation line is drawn"
    figures = page.locator("#figures").inner_text()
    assert "rec" in figures and "ReservedFunctionConcurrentInvocationLimitExceeded" in figures
    png = urllib.request.urlopen(
        server.endpoint + planned["url"].replace("report.html", "concurrency.png"), timeout=10
    )
    assert png.headers["Content-Type"] == "image/png" and png.read(8) == b"\x89PNG\r\n\x1a\n"
    page.goto(server.endpoint + "/console/plans/")
    assert planned["plan"] in page.locator("table").inner_text()
    assert errors == []
    page.close()
    for path, status in (
        ("/console/plans/../../etc/passwd", 404),
        ("/console/plans/x/secret.txt", 404),
    ):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.endpoint + path, timeout=10)
        assert missing.value.code == status


def test_the_live_chart_is_scaled_to_the_data_with_the_limits_labelled(
    server: Server,
    browser: Any,  # noqa: F811 - the fixture
) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.goto(server.endpoint + "/console/?function=free")
    page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=10_000)
    stop = threading.Event()

    def load() -> None:  # about 6 in flight for a while
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            invoke_together(server, "free", 6, 1.0)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        chart = page.locator("#chart-concurrency")
        deadline = time.monotonic() + 12
        top = 0.0
        while time.monotonic() < deadline:
            wait_refresh(page)
            top = float(chart.get_attribute("data-y-top") or 0)
            if top >= 5:
                break
        shot = chart.locator("canvas").screenshot()
    finally:
        stop.set()
        worker.join(30)
    # 6 in flight under an account of 1,000: the axis fits 6, not 1,000.
    assert 5 <= top <= 12, top
    assert chart.get_attribute("data-limits-above") == "Unreserved pool,Account limit"
    blue = pixels_like(shot, BLUE)
    assert blue, "the concurrency line is drawn"
    height = page.locator("#chart-concurrency canvas").bounding_box()["height"]
    assert min(y for _, y in blue) < height * 0.5, "and rises over half the chart"
    assert pixels_like(shot, RED), "the account limit is marked at the top edge"
    # A reserved function near its limit: the reservation is a line in scale.
    invoke_together(server, "rec", 12, 0.5)
    page.goto(server.endpoint + "/console/?function=rec")
    page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=10_000)
    wait_refresh(page)
    assert chart.get_attribute("data-limits-shown") == "Reserved"
    assert 12 <= float(chart.get_attribute("data-y-top") or 0) <= 15
    assert pixels_like(chart.locator("canvas").screenshot(), ORANGE)
    page.close()

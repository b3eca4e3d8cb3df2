"""The web console end to end in headless Chromium (Debian's, driven by Playwright): the
function table with its settings, a live chart that draws while load runs (checked on
screenshots), cards, recent logs and traces of a function."""

from __future__ import annotations

import http.client
import io
import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from tests.helpers import PYTHON_RUNTIME, Server, python_function

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SERIES_BLUE = (37, 99, 235)  # "Concurrent executions" in console.js
RESERVED_ORANGE = (234, 88, 12)  # the reservation line
LOAD = """
import time
def handler(event, context):
    print("load", event.get("n"))
    time.sleep(event.get("sleep", 0))
    return event
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--account-concurrency", "10", "--unreserved-floor", "2", "--request-rate", "0"]
    running = Server(tmp_path_factory.mktemp("console") / "data", args=args).start()
    lam = running.client()
    python_function(lam, "ui-load", LOAD, TracingConfig={"Mode": "Active"}, MemorySize=256)
    python_function(lam, "ui-other", LOAD)
    lam.put_function_concurrency(FunctionName="ui-load", ReservedConcurrentExecutions=3)
    lam.invoke(FunctionName="ui-other", Payload=b"{}")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (Makefile system-packages)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


def pixels_like(
    png: bytes, color: tuple[int, int, int], tolerance: int = 40
) -> list[tuple[int, int]]:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    data = image.load()
    assert data is not None
    found = []
    for y in range(height):
        for x in range(width):
            r, g, b = data[x, y]
            if abs(r - color[0]) + abs(g - color[1]) + abs(b - color[2]) <= tolerance:
                found.append((x, y))
    return found


def refreshes(page: Any) -> int:
    return int(page.evaluate("document.body.dataset.refreshes"))


def wait_refresh(page: Any) -> None:
    """Until the page has drawn fresh data once more."""
    seen = refreshes(page)
    page.wait_for_function(f"Number(document.body.dataset.refreshes) > {seen}", timeout=10_000)


def test_console_shows_functions_and_a_chart_that_draws_under_load(
    server: Server, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.endpoint + "/console")
    assert page.url.endswith("/console/")
    page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=10_000)
    assert page.locator("#signin").is_hidden()  # auth off: nothing to sign in to
    row = page.locator('#functions tbody tr[data-name="ui-load"]')
    cells = row.locator("td").all_inner_texts()
    assert cells[:6] == ["ui-load", PYTHON_RUNTIME, "256", "3", "Active", "3"]
    assert page.locator('#functions tbody tr[data-name="ui-other"]').count() == 1
    row.click()
    page.wait_for_function("document.getElementById('chart-title').textContent === 'ui-load'")
    wait_refresh(page)
    assert page.locator("#details").is_visible()
    canvas = page.locator("#chart-concurrency canvas")
    before = canvas.screenshot()
    (tmp_path / "chart-before.png").write_bytes(before)
    idle_blue = pixels_like(before, SERIES_BLUE)
    assert idle_blue, "the idle series is drawn as a flat line"
    baseline = min(y for _, y in idle_blue)
    assert pixels_like(before, RESERVED_ORANGE), "the reservation line is drawn"

    stop = threading.Event()
    outcomes: list[str] = []
    clients = [server.client() for _ in range(5)]

    def worker(index: int) -> None:
        deadline = time.monotonic() + 12
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                clients[index].invoke(
                    FunctionName="ui-load", Payload=json.dumps({"sleep": 0.4, "n": index}).encode()
                )
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])
                time.sleep(0.05)

    pool = ThreadPoolExecutor(5)
    futures = [pool.submit(worker, index) for index in range(5)]
    try:
        highest = baseline
        during = before
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            wait_refresh(page)
            during = canvas.screenshot()
            blue = pixels_like(during, SERIES_BLUE)
            highest = min((y for _, y in blue), default=baseline)
            if highest < baseline - 20:
                break
        (tmp_path / "chart-during-load.png").write_bytes(during)
        assert highest < baseline - 20, "the concurrency line rose while load ran"
        page.wait_for_function(
            "Number(document.getElementById('card-throttles').textContent) > 0", timeout=10_000
        )
    finally:
        stop.set()
        for future in futures:
            future.result(timeout=30)
        pool.shutdown()
    assert "ok" in outcomes and "TooManyRequestsException" in outcomes  # 5 callers, 3 slots
    full = page.screenshot(full_page=True)
    (tmp_path / "console.png").write_bytes(full)

    page.wait_for_function(
        "document.getElementById('logs').textContent.includes('REPORT RequestId')",
        timeout=10_000,
    )
    assert "START RequestId" in page.locator("#logs").inner_text()
    first_trace = page.locator("#traces li[data-trace]").first
    first_trace.wait_for(timeout=10_000)
    first_trace.click()
    page.wait_for_function("document.querySelector('#traces .timeline') !== null", timeout=10_000)
    timeline = page.locator("#traces .timeline").inner_text()
    assert "Invocation" in timeline and "AWS::Lambda::Function" in timeline
    settings = page.locator("#settings").inner_text()
    assert "ReservedFunctionConcurrentInvocationLimitExceeded" in settings
    peak = page.locator('#functions tbody tr[data-name="ui-load"] td').nth(8).inner_text()
    assert peak == "3"  # the peak in the last minute is the reservation
    assert errors == []
    page.close()


def test_console_serves_only_its_own_files(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path, status in (
            ("/console/../../../etc/passwd", 404),
            ("/console/%2e%2e/%2e%2e/etc/passwd", 404),
            ("/console/vendor/uplot/LICENSE", 200),
            ("/console/console.js", 200),
        ):
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status == status, path
            assert b"root:" not in body
    finally:
        connection.close()


def test_with_auth_on_the_console_signs_in_and_shows_that_account_only(
    browser: Any, tmp_path: Path
) -> None:
    """`--auth on`: the console asks for an access key, signs every request with it
    (SigV4 in the page), and shows the signed-in account's functions, not another's."""
    running = Server(tmp_path / "data", args=["--auth", "on", "--isolation", "none"]).start()
    try:
        mine_id, mine = running.new_account("console-mine")
        _, theirs = running.new_account("console-theirs")
        python_function(running.client(credentials=mine), "mine-fn", LOAD)
        python_function(running.client(credentials=theirs), "theirs-fn", LOAD)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(running.endpoint + "/console")
        page.wait_for_selector("#signin:not([hidden])", timeout=10_000)
        assert page.locator("#functions tbody tr").count() == 0
        # A wrong secret: refused, and the form says why.
        page.fill("#signin-key", mine["aws_access_key_id"])
        page.fill("#signin-secret", "not-the-secret")
        page.click("#signin button")
        page.wait_for_function(
            "document.getElementById('signin-problem').textContent.includes('signature')",
            timeout=10_000,
        )
        page.fill("#signin-key", mine["aws_access_key_id"])
        page.fill("#signin-secret", mine["aws_secret_access_key"])
        page.click("#signin button")
        page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=10_000)
        names = page.locator("#functions tbody tr td:first-child").all_text_contents()
        assert names == ["All functions", "mine-fn"]
        assert page.locator("#scope").text_content() == f"account {mine_id} · us-east-1"
        assert page.locator("#signin").is_hidden()
        page.close()
    finally:
        running.stop()

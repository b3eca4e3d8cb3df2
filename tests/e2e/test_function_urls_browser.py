"""Function URLs in headless Chromium (Debian's, driven by Playwright), at their own
addresses (Chromium sends `*.localhost` to the loopback address): a page with cookies and a
form post, and CORS from a page on another origin: the preflight is answered without
invoking the function, the browser's request goes through for an allowed origin and is
refused by the browser for one that is not."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_function_urls import GUEST_BOOK
from tests.helpers import Server, python_function
from tests.web import public_url, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# A page that calls two other URLs from its own origin, with a method and a header that
# need a preflight, and shows what happened to each call.
APP = """
PAGE = '''<!doctype html><html><body><ul id="results"></ul><script>
const params = new URLSearchParams(location.search);
async function call(name) {
  const item = document.createElement("li");
  item.id = name;
  try {
    const answer = await fetch(params.get(name) + "write", {
      method: "PUT", headers: {"X-Custom": "yes", "Content-Type": "application/json"},
      body: JSON.stringify({from: location.origin}),
    });
    item.textContent = "ok " + answer.status + " " + answer.headers.get("x-answer") + " " +
      (await answer.text());
  } catch (error) {
    item.textContent = "refused " + error.name;
  }
  document.getElementById("results").appendChild(item);
}
call("allowed").then(() => call("refused")).then(() => document.body.dataset.done = "1");
</script></body></html>'''

def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "text/html"}, "body": PAGE}
"""

API = """
import json
def handler(event, context):
    sent = json.loads(event["body"])
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain", "X-Answer": "42"},
            "body": event["requestContext"]["http"]["method"] + " from " + sent["from"]}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("url-browser") / "data").start()
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


def test_a_page_with_cookies_and_a_form_post(server: Server, browser: Any) -> None:
    lam = server.client()
    python_function(lam, "guest-book", GUEST_BOOK)
    url = public_url(lam, "guest-book")
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    assert page.title() == "Guest book"
    assert page.text_content("#greeting") == "Hello, stranger! (visit 1)"
    page.fill("#name", "Ada")
    with page.expect_navigation():
        page.click("#sign")  # POST /sign, 303 to /, GET / with both cookies
    assert page.text_content("#greeting") == "Hello, Ada! (visit 2)"
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["name"]["value"] == "Ada" and cookies["name"]["httpOnly"] is True
    assert cookies["visits"]["value"] == "2"
    page.reload()
    assert page.text_content("#greeting") == "Hello, Ada! (visit 3)"
    context.close()


def test_cors_from_a_page_on_another_origin(server: Server, browser: Any) -> None:
    lam = server.client()
    python_function(lam, "cors-app", APP)
    python_function(lam, "cors-api", API)
    python_function(lam, "cors-closed", API)
    app = public_url(lam, "cors-app")
    origin = app.rstrip("/")
    rules = {"AllowMethods": ["PUT", "GET"], "AllowHeaders": ["x-custom", "content-type"],
             "ExposeHeaders": ["x-answer"], "MaxAge": 0}  # fmt: skip
    allowed = public_url(lam, "cors-api", Cors={**rules, "AllowOrigins": [origin]})
    refused = public_url(
        lam, "cors-closed", Cors={**rules, "AllowOrigins": ["http://elsewhere.localhost"]}
    )
    page = browser.new_page()
    page.goto(f"{app}?allowed={allowed}&refused={refused}")
    page.wait_for_function("document.body.dataset.done === '1'", timeout=30_000)
    assert page.text_content("#allowed") == f"ok 200 42 PUT from {origin}"
    assert page.text_content("#refused") == "refused TypeError"
    page.close()

    # Each preflight was answered without invoking: the allowed URL's function ran once
    # (the PUT), the refused one's never (the browser stopped at its preflight).
    logs = server.client("logs")

    def starts(name: str) -> int:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return 0
        return sum(e["message"].startswith("START RequestId") for e in events)

    wait_for(lambda: starts("cors-api") == 1, what="the one invocation of cors-api")
    assert starts("cors-closed") == 0

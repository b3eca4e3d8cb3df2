"""The console lists a durable function's executions and shows an execution's history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_console import browser  # noqa: F401  (the module's chromium)
from tests.e2e.test_durable import durable_function, execution_arn, status, wait_until
from tests.helpers import Server

WORKFLOW = """
@durable_execution
def handler(event, context: DurableContext):
    total = context.step(lambda _: 20 + 22, name="add")
    context.wait(Duration.from_seconds(1), name="breathe")
    return total
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("durable-console") / "data", args=["--time-scale", "0.1"]
    ).start()
    yield running
    running.stop()


def test_console_shows_executions_and_their_history(
    server: Server,
    browser: Any,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    lam = server.client()
    durable_function(lam, server, "ordered", WORKFLOW)
    arn = execution_arn(
        lam.invoke(FunctionName="ordered", Payload=b"{}", DurableExecutionName="order-17")
    )
    wait_until(lambda: status(lam, arn) == "SUCCEEDED", 30, "the execution")
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.endpoint + "/console/?function=ordered")
    row = page.locator("#executions tbody tr[data-arn]")
    row.first.wait_for(timeout=15_000)
    assert page.locator("#durable").is_visible()
    cells = row.first.locator("td").all_inner_texts()
    assert cells[:2] == ["order-17", "SUCCEEDED"]
    row.first.click()
    page.locator('#history li[data-event="ExecutionSucceeded"]').wait_for(timeout=15_000)
    history = page.locator("#history").inner_text()
    for expected in (
        "1 ExecutionStarted",
        "StepSucceeded",
        "Step add",
        "WaitStarted",
        "Wait breathe",
        "InvocationCompleted",
        "ExecutionSucceeded",
        "42",
    ):
        assert expected in history, (expected, history)
    (tmp_path / "durable-console.png").write_bytes(page.screenshot(full_page=True))
    assert errors == []
    page.close()
